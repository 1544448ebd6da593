package bus

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kaar-dev/kaar/internal/testutil"
	"github.com/kaar-dev/kaar/pkg/events"
)

const (
	hubCluster  = "central-a"
	leafCluster = "edge"
)

// leafPair is a hub (JetStream domain "hub", a TLS leaf port verifying
// the leaf's certificate) and the leaf node of leafCluster (its own
// JetStream, domain "edge") over TLS, both declared as kaar provisions
// them.
type leafPair struct {
	creds         *Credentials
	pki           testPKI
	leafPort      int
	seedFile, pub string
	hub, leaf     *Embedded
	hubJS, leafJS jetstream.JetStream // as the owner of each server
	hubOpts       EmbeddedOptions
	link          *testutil.Link
}

func newLeafPair(t *testing.T) *leafPair {
	t.Helper()
	p := &leafPair{pki: newTestPKI(t), leafPort: testutil.FreePort(t)}
	dir := filepath.Join(t.TempDir(), "credentials")
	var err error
	if p.creds, err = LoadOrCreateCredentials(dir); err != nil {
		t.Fatal(err)
	}
	if p.seedFile, p.pub, err = LoadOrCreateLeafSeed(dir, leafCluster); err != nil {
		t.Fatal(err)
	}
	p.hubOpts = EmbeddedOptions{ServerName: "hub", Port: RandomPort, StoreDir: t.TempDir(), Credentials: p.creds, Logger: testLogger(t),
		JetStreamDomain: "hub",
		LeafNodes: LeafNodeOptions{Port: p.leafPort, TLS: TLSFiles{CAFile: p.pki.CA, CertFile: p.pki.ServerCert, KeyFile: p.pki.ServerKey},
			VerifyClients: true, Clusters: []string{leafCluster}, Seeds: map[string]string{leafCluster: p.pub}}}
	// The leaf reaches the hub through a link the test can cut, the
	// address the hub advertises to its leaves.
	p.link = testutil.NewLink(t, fmt.Sprintf("127.0.0.1:%d", p.leafPort))
	p.hubOpts.LeafNodes.Advertise = fmt.Sprintf("127.0.0.1:%d", p.link.Port())
	p.startHub(t)
	p.leaf, err = StartEmbedded(testCtx(t, 15*time.Second), EmbeddedOptions{ServerName: "edge-leaf", Port: RandomPort, StoreDir: t.TempDir(),
		Credentials: p.creds, Logger: testLogger(t), JetStreamDomain: LeafDomain(leafCluster),
		LeafRemote: LeafRemoteOptions{URL: fmt.Sprintf("tls://127.0.0.1:%d", p.link.Port()),
			TLS: TLSFiles{CAFile: p.pki.CA, CertFile: p.pki.ClientCert, KeyFile: p.pki.ClientKey}, SeedFile: p.seedFile}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.leaf.Shutdown)
	p.leafJS = ownerJS(t, p.leaf)
	provision(t, p.leafJS, Config{Clusters: []string{leafCluster}})
	p.waitLinked(t)
	// As kaar nats does when a leaf connects: the hub's sources, set up
	// before the leaf was there, start now rather than half a minute later.
	if _, err := ResumeLeafSources(testCtx(t, 10*time.Second), p.hubJS, p.hubConfig()); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *leafPair) hubConfig() Config {
	return Config{Clusters: []string{hubCluster}, Leaves: []string{leafCluster}}
}

// startHub starts the hub and declares its bus.
func (p *leafPair) startHub(t *testing.T) {
	t.Helper()
	hub, err := StartEmbedded(testCtx(t, 15*time.Second), p.hubOpts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hub.Shutdown)
	p.hub = hub
	p.hubJS = ownerJS(t, hub)
	provision(t, p.hubJS, p.hubConfig())
}

func (p *leafPair) waitLinked(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for p.leaf.Server().NumLeafNodes() == 0 || p.hub.Server().NumLeafNodes() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the leaf node did not connect to the hub")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func ownerJS(t *testing.T, e *Embedded) jetstream.JetStream {
	t.Helper()
	nc, err := e.Connect(testCtx(t, 10*time.Second), ConnectOptions{Name: "owner", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// roleOn connects role to e over TCP with its seed.
func roleOn(t *testing.T, e *Embedded, r Role) *nats.Conn {
	t.Helper()
	nc, err := Connect(testCtx(t, 10*time.Second), e.ClientURL(), ConnectOptions{Name: "kaar-" + string(r), Logger: testLogger(t),
		NkeyFile: e.Credentials().SeedFile(r), InboxPrefix: r.InboxPrefix()})
	if err != nil {
		t.Fatalf("%s: %v", r, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// publishIncident publishes one detected incident of cluster as the
// watcher would.
func publishIncident(ctx context.Context, t *testing.T, js jetstream.JetStream, cluster, owner string) error {
	t.Helper()
	now := time.Now().UTC()
	in := events.Incident{Cluster: cluster, Namespace: "shop", Owner: events.ObjectRef{Kind: "Deployment", Name: owner},
		Container: "app", Type: events.IssueCrashLoopBackOff, Reason: "exit_code_1", PodCount: 1,
		FirstSeen: now, LastSeen: now, Count: 1, Severity: events.SeverityHigh}
	in.ID = events.IncidentID(in.Cluster, in.Namespace, in.Owner.Kind, in.Owner.Name, in.Container, in.Type)
	ev := events.IncidentEvent{Transition: events.TransitionDetected, Incident: in, ObservedAt: now, Observation: 1}
	subject, err := events.IssueSubject(cluster, in.Namespace, in.Type)
	if err != nil {
		t.Fatal(err)
	}
	env, err := events.New(ev.Transition.EventType(), events.SourceWatcher, cluster, in.ID, ev)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Publish(ctx, js, subject, env, events.IncidentMsgID(in.ID, ev.Observation))
	return err
}

// owners lists the incident owners in stream st of js under filter, in
// order, one entry per message.
func owners(t *testing.T, js jetstream.JetStream, st, filter string) []string {
	t.Helper()
	ctx := testCtx(t, 10*time.Second)
	c, err := js.OrderedConsumer(ctx, st, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for {
		batch, err := c.FetchNoWait(100)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			env, err := events.Decode(m.Data())
			if err != nil {
				t.Fatal(err)
			}
			ev, err := events.DecodeData[events.IncidentEvent](env)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, ev.Incident.Owner.Name)
		}
		if n == 0 {
			return out
		}
	}
}

// waitSourcesActive waits until every leaf source of the hub's streams
// is active: the sources the setup restarted connect asynchronously
// (ISSUES delivering web-1 says nothing of PLAN_EVENTS or AUDIT).
func waitSourcesActive(ctx context.Context, t *testing.T, js jetstream.JetStream, cfg Config) {
	t.Helper()
	streams, err := Streams(cfg)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, want := range streams {
		for {
			st, err := js.Stream(ctx, want.Name)
			if err != nil {
				t.Fatal(err)
			}
			idle := 0
			for _, si := range st.CachedInfo().Sources {
				if si.External != nil && si.Active < 0 {
					idle++
				}
			}
			if idle == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d leaf sources still inactive after 30 s", want.Name, idle)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// waitOwners waits until stream st of js holds exactly want under filter.
func waitOwners(t *testing.T, js jetstream.JetStream, st, filter string, want ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := owners(t, js, st, filter)
		if strings.Join(got, ",") == strings.Join(want, ",") {
			return
		}
		if time.Now().After(deadline) {
			s, _ := js.Stream(context.Background(), st)
			for _, si := range s.CachedInfo().Sources {
				t.Logf("source %+v %+v", si, si.Error)
			}
			t.Fatalf("%s (%s) holds %v, want %v", st, filter, got, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestLeafWithItsOwnDomain: the services of a leaf cluster use the
// JetStream of their leaf node (domain "edge"), linked to the hub over
// TLS with the leaf's own nkey. Incidents published on the leaf arrive
// in the hub's ISSUES (sourced), a decision published by the central
// gateway is stored by the leaf's APPROVALS only and pulled by the
// executor there, and the gateway reads the leaf's plans. The link is
// cut: the leaf goes on (incidents stored locally), the gateway's
// decision is refused rather than lost; the link is restored and every
// incident arrives centrally exactly once.
func TestLeafWithItsOwnDomain(t *testing.T) {
	p := newLeafPair(t)
	ctx := testCtx(t, 2*time.Minute)
	issueFilter, _ := events.IssueFilter(leafCluster)

	watcher, err := NewJetStream(roleOn(t, p.leaf, RoleWatcher), "")
	if err != nil {
		t.Fatal(err)
	}
	if err := publishIncident(ctx, t, watcher, leafCluster, "web-1"); err != nil {
		t.Fatalf("the watcher on the leaf publishes an incident: %v", err)
	}
	waitOwners(t, p.hubJS, events.StreamIssues, issueFilter, "web-1")
	waitSourcesActive(ctx, t, p.hubJS, p.hubConfig())
	if n, err := ResumeLeafSources(ctx, p.hubJS, p.hubConfig()); err != nil || n != 0 {
		t.Errorf("ResumeLeafSources with every source active restarted %d (%v), want none", n, err)
	}

	// The planner on the leaf stores a plan there; the central gateway
	// reads it through the leaf's domain and decides.
	planner, _ := NewJetStream(roleOn(t, p.leaf, RolePlanner), "")
	plans, err := OpenPlanStore(ctx, planner)
	if err != nil {
		t.Fatal(err)
	}
	plan := newPlan(t)
	plan.Cluster = leafCluster
	plan.Seal()
	if _, err := plans.Create(ctx, plan, time.Hour); err != nil {
		t.Fatal(err)
	}
	gateway, err := NewJetStream(roleOn(t, p.hub, RoleMCPGateway), LeafDomain(leafCluster))
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckBound(ctx, gateway, RoleMCPGateway, Config{Clusters: []string{leafCluster}}); err != nil {
		t.Fatalf("the central gateway binds to the leaf's bus: %v", err)
	}
	central, err := OpenPlanStore(ctx, gateway)
	if err != nil {
		t.Fatalf("the central gateway opens the leaf's plans: %v", err)
	}
	got, _, err := central.Get(ctx, plan.ID)
	if err != nil || got.Digest != plan.Digest {
		t.Fatalf("the central gateway reads the leaf's plan: %+v %v", got, err)
	}
	env := leafDecision(t, plan)
	subject, _ := events.ApprovalSubject(leafCluster, plan.ID)
	if _, err := Publish(ctx, gateway, subject, env, "decision-1"); err != nil {
		t.Fatalf("the central gateway's decision: %v", err)
	}
	executor, _ := NewJetStream(roleOn(t, p.leaf, RoleExecutor), "")
	name, _ := events.ExecutorConsumer(leafCluster)
	cons, err := executor.Consumer(ctx, events.StreamApprovals, name)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
	if err != nil {
		t.Fatalf("the executor on the leaf pulls the central decision: %v", err)
	}
	if err := msg.DoubleAck(ctx); err != nil {
		t.Fatal(err)
	}
	if st, err := p.hubJS.Stream(ctx, events.StreamApprovals); err != nil || st.CachedInfo().State.Msgs != 0 {
		t.Errorf("the hub's APPROVALS stored a leaf cluster's decision too (%v)", err)
	}

	// A leaf may publish into the hub only its relays and answers: an
	// incident of the hub's own cluster published on the leaf stays there.
	if err := publishIncident(ctx, t, p.leafJS, hubCluster, "forged"); err != nil {
		t.Fatal(err)
	}
	// Its nkey connects a leaf node, not a client.
	if _, err := Connect(testCtx(t, 5*time.Second), p.hub.ClientURL(), ConnectOptions{Name: "leaf-as-client", Logger: testLogger(t), NkeyFile: p.seedFile}); err == nil {
		t.Error("the leaf's nkey connected to the hub as a client")
	}

	// Cut off: the leaf goes on with its own JetStream; the gateway's
	// decision is refused, not lost.
	p.link.Cut()
	deadline := time.Now().Add(10 * time.Second)
	for p.hub.Server().NumLeafNodes() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the hub still sees the leaf after the cut")
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, o := range []string{"web-2", "web-3"} {
		if err := publishIncident(ctx, t, watcher, leafCluster, o); err != nil {
			t.Fatalf("the watcher on a cut-off leaf publishes: %v", err)
		}
	}
	cctx, ccancel := context.WithTimeout(ctx, 3*time.Second)
	if _, err := Publish(cctx, gateway, subject, env, "decision-cut"); err == nil {
		t.Error("a decision for a cut-off leaf was acknowledged")
	}
	ccancel()
	// The leaf reconnects (every second) only where the hub told it to:
	// through the link, which is still cut.
	time.Sleep(2 * time.Second)
	if p.hub.Server().NumLeafNodes() != 0 {
		t.Fatal("the leaf reconnected around the cut link (the hub advertises another address)")
	}
	p.link.Restore()
	p.waitLinked(t)
	waitOwners(t, p.hubJS, events.StreamIssues, issueFilter, "web-1", "web-2", "web-3")
	hubFilter, _ := events.IssueFilter(hubCluster)
	if got := owners(t, p.hubJS, events.StreamIssues, hubFilter); len(got) != 0 {
		t.Errorf("the leaf published %v into the hub's own cluster", got)
	}
	// The gateway decides again once the leaf is back.
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		_, err := Publish(pctx, gateway, subject, env, "decision-2")
		if err == nil {
			break
		}
		if pctx.Err() != nil {
			t.Fatalf("the central gateway's decision after the reconnection: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if msg, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second)); err != nil {
		t.Fatalf("the executor pulls the decision taken after the reconnection: %v", err)
	} else if id := msg.Headers().Get(jetstream.MsgIDHeader); id != "decision-2" {
		t.Errorf("the executor pulled %q, want decision-2 (the one refused during the cut must not arrive)", id)
	} else if err := msg.Ack(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		t.Fatal(err)
	}
}

func leafDecision(t *testing.T, p events.Plan) events.Envelope {
	t.Helper()
	d := events.Decision{PlanID: p.ID, Digest: p.Digest, Decision: events.DecisionApproved,
		DecidedBy: "alice", Via: events.ViaCLI, At: time.Now().UTC()}
	env, err := events.New(d.Decision.EventType(), events.SourceMCPGateway, leafCluster, p.ID, d)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// TestLeafSourcesResumeAfterTheHubRestarts: the hub stops while the leaf
// goes on; restarted on its store, it resumes copying the leaf's
// incidents where it stopped: each arrives once.
func TestLeafSourcesResumeAfterTheHubRestarts(t *testing.T) {
	p := newLeafPair(t)
	ctx := testCtx(t, time.Minute)
	issueFilter, _ := events.IssueFilter(leafCluster)
	watcher, err := NewJetStream(roleOn(t, p.leaf, RoleWatcher), "")
	if err != nil {
		t.Fatal(err)
	}
	if err := publishIncident(ctx, t, watcher, leafCluster, "web-1"); err != nil {
		t.Fatal(err)
	}
	waitOwners(t, p.hubJS, events.StreamIssues, issueFilter, "web-1")
	p.hub.Shutdown()
	for _, o := range []string{"web-2", "web-3"} {
		if err := publishIncident(ctx, t, watcher, leafCluster, o); err != nil {
			t.Fatalf("the watcher publishes while the hub is down: %v", err)
		}
	}
	p.startHub(t)
	p.waitLinked(t)
	if _, err := ResumeLeafSources(ctx, p.hubJS, p.hubConfig()); err != nil {
		t.Fatal(err)
	}
	waitOwners(t, p.hubJS, events.StreamIssues, issueFilter, "web-1", "web-2", "web-3")
}

// TestHubStreamsWithLeaves: a hub's streams capture its own clusters'
// subjects only and source the leaves' incidents, plan events and audit
// records through their domains; APPROVALS sources nothing (a leaf
// cluster's decisions live on the leaf).
func TestHubStreamsWithLeaves(t *testing.T) {
	streams, err := Streams(Config{Clusters: []string{"hq"}, Leaves: []string{"edge", "shop"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range streams {
		kind := map[string]string{events.StreamIssues: "issue", events.StreamPlanEvents: "plan", events.StreamApprovals: "approval", events.StreamAudit: "audit"}[st.Name]
		if want := "kaar.hq." + kind + ".>"; len(st.Subjects) != 1 || st.Subjects[0] != want {
			t.Errorf("%s captures %v, want [%s]", st.Name, st.Subjects, want)
		}
		if st.Name == events.StreamApprovals {
			if len(st.Sources) != 0 {
				t.Errorf("APPROVALS sources %v", sourceNames(st.Sources))
			}
			continue
		}
		var got []string
		for _, s := range st.Sources {
			got = append(got, s.Name+" "+s.FilterSubject+" "+s.External.APIPrefix+" "+s.External.DeliverPrefix)
		}
		want := []string{
			st.Name + " kaar.edge." + kind + ".> $JS.edge.API kaar.edge.relay",
			st.Name + " kaar.shop." + kind + ".> $JS.shop.API kaar.shop.relay",
		}
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("%s sources %v, want %v", st.Name, got, want)
		}
	}
	if _, err := Streams(Config{Clusters: []string{"hq", "edge"}, Leaves: []string{"edge"}}); err == nil || !strings.Contains(err.Error(), "leaves") {
		t.Errorf("a cluster that is also a leaf: %v, want an error naming leaves", err)
	}
	if _, err := Streams(Config{Clusters: []string{"hq"}, Leaves: []string{"Bad.Leaf"}}); err == nil {
		t.Error("an invalid leaf name was accepted")
	}
}

// TestLeafPermissionsConfineTheLeafToItsCluster: what a leaf may send
// into the hub and receive from it.
func TestLeafPermissionsConfineTheLeafToItsCluster(t *testing.T) {
	p := LeafPermissions("edge").server()
	pub, sub := subjectChecker(p.Publish), subjectChecker(p.Subscribe)
	for _, s := range []string{"kaar.edge.relay.S.abc", "_INBOX_mcpgateway.x", "_INBOX_cli.y", "$JSC.R.abc"} {
		if !pub(s) {
			t.Errorf("the leaf may not send %s to the hub", s)
		}
	}
	for _, s := range []string{"kaar.edge.issue.shop.CrashLoopBackOff", "kaar.edge.approval.p1", "kaar.hq.relay.S.abc", "kaar.hq.issue.a.b",
		"_INBOX_watcher.x", "$JS.API.STREAM.DELETE.ISSUES", "$JS.hub.API.STREAM.DELETE.ISSUES", "$KV.kaar_control.x"} {
		if pub(s) {
			t.Errorf("the leaf may send %s to the hub", s)
		}
	}
	for _, s := range []string{"kaar.edge.approval.p1", "kaar.edge.svc.watcher.analyze", "$SRV.PING", "$JS.edge.API.STREAM.INFO.ISSUES", "$JS.FC.ISSUES.x"} {
		if !sub(s) {
			t.Errorf("the hub may not send %s to the leaf", s)
		}
	}
	for _, s := range []string{"kaar.hq.approval.p1", "kaar.shop.svc.watcher.analyze", "kaar.edge.issue.a.b", "$JS.shop.API.STREAM.INFO.ISSUES", "_INBOX_mcpgateway.x"} {
		if sub(s) {
			t.Errorf("the hub may send %s to the leaf", s)
		}
	}
}

// subjectChecker reports whether a subject matches an allow list.
func subjectChecker(sp *server.SubjectPermission) func(string) bool {
	return func(subject string) bool {
		for _, a := range sp.Allow {
			if subjectMatches(a, subject) {
				return true
			}
		}
		return false
	}
}

func subjectMatches(pattern, subject string) bool {
	pt, st := strings.Split(pattern, "."), strings.Split(subject, ".")
	for i, p := range pt {
		if p == ">" {
			return len(st) > i
		}
		if i >= len(st) || p != "*" && p != st[i] {
			return false
		}
	}
	return len(pt) == len(st)
}

// TestLeafPermissionsConfParses: the rendered user is valid nats-server
// configuration with LeafPermissions.
func TestLeafPermissionsConfParses(t *testing.T) {
	entry, err := LeafPermissionsConf("prod-eu")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(LeafPasswordEnv("prod-eu"), "s3cretpassword")
	path := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(path, []byte("authorization {\n  users = [\n"+entry+"  ]\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("nats-server refuses the rendered user: %v\n%s", err, entry)
	}
	if len(o.Users) != 1 || o.Users[0].Username != "leaf-prod-eu" || o.Users[0].Password != "s3cretpassword" {
		t.Fatalf("users %+v", o.Users)
	}
	want := LeafPermissions("prod-eu")
	got := o.Users[0].Permissions
	if strings.Join(got.Publish.Allow, ",") != strings.Join(want.Publish, ",") || strings.Join(got.Subscribe.Allow, ",") != strings.Join(want.Subscribe, ",") {
		t.Errorf("parsed permissions %+v %+v, want %+v", got.Publish, got.Subscribe, want)
	}
	if _, err := LeafPermissionsConf("Bad.Name"); err == nil {
		t.Error("a bad cluster name was rendered")
	}
}
