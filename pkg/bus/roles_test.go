package bus

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/kaar-dev/kaar/pkg/events"
)

func testCreds(t *testing.T) *Credentials {
	t.Helper()
	c, err := LoadOrCreateCredentials(filepath.Join(t.TempDir(), "credentials"))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// startAuthJS starts an embedded server listening on TCP with persistent
// credentials, and provisions the bus as the provisioner.
func startAuthJS(t *testing.T, cfg Config) *Embedded {
	t.Helper()
	ctx := testCtx(t, 30*time.Second)
	e, err := StartEmbedded(ctx, EmbeddedOptions{Port: RandomPort, Credentials: testCreds(t), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Shutdown)
	nc := connectAs(t, e, RoleProvisioner)
	js, _ := jetstream.New(nc)
	if _, err := Provision(ctx, js, cfg); err != nil {
		t.Fatalf("Provision as the provisioner: %v", err)
	}
	return e
}

func connectAs(t *testing.T, e *Embedded, r Role) *nats.Conn {
	t.Helper()
	nc, err := e.ConnectAs(testCtx(t, 10*time.Second), r, ConnectOptions{Name: "kaar-" + string(r), Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("connect as %s: %v", r, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func TestCredentialsAreCreatedOnceWithPrivateModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "kaar", "credentials")
	c1, err := LoadOrCreateCredentials(dir)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("credentials dir mode %v (%v), want 0700", fi.Mode().Perm(), err)
	}
	for _, r := range Roles() {
		fi, err := os.Stat(c1.SeedFile(r))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: mode %v (%v), want 0600", c1.SeedFile(r), fi.Mode().Perm(), err)
		}
	}
	c2, err := LoadOrCreateCredentials(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range Roles() {
		if c1.PublicKey(r) == "" || c1.PublicKey(r) != c2.PublicKey(r) {
			t.Errorf("role %s: key %q then %q, want the same key reused", r, c1.PublicKey(r), c2.PublicKey(r))
		}
	}
	if c1.PublicKey(RoleWatcher) == c1.PublicKey(RoleExecutor) {
		t.Error("two roles share a key")
	}
	// A seed readable by others is refused, not used.
	if err := os.Chmod(c1.SeedFile(RoleExecutor), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateCredentials(dir); err == nil || !strings.Contains(err.Error(), "readable by others") {
		t.Fatalf("world-readable seed: %v", err)
	}
}

// TestEmbeddedRefusesAnonymousClients: no client without credentials,
// over TCP or in-process; a client with a role's seed file gets in.
func TestEmbeddedRefusesAnonymousClients(t *testing.T) {
	e := startAuthJS(t, Config{Clusters: []string{testCluster}})
	ctx := testCtx(t, 20*time.Second)
	_, err := Connect(ctx, e.ClientURL(), ConnectOptions{Name: "anonymous", Logger: testLogger(t)})
	if err == nil || !strings.Contains(strings.ToLower(err.Error()), "authorization violation") {
		t.Fatalf("anonymous TCP client: %v, want an authorization violation", err)
	}
	if ctx.Err() != nil {
		t.Fatal("the refusal was retried until the deadline")
	}
	if nc, err := nats.Connect(e.ClientURL(), nats.InProcessServer(e.Server())); err == nil {
		nc.Close()
		t.Fatal("anonymous in-process client accepted")
	}
	nc, err := Connect(ctx, e.ClientURL(), ConnectOptions{Name: "cli", Logger: testLogger(t), NkeyFile: e.Credentials().SeedFile(RoleCLI),
		InboxPrefix: RoleCLI.InboxPrefix()})
	if err != nil {
		t.Fatalf("client with the cli seed: %v", err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if _, err := OpenPlanStore(ctx, js); err != nil {
		t.Fatalf("cli opens the plan store: %v", err)
	}
}

// permErrs collects a connection's permission violations.
func permErrs(t *testing.T, e *Embedded, r Role) (*nats.Conn, <-chan error) {
	t.Helper()
	errs := make(chan error, 64)
	nc, err := e.ConnectAs(testCtx(t, 10*time.Second), r, ConnectOptions{Name: "kaar-" + string(r), Logger: testLogger(t),
		Extra: []nats.Option{nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err })}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc, errs
}

func expectViolation(t *testing.T, errs <-chan error, subject string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case err := <-errs:
			if strings.Contains(strings.ToLower(err.Error()), "permissions violation") && strings.Contains(err.Error(), subject) {
				return
			}
		case <-timeout:
			t.Fatalf("no permissions violation for %s", subject)
		}
	}
}

// TestRolesAreRefusedWhatTheyDoNotHold: the attacks of issue 13, each
// as a service role on the embedded server: forging approvals and plans,
// adding sources to APPROVALS and KV_kaar_plans, purging or shrinking the
// audit trail, deleting another service's durable consumer, creating a
// durable consumer, flipping the kill switch, reading another role's
// replies.
func TestRolesAreRefusedWhatTheyDoNotHold(t *testing.T) {
	e := startAuthJS(t, Config{Clusters: []string{testCluster}})
	plan := "0b0c2d64-5d6e-4a57-a0b6-4c1b54c7a1f1"
	executorDurable, _ := events.ExecutorConsumer(testCluster)
	plannerDurable, _ := events.PlannerConsumer(testCluster)
	cases := []struct {
		role    Role
		op      string // pub or sub
		subject string
	}{
		{RoleWatcher, "pub", "kaar." + testCluster + ".approval." + plan},
		{RoleWatcher, "pub", "$KV.kaar_plans." + plan},
		{RoleWatcher, "pub", "$JS.API.STREAM.UPDATE." + events.StreamApprovals},
		{RoleWatcher, "pub", "$JS.API.STREAM.UPDATE.KV_kaar_plans"},
		{RoleWatcher, "pub", "$KV.kaar_control." + testCluster + ".paused"},
		{RolePlanner, "pub", "$JS.API.STREAM.PURGE." + events.StreamAudit},
		{RolePlanner, "pub", "$JS.API.STREAM.UPDATE." + events.StreamAudit},
		{RolePlanner, "pub", "$JS.API.CONSUMER.DELETE." + events.StreamApprovals + "." + executorDurable},
		{RolePlanner, "pub", "$JS.API.CONSUMER.DURABLE.CREATE." + events.StreamIssues + ".mine"},
		{RolePlanner, "pub", "$JS.API.CONSUMER.CREATE." + events.StreamIssues + ".mine"},
		{RoleExecutor, "pub", "$JS.API.STREAM.DELETE." + events.StreamIssues},
		{RoleExecutor, "pub", "$JS.API.CONSUMER.DELETE." + events.StreamIssues + "." + plannerDurable},
		{RoleExecutor, "pub", "$JS.API.CONSUMER.CREATE." + events.StreamApprovals + "." + executorDurable},
		{RoleExecutor, "pub", "$KV.kaar_control." + testCluster + ".paused"},
		{RoleMCPGateway, "pub", "$KV.kaar_plans." + plan},
		{RoleMCPGateway, "pub", "$JS.API.STREAM.CREATE.EVIL"},
		{RoleMCPGateway, "pub", "$JS.API.CONSUMER.MSG.NEXT." + events.StreamApprovals + "." + executorDurable},
		{RoleMCPGateway, "pub", "kaar." + testCluster + ".audit.step_started"},
		{RoleNotifier, "pub", "$JS.API.STREAM.UPDATE." + NotifyStream},
		{RoleNotifier, "pub", "$KV.kaar_plans." + plan},
		{RoleCLI, "pub", "$JS.API.STREAM.PURGE." + events.StreamAudit},
		{RoleCLI, "pub", "$KV.kaar_control." + testCluster + ".paused"},
		{RoleMCPStdio, "pub", "$JS.API.STREAM.DELETE." + events.StreamAudit},
		{RoleProvisioner, "pub", "kaar." + testCluster + ".approval." + plan},
		{RoleWatcher, "sub", RoleExecutor.InboxPrefix() + ".>"},
		{RoleMCPGateway, "sub", "_INBOX.>"},
		{RolePlanner, "sub", "kaar.*.approval.>"},
		{RoleWatcher, "sub", "$SRV.INFO.kaar-planner"},
		{RoleWatcher, "sub", "$SRV.>"},
	}
	conns := map[Role]*nats.Conn{}
	errs := map[Role]<-chan error{}
	for _, r := range Roles() {
		conns[r], errs[r] = permErrs(t, e, r)
	}
	for _, c := range cases {
		t.Run(string(c.role)+" "+c.op+" "+c.subject, func(t *testing.T) {
			nc := conns[c.role]
			var err error
			if c.op == "pub" {
				err = nc.Publish(c.subject, []byte(`{}`))
			} else {
				_, err = nc.SubscribeSync(c.subject)
			}
			if err == nil {
				err = nc.Flush()
			}
			if err != nil {
				t.Fatal(err)
			}
			expectViolation(t, errs[c.role], c.subject)
		})
	}
	// The streams are as declared: nothing the refused requests asked for
	// happened.
	js, _ := jetstream.New(connectAs(t, e, RoleProvisioner))
	sum, err := Provision(testCtx(t, 10*time.Second), js, Config{Clusters: []string{testCluster}})
	if err != nil || sum.Changed() {
		t.Fatalf("after the refused requests: %s, %v", sum, err)
	}
}

// TestServiceRolesDoTheirWork: with only its role's permissions, each
// service does what it does in service, through the same pkg/bus and
// nats.go calls.
func TestServiceRolesDoTheirWork(t *testing.T) {
	cfg := Config{Clusters: []string{testCluster}, Notify: &NotifyConfig{Cluster: testCluster, StreamMaxAge: time.Hour, StateMaxAge: time.Hour,
		Consumers: []jetstream.ConsumerConfig{{Durable: "slack-" + testCluster, AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 1,
			DeliverPolicy: jetstream.DeliverNewPolicy, MaxDeliver: -1, FilterSubjects: []string{"kaar." + testCluster + ".issue.>", "kaar." + testCluster + ".audit.>"}}}}}
	e := startAuthJS(t, cfg)
	ctx := testCtx(t, 60*time.Second)
	js := func(r Role) jetstream.JetStream {
		j, err := jetstream.New(connectAs(t, e, r))
		if err != nil {
			t.Fatal(err)
		}
		return j
	}
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}

	// The services' micro endpoints: the gateway asks the watcher (and
	// the planner asks it too, and the notifier for a digest's numbers),
	// and finds it by $SRV discovery.
	wnc := connectAs(t, e, RoleWatcher)
	analyze, _ := events.ServiceSubject(testCluster, events.ServiceWatcher, events.VerbAnalyze)
	svc, err := micro.AddService(wnc, micro.Config{Name: "kaar-watcher", Version: "1.0.0"})
	must("watcher serves micro", err)
	t.Cleanup(func() { _ = svc.Stop() })
	must("watcher adds its endpoint", svc.AddEndpoint(events.VerbAnalyze, micro.HandlerFunc(func(r micro.Request) { _ = r.Respond([]byte(`{"ok":true}`)) }),
		micro.WithEndpointSubject(analyze)))
	// The endpoint's subscription reaches the server before anyone asks
	// (AddEndpoint does not flush: a request on another connection could
	// find no responder yet).
	must("watcher's subscriptions reach the server", wnc.Flush())
	for _, r := range []Role{RoleMCPGateway, RolePlanner, RoleNotifier} {
		if _, err := connectAs(t, e, r).Request(analyze, []byte(`{}`), 5*time.Second); err != nil {
			t.Fatalf("%s asks the watcher: %v", r, err)
		}
	}
	if _, err := connectAs(t, e, RoleMCPGateway).Request("$SRV.INFO.kaar-watcher", nil, 5*time.Second); err != nil {
		t.Fatalf("gateway's health probe of the watcher ($SRV.INFO): %v", err)
	}

	// Watcher: its incident state (watch, put, purge) and an issue.
	wjs := js(RoleWatcher)
	ikv, err := wjs.KeyValue(ctx, events.BucketIncidents)
	must("watcher opens kaar_incidents", err)
	w, err := ikv.Watch(ctx, testCluster+".*", jetstream.IgnoreDeletes())
	must("watcher watches kaar_incidents", err)
	_, err = ikv.Put(ctx, testCluster+".abc", []byte(`{}`))
	must("watcher puts an incident", err)
	must("watcher purges an incident", ikv.Purge(ctx, testCluster+".abc"))
	must("watcher stops its watch", w.Stop())
	issueSubj, _ := events.IssueSubject(testCluster, "shop", events.IssueCrashLoopBackOff)
	_, err = wjs.Publish(ctx, issueSubj, []byte(`{}`))
	must("watcher publishes an issue", err)
	// At start it reads the last announcements back (ordered consumer).
	issuesFilter, _ := events.IssueFilter(testCluster)
	woc, err := wjs.OrderedConsumer(ctx, events.StreamIssues, jetstream.OrderedConsumerConfig{FilterSubjects: []string{issuesFilter}})
	must("watcher reads ISSUES back", err)
	_, err = woc.Next(jetstream.FetchMaxWait(5 * time.Second))
	must("watcher reads an issue back", err)

	// Planner: pulls the issue from its durable, stores and watches plans.
	pjs := js(RolePlanner)
	pname, _ := events.PlannerConsumer(testCluster)
	pc, err := pjs.Consumer(ctx, events.StreamIssues, pname)
	must("planner binds its consumer", err)
	fetchAck(t, pc, "planner")
	ps, err := OpenPlanStore(ctx, pjs)
	must("planner opens the plan store", err)
	changes, err := ps.Watch(ctx)
	must("planner watches plans", err)
	p := newPlan(t)
	_, err = ps.Create(ctx, p, time.Minute)
	must("planner stores a plan", err)
	select {
	case <-changes:
	case <-ctx.Done():
		t.Fatal("planner's watch saw nothing")
	}
	_, err = ps.List(ctx)
	must("planner lists plans", err)
	proposed, _ := events.PlanEventSubject(testCluster, events.PlanEventProposed)
	_, err = pjs.Publish(ctx, proposed, []byte(`{}`))
	must("planner announces a plan", err)

	// Gateway: plans, executions, the approvals, the kill switch, the
	// audit trail.
	gjs := js(RoleMCPGateway)
	gps, err := OpenPlanStore(ctx, gjs)
	must("gateway opens plans", err)
	_, _, err = gps.Get(ctx, p.ID)
	must("gateway reads a plan", err)
	_, err = gps.List(ctx)
	must("gateway lists plans", err)
	approval, _ := events.ApprovalSubject(testCluster, p.ID)
	_, err = gjs.Publish(ctx, approval, []byte(`{}`))
	must("gateway publishes a decision", err)
	ast, err := gjs.Stream(ctx, events.StreamApprovals)
	must("gateway opens APPROVALS", err)
	_, err = ast.GetLastMsgForSubject(ctx, approval)
	must("gateway reads the last decision", err)
	must("gateway pauses", SetPause(ctx, gjs, testCluster, events.Pause{Paused: true, By: "alice", Via: events.ViaMCP, At: time.Now().UTC()}))
	xkv, err := gjs.KeyValue(ctx, events.BucketExecutions)
	must("gateway opens executions", err)
	xw, err := xkv.Watch(ctx, "nothing.yet")
	must("gateway watches an execution", err)
	must("gateway stops the watch", xw.Stop())

	// Executor: the decision from its durable, the plan, executions, the
	// kill switch, the audit trail, an auto-approval.
	ejs := js(RoleExecutor)
	ename, _ := events.ExecutorConsumer(testCluster)
	ec, err := ejs.Consumer(ctx, events.StreamApprovals, ename)
	must("executor binds its consumer", err)
	fetchAck(t, ec, "executor")
	aname, _ := events.AutoApproveConsumer(testCluster)
	ac, err := ejs.Consumer(ctx, events.StreamPlanEvents, aname)
	must("executor binds its auto-approval consumer", err)
	fetchAck(t, ac, "executor auto-approval")
	eps, err := OpenPlanStore(ctx, ejs)
	must("executor opens plans", err)
	got, rev, err := eps.Get(ctx, p.ID)
	must("executor reads the plan", err)
	got.State = events.PlanApproved
	_, err = eps.Update(ctx, got, rev)
	must("executor claims the plan", err)
	ekv, err := ejs.KeyValue(ctx, events.BucketExecutions)
	must("executor opens executions", err)
	_, err = ekv.Put(ctx, "x"+p.ID, []byte(`{}`))
	must("executor records an execution", err)
	pause, err := GetPause(ctx, ejs, testCluster)
	if err != nil || !pause.Paused {
		t.Fatalf("executor reads the kill switch: %+v %v", pause, err)
	}
	ckv, err := ejs.KeyValue(ctx, events.BucketControl)
	must("executor opens kaar_control", err)
	cw, err := ckv.Watch(ctx, testCluster+".paused")
	must("executor watches the kill switch", err)
	must("executor stops the watch", cw.Stop())
	audit, _ := events.AuditSubject(testCluster, events.AuditStepStarted)
	_, err = ejs.Publish(ctx, audit, []byte(`{}`))
	must("executor audits", err)
	_, err = ejs.Publish(ctx, approval, []byte(`{"auto":true}`))
	must("executor auto-approves", err)

	// Gateway reads the audit trail with an ordered consumer.
	oc, err := gjs.OrderedConsumer(ctx, events.StreamAudit, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"kaar." + testCluster + ".audit.>"}})
	must("gateway reads AUDIT", err)
	if _, err := oc.Next(jetstream.FetchMaxWait(5 * time.Second)); err != nil {
		t.Fatalf("gateway's ordered read of AUDIT: %v", err)
	}

	// Notifier: its NOTIFY consumer (sourced issue and audit), state, a
	// decision.
	njs := js(RoleNotifier)
	nc, err := njs.Consumer(ctx, NotifyStream, "slack-"+testCluster)
	must("notifier binds its consumer", err)
	fetchAck(t, nc, "notifier")
	nkv, err := njs.KeyValue(ctx, NotifyBucket)
	must("notifier opens its state", err)
	_, err = nkv.Put(ctx, testCluster+".t.abc", []byte(`{}`))
	must("notifier stores state", err)
	lister, err := nkv.ListKeysFiltered(ctx, testCluster+".t.>")
	must("notifier lists its state", err)
	for range lister.Keys() {
	}
	nps, err := OpenPlanStore(ctx, njs)
	must("notifier opens plans", err)
	_, _, err = nps.Get(ctx, p.ID)
	must("notifier reads a plan", err)
	_, err = njs.Publish(ctx, approval, []byte(`{}`))
	must("notifier publishes a Slack decision", err)

	// CLI: plans, a decision, ISSUES and AUDIT read message by message.
	cjs := js(RoleCLI)
	cps, err := OpenPlanStore(ctx, cjs)
	must("cli opens plans", err)
	_, err = cps.List(ctx)
	must("cli lists plans", err)
	_, err = cjs.Publish(ctx, approval, []byte(`{}`))
	must("cli publishes a decision", err)
	for _, s := range []string{events.StreamIssues, events.StreamAudit} {
		st, err := cjs.Stream(ctx, s)
		must("cli opens "+s, err)
		_, err = st.GetMsg(ctx, 1, jetstream.WithGetMsgSubject("kaar."+testCluster+".>"))
		must("cli reads "+s, err)
	}
}

func fetchAck(t *testing.T, c jetstream.Consumer, who string) {
	t.Helper()
	m, err := c.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatalf("%s pulls a message: %v", who, err)
	}
	if err := m.DoubleAck(context.Background()); err != nil {
		t.Fatalf("%s acks: %v", who, err)
	}
}

// TestProvisionRepairsInjectedSourcesAndRetention is the attack of issue
// 13 done with full rights (as an administrator could): sources added to
// APPROVALS and KV_kaar_plans, the audit retention shortened, deletes
// more history kept in a bucket, an executor consumer re-filtered. Provisioning
// puts everything back and says what it changed.
func TestProvisionRepairsInjectedSourcesAndRetention(t *testing.T) {
	cfg := Config{Clusters: []string{testCluster}}
	e := startAuthJS(t, cfg)
	ctx := testCtx(t, 30*time.Second)
	admin, err := e.Connect(ctx, ConnectOptions{Name: "admin"})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ajs, _ := jetstream.New(admin)
	if _, err := ajs.CreateStream(ctx, jetstream.StreamConfig{Name: "EVIL", Subjects: []string{"evil.>"}}); err != nil {
		t.Fatal(err)
	}
	inject := func(name string, edit func(*jetstream.StreamConfig)) {
		st, err := ajs.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		c := st.CachedInfo().Config
		edit(&c)
		if _, err := ajs.UpdateStream(ctx, c); err != nil {
			t.Fatalf("inject into %s: %v", name, err)
		}
	}
	inject(events.StreamApprovals, func(c *jetstream.StreamConfig) {
		c.Sources = append(c.Sources, &jetstream.StreamSource{Name: "EVIL"})
	})
	inject("KV_"+events.BucketPlans, func(c *jetstream.StreamConfig) {
		c.Sources = append(c.Sources, &jetstream.StreamSource{Name: "EVIL"})
		c.MaxMsgsPerSubject = 64 // (deny_delete cannot be lifted: the server refuses)
	})
	inject(events.StreamAudit, func(c *jetstream.StreamConfig) { c.MaxAge = time.Hour; c.MaxMsgs = 10 })
	ename, _ := events.ExecutorConsumer(testCluster)
	ast, _ := ajs.Stream(ctx, events.StreamApprovals)
	ec, err := ast.Consumer(ctx, ename)
	if err != nil {
		t.Fatal(err)
	}
	cc := ec.CachedInfo().Config
	cc.MaxDeliver, cc.MaxAckPending = 100, 1
	if _, err := ast.UpdateConsumer(ctx, cc); err != nil {
		t.Fatal(err)
	}

	js, _ := jetstream.New(connectAs(t, e, RoleProvisioner))
	sum, err := Provision(ctx, js, cfg)
	if err != nil {
		t.Fatalf("re-provision: %v", err)
	}
	got := sum.String()
	for _, want := range []string{
		"updated stream APPROVALS: sources removed [EVIL]",
		"updated kv kaar_plans: max_msgs_per_subject 64 -> 1; sources removed [EVIL]",
		"updated stream AUDIT: max_age 1h0m0s -> 720h0m0s; max_msgs 10 -> -1",
		"updated consumer APPROVALS/" + ename + ": max_ack_pending 1 -> 16; max_deliver 100 -> 5",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("summary %q lacks %q", got, want)
		}
	}
	for _, name := range []string{events.StreamApprovals, "KV_" + events.BucketPlans} {
		st, err := ajs.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if c := st.CachedInfo().Config; len(c.Sources) != 0 {
			t.Errorf("%s still has sources %v", name, sourceNames(c.Sources))
		} else if strings.HasPrefix(name, "KV_") && c.MaxMsgsPerSubject != 1 {
			t.Errorf("%s keeps %d revisions per key", name, c.MaxMsgsPerSubject)
		}
	}
	audit, _ := ajs.Stream(ctx, events.StreamAudit)
	if c := audit.CachedInfo().Config; c.MaxAge != DefaultAuditRetention || c.MaxMsgs != -1 {
		t.Errorf("AUDIT max age %s max msgs %d", c.MaxAge, c.MaxMsgs)
	}
	if sum, err := Provision(ctx, js, cfg); err != nil || sum.Changed() {
		t.Fatalf("after the repair: %s, %v", sum, err)
	}
}

func TestPermissionsConfMatchesRoles(t *testing.T) {
	conf := PermissionsConf()
	for _, r := range Roles() {
		if !strings.Contains(conf, "user: "+r.User()+"\n") || !strings.Contains(conf, "$"+r.PasswordEnv()) {
			t.Errorf("conf lacks user %s", r.User())
		}
		for _, s := range r.Permissions().Publish {
			if s == "$JS.API.>" && r != RoleProvisioner {
				t.Errorf("role %s holds the whole JetStream API", r)
			}
		}
	}
	if _, err := ParseRole("root"); !errors.Is(err, events.ErrInvalid) || !strings.Contains(err.Error(), "provisioner") {
		t.Errorf("ParseRole(root): %v", err)
	}
}

// TestCheckBoundNamesWhatIsMissing: a service on a bus nobody provisioned
// gets one error naming "kaar bus provision" and what is missing; after
// provisioning every role binds with its own permissions.
func TestCheckBoundNamesWhatIsMissing(t *testing.T) {
	ctx := testCtx(t, 30*time.Second)
	e, err := StartEmbedded(ctx, EmbeddedOptions{DontListen: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Shutdown)
	cfg := Config{Clusters: []string{testCluster}, Notify: &NotifyConfig{Cluster: testCluster,
		Consumers: []jetstream.ConsumerConfig{{Durable: "slack-" + testCluster, AckPolicy: jetstream.AckExplicitPolicy}}}}
	ejs, _ := jetstream.New(connectAs(t, e, RoleExecutor))
	err = CheckBound(ctx, ejs, RoleExecutor, cfg)
	if !errors.Is(err, ErrNotProvisioned) || !strings.Contains(err.Error(), "kaar bus provision") ||
		!strings.Contains(err.Error(), "stream APPROVALS") || !strings.Contains(err.Error(), "consumer APPROVALS/executor-"+testCluster) {
		t.Fatalf("unprovisioned bus: %v", err)
	}
	pjs, _ := jetstream.New(connectAs(t, e, RoleProvisioner))
	if _, err := Provision(ctx, pjs, cfg); err != nil {
		t.Fatal(err)
	}
	for _, r := range Roles() {
		js, _ := jetstream.New(connectAs(t, e, r))
		if err := CheckBound(ctx, js, r, cfg); err != nil {
			t.Errorf("%s after provisioning: %v", r, err)
		}
	}
}
