package executor

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/kaar-dev/kaar/pkg/sandbox"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

func TestMain(m *testing.M) { os.Exit(sandbox.RunTests(m)) }

const testCluster = "test"

// The test installation's keys: the planner's signs every test plan, the
// CLI's every test decision; the executor's signs auto-approvals.
var (
	testPlannerKey  = mustSigner()
	testCLIKey      = mustSigner()
	testExecutorKey = mustSigner()
)

func mustSigner() *events.Signer {
	s, err := events.GenerateSigner()
	if err != nil {
		panic(err)
	}
	return s
}

// testTrust trusts the test planner for plans and the test CLI for
// decisions via cli.
func testTrust() events.Trust {
	t := events.Trust{Planners: []string{testPlannerKey.PublicKey()}}
	t.Add([]string{testCLIKey.PublicKey()}, events.ViaCLI)
	return t
}

// signPlan seals and signs p with the test planner key.
func signPlan(p *events.Plan) { testPlannerKey.SignPlan(p) }

// clock is a settable clock for Deps.Now.
type clock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

// Set makes Now return about t from now on.
func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset = time.Until(t)
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// natsEnv is a real embedded JetStream server with kaar's streams and
// buckets, for one test.
type natsEnv struct {
	nc    *nats.Conn
	js    jetstream.JetStream
	plans *bus.PlanStore
}

func startNATS(t *testing.T) natsEnv {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	e, err := bus.StartEmbedded(ctx, bus.EmbeddedOptions{DontListen: true})
	if err != nil {
		t.Fatalf("StartEmbedded: %v", err)
	}
	t.Cleanup(e.Shutdown)
	nc, err := e.Connect(ctx, bus.ConnectOptions{Name: t.Name(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bus.Provision(ctx, js, bus.Config{Clusters: []string{testCluster}, Storage: jetstream.MemoryStorage}); err != nil {
		t.Fatalf("Provision: %v", err)
	}
	plans, err := bus.OpenPlanStore(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	return natsEnv{nc: nc, js: js, plans: plans}
}

// env is one executor under test: real NATS, a Kubernetes client, a fake
// clock and a metrics registry.
type env struct {
	natsEnv
	t     *testing.T
	ctx   context.Context
	svc   *Service
	clock *clock
	reg   *prometheus.Registry
}

// startExecutor runs an executor until the test ends.
func startExecutor(t *testing.T, n natsEnv, kube kubernetes.Interface, cfg Config) *env {
	t.Helper()
	if cfg.Cluster == "" {
		cfg.Cluster = testCluster
	}
	if cfg.VerifyTimeout == 0 {
		cfg.VerifyTimeout = 2 * time.Minute
	}
	if cfg.VerifyStable == 0 {
		cfg.VerifyStable = 2 * time.Second
	}
	if cfg.VerifyInterval == 0 {
		cfg.VerifyInterval = 500 * time.Millisecond
	}
	if cfg.FetchWait == 0 {
		cfg.FetchWait = time.Second
	}
	e := &env{natsEnv: n, t: t, clock: &clock{}, reg: prometheus.NewRegistry()}
	svc, err := New(cfg, Deps{NATS: n.nc, Kube: kube, Logger: testLogger(t), Registerer: e.reg, Now: e.clock.Now,
		Trust: testTrust(), Signer: testExecutorKey})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	e.svc = svc
	ctx, cancel := context.WithCancel(context.Background())
	e.ctx = ctx
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(time.Minute):
			t.Error("Run did not return within a minute of cancel")
		}
	})
	select {
	case <-svc.Ready():
	case err := <-done:
		t.Fatalf("Run returned before ready: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("executor not ready")
	}
	return e
}

func (e *env) context(d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	e.t.Cleanup(cancel)
	return ctx
}

// decide publishes a decision about p with its own message id.
func (e *env) decide(p events.Plan, kind events.DecisionKind, by, digest string) events.Envelope {
	e.t.Helper()
	d := events.Decision{PlanID: p.ID, Digest: digest, Decision: kind, DecidedBy: by, Via: events.ViaCLI, At: time.Now().UTC()}
	testCLIKey.SignDecision(&d)
	env, err := events.New(kind.EventType(), events.SourceCLI, testCluster, p.ID, d)
	if err != nil {
		e.t.Fatal(err)
	}
	e.publishDecision(env, events.DecisionMsgID(p.ID, digest, kind)+"-"+by)
	return env
}

func (e *env) publishDecision(env events.Envelope, msgID string) {
	e.t.Helper()
	subject, err := events.ApprovalSubject(testCluster, env.Subject)
	if err != nil {
		e.t.Fatal(err)
	}
	if dup, err := bus.Publish(e.context(10*time.Second), e.js, subject, env, msgID); err != nil || dup {
		e.t.Fatalf("publish decision: dup=%t err=%v", dup, err)
	}
}

// auditTrail returns every audit record of plan id published so far, in
// stream order.
func (e *env) auditTrail(planID string) []events.AuditRecord {
	e.t.Helper()
	ctx := e.context(10 * time.Second)
	filter, _ := events.AuditFilter(testCluster)
	c, err := e.js.OrderedConsumer(ctx, events.StreamAudit, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		e.t.Fatal(err)
	}
	var out []events.AuditRecord
	for {
		batch, err := c.FetchNoWait(100)
		if err != nil {
			e.t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			env, err := events.Decode(m.Data())
			if err != nil {
				e.t.Fatalf("audit message does not decode: %v", err)
			}
			rec, err := events.DecodeData[events.AuditRecord](env)
			if err != nil {
				e.t.Fatalf("audit record invalid: %v", err)
			}
			if m.Subject() != "kaar."+testCluster+".audit."+string(rec.Kind) {
				e.t.Errorf("audit %s on subject %s", rec.Kind, m.Subject())
			}
			if rec.PlanID == planID {
				out = append(out, rec)
			}
		}
		if batch.Error() != nil {
			e.t.Fatal(batch.Error())
		}
		if n == 0 {
			return out
		}
	}
}

func kinds(recs []events.AuditRecord) []events.AuditKind {
	out := make([]events.AuditKind, len(recs))
	for i, r := range recs {
		out[i] = r.Kind
	}
	return out
}

// waitAudit waits until the plan's audit trail holds n records of kind.
func (e *env) waitAudit(planID string, kind events.AuditKind, n int, within time.Duration) []events.AuditRecord {
	e.t.Helper()
	deadline := time.Now().Add(within)
	for {
		trail := e.auditTrail(planID)
		count := 0
		for _, r := range trail {
			if r.Kind == kind {
				count++
			}
		}
		if count >= n {
			return trail
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("no %d %s audit records for plan %s within %s; trail: %v", n, kind, planID, within, kinds(trail))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// execution reads the plan's execution record.
func (e *env) execution(planID string) *events.Execution {
	e.t.Helper()
	ex, err := e.svc.getExecution(e.context(5*time.Second), planID)
	if err != nil {
		e.t.Fatal(err)
	}
	return ex
}

func (e *env) plan(id string) events.Plan {
	e.t.Helper()
	p, _, err := e.plans.Get(e.context(5*time.Second), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

// waitDrained waits until every decision was acked: the work queue is
// empty and nothing is pending.
func (e *env) waitDrained(within time.Duration) {
	e.t.Helper()
	ctx := e.context(within + 5*time.Second)
	name, _ := events.ExecutorConsumer(testCluster)
	deadline := time.Now().Add(within)
	for {
		c, err := e.js.Consumer(ctx, events.StreamApprovals, name)
		if err != nil {
			e.t.Fatal(err)
		}
		info, err := c.Info(ctx)
		if err != nil {
			e.t.Fatal(err)
		}
		st, err := e.js.Stream(ctx, events.StreamApprovals)
		if err != nil {
			e.t.Fatal(err)
		}
		if info.NumPending == 0 && info.NumAckPending == 0 && st.CachedInfo().State.Msgs == 0 {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("decisions not drained: pending %d, ack pending %d, stream msgs %d",
				info.NumPending, info.NumAckPending, st.CachedInfo().State.Msgs)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// newPlan returns a sealed, proposed plan with one JSON patch step on
// target (any valid shape: refusal tests never get to apply it).
func newPlan(t *testing.T, target events.ObjectRef, generation int64, rv string, steps ...events.Step) events.Plan {
	t.Helper()
	now := time.Now().UTC().Truncate(time.Second)
	if len(steps) == 0 {
		steps = []events.Step{{Action: events.ActionSetImage, Title: "Set image of " + target.Name + " to nginx:1.27",
			Target: target, Risk: events.RiskLow, Mutating: true, PatchType: events.PatchJSON,
			Patch: generationPatch(generation, `{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"nginx:1.27"}`)}}
	}
	for i := range steps {
		steps[i].Index = i
	}
	p := events.Plan{
		ID:                    uuid.Must(uuid.NewV7()).String(),
		Cluster:               testCluster,
		Namespace:             target.Namespace,
		Target:                target,
		TargetResourceVersion: rv,
		TargetGeneration:      generation,
		Type:                  events.IssueImagePullBackOff,
		Summary:               "repair " + target.String(),
		Steps:                 steps,
		Risk:                  events.RiskMedium,
		State:                 events.PlanProposed,
		CreatedAt:             now,
		ExpiresAt:             now.Add(15 * time.Minute),
	}
	p.DiagnosticOnly = !p.Mutating()
	signPlan(&p)
	if err := p.Validate(); err != nil {
		t.Fatalf("test plan invalid: %v", err)
	}
	return p
}

// generationPatch is a JSON patch whose first operation tests the
// generation, as the planner writes them.
func generationPatch(generation int64, ops ...string) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`[{"op":"test","path":"/metadata/generation","value":%d},%s]`, generation, strings.Join(ops, ",")))
}

func (e *env) createPlan(p events.Plan) {
	e.t.Helper()
	if _, err := e.plans.Create(e.context(5*time.Second), p, time.Until(p.ExpiresAt)); err != nil {
		e.t.Fatalf("create plan: %v", err)
	}
}

// --- the sandbox ---

// cluster is the sandbox, a namespace of its own for the test, and a
// client of the kaar-executor user, which may do in that namespace only
// what the executor's Role grants.
type cluster struct {
	admin    kubernetes.Interface
	executor kubernetes.Interface
	ns       string
}

// executorRules are the permissions the executor needs: read the
// workloads and what their health depends on, patch the workloads,
// delete pods. Nothing else.
var executorRules = []rbacv1.PolicyRule{
	{APIGroups: []string{"apps"}, Resources: []string{"deployments", "statefulsets", "daemonsets"}, Verbs: []string{"get", "list", "watch", "patch"}},
	{APIGroups: []string{"apps"}, Resources: []string{"replicasets", "controllerrevisions"}, Verbs: []string{"get", "list", "watch"}},
	{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch", "delete"}},
	// A Service's selector or targetPort, and its EndpointSlices for the
	// verification.
	{APIGroups: []string{""}, Resources: []string{"services"}, Verbs: []string{"get", "watch", "patch"}},
	{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"list", "watch"}},
}

func newCluster(t *testing.T) cluster {
	t.Helper()
	sb := sandbox.ForTest(t)
	admin := sb.Clientset()
	ns := sandbox.NewNamespace(t, admin)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "kaar-executor", Namespace: ns}, Rules: executorRules}
	if _, err := admin.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "kaar-executor", Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "kaar-executor"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: "rbac.authorization.k8s.io", Name: "kaar-executor"}},
	}
	if _, err := admin.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rc, err := sb.RESTConfigFor("kaar-executor")
	if err != nil {
		t.Fatal(err)
	}
	exec, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	// RBAC is served from an informer cache: wait until the binding works.
	waitFor(t, 30*time.Second, "executor RBAC in "+ns, func() (bool, string) {
		_, err := exec.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
		return err == nil, fmt.Sprint(err)
	})
	return cluster{admin: admin, executor: exec, ns: ns}
}

// waitFor polls cond until it holds or within passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, detail := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %s", what, within, detail)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func (c cluster) deployment(t *testing.T, name string) *appsv1.Deployment {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := c.admin.AppsV1().Deployments(c.ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// createDeployment creates a two-replica nginx:1.27 Deployment and waits
// until it is available.
func (c cluster) createDeployment(t *testing.T, name string) *appsv1.Deployment {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	labels := map[string]string{"app": name}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: c.ns, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr(int32(2)),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx:1.27",
					Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
						corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi")}}}}},
			},
		},
	}
	if _, err := c.admin.AppsV1().Deployments(c.ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Minute, "deployment "+name+" available", func() (bool, string) {
		d := c.deployment(t, name)
		return sandbox.DeploymentAvailable(d), fmt.Sprintf("%+v", d.Status)
	})
	return c.deployment(t, name)
}

// rollToBadImage rolls the Deployment to nginx:1.27-nonexistent and
// waits until the new ReplicaSet's pod shows ImagePullBackOff (the old
// pods keep running: the rollout is stuck, as on a real cluster).
func (c cluster) rollToBadImage(t *testing.T, name string) *appsv1.Deployment {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	patch := `{"spec":{"template":{"spec":{"containers":[{"name":"app","image":"nginx:1.27-` + sandbox.NonexistentTag + `"}]}}}}`
	if _, err := c.admin.AppsV1().Deployments(c.ns).Patch(ctx, name, "application/strategic-merge-patch+json", []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Minute, "a pod of "+name+" in ImagePullBackOff", func() (bool, string) {
		pods := c.pods(t, name)
		for _, p := range pods {
			if sandbox.PodStatus(&p) == "ImagePullBackOff" {
				return true, ""
			}
		}
		return false, podStatuses(pods)
	})
	return c.deployment(t, name)
}

func (c cluster) pods(t *testing.T, app string) []corev1.Pod {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := c.admin.CoreV1().Pods(c.ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		t.Fatal(err)
	}
	return l.Items
}

func podStatuses(pods []corev1.Pod) string {
	var parts []string
	for _, p := range pods {
		parts = append(parts, p.Name+"="+sandbox.PodStatus(&p)+"("+p.Spec.Containers[0].Image+")")
	}
	return strings.Join(parts, " ")
}

// rollbackPlan builds the plan the planner makes for a Deployment stuck
// on a bad revision: a diagnostic step, then a JSON patch that tests the
// generation and puts back the revision-1 ReplicaSet's pod template,
// then any extra steps.
func (c cluster) rollbackPlan(t *testing.T, dep *appsv1.Deployment, extra ...events.Step) events.Plan {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rss, err := c.admin.AppsV1().ReplicaSets(c.ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + dep.Name})
	if err != nil {
		t.Fatal(err)
	}
	var tmpl *corev1.PodTemplateSpec
	for _, rs := range rss.Items {
		if metav1.IsControlledBy(&rs, dep) && rs.Annotations[annotationDeploymentRevision] == "1" {
			tmpl = rs.Spec.Template.DeepCopy()
		}
	}
	if tmpl == nil {
		t.Fatalf("no revision-1 ReplicaSet of %s", dep.Name)
	}
	delete(tmpl.Labels, appsv1.DefaultDeploymentUniqueLabelKey)
	tb, err := json.Marshal(tmpl)
	if err != nil {
		t.Fatal(err)
	}
	target := events.ObjectRef{Kind: "Deployment", Namespace: c.ns, Name: dep.Name, UID: string(dep.UID), APIVersion: "apps/v1"}
	steps := []events.Step{
		{Action: events.ActionCheckLogs, Title: "Read the failing pod's events", Target: target, Risk: events.RiskNone,
			Kubectl: "kubectl -n " + c.ns + " describe pods -l app=" + dep.Name},
		{Action: events.ActionRollback, Title: "Roll back deployment/" + dep.Name + " to revision 1", Target: target,
			Params: map[string]string{events.ParamRevision: "1"}, Risk: events.RiskMedium, Mutating: true,
			PatchType: events.PatchJSON, Patch: generationPatch(dep.Generation, `{"op":"replace","path":"/spec/template","value":`+string(tb)+`}`),
			Kubectl: "kubectl -n " + c.ns + " rollout undo deployment/" + dep.Name + " --to-revision=1"},
	}
	return newPlan(t, target, dep.Generation, dep.ResourceVersion, append(steps, extra...)...)
}
