package main_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kaar-dev/kaar/internal/testutil"
	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/config"
	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/kaar-dev/kaar/pkg/sandbox"
	"github.com/kaar-dev/kaar/pkg/svcmain"
	"github.com/kaar-dev/kaar/services/executor"
)

// The chaos suite runs the executor and the NATS server as real
// processes, kills them (SIGKILL) in the middle of two-step plans, and
// counts what happened to every plan:
//
//   - executor crash at every step boundary in turn (the executor's
//     failpoints: after the claim, after a step started, after it was
//     applied, after it was recorded); a fresh executor resumes the plan
//     once the claiming decision's ack wait passes;
//   - NATS server killed and restarted (same store) during executions;
//   - an approval that arrives after the plan's window, and one for a
//     plan whose Deployment changed since planning.
//
// A duplicate is a plan whose Deployment moved by more generations than
// the plan has steps (a step applied twice) or that finished twice; a
// loss is a plan that did not end in its expected state. Both must be
// zero. In make test every scenario runs once with one plan;
// `make chaos` runs each scenario KAAR_CHAOS_RUNS times with
// KAAR_CHAOS_BATCH plans at once (50 plans per scenario by default there)
// and prints the table.
func TestChaosExecutorAndNATSKills(t *testing.T) {
	parallel(t)
	runs, batch := envInt(t, "KAAR_CHAOS_RUNS", 1), envInt(t, "KAAR_CHAOS_BATCH", 1)
	ce := newChaosEnv(t)

	var results []chaosResult
	points := []string{"claimed", "step-started:0", "step-applied:0", "step-recorded:0", "step-started:1", "step-applied:1", "step-recorded:1"}
	for _, point := range points {
		results = append(results, ce.scenario("executor SIGKILL at "+point, runs, batch, func(t *testing.T, plans []chaosPlan) {
			crashed := ce.startExecutor(t, point)
			ce.approveAll(t, plans)
			if err, exited := crashed.waitExit(2 * time.Minute); !exited || err == nil || !strings.Contains(err.Error(), "killed") {
				t.Fatalf("executor with failpoint %s: want it killed, got exited=%t %v:\n%s", point, exited, err, tail(crashed.out.String(), 40))
			}
			ce.startExecutor(t, "") // resumes after the ack wait
		}))
	}
	results = append(results, ce.scenario("NATS server SIGKILL and restart", runs, batch, func(t *testing.T, plans []chaosPlan) {
		ce.startExecutor(t, "")
		ce.approveAll(t, plans)
		ce.waitAnyExecution(t, plans, time.Minute)
		ce.nodes[0].proc.kill(t)
		time.Sleep(2 * time.Second)
		ce.startNATS(ce.t, 0) // outlives this scenario
	}))
	results = append(results, ce.scenario("100 approvals each, 2 executors", runs, batch, func(t *testing.T, plans []chaosPlan) {
		ce.startExecutor(t, "")
		ce.startExecutor(t, "")
		// 100 approvals of every plan from different clients (distinct
		// message ids, so the stream does not deduplicate them), at once.
		var wg sync.WaitGroup
		for i := range 100 {
			wg.Go(func() { ce.approveAllAs(t, plans, fmt.Sprintf("client-%d", i)) })
		}
		wg.Wait()
	}))
	results = append(results, ce.refusalScenario("approval after expiry", runs, batch, events.RefusalExpired))
	results = append(results, ce.refusalScenario("stale target", runs, batch, events.RefusalStale))

	reportChaos(t, results, "KAAR_CHAOS_TABLE")
}

// reportChaos logs the table of results, writes it to the file named by
// the environment variable tableEnv (if set), and fails on any duplicate
// or loss.
func reportChaos(t *testing.T, results []chaosResult, tableEnv string) {
	var b strings.Builder
	fmt.Fprintf(&b, "\n%-44s %5s %10s %10s %6s %7s %7s\n", "scenario", "runs", "executions", "duplicates", "losses", "stale", "expired")
	for _, r := range results {
		fmt.Fprintf(&b, "%-44s %5d %10d %10d %6d %7d %7d\n", r.name, r.runs, r.executions, r.duplicates, r.losses, r.stale, r.expired)
	}
	t.Log(b.String())
	if f := os.Getenv(tableEnv); f != "" {
		if err := os.WriteFile(f, []byte(b.String()), 0o644); err != nil {
			t.Error(err)
		}
	}
	for _, r := range results {
		if r.duplicates != 0 || r.losses != 0 {
			t.Errorf("%s: %d duplicates, %d losses: the bar is zero", r.name, r.duplicates, r.losses)
		}
	}
}

func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

type chaosResult struct {
	name                                                 string
	runs, executions, duplicates, losses, stale, expired int
}

// chaosEnv is one NATS server process, the sandbox namespace, and this
// test's own connection to the bus.
type chaosEnv struct {
	t       *testing.T
	bin     string
	kube    kubernetes.Interface
	ns      string
	cluster string
	cfg     string
	// nodes are the NATS server processes: one, or a JetStream cluster
	// of three with every stream and bucket at R3.
	nodes []*natsNode
	// executors are the executor processes of the current run.
	executors []*proc
	js        jetstream.JetStream
	plans     *bus.PlanStore
	seq       int
	// planner and cli sign the suite's plans and approvals with the
	// installation's keys (signing.key_dir), which the executors trust.
	planner, cli *events.Signer
}

// chaosAckWait is the executor consumer's ack wait in the suite: how soon
// a crashed executor's plan is taken over.
const chaosAckWait = 3 * time.Second

func newChaosEnv(t testing.TB) *chaosEnv { return newChaosEnvWith(t, 1) }

// natsNode is one kaar nats process of the suite: its client port, its
// route port (clustered), its store, and the running process.
type natsNode struct {
	port, route int
	store       string
	proc        *proc
}

// newChaosEnvWith starts nodes kaar nats processes: 1, or 3 clustered
// (nats.replicas 3).
func newChaosEnvWith(t testing.TB, nodes int) *chaosEnv {
	c := sandbox.ForTest(t)
	ce := &chaosEnv{bin: buildKaar(t), kube: c.Clientset()}
	ce.t, _ = t.(*testing.T) // scenarios run as its subtests; benchmarks have none
	for range nodes {
		ce.nodes = append(ce.nodes, &natsNode{port: testutil.FreePort(t), route: testutil.FreePort(t), store: t.TempDir()})
	}
	ce.ns = sandbox.NewNamespace(t, ce.kube)
	ce.cluster = "chaos-" + strings.ReplaceAll(ce.ns[len(ce.ns)-5:], "-", "")
	ce.cfg = writeConfig(t, c, ce.ns, ce.cluster, testutil.FreePort(t), "  max_concurrent: 8\n  max_concurrent_per_namespace: 8")
	cfg, err := os.ReadFile(ce.cfg)
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := config.LoadFile(ce.cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	keyDir := loaded.Signing.KeyDir
	cfg = append(cfg, fmt.Sprintf("nats:\n  url: %s\n  executor_ack_wait: %s\n  replicas: %d\n", ce.natsURL(), chaosAckWait, nodes)...)
	if ce.planner, err = svcmain.EnsureKey(keyDir, svcmain.RolePlanner, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	if ce.cli, err = svcmain.EnsureKey(keyDir, svcmain.RoleCLI, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ce.cfg, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	// A clustered node finishes starting (provisioning at R3) only once
	// the others run: start them all, then wait for each.
	var wg sync.WaitGroup
	for i := range ce.nodes {
		wg.Go(func() { ce.startNATS(t, i) })
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	// The test acts as the roles it stands for: the provisioner declares
	// the bus, the planner stores plans, the gateway decides and reads
	// executions.
	url := ce.natsURL()
	ce.js = roleJetStream(t, url, bus.RoleMCPGateway)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := bus.Provision(ctx, roleJetStream(t, url, bus.RoleProvisioner), bus.Config{Clusters: []string{ce.cluster}, ExecutorAckWait: chaosAckWait, Replicas: nodes}); err != nil {
		t.Fatal(err)
	}
	if ce.plans, err = bus.OpenPlanStore(ctx, roleJetStream(t, url, bus.RolePlanner)); err != nil {
		t.Fatal(err)
	}
	return ce
}

// proc is a process the suite kills and restarts.
type proc struct {
	cmd  *exec.Cmd
	out  *testutil.Buffer
	done chan error
}

func (ce *chaosEnv) start(t testing.TB, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{out: &testutil.Buffer{}, done: make(chan error, 1)}
	p.cmd = exec.Command(ce.bin, args...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start kaar %v: %v", args, err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("kaar %s output:\n%s", args[0], tail(p.out.String(), 60))
		}
	})
	return p
}

// waitExit waits up to d for the process to exit and returns how it
// exited; exited is false if it is still running.
func (p *proc) waitExit(d time.Duration) (err error, exited bool) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case err := <-p.done:
		p.done <- err
		return err, true
	case <-t.C:
		return nil, false
	}
}

// stop ends the process with SIGTERM (SIGKILL after 30s); a process that
// already exited is left alone.
func (p *proc) stop() {
	if _, exited := p.waitExit(0); exited {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if _, exited := p.waitExit(30 * time.Second); !exited {
		_ = p.cmd.Process.Kill()
		_, _ = p.waitExit(10 * time.Second)
	}
}

func (p *proc) kill(t testing.TB) {
	t.Helper()
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatalf("kill: %v", err)
	}
	_, _ = p.waitExit(10 * time.Second)
}

// natsURL lists every node's client URL (clients fail over between them).
func (ce *chaosEnv) natsURL() string {
	var urls []string
	for _, n := range ce.nodes {
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", n.port))
	}
	return strings.Join(urls, ",")
}

// startNATS starts (or restarts, on the same store) node i and waits
// until it serves.
func (ce *chaosEnv) startNATS(t testing.TB, i int) {
	n := ce.nodes[i]
	args := []string{"nats", "--listen", fmt.Sprintf("127.0.0.1:%d", n.port), "--store-dir", n.store, "--config", ce.cfg}
	if len(ce.nodes) > 1 {
		var routes []string
		for _, o := range ce.nodes {
			routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", o.route))
		}
		args = append(args, "--server-name", fmt.Sprintf("n%d", i), "--route-listen", fmt.Sprintf("127.0.0.1:%d", n.route), "--routes", strings.Join(routes, ","))
	}
	p := ce.start(t, nil, args...)
	deadline := time.Now().Add(2 * time.Minute)
	for !strings.Contains(p.out.String(), "listening on") {
		if _, exited := p.waitExit(0); exited || time.Now().After(deadline) {
			t.Errorf("kaar nats node %d did not start:\n%s", i, p.out.String())
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	n.proc = p
}

func (ce *chaosEnv) startExecutor(t testing.TB, crashAt string) *proc {
	var env []string
	if crashAt != "" {
		env = append(env, executor.EnvCrashAt+"="+crashAt)
	}
	p := ce.start(t, env, "executor", "--config", ce.cfg)
	ce.executors = append(ce.executors, p)
	return p
}

// chaosPlan is one plan under test and the Deployment it changes.
type chaosPlan struct {
	plan events.Plan
	dep  *appsv1.Deployment
}

// newPlans creates n Deployments and a two-step plan for each: a new
// image and a memory limit, both patches guarded by the generation.
func (ce *chaosEnv) newPlans(t testing.TB, n int, expiresIn time.Duration) []chaosPlan {
	t.Helper()
	var names []string
	for range n {
		ce.seq++
		names = append(names, fmt.Sprintf("d%d", ce.seq))
	}
	var wg sync.WaitGroup
	for _, name := range names {
		wg.Go(func() { ce.createDeployment(t, name) })
	}
	wg.Wait()
	var out []chaosPlan
	for _, name := range names {
		dep, err := ce.kube.AppsV1().Deployments(ce.ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		p := ce.plan(t, dep, expiresIn)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err = ce.plans.Create(ctx, p, max(time.Until(p.ExpiresAt), time.Second))
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, chaosPlan{plan: p, dep: dep})
	}
	return out
}

func (ce *chaosEnv) createDeployment(t testing.TB, name string) {
	dep := sandbox.TestDeployment(ce.ns, name, "nginx:1.27", 1, nil)
	// A memory limit to raise, as the planner's set_memory_limit replaces.
	dep.Spec.Template.Spec.Containers[0].Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("128Mi")}
	if _, err := ce.kube.AppsV1().Deployments(ce.ns).Create(context.Background(), dep, metav1.CreateOptions{}); err != nil {
		t.Error(err)
		return
	}
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		d, err := ce.kube.AppsV1().Deployments(ce.ns).Get(context.Background(), name, metav1.GetOptions{})
		if err == nil && sandbox.DeploymentAvailable(d) {
			return
		}
		time.Sleep(300 * time.Millisecond)
	}
	t.Errorf("deployment %s not available within 2m", name)
}

func (ce *chaosEnv) plan(t testing.TB, dep *appsv1.Deployment, expiresIn time.Duration) events.Plan {
	target := events.ObjectRef{Kind: "Deployment", Namespace: ce.ns, Name: dep.Name, UID: string(dep.UID), APIVersion: "apps/v1"}
	guard := fmt.Sprintf(`{"op":"test","path":"/metadata/generation","value":%d}`, dep.Generation)
	now := time.Now().UTC().Truncate(time.Second)
	p := events.Plan{
		ID: uuid.Must(uuid.NewV7()).String(), Cluster: ce.cluster, Namespace: ce.ns, Target: target,
		TargetResourceVersion: dep.ResourceVersion, TargetGeneration: dep.Generation,
		Type: events.IssueImagePullBackOff, Summary: "chaos plan for " + dep.Name, Risk: events.RiskLow, State: events.PlanProposed,
		CreatedAt: now, ExpiresAt: now.Add(expiresIn),
		Steps: []events.Step{
			{Index: 0, Action: events.ActionSetImage, Title: "Set image to nginx:1.28", Target: target, Risk: events.RiskLow, Mutating: true,
				PatchType: events.PatchJSON, Patch: json.RawMessage(`[` + guard + `,{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"nginx:1.28"}]`)},
			{Index: 1, Action: events.ActionSetMemoryLimit, Title: "Set the memory limit to 256Mi", Target: target, Risk: events.RiskLow, Mutating: true,
				PatchType: events.PatchJSON, Patch: json.RawMessage(`[` + guard + `,{"op":"test","path":"/spec/template/spec/containers/0/name","value":"app"},` +
					`{"op":"replace","path":"/spec/template/spec/containers/0/resources/limits/memory","value":"256Mi"}]`)},
		},
	}
	ce.planner.SignPlan(&p)
	if err := p.Validate(); err != nil {
		t.Fatalf("chaos plan invalid: %v", err)
	}
	return p
}

func (ce *chaosEnv) approveAll(t testing.TB, plans []chaosPlan) { ce.approveAllAs(t, plans, "") }

// approveAllAs approves every plan as client: "" is the chaos client with
// the canonical message id; other clients' approvals carry their own.
func (ce *chaosEnv) approveAllAs(t testing.TB, plans []chaosPlan, client string) {
	for _, cp := range plans {
		by := "chaos"
		msgID := events.DecisionMsgID(cp.plan.ID, cp.plan.Digest, events.DecisionApproved)
		if client != "" {
			by, msgID = client, msgID+"-"+client
		}
		d := events.Decision{PlanID: cp.plan.ID, Digest: cp.plan.Digest, Decision: events.DecisionApproved, DecidedBy: by, Via: events.ViaCLI, At: time.Now().UTC()}
		ce.cli.SignDecision(&d)
		env, err := events.New(events.DecisionApproved.EventType(), events.SourceCLI, ce.cluster, cp.plan.ID, d)
		if err != nil {
			t.Error(err)
			return
		}
		subject, err := events.ApprovalSubject(ce.cluster, cp.plan.ID)
		if err != nil {
			t.Error(err)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err = bus.Publish(ctx, ce.js, subject, env, msgID)
		cancel()
		if err != nil {
			t.Errorf("publish approval: %v", err)
			return
		}
	}
}

// execution reads a plan's execution record (nil when there is none).
func (ce *chaosEnv) execution(id string) (*events.Execution, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := ce.js.KeyValue(ctx, events.BucketExecutions)
	if err != nil {
		return nil, err
	}
	key, _ := events.ExecutionKey(id)
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ex events.Execution
	return &ex, json.Unmarshal(e.Value(), &ex)
}

func (ce *chaosEnv) waitAnyExecution(t testing.TB, plans []chaosPlan, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		for _, cp := range plans {
			if ex, err := ce.execution(cp.plan.ID); err == nil && ex != nil {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no execution started within %s", within)
}

// finishedCounts counts the execution_finished audit records per plan.
func (ce *chaosEnv) finishedCounts(t testing.TB) map[string]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	subject, _ := events.AuditSubject(ce.cluster, events.AuditExecutionFinished)
	c, err := ce.js.OrderedConsumer(ctx, events.StreamAudit, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for {
		batch, err := c.FetchNoWait(500)
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
			rec, err := events.DecodeData[events.AuditRecord](env)
			if err != nil {
				t.Fatal(err)
			}
			counts[rec.PlanID]++
		}
		if n == 0 {
			return counts
		}
	}
}

// scenario runs disrupt `runs` times over `batch` fresh plans each, waits
// for every plan to end, and counts.
func (ce *chaosEnv) scenario(name string, runs, batch int, disrupt func(t *testing.T, plans []chaosPlan)) chaosResult {
	r := chaosResult{name: name}
	ce.t.Run(name, func(t *testing.T) {
		for range runs {
			plans := ce.newPlans(t, batch, 15*time.Minute)
			disrupt(t, plans)
			ce.settle(t, plans, &r, events.ExecutionSucceeded, "")
			ce.stopExecutors()
			ce.deleteDeployments(t, plans)
		}
	})
	return r
}

// refusalScenario approves plans that must be refused for reason: after
// their window (expired) or after their Deployment changed (stale).
func (ce *chaosEnv) refusalScenario(name string, runs, batch int, reason events.RefusalReason) chaosResult {
	r := chaosResult{name: name}
	ce.t.Run(name, func(t *testing.T) {
		for range runs {
			window := 15 * time.Minute
			if reason == events.RefusalExpired {
				window = 2 * time.Second
			}
			plans := ce.newPlans(t, batch, window)
			for _, cp := range plans {
				if reason == events.RefusalStale {
					patch := []byte(`{"spec":{"template":{"metadata":{"annotations":{"changed-by":"somebody-else"}}}}}`)
					if _, err := ce.kube.AppsV1().Deployments(ce.ns).Patch(context.Background(), cp.dep.Name, "application/merge-patch+json", patch, metav1.PatchOptions{}); err != nil {
						t.Fatal(err)
					}
				}
			}
			if reason == events.RefusalExpired {
				time.Sleep(time.Until(plans[len(plans)-1].plan.ExpiresAt) + time.Second)
			}
			ce.startExecutor(t, "")
			ce.approveAll(t, plans)
			ce.settle(t, plans, &r, events.ExecutionRefused, reason)
			ce.stopExecutors()
			ce.deleteDeployments(t, plans)
		}
	})
	return r
}

// deleteDeployments removes a run's Deployments (and so their pods), so a
// long run does not fill the sandbox's nodes.
func (ce *chaosEnv) deleteDeployments(t testing.TB, plans []chaosPlan) {
	bg := metav1.DeletePropagationBackground
	for _, cp := range plans {
		if err := ce.kube.AppsV1().Deployments(ce.ns).Delete(context.Background(), cp.dep.Name, metav1.DeleteOptions{PropagationPolicy: &bg}); err != nil {
			t.Errorf("delete deployment %s: %v", cp.dep.Name, err)
		}
	}
}

// stopExecutors stops the executors of the run that ended, so the next
// run starts with none.
func (ce *chaosEnv) stopExecutors() {
	for _, p := range ce.executors {
		p.stop()
	}
	ce.executors = nil
}

// settle waits for every plan to reach a final execution state and
// counts executions, duplicates and losses.
func (ce *chaosEnv) settle(t testing.TB, plans []chaosPlan, r *chaosResult, want events.ExecutionState, reason events.RefusalReason) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	final := map[string]*events.Execution{}
	for time.Now().Before(deadline) && len(final) < len(plans) {
		for _, cp := range plans {
			if final[cp.plan.ID] != nil {
				continue
			}
			ex, err := ce.execution(cp.plan.ID)
			if err == nil && ex != nil && ex.State != events.ExecutionExecuting {
				final[cp.plan.ID] = ex
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	finished := ce.finishedCounts(t)
	for _, cp := range plans {
		r.runs++
		ex := final[cp.plan.ID]
		dep, err := ce.kube.AppsV1().Deployments(ce.ns).Get(context.Background(), cp.dep.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		moved := dep.Generation - cp.dep.Generation
		if ex != nil && ex.State != events.ExecutionRefused {
			r.executions++
		}
		if ex != nil && ex.RefusalReason == events.RefusalStale {
			r.stale++
		}
		if ex != nil && ex.RefusalReason == events.RefusalExpired {
			r.expired++
		}
		applied := moved
		if reason == events.RefusalStale {
			applied-- // the change made by somebody else
		}
		switch {
		case applied > int64(len(cp.plan.Steps)) || finished[cp.plan.ID] > 1:
			r.duplicates++
			t.Errorf("plan %s: generation moved by %d for %d steps, finished %d times", cp.plan.ID, moved, len(cp.plan.Steps), finished[cp.plan.ID])
		case ex == nil || ex.State != want || (reason != "" && ex.RefusalReason != reason):
			r.losses++
			t.Errorf("plan %s: execution %+v, want %s %s", cp.plan.ID, ex, want, reason)
		case want == events.ExecutionSucceeded && applied != int64(len(cp.plan.Steps)):
			r.losses++
			t.Errorf("plan %s succeeded but the generation moved by %d for %d steps", cp.plan.ID, moved, len(cp.plan.Steps))
		case want == events.ExecutionRefused && applied != 0:
			r.duplicates++
			t.Errorf("refused plan %s changed the Deployment (generation moved by %d)", cp.plan.ID, moved)
		}
	}
}
