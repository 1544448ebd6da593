package watcher

import (
	"context"
	"log/slog"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/config"
	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/kaar-dev/kaar/pkg/sandbox"
	"github.com/kaar-dev/kaar/services/executor"
	"github.com/kaar-dev/kaar/services/planner"
	"github.com/nats-io/nats.go/jetstream"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
)

// A Service with a wrong selector or targetPort, healed end to end on
// the sandbox: the real watcher detects it, a real planner proposes the
// typed fix (dry-run on the API server), a person approves it through a
// channel the executor trusts (the CLI's key), and a real executor, as
// the kaar-executor user with the executor's RBAC only, re-checks the
// step, patches the Service, verifies that its EndpointSlices list a
// ready endpoint, and the watcher resolves the incident. An ambiguous
// Service (two workloads fit) gets a diagnostic plan and is left alone.

// fixPipeline is a planner and an executor on the harness's bus, with the
// keys the executor trusts.
type fixPipeline struct {
	plans  *bus.PlanStore
	person *events.Signer // a person's channel: the CLI
	js     jetstream.JetStream
}

func (h *harness) startFixPipeline(t *testing.T) *fixPipeline {
	t.Helper()
	c := config.Default()
	c.Kubernetes.ClusterName = testCluster
	plannerKey, err := events.GenerateSigner()
	if err != nil {
		t.Fatal(err)
	}
	person, err := events.GenerateSigner()
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, cancel := context.WithCancel(context.Background())
	var stops []chan error
	t.Cleanup(func() {
		cancel()
		for _, done := range stops {
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Error("a service did not stop within 30s")
			}
		}
	})
	p, err := planner.New(planner.ConfigFrom(c), planner.Deps{NATS: h.nc, Kube: h.admin, Logger: log, Signer: plannerKey})
	if err != nil {
		t.Fatal(err)
	}
	pdone := make(chan error, 1)
	stops = append(stops, pdone)
	go func() { pdone <- p.Run(ctx) }()

	trust := events.Trust{Planners: []string{plannerKey.PublicKey()}}
	trust.Add([]string{person.PublicKey()}, events.ViaCLI)
	ecfg := executor.ConfigFrom(c)
	ecfg.VerifyTimeout = 2 * time.Minute
	ex, err := executor.New(ecfg, executor.Deps{NATS: h.nc, Kube: h.executorClient(t), Logger: log, Trust: trust})
	if err != nil {
		t.Fatal(err)
	}
	edone := make(chan error, 1)
	stops = append(stops, edone)
	go func() { edone <- ex.Run(ctx) }()
	for _, ready := range []<-chan struct{}{p.Ready(), ex.Ready()} {
		select {
		case <-ready:
		case <-time.After(30 * time.Second):
			t.Fatal("planner or executor not ready after 30s")
		}
	}
	js, err := jetstream.New(h.nc)
	if err != nil {
		t.Fatal(err)
	}
	store, err := bus.OpenPlanStore(ctx30(t), js)
	if err != nil {
		t.Fatal(err)
	}
	return &fixPipeline{plans: store, person: person, js: js}
}

// executorClient is the sandbox's kaar-executor user with the rules the
// chart gives the executor on a namespace (deploy/helm/kaar rbac.yaml).
func (h *harness) executorClient(t *testing.T) kubernetes.Interface {
	t.Helper()
	rules := []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods", "events"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"apps"}, Resources: []string{"replicasets", "deployments", "statefulsets", "daemonsets"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{""}, Resources: []string{"services"}, Verbs: []string{"get", "watch", "patch"}},
		{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"list", "watch"}},
	}
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "kaar-executor"}, Rules: rules}
	if _, err := h.admin.RbacV1().Roles(h.ns).Create(ctx30(t), role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "kaar-executor"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "kaar-executor"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: "rbac.authorization.k8s.io", Name: "kaar-executor"}}}
	if _, err := h.admin.RbacV1().RoleBindings(h.ns).Create(ctx30(t), rb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rc, err := sandbox.ForTest(t).RESTConfigFor("kaar-executor")
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// approve publishes alice's approval of p through the CLI channel.
func (f *fixPipeline) approve(t *testing.T, p events.Plan) {
	t.Helper()
	d := events.Decision{PlanID: p.ID, Digest: p.Digest, Decision: events.DecisionApproved, DecidedBy: "alice", Via: events.ViaCLI, At: time.Now().UTC()}
	f.person.SignDecision(&d)
	env, err := events.New(events.DecisionApproved.EventType(), events.SourceCLI, testCluster, p.ID, d)
	if err != nil {
		t.Fatal(err)
	}
	subject, err := events.ApprovalSubject(testCluster, env.Subject)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bus.Publish(ctx30(t), f.js, subject, env, events.SignedDecisionMsgID(d)); err != nil {
		t.Fatal(err)
	}
}

// audit returns the kinds of the plan's audit records so far.
func (f *fixPipeline) audit(t *testing.T, planID string) []events.AuditRecord {
	t.Helper()
	filter, _ := events.AuditFilter(testCluster)
	c, err := f.js.OrderedConsumer(ctx30(t), events.StreamAudit, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		t.Fatal(err)
	}
	var out []events.AuditRecord
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
			if rec, err := events.DecodeData[events.AuditRecord](env); err == nil && rec.PlanID == planID {
				out = append(out, rec)
			}
		}
		if n == 0 {
			return out
		}
	}
}

// waitAudit waits for an audit record of kind about the plan, and fails
// at once on one of the kinds in fail.
func (f *fixPipeline) waitAudit(t *testing.T, planID string, kind events.AuditKind, fail ...events.AuditKind) events.AuditRecord {
	t.Helper()
	var found events.AuditRecord
	waitFor(t, 3*time.Minute, string(kind)+" of plan "+planID, func() (bool, string) {
		var seen []string
		for _, r := range f.audit(t, planID) {
			seen = append(seen, string(r.Kind)+": "+r.Message)
			for _, k := range fail {
				if r.Kind == k {
					t.Fatalf("plan %s: %s: %s", planID, r.Kind, r.Message)
				}
			}
			if r.Kind == kind {
				found = r
				return true, ""
			}
		}
		return false, "audit: " + summaryOf(seen)
	})
	return found
}

func summaryOf(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	out := s[0]
	for _, x := range s[1:] {
		out += "; " + x
	}
	return out
}

// healService runs one broken Service through the pipeline: the incident
// of reason, a typed plan of action, approved, executed, verified and
// resolved. It returns the Service as the executor left it.
func (h *harness) healService(t *testing.T, f *fixPipeline, name, reason string, action events.ActionType) *corev1.Service {
	t.Helper()
	id := h.incidentID("Service", name, events.IssueServiceUnavailable)
	in := h.waitIncident(t, 2*time.Minute, id, reason, func(in events.Incident) bool { return in.Reason == reason }).event.Incident
	p := waitPlan(t, f.plans, id, events.IssueServiceUnavailable)
	if p.DiagnosticOnly || len(p.Steps) != 1 || p.Steps[0].Action != action || p.Steps[0].DryRun == nil || !p.Steps[0].DryRun.OK ||
		p.Risk != events.RiskMedium || p.Target.Kind != "Service" || p.Target.Name != name {
		t.Fatalf("plan of %s (%s): want one %s step, dry-run accepted, risk medium; got diagnostic %t, risk %s, steps %+v, notes %v",
			name, in.Reason, action, p.DiagnosticOnly, p.Risk, p.Steps, p.Notes)
	}
	f.approve(t, p)
	f.waitAudit(t, p.ID, events.AuditVerified, events.AuditRefused, events.AuditVerificationFailed)
	h.waitEvent(t, 2*time.Minute, id, events.TransitionResolved)
	svc, err := h.admin.CoreV1().Services(h.ns).Get(ctx30(t), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

func TestServiceWithAWrongSelectorIsHealedByItsTypedPlan(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.startServiceWatcher(t)
	f := h.startFixPipeline(t)
	h.create(t, testDeployment("web", 2, nil, httpContainer))
	h.createService(t, "web", map[string]string{"app": "wbe"}, intstr.FromString("http"))

	svc := h.healService(t, f, "web", "selector_matches_nothing", events.ActionSetServiceSelector)
	if want := map[string]string{"app": "web"}; !maps.Equal(svc.Spec.Selector, want) {
		t.Errorf("selector after the fix = %v, want %v", svc.Spec.Selector, want)
	}
}

func TestServiceWithAWrongTargetPortIsHealedByItsTypedPlan(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.startServiceWatcher(t)
	f := h.startFixPipeline(t)
	h.create(t, testDeployment("api", 2, nil, httpContainer))
	h.createService(t, "api", map[string]string{"app": "api"}, intstr.FromInt32(9090))

	svc := h.healService(t, f, "api", "target_port_mismatch", events.ActionSetServiceTargetPort)
	if got := svc.Spec.Ports[0].TargetPort; got != intstr.FromInt32(8080) {
		t.Errorf("targetPort after the fix = %s, want 8080", got.String())
	}
}

// The control: two Deployments carry the selector's key, so which one
// the Service targets is a person's call. The plan is diagnostic, says
// why, and the Service is not changed.
func TestServiceWithTwoCandidateWorkloadsStaysDiagnostic(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.startServiceWatcher(t)
	f := h.startFixPipeline(t)
	h.create(t, testDeployment("web", 1, nil, httpContainer))
	h.create(t, testDeployment("web-canary", 1, nil, httpContainer))
	h.createService(t, "front", map[string]string{"app": "frnt"}, intstr.FromString("http"))

	id := h.incidentID("Service", "front", events.IssueServiceUnavailable)
	h.waitIncident(t, 2*time.Minute, id, "selector_matches_nothing", func(in events.Incident) bool { return in.Reason == "selector_matches_nothing" })
	p := waitPlan(t, f.plans, id, events.IssueServiceUnavailable)
	if !p.DiagnosticOnly || p.Mutating() {
		t.Fatalf("plan of an ambiguous Service: want diagnostic, got %+v", p.Steps)
	}
	found := false
	for _, n := range p.Notes {
		found = found || (strings.Contains(n, "deployment/web and deployment/web-canary") && strings.Contains(n, "a person's call"))
	}
	if !found {
		t.Errorf("notes do not say which workloads fit: %v", p.Notes)
	}
	svc, err := h.admin.CoreV1().Services(h.ns).Get(ctx30(t), "front", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if svc.Spec.Selector["app"] != "frnt" {
		t.Errorf("the ambiguous Service was changed: selector %v", svc.Spec.Selector)
	}
}
