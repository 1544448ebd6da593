package mcpgateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"

	"github.com/kaar-dev/kaar/pkg/config"
	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/mark3labs/mcp-go/server"
	"go.yaml.in/yaml/v3"
)

// Role is what a bearer token allows. Roles are ordered: each includes the
// ones before it.
type Role string

// Roles, from least to most privileged.
const (
	// RoleRead may analyze the cluster and read incidents, plans and
	// executions (analyze/list/get tools, resources and prompts).
	RoleRead Role = "read"
	// RoleAssistant may also ask for plans and follow their execution; it
	// may approve or reject a plan only with the confirmation of a person
	// (MCP elicitation), never on the model's call alone unless
	// mcp.approval.without_elicitation is accept. The role of a model.
	RoleAssistant Role = "assistant"
	// RoleApprover decides directly: the role of a person's token.
	RoleApprover Role = "approver"
	// RoleAdmin may also pause and resume remediation (the kill switch).
	RoleAdmin Role = "admin"
)

// Roles lists the roles, least privileged first.
func Roles() []Role { return []Role{RoleRead, RoleAssistant, RoleApprover, RoleAdmin} }

// rolesText is the order of the roles, for messages.
const rolesText = "read < assistant < approver < admin"

func roleNames() []string { return enumNames(Roles()) }

func (r Role) rank() int { return slices.Index(Roles(), r) }

// allows reports whether r includes need.
func (r Role) allows(need Role) bool { return r.rank() >= 0 && r.rank() >= need.rank() }

// Token is one accepted bearer token and who it stands for (mcp.tokens).
type Token struct {
	Token string `yaml:"token"`
	User  string `yaml:"user"`
	Role  Role   `yaml:"role"`
}

// Identity is who a request acts for: the user recorded in decisions and
// the role that bounds what it may do.
//
// A request without one gets its channel's identity (Service.identity):
// MCP over HTTP without tokens and in-process MCP clients act as
// {mcp-client, assistant}, REST without tokens as {rest-client,
// approver} (the original server's curl flow on loopback), stdio as
// mcp.stdio.user and mcp.stdio.role ({stdio, assistant}). Config.DefaultUser
// or WithUser replace the user, never the role.
type Identity struct {
	User string
	Role Role
}

// TokenVerifier checks a bearer token that is not one of the configured
// tokens, for example an access token issued by the OAuth authorization
// server advertised in the protected resource metadata. It returns an
// error for a token it does not accept.
type TokenVerifier func(ctx context.Context, token string) (Identity, error)

type identityKey struct{}

// WithIdentity returns a context carrying the authenticated identity of a
// request. The gateway's own authentication sets it; middleware of your
// own in front of Handler may too.
func WithIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// IdentityFromContext returns the identity set by WithIdentity.
func IdentityFromContext(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	return id, ok
}

type userKey struct{}

// WithUser returns a context carrying the authenticated user of a request,
// for authentication middleware in front of Handler when the gateway's own
// tokens are not used. The request gets its channel's role (see
// Identity); use WithIdentity to give it another. The gateway records the
// user as decided_by in the decisions it publishes.
func WithUser(ctx context.Context, user string) context.Context {
	return context.WithValue(ctx, userKey{}, user)
}

// UserFromContext returns the user of WithIdentity, else of WithUser.
func UserFromContext(ctx context.Context) (string, bool) {
	if id, ok := IdentityFromContext(ctx); ok && id.User != "" {
		return id.User, true
	}
	u, ok := ctx.Value(userKey{}).(string)
	return u, ok && u != ""
}

// user is who a call acts for: the authenticated user, else the
// configured default, else the anonymous name of the channel.
func (s *Service) user(ctx context.Context, via events.Via) string {
	if u, ok := UserFromContext(ctx); ok {
		return u
	}
	if s.cfg.DefaultUser != "" {
		return s.cfg.DefaultUser
	}
	if via == events.ViaREST {
		return AnonymousRESTUser
	}
	return AnonymousMCPUser
}

// ForbiddenError is a call whose identity lacks the role a tool needs. It
// matches ErrForbidden.
type ForbiddenError struct {
	Tool     string
	User     string
	Has      Role
	Required Role
}

func (e *ForbiddenError) Error() string {
	return fmt.Sprintf("permission denied: %s needs role %q, and the token of user %q has role %q (roles: %s); use a token with role %s or higher",
		e.Tool, e.Required, e.User, e.Has, rolesText, e.Required)
}

// Is makes every ForbiddenError match ErrForbidden.
func (e *ForbiddenError) Is(target error) bool { return target == ErrForbidden }

// identity is who a call acts for: the authenticated identity, else the
// identity of its channel (see Identity), never more than approver.
func (s *Service) identity(ctx context.Context, via events.Via) Identity {
	user := s.user(ctx, via)
	if id, ok := IdentityFromContext(ctx); ok && id.Role != "" {
		return Identity{User: user, Role: id.Role}
	}
	if via == events.ViaREST {
		return Identity{User: user, Role: RoleApprover}
	}
	return Identity{User: user, Role: RoleAssistant}
}

// authorize checks the caller's role against the tool's. Every call has
// a role: its token's, or its channel's (Service.identity).
func authorize(id Identity, t *tool) error {
	if id.Role.allows(t.role) {
		return nil
	}
	return &ForbiddenError{Tool: t.name, User: id.User, Has: id.Role, Required: t.role}
}

// authenticator holds the accepted tokens as SHA-256 hashes, so comparing
// takes the same time whatever the token's length and content.
type authenticator struct {
	hashes [][sha256.Size]byte
	ids    []Identity
	verify TokenVerifier
}

func newAuthenticator(tokens []Token, verify TokenVerifier) *authenticator {
	a := &authenticator{verify: verify}
	for _, t := range tokens {
		a.hashes = append(a.hashes, sha256.Sum256([]byte(t.Token)))
		a.ids = append(a.ids, Identity{User: t.User, Role: t.Role})
	}
	return a
}

func (a *authenticator) enabled() bool { return len(a.hashes) > 0 || a.verify != nil }

// lookup compares the token with every configured one in constant time
// (no early exit).
func (a *authenticator) lookup(token string) (Identity, bool) {
	h := sha256.Sum256([]byte(token))
	found := -1
	for i := range a.hashes {
		if subtle.ConstantTimeCompare(h[:], a.hashes[i][:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return Identity{}, false
	}
	return a.ids[found], true
}

// bearerToken extracts the token of an "Authorization: Bearer <token>"
// header.
func bearerToken(r *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

// requireAuth lets through requests with an accepted bearer token, with
// their identity in the context, and answers 401 otherwise, pointing
// OAuth-capable clients at the protected resource metadata (RFC 9728 §5.1).
func (s *Service) requireAuth(next http.Handler) http.Handler {
	if !s.auth.enabled() {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := bearerToken(r)
		if !ok {
			s.unauthorized(w, r, "", "authentication required: send Authorization: Bearer <token> (a token of mcp.tokens or mcp.token_file)")
			return
		}
		id, ok := s.auth.lookup(token)
		if !ok && s.auth.verify != nil {
			if v, err := s.auth.verify(r.Context(), token); err == nil && v.User != "" && v.Role.rank() >= 0 {
				id, ok = v, true
			}
		}
		if !ok {
			s.metrics.authFailures.Inc()
			s.unauthorized(w, r, "invalid_token", "the bearer token is not accepted")
			return
		}
		next.ServeHTTP(w, r.WithContext(WithIdentity(r.Context(), id)))
	})
}

func (s *Service) unauthorized(w http.ResponseWriter, r *http.Request, code, msg string) {
	challenge := fmt.Sprintf(`Bearer realm="kaar", resource_metadata=%q`, s.metadataURL(r))
	if code != "" {
		challenge += fmt.Sprintf(`, error=%q, error_description=%q`, code, msg)
	}
	w.Header().Set("WWW-Authenticate", challenge)
	writeJSON(w, http.StatusUnauthorized, restError{Error: msg, Code: outcomeUnauthenticated})
}

// baseURL is scheme://host of the configured resource, else of the
// request.
func (s *Service) baseURL(r *http.Request) string {
	if s.cfg.Resource != "" {
		if i := strings.Index(s.cfg.Resource, "://"); i >= 0 {
			if j := strings.Index(s.cfg.Resource[i+3:], "/"); j >= 0 {
				return s.cfg.Resource[:i+3+j]
			}
		}
		return strings.TrimRight(s.cfg.Resource, "/")
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// resourceURL is the protected resource: the MCP endpoint.
func (s *Service) resourceURL(r *http.Request) string {
	if s.cfg.Resource != "" {
		return s.cfg.Resource
	}
	return s.baseURL(r) + s.cfg.MCPPath
}

// metadataURL is where the resource's metadata is (RFC 9728 §3.1: the
// well-known prefix inserted before the resource's path).
func (s *Service) metadataURL(r *http.Request) string {
	return s.baseURL(r) + server.ProtectedResourceMetadataPath(s.resourceURL(r))
}

// protectedResourceMetadata serves RFC 9728 metadata: the resource, the
// authorization servers that issue tokens for it, and that tokens go in
// the Authorization header.
func (s *Service) protectedResourceMetadata(w http.ResponseWriter, r *http.Request) {
	md := server.ProtectedResourceMetadataConfig{
		Resource:               s.resourceURL(r),
		AuthorizationServers:   s.cfg.AuthorizationServers,
		BearerMethodsSupported: []string{"header"},
		ResourceName:           "kaar: Kubernetes analysis and remediation",
		ScopesSupported:        roleNames(),
	}
	w.Header().Set("Access-Control-Allow-Origin", "*")
	writeJSON(w, http.StatusOK, md)
}

// loadTokenFile reads a YAML list of tokens in the shape of mcp.tokens.
func loadTokenFile(path string) ([]Token, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("field \"mcp.token_file\": %w", err)
	}
	var out []Token
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&out); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("field \"mcp.token_file\": %s is not a YAML list of {token, user, role}: %v: %w", path, err, events.ErrInvalid)
	}
	return out, nil
}

// validateTokens checks every token, naming it by its key.
func validateTokens(key string, tokens []Token) error {
	seen := map[string]string{}
	for i, t := range tokens {
		k := fmt.Sprintf("%s[%d]", key, i)
		if len(t.Token) < config.MinTokenLength {
			return fmt.Errorf("field %q: must be at least %d characters: %w", k+".token", config.MinTokenLength, events.ErrInvalid)
		}
		if t.User == "" {
			return fmt.Errorf("field %q: must not be empty: %w", k+".user", events.ErrInvalid)
		}
		if t.Role.rank() < 0 {
			return fmt.Errorf("field %q: %q is not a role (allowed: %s): %w", k+".role", t.Role, strings.Join(roleNames(), ", "), events.ErrInvalid)
		}
		if prev, dup := seen[t.Token]; dup {
			return fmt.Errorf("field %q: the same token as %s: %w", k+".token", prev, events.ErrInvalid)
		}
		seen[t.Token] = k
	}
	return nil
}
