package main_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kaar-dev/kaar/internal/testutil"
	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/config"
	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/kaar-dev/kaar/pkg/lease"
	"github.com/kaar-dev/kaar/pkg/sandbox"
	"github.com/kaar-dev/kaar/pkg/svcmain"
	"github.com/kaar-dev/kaar/services/notifier"
)

// TestChaosOnAThreeNodeCluster: the chaos suite on a JetStream cluster
// of three kaar nats processes (every stream and bucket at R3), with two
// executor processes: the node that leads the APPROVALS stream, then the
// node that leads the kaar_plans bucket, is killed (SIGKILL) in the
// middle of executions and restarted on its store; an executor is killed
// mid-step. Every plan must be executed exactly once: 0 duplicates, 0
// losses, and none refused as stale or expired. `make chaos` runs it
// with KAAR_CHAOS_RUNS x KAAR_CHAOS_BATCH plans per scenario and writes
// the table to KAAR_CHAOS_CLUSTER_TABLE.
func TestChaosOnAThreeNodeCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("three NATS processes, executors and the sandbox; run without -short")
	}
	parallel(t)
	runs, batch := envInt(t, "KAAR_CHAOS_RUNS", 1), envInt(t, "KAAR_CHAOS_BATCH", 1)
	ce := newChaosEnvWith(t, 3)

	var results []chaosResult
	for _, st := range []string{events.StreamApprovals, "KV_" + events.BucketPlans} {
		results = append(results, ce.scenario("R3: SIGKILL the node leading "+st, runs, batch, func(t *testing.T, plans []chaosPlan) {
			ce.startExecutor(t, "")
			ce.startExecutor(t, "")
			ce.approveAll(t, plans)
			ce.waitAnyExecution(t, plans, time.Minute)
			i := ce.streamLeader(t, st)
			t.Logf("killing n%d, the leader of %s", i, st)
			ce.nodes[i].proc.kill(t)
			time.Sleep(2 * time.Second)
			ce.startNATS(ce.t, i) // outlives this scenario
		}))
	}
	for _, point := range []string{"claimed", "step-applied:0"} {
		results = append(results, ce.scenario("R3: executor SIGKILL at "+point, runs, batch, func(t *testing.T, plans []chaosPlan) {
			crashed := ce.startExecutor(t, point)
			ce.approveAll(t, plans)
			if err, exited := crashed.waitExit(2 * time.Minute); !exited || err == nil || !strings.Contains(err.Error(), "killed") {
				t.Fatalf("executor with failpoint %s: want it killed, got exited=%t %v:\n%s", point, exited, err, tail(crashed.out.String(), 40))
			}
			ce.startExecutor(t, "") // resumes after the ack wait
		}))
	}
	reportChaos(t, results, "KAAR_CHAOS_CLUSTER_TABLE")
	for _, r := range results {
		if r.stale != 0 || r.expired != 0 {
			t.Errorf("%s: %d stale, %d expired: approved plans within their window on an unchanged target must run", r.name, r.stale, r.expired)
		}
	}
}

// TestChaosPipelineOnAThreeNodeCluster: the whole split deployment on a
// three-node R3 cluster (see pipeline): a planner is killed with
// incidents in flight, the active watcher while it detects, the active
// notifier in the middle of a Slack post and of a Slack update. Every
// plan must be executed exactly once (0 duplicates, 0 losses, none
// stale or expired), every incident detected once, with one Slack
// message that ends in its plan's final state. It runs beside
// TestChaosOnAThreeNodeCluster (each its own cluster), so that neither
// makes make test's longest package longer; `make chaos` runs it with
// KAAR_CHAOS_RUNS x KAAR_CHAOS_BATCH incidents per scenario and writes
// both tables to KAAR_CHAOS_PIPELINE_TABLE.
func TestChaosPipelineOnAThreeNodeCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("three NATS processes, eight service processes and the sandbox; run without -short")
	}
	parallel(t)
	runs, batch := envInt(t, "KAAR_CHAOS_RUNS", 1), envInt(t, "KAAR_CHAOS_BATCH", 1)
	ce := newChaosEnvWith(t, 3)
	var results []chaosResult
	pl := newPipeline(t, ce)
	var seen []pipelineResult
	add := func(r chaosResult, pr pipelineResult) {
		results, seen = append(results, r), append(seen, pr)
	}
	add(pl.scenario("R3 pipeline: SIGKILL a planner", runs, batch, func(t *testing.T, run *pipelineRun) {
		// One planner is frozen before the incidents arrive and the other
		// stopped, so that the bus hands the first incidents to the
		// frozen one (its last pull request is still open): they are in
		// flight when it is killed. The replicas started then get them
		// once their ack wait passes, the others at once.
		planners := pl.running(events.ServicePlanner)
		victim, other := planners[0], planners[1]
		pl.remove(events.ServicePlanner, other)
		other.stop()
		waitUntil(t, time.Minute, "the remaining planner pulls", func() bool { return pl.plannerConsumer(t).NumWaiting > 0 }, func() string { return "" })
		if err := victim.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, 2*time.Minute, "every incident detected", func() bool { return pl.detected(run) == len(run.names) }, pl.issues.String)
		deadline := time.Now().Add(20 * time.Second)
		for pl.plannerConsumer(t).NumAckPending == 0 && time.Now().Before(deadline) {
			time.Sleep(200 * time.Millisecond)
		}
		time.Sleep(time.Second)
		held := pl.plannerConsumer(t).NumAckPending
		pl.kill(t, events.ServicePlanner, victim)
		pl.start(events.ServicePlanner)
		t.Logf("killed a planner with %d issue message(s) in flight (%d incidents in the run)", held, len(run.names))
	}))
	add(pl.scenario("R3 pipeline: SIGKILL the active watcher", runs, batch, func(t *testing.T, run *pipelineRun) {
		waitUntil(t, 2*time.Minute, "a first incident detected", func() bool { return pl.detected(run) > 0 }, pl.issues.String)
		pl.kill(t, events.ServiceWatcher, pl.active(t, events.ServiceWatcher))
	}))
	add(pl.scenario("R3 pipeline: SIGKILL the active notifier", runs, batch, func(t *testing.T, run *pipelineRun) {
		ofRun := func(c slackRec) bool {
			return slices.ContainsFunc(run.names, func(n string) bool { return mentions(c.text, ce.ns, n) })
		}
		// Mid-post: Slack posted the message, the notifier never learns
		// its ts; then mid-update, while a plan executes.
		for _, what := range []struct {
			name  string
			match func(method string, c slackRec) bool
		}{
			{"a first post", func(method string, c slackRec) bool {
				return method == "chat.postMessage" && c.threadTS == "" && ofRun(c)
			}},
			{"an update while executing", func(method string, c slackRec) bool {
				return method == "chat.update" && ofRun(c) && strings.HasSuffix(c.text, "· plan "+string(notifier.StatusExecuting))
			}},
		} {
			held, release := pl.slack.holdNext(what.match)
			select {
			case <-held:
			case <-time.After(3 * time.Minute):
				release()
				t.Fatalf("Slack: no %s within 3m", what.name)
			}
			active := pl.active(t, "notifier")
			t.Logf("killing the active notifier (pid %d) during %s", active.cmd.Process.Pid, what.name)
			pl.kill(t, "notifier", active)
			release()
		}
	}))
	reportChaos(t, results, "KAAR_CHAOS_PIPELINE_TABLE")
	reportPipeline(t, seen)
	pl.mu.Lock()
	t.Logf("service processes that exited on their own (a lease lost under load) and were restarted: %d", pl.restarts)
	pl.mu.Unlock()
	for _, r := range results {
		if r.stale != 0 || r.expired != 0 {
			t.Errorf("%s: %d stale, %d expired: approved plans within their window on an unchanged target must run", r.name, r.stale, r.expired)
		}
	}
}

// streamLeader is the index of the node leading stream (its server name
// is n<index>).
func (ce *chaosEnv) streamLeader(t testing.TB, stream string) int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := ce.js.Stream(ctx, stream)
		cancel()
		if err == nil {
			if c := st.CachedInfo().Cluster; c != nil {
				var i int
				if _, err := fmt.Sscanf(c.Leader, "n%d", &i); err == nil && i >= 0 && i < len(ce.nodes) {
					return i
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no leader of %s: %v", stream, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// The pipeline scenarios run the whole split deployment on the cluster:
// two watchers and two notifiers (one active each, by their leases), two
// planners and two executors, each its own process. Every plan comes from
// a real incident (a Deployment OOMKilled under a 64Mi limit, using
// 100Mi: the planner's increase_memory doubles the limit, which heals
// it), is shown in Slack (a local server that plays the Web API and
// records every call), and is approved from what the Slack message
// shows. One process is killed per run: a planner, the active watcher or
// the active notifier, in the middle of its work.

// pipelineUsage is what the pipeline's Deployments use; pipelineLimit is
// their memory limit, too low for it.
const (
	pipelineUsage = "100Mi"
	pipelineLimit = "64Mi"
)

// chaosSlack plays Slack's Web API for the notifiers: it applies and
// records every call (a post gets a new ts), and can hold the answer to
// one call, as a process killed mid-call would never read it.
type chaosSlack struct {
	mu    sync.Mutex
	calls []slackRec
	posts int
	// hold, when set, matches the call whose answer is held; held is
	// closed when it arrived (the call is applied), and the answer waits
	// for release or for the client to go away.
	hold    func(method string, c slackRec) bool
	held    chan struct{}
	release chan struct{}
	// messages are the top-level posts with their metadata, for
	// conversations.history.
	messages []map[string]any
}

// chaosBotID is the fake workspace's id of kaar's bot (auth.test), which
// the messages it posted carry.
const chaosBotID = "B0KAAR"

// history answers conversations.history: every top-level message with
// its metadata, newest first.
func (s *chaosSlack) history(w http.ResponseWriter) {
	s.mu.Lock()
	msgs := slices.Clone(s.messages)
	s.mu.Unlock()
	slices.Reverse(msgs)
	_ = json.NewEncoder(w).Encode(map[string]any{"ok": true, "messages": msgs, "has_more": false})
}

func (s *chaosSlack) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	method := strings.TrimPrefix(r.URL.Path, "/api/")
	switch method {
	case "conversations.history":
		s.history(w)
		return
	case "auth.test":
		_ = json.NewEncoder(w).Encode(map[string]any{"ok": true, "bot_id": chaosBotID})
		return
	}
	b, _ := io.ReadAll(r.Body)
	var m struct {
		TS       string          `json:"ts"`
		ThreadTS string          `json:"thread_ts"`
		Text     string          `json:"text"`
		Blocks   json.RawMessage `json:"blocks"`
		Metadata json.RawMessage `json:"metadata"`
	}
	_ = json.Unmarshal(b, &m)
	s.mu.Lock()
	ts := m.TS
	if method == "chat.postMessage" {
		s.posts++
		ts = fmt.Sprintf("1800000000.%06d", s.posts)
		if m.ThreadTS == "" {
			s.messages = append(s.messages, map[string]any{"type": "message", "ts": ts, "text": m.Text, "metadata": m.Metadata, "bot_id": chaosBotID})
		}
	}
	c := slackRec{method: method, ts: ts, threadTS: m.ThreadTS, text: m.Text, blocks: string(m.Blocks)}
	s.calls = append(s.calls, c)
	var wait chan struct{}
	if s.hold != nil && s.hold(method, c) {
		s.hold = nil
		close(s.held)
		wait = s.release
	}
	s.mu.Unlock()
	if wait != nil {
		select {
		case <-wait:
		case <-r.Context().Done():
		}
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"ok": true, "channel": "C-CHAOS", "ts": ts})
}

// holdNext holds the answer to the next call that match accepts; it
// returns a channel closed when that call arrived and the function that
// releases the answer.
func (s *chaosSlack) holdNext(match func(method string, c slackRec) bool) (<-chan struct{}, func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	held, release := make(chan struct{}), make(chan struct{})
	s.hold, s.held, s.release = match, held, release
	var once sync.Once
	return held, func() {
		once.Do(func() {
			close(release)
			s.mu.Lock()
			if s.held == held {
				s.hold = nil
			}
			s.mu.Unlock()
		})
	}
}

// String lists the calls, for a failure's diagnosis.
func (s *chaosSlack) String() string {
	var b strings.Builder
	for _, c := range s.snapshot() {
		fmt.Fprintf(&b, "  %s ts=%s thread=%s %q\n", c.method, c.ts, c.threadTS, c.text)
	}
	return b.String()
}

func (s *chaosSlack) snapshot() []slackRec {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// slackThread is what Slack shows for one Deployment: its top-level
// messages (one, when all is well) and the last version of the first.
type slackThread struct {
	posts int
	last  slackRec
}

// slackThreads groups the recorded calls by the Deployment named in a
// top-level message's title ("<type>: Deployment <ns>/<name> · ...").
func slackThreads(calls []slackRec, ns string) map[string]*slackThread {
	byTS := map[string]string{}
	out := map[string]*slackThread{}
	for _, c := range calls {
		if c.threadTS != "" {
			continue
		}
		if c.method == "chat.postMessage" {
			_, rest, ok := strings.Cut(c.text, "Deployment "+ns+"/")
			if !ok {
				continue
			}
			name, _, _ := strings.Cut(rest, " ")
			byTS[c.ts] = name
			th := out[name]
			if th == nil {
				th = &slackThread{last: c}
				out[name] = th
			}
			th.posts++
			continue
		}
		if name, ok := byTS[c.ts]; ok && out[name].last.ts == c.ts {
			out[name].last = c
		}
	}
	return out
}

// mentions reports whether a message's text names Deployment ns/name
// (the title, alone or followed by the plan's status).
func mentions(text, ns, name string) bool {
	_, rest, ok := strings.Cut(text, "Deployment "+ns+"/"+name)
	return ok && (rest == "" || rest[0] == ' ')
}

// approveButton is the plan and digest of a message's Approve button.
func approveButton(blocks string) (planID, digest string, ok bool) {
	var bs []struct {
		Type     string `json:"type"`
		Elements []struct {
			ActionID string `json:"action_id"`
			Value    string `json:"value"`
		} `json:"elements"`
	}
	if json.Unmarshal([]byte(blocks), &bs) != nil {
		return "", "", false
	}
	for _, b := range bs {
		for _, e := range b.Elements {
			if b.Type == "actions" && e.ActionID == notifier.ActionApprove {
				return strings.Cut(e.Value, "|")
			}
		}
	}
	return "", "", false
}

// pipeline is the services of the split deployment around the chaos
// environment's cluster and executors.
type pipeline struct {
	ce     *chaosEnv
	slack  *chaosSlack
	issues *issueLog
	leases jetstream.KeyValue
	pjs    jetstream.JetStream // as the provisioner
	mu     sync.Mutex
	// procs are the running processes by service; restarts counts those
	// that exited on their own and were restarted.
	procs    map[string][]*proc
	restarts int
}

// pipelineLease is the lease duration of the pipeline's singletons: a
// killed active watcher or notifier is replaced after about this long.
const pipelineLease = 3 * time.Second

// newPipeline adds Slack (the fake) and short leases to the chaos
// environment's configuration, declares the notifier's stream, and
// starts two watchers, two planners and two notifiers.
func newPipeline(t *testing.T, ce *chaosEnv) *pipeline {
	pl := &pipeline{ce: ce, slack: &chaosSlack{}, procs: map[string][]*proc{}}
	srv := httptest.NewServer(pl.slack)
	t.Cleanup(srv.Close)
	// The configuration ends with its nats section: the lease duration
	// joins it, notify follows.
	extra := fmt.Sprintf("  lease_duration: %s\nnotify:\n  listen: 127.0.0.1:0\n  slack:\n    bot_token: xoxb-chaos\n    signing_secret: chaos-secret\n    channel: C-CHAOS\n    api_url: %s/api/\n",
		pipelineLease, srv.URL)
	f, err := os.OpenFile(ce.cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(extra); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.LoadFile(ce.cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	bc, err := notifier.BusConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	url := ce.natsURL()
	pjs := roleJetStream(t, url, bus.RoleProvisioner)
	pl.pjs = pjs
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := bus.Provision(ctx, pjs, bc); err != nil {
		t.Fatal(err)
	}
	// The notifier's key exists before the executors start (they trust
	// the keys they find), and before two notifiers race to create it.
	if _, err := svcmain.EnsureKey(cfg.Signing.KeyDir, svcmain.RoleNotifier, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	if pl.leases, err = pjs.KeyValue(ctx, events.BucketLeases); err != nil {
		t.Fatal(err)
	}
	pl.issues = followIssues(t, pjs, ce.cluster)
	for _, svc := range []string{events.ServiceWatcher, events.ServicePlanner, "notifier"} {
		pl.start(svc)
		pl.start(svc)
	}
	return pl
}

// start starts one more process of svc; it outlives the scenario. A
// process that exits on its own (a singleton that lost its lease exits
// so that its restart stands by; under load a renewal can miss the
// lease) is restarted, as Kubernetes restarts a container.
func (pl *pipeline) start(svc string) *proc {
	var env []string
	if svc == "notifier" {
		// Every replica serves the Slack endpoints: each its own port.
		env = append(env, fmt.Sprintf("KAAR_NOTIFY_LISTEN=127.0.0.1:%d", testutil.FreePort(pl.ce.t)))
	}
	p := pl.ce.start(pl.ce.t, env, svc, "--config", pl.ce.cfg)
	pl.mu.Lock()
	pl.procs[svc] = append(pl.procs[svc], p)
	pl.mu.Unlock()
	go func() {
		for {
			if _, exited := p.waitExit(time.Hour); exited {
				break
			}
		}
		if pl.ce.t.Context().Err() != nil || !pl.remove(svc, p) {
			return // the test ends, or stopped or killed it itself
		}
		pl.mu.Lock()
		pl.restarts++
		pl.mu.Unlock()
		pl.ce.t.Logf("kaar %s (pid %d) exited on its own; restarting it:\n%s", svc, p.cmd.Process.Pid, tail(p.out.String(), 5))
		pl.start(svc)
	}()
	return p
}

// remove takes p out of the running processes of svc; false if it was
// not among them.
func (pl *pipeline) remove(svc string, p *proc) bool {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	n := len(pl.procs[svc])
	pl.procs[svc] = slices.DeleteFunc(pl.procs[svc], func(q *proc) bool { return q == p })
	return len(pl.procs[svc]) < n
}

// running are the running processes of svc.
func (pl *pipeline) running(svc string) []*proc {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	return slices.Clone(pl.procs[svc])
}

// kill kills (SIGKILL) the process p of svc and starts its replacement,
// as a Deployment's controller would.
func (pl *pipeline) kill(t *testing.T, svc string, p *proc) {
	t.Helper()
	pl.remove(svc, p)
	p.kill(t)
	pl.start(svc)
}

// active is the process of the singleton svc holding its lease.
func (pl *pipeline) active(t *testing.T, svc string) *proc {
	t.Helper()
	var found *proc
	waitUntil(t, time.Minute, svc+" lease held by a running replica", func() bool {
		e, err := pl.leases.Get(context.Background(), events.LeaseKey(svc, pl.ce.cluster))
		if err != nil {
			return false
		}
		var r lease.Record
		if json.Unmarshal(e.Value(), &r) != nil {
			return false
		}
		_, pid, _ := strings.Cut(r.Holder, "/")
		for _, p := range pl.running(svc) {
			if strconv.Itoa(p.cmd.Process.Pid) == pid {
				found = p
				return true
			}
		}
		return false
	}, func() string { return "" })
	return found
}

// plannerConsumer is the state of the planners' consumer on ISSUES.
func (pl *pipeline) plannerConsumer(t *testing.T) *jetstream.ConsumerInfo {
	t.Helper()
	name, _ := events.PlannerConsumer(pl.ce.cluster)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pl.pjs.Consumer(ctx, events.StreamIssues, name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// pipelineRun is one run's Deployments.
type pipelineRun struct {
	names []string
	// generation of each Deployment when created.
	generation map[string]int64
}

// detected is how many of the run's Deployments were detected.
func (pl *pipeline) detected(run *pipelineRun) int {
	n := 0
	for _, name := range run.names {
		if pl.issues.count(name, events.TransitionDetected) > 0 {
			n++
		}
	}
	return n
}

// pipelineResult counts, besides the executions, what the people saw:
// detections and Slack messages.
type pipelineResult struct {
	name                                     string
	incidents, detectedOnce, messages, final int
}

// pipelineScenario runs disrupt `runs` times over `batch` new failing
// Deployments each, approving what Slack shows, and counts.
func (pl *pipeline) scenario(name string, runs, batch int, disrupt func(t *testing.T, run *pipelineRun)) (chaosResult, pipelineResult) {
	ce := pl.ce
	r, pr := chaosResult{name: name}, pipelineResult{name: name}
	ce.t.Run(name, func(t *testing.T) {
		for range runs {
			pl.runOnce(t, batch, &r, &pr, disrupt)
		}
	})
	return r, pr
}

func (pl *pipeline) runOnce(t *testing.T, batch int, r *chaosResult, pr *pipelineResult, disrupt func(t *testing.T, run *pipelineRun)) {
	ce := pl.ce
	ce.startExecutor(t, "")
	ce.startExecutor(t, "")
	run := &pipelineRun{generation: map[string]int64{}}
	for range batch {
		ce.seq++
		run.names = append(run.names, fmt.Sprintf("p%d", ce.seq))
	}
	var mu sync.Mutex
	for _, name := range run.names {
		dep := sandbox.TestDeployment(ce.ns, name, "nginx:1.27", 1, map[string]string{sandbox.AnnotationMemoryUsage: pipelineUsage})
		dep.Spec.Template.Spec.Containers[0].Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse(pipelineLimit)}
		created, err := ce.kube.AppsV1().Deployments(ce.ns).Create(context.Background(), dep, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		run.generation[name] = created.Generation
	}
	// The approver: a person approving every plan Slack shows with an
	// Approve button, once.
	approved := map[string]events.Plan{} // by Deployment
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		seen := map[string]bool{}
		for {
			for _, c := range pl.slack.snapshot() {
				id, digest, ok := approveButton(c.blocks)
				if !ok || seen[id] {
					continue
				}
				for _, name := range run.names {
					if mentions(c.text, ce.ns, name) {
						seen[id] = true
						ce.approveAll(t, []chaosPlan{{plan: events.Plan{ID: id, Digest: digest}}})
						mu.Lock()
						approved[name] = events.Plan{ID: id, Digest: digest}
						mu.Unlock()
					}
				}
			}
			select {
			case <-stop:
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
	})
	disrupt(t, run)
	allApproved := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(approved) == len(run.names)
	}
	deadline := time.Now().Add(4 * time.Minute)
	for !allApproved() && time.Now().Before(deadline) {
		time.Sleep(250 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	pl.settle(t, run, approved, r, pr)
	ce.stopExecutors()
	bg := metav1.DeletePropagationBackground
	for _, name := range run.names {
		if err := ce.kube.AppsV1().Deployments(ce.ns).Delete(context.Background(), name, metav1.DeleteOptions{PropagationPolicy: &bg}); err != nil {
			t.Errorf("delete deployment %s: %v", name, err)
		}
	}
}

// settle waits for the approved plans' executions and for Slack, and
// counts: a Deployment without an approved plan is a loss; the
// executions are counted as the other scenarios count theirs (a plan's
// mutating steps are what must move the generation); every incident must
// be detected once, and have one Slack message that ends in its plan's
// final state.
func (pl *pipeline) settle(t *testing.T, run *pipelineRun, approved map[string]events.Plan, r *chaosResult, pr *pipelineResult) {
	ce := pl.ce
	var plans []chaosPlan
	for _, name := range run.names {
		a, ok := approved[name]
		if !ok {
			r.runs++
			r.losses++
			t.Errorf("deployment %s: no plan shown in Slack to approve\nISSUES:\n%s", name, pl.issues)
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		p, _, err := ce.plans.Get(ctx, a.ID)
		cancel()
		if err != nil {
			t.Fatalf("plan %s of %s: %v", a.ID, name, err)
		}
		// settle compares the generation's move with the steps: here
		// the mutating ones.
		p.Steps = slices.DeleteFunc(p.Steps, func(s events.Step) bool { return !s.Mutating })
		dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name, Generation: run.generation[name]}}
		plans = append(plans, chaosPlan{plan: p, dep: dep})
	}
	ce.settle(t, plans, r, events.ExecutionSucceeded, "")
	final := func(th *slackThread, planID string) bool {
		return th != nil && strings.HasSuffix(th.last.text, "· plan "+string(notifier.StatusVerified)) && strings.Contains(th.last.blocks, planID)
	}
	waitUntil(t, 2*time.Minute, "Slack shows every plan's final state", func() bool {
		threads := slackThreads(pl.slack.snapshot(), ce.ns)
		for _, cp := range plans {
			if !final(threads[cp.dep.Name], cp.plan.ID) {
				return false
			}
		}
		return true
	}, func() string { return pl.slack.String() })
	threads := slackThreads(pl.slack.snapshot(), ce.ns)
	for _, name := range run.names {
		pr.incidents++
		if n := pl.issues.count(name, events.TransitionDetected); n == 1 {
			pr.detectedOnce++
		} else {
			t.Errorf("deployment %s detected %d times, want once", name, n)
		}
		th := threads[name]
		switch {
		case th == nil:
			t.Errorf("deployment %s: no Slack message", name)
			continue
		case th.posts != 1:
			t.Errorf("deployment %s: %d Slack messages, want one", name, th.posts)
		}
		pr.messages += th.posts
		if a, ok := approved[name]; ok && final(th, a.ID) {
			pr.final++
		} else {
			t.Errorf("deployment %s: Slack ends with %q, want plan %s verified", name, th.last.text, a.ID)
		}
	}
}

// reportPipeline logs (and appends to the pipeline table file) what the
// people saw in the pipeline scenarios, and fails on any gap.
func reportPipeline(t *testing.T, results []pipelineResult) {
	var b strings.Builder
	fmt.Fprintf(&b, "\n%-44s %9s %13s %14s %14s\n", "pipeline scenario", "incidents", "detected once", "Slack messages", "ending final")
	for _, r := range results {
		fmt.Fprintf(&b, "%-44s %9d %13d %14d %14d\n", r.name, r.incidents, r.detectedOnce, r.messages, r.final)
	}
	t.Log(b.String())
	if f := os.Getenv("KAAR_CHAOS_PIPELINE_TABLE"); f != "" {
		out, err := os.OpenFile(f, os.O_APPEND|os.O_WRONLY, 0)
		if err == nil {
			_, err = out.WriteString(b.String())
			err = errors.Join(err, out.Close())
		}
		if err != nil {
			t.Error(err)
		}
	}
	for _, r := range results {
		if r.detectedOnce != r.incidents || r.messages != r.incidents || r.final != r.incidents {
			t.Errorf("%s: %d incidents, %d detected once, %d Slack messages, %d ending in the final state: the bar is one each", r.name, r.incidents, r.detectedOnce, r.messages, r.final)
		}
	}
}
