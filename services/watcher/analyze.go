package watcher

import (
	"cmp"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/nats-io/nats.go/micro"
)

// Version is the watcher's version, reported by the micro service.
const Version = "0.1.0"

// analyzeHandler answers kaar.<cluster>.svc.watcher.analyze from the
// tracker's memory: never a LIST against the API server.
func (s *Service) analyzeHandler(req micro.Request) {
	body, code := s.analyzeBody(req.Data())
	var opts []micro.RespondOpt
	if code != "" {
		opts = append(opts, micro.WithHeaders(micro.Headers{events.HeaderError: []string{code}}))
	}
	if err := req.Respond(body, opts...); err != nil {
		s.log.Warn("analyze: reply failed", slog.Any("error", err))
	}
}

// analyzeBody turns a request body into a reply body and its error code
// ("" on success).
func (s *Service) analyzeBody(data []byte) ([]byte, string) {
	if !s.synced() {
		return events.EncodeReply(nil, &events.ErrorReply{Code: events.CodeUnavailable,
			Message: "the watcher's cache is not synced yet; retry in a few seconds"})
	}
	if len(strings.TrimSpace(string(data))) == 0 {
		data = []byte("{}")
	}
	req, err := events.DecodeRequest[events.AnalyzeRequest](data)
	if err != nil {
		return events.EncodeReply(nil, err)
	}
	resp, err := query(s.tracker, req, s.cfg.Cluster, s.now())
	return events.EncodeReply(resp, err)
}

// query filters, sorts and pages the present incidents: worst severity
// first, then most pods, then by namespace, owner, container and type.
// Unless the request asks for warnings (by class or type), it lists the
// failures and counts the warnings by type.
func query(t *tracker, req events.AnalyzeRequest, cluster string, now time.Time) (events.AnalyzeResponse, error) {
	var after *cursor
	if req.Cursor != "" {
		c, err := decodeCursor(req.Cursor)
		if err != nil {
			return events.AnalyzeResponse{}, err
		}
		after = &c
	}
	limit := req.Limit
	if limit == 0 {
		limit = events.DefaultAnalyzeLimit
	}
	limit = min(limit, events.MaxAnalyzeLimit)
	ownerKind, ownerName, hasKind := strings.Cut(req.Owner, "/")
	if !hasKind {
		ownerName = req.Owner
	}
	warnings := map[events.IssueType]int{}
	matches := t.Snapshot(func(in *events.Incident) bool {
		switch {
		case req.Namespace != "" && in.Namespace != req.Namespace,
			req.Type != "" && in.Type != req.Type,
			req.Owner != "" && in.Owner.Name != ownerName,
			hasKind && !strings.EqualFold(in.Owner.Kind, ownerKind):
			return false
		}
		listed, counted := req.ListsClass(in.Type)
		if counted {
			warnings[in.Type]++
		}
		return listed
	})
	resp := events.AnalyzeResponse{Cluster: cluster, Total: len(matches), GeneratedAt: now.UTC(), Incidents: []events.Incident{}}
	if len(warnings) > 0 {
		resp.Warnings = warnings
	}
	if len(matches) > 0 {
		resp.ByType = map[events.IssueType]int{}
		resp.BySeverity = map[events.Severity]int{}
	}
	for i := range matches {
		resp.ByType[matches[i].Type]++
		resp.BySeverity[matches[i].Severity]++
	}
	slices.SortFunc(matches, func(a, b events.Incident) int { return compareCursor(cursorOf(&a), cursorOf(&b)) })
	start := 0
	if after != nil {
		start, _ = slices.BinarySearchFunc(matches, *after, func(in events.Incident, c cursor) int {
			if compareCursor(cursorOf(&in), c) <= 0 {
				return -1
			}
			return 1
		})
	}
	end := min(start+limit, len(matches))
	resp.Incidents = append(resp.Incidents, matches[start:end]...)
	if end < len(matches) {
		resp.NextCursor = cursorOf(&matches[end-1]).encode()
	}
	return resp, nil
}

// cursor is the sort key of the last incident of a page.
type cursor struct {
	Severity  int    `json:"s"`
	PodCount  int    `json:"p"`
	Namespace string `json:"n"`
	Kind      string `json:"k"`
	Owner     string `json:"o"`
	Container string `json:"c"`
	Type      string `json:"t"`
	ID        string `json:"i"`
}

func cursorOf(in *events.Incident) cursor {
	return cursor{Severity: in.Severity.Rank(), PodCount: in.PodCount, Namespace: in.Namespace, Kind: in.Owner.Kind,
		Owner: in.Owner.Name, Container: in.Container, Type: string(in.Type), ID: in.ID}
}

func compareCursor(a, b cursor) int {
	return cmp.Or(
		cmp.Compare(a.Severity, b.Severity),
		cmp.Compare(b.PodCount, a.PodCount),
		cmp.Compare(a.Namespace, b.Namespace),
		cmp.Compare(a.Owner, b.Owner),
		cmp.Compare(a.Kind, b.Kind),
		cmp.Compare(a.Container, b.Container),
		cmp.Compare(a.Type, b.Type),
		cmp.Compare(a.ID, b.ID),
	)
}

func (c cursor) encode() string {
	b, _ := json.Marshal(c) // strings and ints: cannot fail
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s string) (cursor, error) {
	var c cursor
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		err = json.Unmarshal(b, &c)
	}
	if err != nil || c.ID == "" {
		return c, &events.ValidationError{Field: "cursor", Problem: "not a cursor returned by a previous analyze reply (next_cursor)"}
	}
	return c, nil
}
