package watcher

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	corev1 "k8s.io/api/core/v1"
)

// fillTracker observes owners with the given number of failing pods and
// types, past their group wait.
func fillTracker(t testing.TB, tr *tracker, specs []ownerSpec) {
	t.Helper()
	for _, s := range specs {
		owner := events.ObjectRef{Kind: s.kind, Namespace: s.ns, Name: s.name}
		pods := make([]podObs, s.pods)
		for i := range pods {
			pods[i] = podObs{Name: fmt.Sprintf("%s-%d", s.name, i), Issues: []PodIssue{{Type: s.typ, Container: "app", Reason: "r", Message: "m"}}}
		}
		tr.Observe(owner, pods, t0)
	}
}

type ownerSpec struct {
	ns, kind, name string
	typ            events.IssueType
	pods           int
}

func TestQuery(t *testing.T) {
	tr := newTracker("prod", timing, nil)
	fillTracker(t, tr, []ownerSpec{
		{"shop", "Deployment", "payments-api", events.IssueCrashLoopBackOff, 3},
		{"shop", "Deployment", "frontend", events.IssueImagePullBackOff, 2},
		{"shop", "Deployment", "recommender", events.IssueOOMKilled, 1},
		{"shop", "Deployment", "analytics", events.IssuePending, 5},
		{"shop", "StatefulSet", "db", events.IssueStuckTerminating, 1},
		{"ops", "CronJob", "backup", events.IssueCrashLoopBackOff, 1},
		{"ops", "Deployment", "frontend", events.IssueCrashLoopBackOff, 1},
	})
	names := func(r events.AnalyzeResponse) []string {
		var out []string
		for _, in := range r.Incidents {
			out = append(out, in.Namespace+"/"+in.Owner.Name)
		}
		return out
	}
	cases := []struct {
		req   events.AnalyzeRequest
		want  []string
		total int
	}{
		// Severity first (high, medium, low), then pod count, then name.
		{events.AnalyzeRequest{}, []string{"shop/payments-api", "shop/frontend", "ops/backup", "ops/frontend", "shop/recommender", "shop/analytics", "shop/db"}, 7},
		{events.AnalyzeRequest{Namespace: "ops"}, []string{"ops/backup", "ops/frontend"}, 2},
		{events.AnalyzeRequest{Type: events.IssueCrashLoopBackOff}, []string{"shop/payments-api", "ops/backup", "ops/frontend"}, 3},
		{events.AnalyzeRequest{Owner: "frontend"}, []string{"shop/frontend", "ops/frontend"}, 2},
		{events.AnalyzeRequest{Owner: "cronjob/backup"}, []string{"ops/backup"}, 1},
		{events.AnalyzeRequest{Owner: "StatefulSet/backup"}, nil, 0},
		{events.AnalyzeRequest{Namespace: "nowhere"}, nil, 0},
	}
	for _, tc := range cases {
		resp, err := query(tr, tc.req, "prod", t0)
		if err != nil {
			t.Fatalf("query(%+v): %v", tc.req, err)
		}
		if fmt.Sprint(names(resp)) != fmt.Sprint(tc.want) || resp.Total != tc.total {
			t.Errorf("query(%+v) = %v (total %d), want %v (total %d)", tc.req, names(resp), resp.Total, tc.want, tc.total)
		}
		if err := resp.Validate(); err != nil {
			t.Errorf("response does not validate: %v", err)
		}
	}
	all, _ := query(tr, events.AnalyzeRequest{}, "prod", t0)
	if all.ByType[events.IssueCrashLoopBackOff] != 3 || all.ByType[events.IssuePending] != 1 || len(all.ByType) != 5 {
		t.Errorf("by type = %v", all.ByType)
	}
	if bs := all.BySeverity; bs[events.SeverityHigh] != 5 || bs[events.SeverityMedium] != 1 || bs[events.SeverityLow] != 1 || len(bs) != 3 {
		t.Errorf("by severity = %v, want high 5, medium 1, low 1", bs)
	}
	if ops, _ := query(tr, events.AnalyzeRequest{Namespace: "ops"}, "prod", t0); ops.BySeverity[events.SeverityHigh] != 2 || len(ops.BySeverity) != 1 {
		t.Errorf("by severity of namespace ops = %v, want the filtered counts (high 2)", ops.BySeverity)
	}

	// Paging: pages of 3 with the cursor give every incident once, in order.
	var paged []string
	req := events.AnalyzeRequest{Limit: 3}
	for range 10 {
		resp, err := query(tr, req, "prod", t0)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Total != 7 || len(resp.Incidents) > 3 {
			t.Fatalf("page: total %d, %d incidents", resp.Total, len(resp.Incidents))
		}
		paged = append(paged, names(resp)...)
		if resp.NextCursor == "" {
			break
		}
		req.Cursor = resp.NextCursor
	}
	if fmt.Sprint(paged) != fmt.Sprint(names(all)) {
		t.Errorf("paged = %v, want %v", paged, names(all))
	}

	// A cursor stays valid when the incident it points at goes away.
	first, _ := query(tr, events.AnalyzeRequest{Limit: 2}, "prod", t0)
	tr.Observe(events.ObjectRef{Kind: "Deployment", Namespace: "shop", Name: "frontend"}, nil, t0.Add(time.Second))
	next, _ := query(tr, events.AnalyzeRequest{Limit: 2, Cursor: first.NextCursor}, "prod", t0)
	if got := names(next); fmt.Sprint(got) != "[ops/backup ops/frontend]" {
		t.Errorf("page after a removed incident = %v", got)
	}

	_, err := query(tr, events.AnalyzeRequest{Cursor: "not-a-cursor"}, "prod", t0)
	var ve *events.ValidationError
	if !errors.As(err, &ve) || ve.Field != "cursor" {
		t.Errorf("bad cursor error = %v, want a validation error on field cursor", err)
	}
}

func TestAnalyzeBody(t *testing.T) {
	s := &Service{ready: make(chan struct{}), cfg: Config{Cluster: "prod"}, tracker: newTracker("prod", timing, nil), now: func() time.Time { return t0 }, log: slog.New(slog.DiscardHandler)}
	fillTracker(t, s.tracker, []ownerSpec{{"shop", "Deployment", "payments-api", events.IssueCrashLoopBackOff, 3}})

	body, code := s.analyzeBody([]byte(`{}`))
	if code != events.CodeUnavailable {
		t.Fatalf("before sync: code %q body %s, want unavailable", code, body)
	}
	close(s.ready)
	for _, tc := range []struct{ body, code, field string }{
		{``, "", ""},
		{`{}`, "", ""},
		{`{"namespace":"shop","type":"CrashLoopBackOff","limit":5}`, "", ""},
		{`{"type":"Exploded"}`, events.CodeInvalidArgument, "type"},
		{`{"limit":100000}`, events.CodeInvalidArgument, "limit"},
		{`{"limit":"ten"}`, events.CodeInvalidArgument, "request.limit"},
		{`{"cursor":"@@@"}`, events.CodeInvalidArgument, "cursor"},
		{`not json`, events.CodeInvalidArgument, "request"},
	} {
		body, code := s.analyzeBody([]byte(tc.body))
		if code != tc.code {
			t.Errorf("%s: code %q, want %q (%s)", tc.body, code, tc.code, body)
			continue
		}
		resp, err := events.DecodeReply[events.AnalyzeResponse](body, code)
		if tc.code == "" {
			if err != nil || resp.Total != 1 || resp.Incidents[0].Owner.Name != "payments-api" {
				t.Errorf("%s: %+v, %v", tc.body, resp, err)
			}
			continue
		}
		var er *events.ErrorReply
		if !errors.As(err, &er) || er.Field != tc.field {
			t.Errorf("%s: error %v, want field %q", tc.body, err, tc.field)
		}
	}
}

// BenchmarkAnalyze10k answers analyze over a cluster of 10,000 pods of
// which 500 fail (in 250 incidents across 20 namespaces): the tracker is
// filled by classifying the pods, as the informers would.
func BenchmarkAnalyze10k(b *testing.B) {
	healthy, crash, pull := loadPod(b, "sandbox-running"), loadPod(b, "sandbox-crash-exit-1"), loadPod(b, "sandbox-errpull-notfound")
	tr := newTracker("prod", timing, nil)
	failing := 0
	for o := range 2000 { // 2,000 owners of 5 pods: 10,000 pods
		owner := events.ObjectRef{Kind: "Deployment", Namespace: fmt.Sprintf("ns-%02d", o%20), Name: fmt.Sprintf("app-%04d", o)}
		var pods []podObs
		for i := range 5 {
			src := healthy
			if o%8 == 0 && i < 2 { // 250 owners with 2 failing pods
				src = []*corev1.Pod{crash, pull}[o/8%2]
			}
			issues := Classify(src, nil, fixtureNow, DefaultClassifyOptions())
			failing += min(len(issues), 1)
			if len(issues) > 0 {
				pods = append(pods, podObs{Name: fmt.Sprintf("%s-%d", owner.Name, i), Issues: issues})
			}
		}
		tr.Observe(owner, pods, fixtureNow)
	}
	if failing != 500 || len(tr.Snapshot(nil)) != 250 {
		b.Fatalf("%d failing pods in %d incidents, want 500 in 250", failing, len(tr.Snapshot(nil)))
	}
	s := &Service{ready: make(chan struct{}), cfg: Config{Cluster: "prod"}, tracker: tr, now: time.Now, log: slog.New(slog.DiscardHandler)}
	close(s.ready)
	reqs := [][]byte{[]byte(`{}`), []byte(`{"namespace":"ns-07"}`), []byte(`{"type":"ImagePullBackOff","limit":20}`)}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		body, code := s.analyzeBody(reqs[i%len(reqs)])
		if code != "" {
			b.Fatalf("error reply %s", body)
		}
	}
	b.StopTimer()
	var resp events.AnalyzeResponse
	body, _ := s.analyzeBody([]byte(`{"limit":20}`))
	if err := json.Unmarshal(body, &resp); err != nil || len(resp.Incidents) != 20 || resp.Total != 250 {
		b.Fatalf("reply: %d incidents of %d (%v)", len(resp.Incidents), resp.Total, err)
	}
}

// Warnings are counted, not listed, unless asked for by class or type.
func TestQueryClasses(t *testing.T) {
	tr := newTracker("prod", Timing{GroupInterval: time.Minute, ResolveWait: time.Minute}, nil)
	fillTracker(t, tr, []ownerSpec{{"shop", "Deployment", "payments-api", events.IssueCrashLoopBackOff, 2}})
	// An owner's observations are complete: all of web's warnings at once.
	observe := func(ns, name string, issues ...ControllerIssue) {
		owner := events.ObjectRef{Kind: "Deployment", Namespace: ns, Name: name}
		tr.ObserveOwner(owner, nil, []ctrlObs{{Chain: []events.ObjectRef{owner}, Issues: issues}}, t0)
	}
	observe("shop", "web", ControllerIssue{Type: events.IssueMissingProbes, Reason: "no_probes", Container: "app", Message: "m"},
		ControllerIssue{Type: events.IssueMutableImageTag, Reason: "latest_tag", Container: "app", Message: "m"},
		ControllerIssue{Type: events.IssueMissingProbes, Reason: "no_probes", Container: "sidecar", Message: "m"})
	observe("ops", "batch", ControllerIssue{Type: events.IssueMissingProbes, Reason: "no_probes", Container: "worker", Message: "m"})
	for name, tc := range map[string]struct {
		req      events.AnalyzeRequest
		total    int
		warnings map[events.IssueType]int
	}{
		"default: failures listed, warnings counted": {events.AnalyzeRequest{}, 1,
			map[events.IssueType]int{events.IssueMissingProbes: 3, events.IssueMutableImageTag: 1}},
		"namespace filter applies to the counts": {events.AnalyzeRequest{Namespace: "ops"}, 0,
			map[events.IssueType]int{events.IssueMissingProbes: 1}},
		"class warning lists them":   {events.AnalyzeRequest{Class: events.ClassWarning}, 4, nil},
		"a warning type lists it":    {events.AnalyzeRequest{Type: events.IssueMissingProbes}, 3, nil},
		"class failure counts none":  {events.AnalyzeRequest{Class: events.ClassFailure}, 1, nil},
		"a failure type counts none": {events.AnalyzeRequest{Type: events.IssueCrashLoopBackOff}, 1, nil},
	} {
		t.Run(name, func(t *testing.T) {
			resp, err := query(tr, tc.req, "prod", t0)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Total != tc.total || len(resp.Incidents) != tc.total {
				t.Errorf("total %d, listed %d, want %d", resp.Total, len(resp.Incidents), tc.total)
			}
			if fmt.Sprint(resp.Warnings) != fmt.Sprint(tc.warnings) {
				t.Errorf("warnings %v, want %v", resp.Warnings, tc.warnings)
			}
			for _, in := range resp.Incidents {
				if want := cmp.Or(tc.req.Class, tc.req.Type.Class()); in.Type.Class() != want {
					t.Errorf("listed %s of class %s, want class %s", in.Type, in.Type.Class(), want)
				}
			}
		})
	}
}
