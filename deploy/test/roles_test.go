package deploytest

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/events"
)

// TestPermissionsConfIsTheGoDefinition: deploy/nats/kaar-permissions.conf
// and the chart's copy are exactly what pkg/bus/roles.go defines
// (bus.PermissionsConf, printed by "kaar bus permissions").
func TestPermissionsConfIsTheGoDefinition(t *testing.T) {
	want := bus.PermissionsConf()
	for _, path := range []string{
		filepath.Join(repoRoot(t), "deploy", "nats", "kaar-permissions.conf"),
		filepath.Join(chartDir(t), "files", "kaar-permissions.conf"),
	} {
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != want {
			t.Errorf("%s differs from pkg/bus/roles.go: regenerate it (and the chart copy and the manifests) with: make -C deploy manifests", path)
		}
	}
}

// roleConn logs in as a role with its password, with the role's inbox
// prefix (the only inbox it may subscribe to), and reports permission
// violations on the returned channel.
func roleConn(t *testing.T, url string, role bus.Role, password string) (*nats.Conn, <-chan error) {
	t.Helper()
	errs := make(chan error, 64)
	nc, err := nats.Connect(url, nats.UserInfo(role.User(), password), nats.Name(role.User()), nats.CustomInboxPrefix(role.InboxPrefix()),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case errs <- err:
			default:
			}
		}))
	if err != nil {
		t.Fatalf("connect as %s: %v", role.User(), err)
	}
	t.Cleanup(nc.Close)
	return nc, errs
}

// notifyDecl is a notifier declaration (Slack and one webhook) for the
// provisioning of the deploy tests.
func notifyDecl(cluster string) *bus.NotifyConfig {
	i, _ := events.IssueFilter(cluster)
	a, _ := events.AuditFilter(cluster)
	return &bus.NotifyConfig{Cluster: cluster, StreamMaxAge: time.Hour, StateMaxAge: time.Hour,
		Consumers: []jetstream.ConsumerConfig{{Durable: "slack-" + cluster, AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 1,
			DeliverPolicy: jetstream.DeliverNewPolicy, MaxDeliver: -1, FilterSubjects: []string{i, a}}}}
}

// provisionAs declares the bus (with the notifier's stream and consumer)
// as the given connection, which must be the provisioner's.
func provisionAs(t *testing.T, nc *nats.Conn, cluster string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bus.Provision(ctx, js, bus.Config{Clusters: []string{cluster}, Notify: notifyDecl(cluster)}); err != nil {
		t.Fatalf("kaar-provisioner cannot provision the bus: %v", err)
	}
}

// checkRolesWork: each role, with only its own permissions, does what it
// does in service (the same pkg/bus and nats.go calls): the watcher its
// incident state and issues, the planner its durable consumer and plans,
// the gateway plans, decisions, the kill switch and the audit trail, the
// executor its two durable consumers, the plan claim, executions and the
// kill switch watch, the notifier its NOTIFY consumer and state, the CLI
// plans, a decision and the streams read message by message. Each role
// also checks with bus.CheckBound that what it binds to exists.
func checkRolesWork(t *testing.T, conns map[bus.Role]*nats.Conn, cluster string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	js := map[bus.Role]jetstream.JetStream{}
	for r, nc := range conns {
		j, err := jetstream.New(nc)
		must("jetstream", err)
		js[r] = j
		if r != bus.RoleProvisioner {
			must(string(r)+" binds to the bus", bus.CheckBound(ctx, j, r, bus.Config{Clusters: []string{cluster}, Notify: notifyDecl(cluster)}))
		}
	}
	w := js[bus.RoleWatcher]
	ikv, err := w.KeyValue(ctx, events.BucketIncidents)
	must("watcher opens kaar_incidents", err)
	iw, err := ikv.Watch(ctx, cluster+".*", jetstream.IgnoreDeletes())
	must("watcher watches its incidents", err)
	_, err = ikv.Put(ctx, cluster+".abc", []byte(`{}`))
	must("watcher stores an incident", err)
	must("watcher purges an incident", ikv.Purge(ctx, cluster+".abc"))
	must("watcher stops its watch", iw.Stop())
	issue, _ := events.IssueSubject(cluster, "shop", events.IssueCrashLoopBackOff)
	_, err = w.Publish(ctx, issue, []byte(`{}`))
	must("watcher publishes an issue", err)

	p := js[bus.RolePlanner]
	pname, _ := events.PlannerConsumer(cluster)
	pc, err := p.Consumer(ctx, events.StreamIssues, pname)
	must("planner binds its consumer", err)
	pullAck(t, pc, "planner")
	ps, err := bus.OpenPlanStore(ctx, p)
	must("planner opens plans", err)
	changes, err := ps.Watch(ctx)
	must("planner watches plans", err)
	plan := testPlan(t, cluster)
	_, err = ps.Create(ctx, plan, time.Minute)
	must("planner stores a plan", err)
	select {
	case <-changes:
	case <-ctx.Done():
		t.Fatal("planner's plan watch saw nothing")
	}
	proposed, _ := events.PlanEventSubject(cluster, events.PlanEventProposed)
	_, err = p.Publish(ctx, proposed, []byte(`{}`))
	must("planner announces the plan", err)
	audit, _ := events.AuditSubject(cluster, events.AuditStepStarted)
	_, err = p.Publish(ctx, audit, []byte(`{}`))
	must("planner audits", err)

	g := js[bus.RoleMCPGateway]
	gps, err := bus.OpenPlanStore(ctx, g)
	must("gateway opens plans", err)
	_, err = gps.List(ctx)
	must("gateway lists plans", err)
	approval, _ := events.ApprovalSubject(cluster, plan.ID)
	_, err = g.Publish(ctx, approval, []byte(`{}`))
	must("gateway publishes a decision", err)
	ast, err := g.Stream(ctx, events.StreamApprovals)
	must("gateway opens APPROVALS", err)
	_, err = ast.GetLastMsgForSubject(ctx, approval)
	must("gateway reads the last decision", err)
	xkv, err := g.KeyValue(ctx, events.BucketExecutions)
	must("gateway opens executions", err)
	xw, err := xkv.Watch(ctx, "none.yet")
	must("gateway watches an execution", err)
	must("gateway stops the watch", xw.Stop())
	oc, err := g.OrderedConsumer(ctx, events.StreamAudit, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"kaar." + cluster + ".audit.>"}})
	must("gateway reads AUDIT", err)
	_, err = oc.Next(jetstream.FetchMaxWait(10 * time.Second))
	must("gateway's ordered read of AUDIT", err)

	e := js[bus.RoleExecutor]
	ename, _ := events.ExecutorConsumer(cluster)
	ec, err := e.Consumer(ctx, events.StreamApprovals, ename)
	must("executor binds its consumer", err)
	pullAck(t, ec, "executor")
	aname, _ := events.AutoApproveConsumer(cluster)
	ac, err := e.Consumer(ctx, events.StreamPlanEvents, aname)
	must("executor binds its auto-approval consumer", err)
	pullAck(t, ac, "executor auto-approval")
	eps, err := bus.OpenPlanStore(ctx, e)
	must("executor opens plans", err)
	got, rev, err := eps.Get(ctx, plan.ID)
	must("executor reads the plan", err)
	got.State = events.PlanApproved
	_, err = eps.Update(ctx, got, rev)
	must("executor claims the plan", err)
	ekv, err := e.KeyValue(ctx, events.BucketExecutions)
	must("executor opens executions", err)
	_, err = ekv.Put(ctx, "x"+plan.ID, []byte(`{}`))
	must("executor records an execution", err)
	_, err = e.Publish(ctx, audit, []byte(`{}`))
	must("executor audits", err)

	n := js[bus.RoleNotifier]
	nc, err := n.Consumer(ctx, bus.NotifyStream, "slack-"+cluster)
	must("notifier binds its consumer", err)
	pullAck(t, nc, "notifier")
	nkv, err := n.KeyValue(ctx, bus.NotifyBucket)
	must("notifier opens its state", err)
	_, err = nkv.Put(ctx, cluster+".t.abc", []byte(`{}`))
	must("notifier stores state", err)
	lister, err := nkv.ListKeysFiltered(ctx, cluster+".t.>")
	must("notifier lists its state", err)
	for range lister.Keys() {
	}
	_, err = n.Publish(ctx, approval, []byte(`{}`))
	must("notifier publishes a Slack decision", err)

	c := js[bus.RoleCLI]
	cps, err := bus.OpenPlanStore(ctx, c)
	must("cli opens plans", err)
	_, err = cps.List(ctx)
	must("cli lists plans", err)
	_, err = c.Publish(ctx, approval, []byte(`{}`))
	must("cli publishes a decision", err)
	for _, s := range []string{events.StreamIssues, events.StreamAudit} {
		st, err := c.Stream(ctx, s)
		must("cli opens "+s, err)
		_, err = st.GetMsg(ctx, 1, jetstream.WithGetMsgSubject("kaar."+cluster+".>"))
		must("cli reads "+s, err)
	}
}

func pullAck(t *testing.T, c jetstream.Consumer, who string) {
	t.Helper()
	m, err := c.Next(jetstream.FetchMaxWait(10 * time.Second))
	if err != nil {
		t.Fatalf("%s pulls from its durable consumer: %v", who, err)
	}
	if err := m.DoubleAck(context.Background()); err != nil {
		t.Fatalf("%s acks: %v", who, err)
	}
}

func testPlan(t *testing.T, cluster string) events.Plan {
	t.Helper()
	now := time.Now().UTC().Truncate(time.Second)
	target := events.ObjectRef{Kind: "Deployment", Namespace: "shop", Name: "web", APIVersion: "apps/v1"}
	p := events.Plan{ID: uuid.NewString(), Cluster: cluster, Namespace: "shop", Target: target, TargetResourceVersion: "100", TargetGeneration: 3,
		Type: events.IssueCrashLoopBackOff, Summary: "roll back web to revision 2",
		Steps: []events.Step{{Index: 0, Action: events.ActionRollback, Title: "Roll back deployment/web", Target: target, Risk: events.RiskMedium,
			Mutating: true, Params: map[string]string{events.ParamRevision: "2"}}},
		Risk: events.RiskMedium, State: events.PlanProposed, CreatedAt: now, ExpiresAt: now.Add(time.Minute)}
	p.Seal()
	return p
}

// managementRefused are the JetStream management requests no service
// role may make: change a stream (adding sources included), delete or
// purge one, delete another role's durable consumer, create a durable
// consumer.
func managementRefused(cluster string) []struct {
	role    bus.Role
	subject string
} {
	executor, _ := events.ExecutorConsumer(cluster)
	planner, _ := events.PlannerConsumer(cluster)
	var out []struct {
		role    bus.Role
		subject string
	}
	for _, r := range bus.Roles() {
		if r == bus.RoleProvisioner {
			continue
		}
		other := "$JS.API.CONSUMER.DELETE." + events.StreamApprovals + "." + executor
		if r == bus.RoleExecutor {
			other = "$JS.API.CONSUMER.DELETE." + events.StreamIssues + "." + planner
		}
		for _, s := range []string{
			"$JS.API.STREAM.UPDATE." + events.StreamApprovals,
			"$JS.API.STREAM.UPDATE.KV_" + events.BucketPlans,
			"$JS.API.STREAM.UPDATE." + events.StreamAudit,
			"$JS.API.STREAM.DELETE." + events.StreamAudit,
			"$JS.API.STREAM.PURGE." + events.StreamAudit,
			"$JS.API.STREAM.CREATE.EVIL",
			other,
			"$JS.API.CONSUMER.DURABLE.CREATE." + events.StreamIssues + ".mine",
			"$JS.API.CONSUMER.CREATE." + events.StreamApprovals + ".mine",
		} {
			out = append(out, struct {
				role    bus.Role
				subject string
			}{r, s})
		}
	}
	return out
}
