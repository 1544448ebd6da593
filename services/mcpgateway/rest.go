package mcpgateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"

	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/mark3labs/mcp-go/server"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Handler is the gateway's HTTP surface: MCP streamable HTTP at
// Config.MCPPath, the REST compatibility API (GET /mcp/v1/tools,
// POST /mcp/v1/invoke/{tool}), GET /health, /healthz, /readyz and, when
// Deps.Gatherer is set, /metrics. Put authentication middleware in front of
// it and call WithUser for the authenticated user.
func (s *Service) Handler() http.Handler { return s.handler }

func (s *Service) newHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle(s.cfg.MCPPath, s.browserGuard(s.requireAuth(s.streamable)))
	mux.Handle("GET /mcp/v1/tools", s.browserGuard(s.requireAuth(http.HandlerFunc(s.restTools))))
	mux.Handle("POST /mcp/v1/invoke/{tool}", s.browserGuard(s.requireAuth(http.HandlerFunc(s.restInvoke))))
	mux.HandleFunc("/mcp/v1/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, restError{Error: fmt.Sprintf("no REST endpoint %s %s: use GET /mcp/v1/tools or POST /mcp/v1/invoke/{tool}", r.Method, r.URL.Path)})
	})
	if s.auth.enabled() {
		// RFC 9728: at the root, and with the resource's path appended
		// (where MCP clients look first).
		mux.HandleFunc("GET "+server.WellKnownProtectedResourcePath, s.protectedResourceMetadata)
		mux.HandleFunc("GET "+server.WellKnownProtectedResourcePath+s.cfg.MCPPath, s.protectedResourceMetadata)
	}
	mux.HandleFunc("GET /health", s.restHealth)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", s.restHealth)
	if s.gather != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(s.gather, promhttp.HandlerOpts{}))
	}
	return rebindingGuard(mux)
}

// RESTTool is one entry of GET /mcp/v1/tools.
type RESTTool struct {
	Name         string          `json:"name"`
	Title        string          `json:"title"`
	Description  string          `json:"description"`
	Parameters   json.RawMessage `json:"parameters"`
	OutputSchema json.RawMessage `json:"output_schema"`
	Annotations  RESTAnnotations `json:"annotations"`
}

// RESTAnnotations are the MCP tool hints, for REST clients.
type RESTAnnotations struct {
	ReadOnlyHint    bool `json:"readOnlyHint"`
	DestructiveHint bool `json:"destructiveHint"`
	IdempotentHint  bool `json:"idempotentHint"`
	OpenWorldHint   bool `json:"openWorldHint"`
}

type restError struct {
	Error   string   `json:"error"`
	Field   string   `json:"field,omitempty"`
	Code    string   `json:"code,omitempty"`
	Allowed []string `json:"allowed,omitempty"`
	// RequiredRole is the role a 403 lacked.
	RequiredRole string `json:"required_role,omitempty"`
}

func (s *Service) restTools(w http.ResponseWriter, _ *http.Request) {
	out := struct {
		Tools []RESTTool `json:"tools"`
	}{Tools: make([]RESTTool, 0, len(s.tools))}
	for _, t := range s.tools {
		out.Tools = append(out.Tools, RESTTool{Name: t.name, Title: t.title, Description: t.description,
			Parameters: t.inputSchema, OutputSchema: t.outputSchema,
			Annotations: RESTAnnotations{ReadOnlyHint: t.hints.readOnly, DestructiveHint: t.hints.destructive,
				IdempotentHint: t.hints.idempotent, OpenWorldHint: t.hints.openWorld}})
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Service) restInvoke(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("tool")
	t, ok := s.byName[name]
	if !ok {
		s.metrics.toolCalls.WithLabelValues("unknown", outcomeNotFound).Inc()
		writeJSON(w, http.StatusNotFound, restError{Error: fmt.Sprintf("%v: %q", ErrUnknownTool, name),
			Field: "tool_name", Code: outcomeNotFound, Allowed: s.ToolNames()})
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		status := http.StatusBadRequest
		if errors.As(err, &tooBig) {
			status = http.StatusRequestEntityTooLarge
		}
		writeJSON(w, status, restError{Error: "read request body: " + err.Error(), Code: outcomeInvalid})
		return
	}
	c := &call{via: events.ViaREST, user: s.user(r.Context(), events.ViaREST)}
	res, _, err := s.invoke(r.Context(), t, c, body)
	if err != nil {
		outcome, status := classify(err)
		field, allowed := errorField(err)
		re := restError{Error: err.Error(), Field: field, Code: outcome, Allowed: allowed}
		if fe := (*ForbiddenError)(nil); errors.As(err, &fe) {
			re.RequiredRole = string(fe.Required)
		}
		writeJSON(w, status, re)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"result": res})
}

func (s *Service) restHealth(w http.ResponseWriter, _ *http.Request) {
	h, ok := s.health()
	status := http.StatusOK
	if !ok {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, h)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":"encode response","code":"internal"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// rebindingGuard refuses requests that reach a loopback listener with a
// Host header that is not loopback: a web page that rebinds its domain to
// 127.0.0.1 must not be able to drive the REST API (which can approve
// plans) from a browser. mcp-go applies the same rule to the MCP endpoint.
func rebindingGuard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		local, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
		if ok && local != nil && isLoopback(local.String()) && !isLoopback(r.Host) {
			writeJSON(w, http.StatusForbidden, restError{Error: fmt.Sprintf("forbidden: Host %q is not a loopback name on a loopback listener", r.Host)})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// browserGuard keeps web pages out of the MCP and REST endpoints, which
// can decide on plans and pause remediation: a request with an Origin
// header naming another host:port than the request's own (or than
// mcp.resource's) is refused with 403, and a POST whose body is not
// declared application/json with 415. A page can send a text/plain or
// form POST to 127.0.0.1 without a CORS preflight; it cannot send
// application/json without one, and the gateway answers no preflight.
func (s *Service) browserGuard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if origin := r.Header.Get("Origin"); origin != "" && !s.sameOrigin(origin, r) {
			writeJSON(w, http.StatusForbidden, restError{Field: "Origin", Code: outcomeForbidden,
				Error: fmt.Sprintf("forbidden: Origin %q is not this server (%s): a web page of another site may not call kaar's MCP and REST endpoints", origin, r.Host)})
			return
		}
		if r.Method == http.MethodPost {
			ct := r.Header.Get("Content-Type")
			mt, _, err := mime.ParseMediaType(ct)
			if err != nil || !strings.EqualFold(mt, "application/json") {
				writeJSON(w, http.StatusUnsupportedMediaType, restError{Field: "Content-Type", Code: outcomeUnsupportedMedia, Allowed: []string{"application/json"},
					Error: fmt.Sprintf("unsupported media type: Content-Type %q; send the body as application/json", ct)})
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// sameOrigin reports whether origin (scheme://host[:port]) names the
// host:port the request was sent to, or the configured resource's.
func (s *Service) sameOrigin(origin string, r *http.Request) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return false // includes "null": sandboxed frames, file:// pages
	}
	want := []string{normalHost(r.Host, u.Scheme)}
	if s.cfg.Resource != "" {
		if ru, err := url.Parse(s.cfg.Resource); err == nil && ru.Scheme == u.Scheme {
			want = append(want, normalHost(ru.Host, ru.Scheme))
		}
	}
	return slices.Contains(want, normalHost(u.Host, u.Scheme))
}

// normalHost lower-cases host:port and drops the scheme's default port.
func normalHost(hostport, scheme string) string {
	hostport = strings.ToLower(hostport)
	if h, p, err := net.SplitHostPort(hostport); err == nil && ((scheme == "http" && p == "80") || (scheme == "https" && p == "443")) {
		return h
	}
	return hostport
}

func isLoopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = strings.Trim(hostport, "[]")
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}
