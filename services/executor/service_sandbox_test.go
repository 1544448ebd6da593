package executor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// createService creates Service name selecting app=selector on port 80
// (targetPort http), as the kaar sandbox admin.
func (c cluster) createService(t *testing.T, name, selector string) *corev1.Service {
	t.Helper()
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: c.ns}, Spec: corev1.ServiceSpec{
		Selector: map[string]string{"app": selector}, Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}}}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := c.admin.CoreV1().Services(c.ns).Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (c cluster) service(t *testing.T, name string) *corev1.Service {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	svc, err := c.admin.CoreV1().Services(c.ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// selectorPlan is a set_service_selector plan of svc from app=<from> to
// app=<to>, shaped as the planner writes it.
func selectorPlan(t *testing.T, svc *corev1.Service, from, to string) events.Plan {
	t.Helper()
	target := events.ObjectRef{Kind: kindService, Namespace: svc.Namespace, Name: svc.Name, UID: string(svc.UID), APIVersion: "v1"}
	patch := fmt.Sprintf(`[{"op":"test","path":"/metadata/resourceVersion","value":%q},{"op":"test","path":"/spec/selector","value":{"app":%q}},{"op":"replace","path":"/spec/selector","value":{"app":%q}}]`,
		svc.ResourceVersion, from, to)
	undo := fmt.Sprintf(`[{"op":"test","path":"/spec/selector","value":{"app":%q}},{"op":"replace","path":"/spec/selector","value":{"app":%q}}]`, to, from)
	p := newPlan(t, target, 0, svc.ResourceVersion, events.Step{Action: events.ActionSetServiceSelector, Title: "Set the selector of " + svc.Name,
		Target: target, Risk: events.RiskMedium, Mutating: true, PatchType: events.PatchJSON, Patch: json.RawMessage(patch), UndoPatch: json.RawMessage(undo),
		Params: map[string]string{events.ParamSelector: "app=" + to, events.ParamFrom: "app=" + from}})
	p.Type = events.IssueServiceUnavailable
	p.Seal()
	signPlan(&p)
	return p
}

// A selector fix that does not heal (it selects no pod) is applied,
// fails verification (no ready endpoint), and with
// remediation.undo_on_failure is undone by its undo patch: the Service
// has its old selector again.
func TestServiceFixThatDoesNotHealIsUndone(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	e := startExecutor(t, startNATS(t), c.executor, Config{VerifyTimeout: 8 * time.Second, UndoOnFailure: true})
	svc := c.createService(t, "web", "wbe")
	p := selectorPlan(t, svc, "wbe", "ghost")
	e.createPlan(p)
	e.decide(p, events.DecisionApproved, "alice", p.Digest)
	trail := e.waitAudit(p.ID, events.AuditExecutionFinished, 1, 2*time.Minute)
	want := []events.AuditKind{events.AuditApproved, events.AuditClaimed, events.AuditStepStarted, events.AuditStepResult,
		events.AuditVerificationFailed, events.AuditUndo, events.AuditExecutionFinished}
	if got := kinds(trail); !slices.Equal(got, want) {
		t.Fatalf("audit trail %v, want %v", got, want)
	}
	ex := e.execution(p.ID)
	if ex.State != events.ExecutionFailed || ex.Steps[0].Status != events.StepSucceeded || len(ex.Undo) != 1 || ex.Undo[0].Status != events.StepSucceeded {
		t.Fatalf("execution %s, steps %+v, undo %+v", ex.State, ex.Steps, ex.Undo)
	}
	if v := ex.Verification; v == nil || v.Healthy {
		t.Fatalf("verification %+v", v)
	}
	if got := c.service(t, "web").Spec.Selector["app"]; got != "wbe" {
		t.Errorf("selector app=%s after the undo, want app=wbe", got)
	}
}

// A Service changed after planning (its resourceVersion moved) is
// refused as stale before any step: the change somebody made stays.
func TestServiceChangedSincePlanningIsRefusedAsStale(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	e := startExecutor(t, startNATS(t), c.executor, Config{})
	svc := c.createService(t, "web", "wbe")
	p := selectorPlan(t, svc, "wbe", "web")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.admin.CoreV1().Services(c.ns).Patch(ctx, "web", types.MergePatchType, []byte(`{"metadata":{"labels":{"team":"shop"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	e.createPlan(p)
	e.decide(p, events.DecisionApproved, "alice", p.Digest)
	e.waitAudit(p.ID, events.AuditRefused, 1, time.Minute)
	ex := e.execution(p.ID)
	if ex.State != events.ExecutionRefused || ex.RefusalReason != events.RefusalStale || len(ex.Steps) != 0 {
		t.Fatalf("execution %s (%s), %d steps, error %q", ex.State, ex.RefusalReason, len(ex.Steps), ex.Error)
	}
	if got := c.service(t, "web").Spec.Selector["app"]; got != "wbe" {
		t.Errorf("selector app=%s, want app=wbe (untouched)", got)
	}
}

// A Service step interrupted after its patch took effect (an executor
// crash between the API call and its record) is found applied when the
// execution resumes, not applied again and not called stale; without a
// resume, the same patch is stale: the resourceVersion it tests moved.
func TestServicePatchAppliedBeforeACrashIsRecognisedOnResume(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	m, err := newMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	s := &Service{cfg: Config{Cluster: testCluster, MaxPods: 2, StepTimeout: 5 * time.Second}.withDefaults(),
		kube: c.executor, log: testLogger(t), now: time.Now, metrics: m}
	svc := c.createService(t, "web", "wbe")
	p := selectorPlan(t, svc, "wbe", "web")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	if st, summary, err := newStepRunner(s, p).apply(ctx, p.Steps[0]); st != events.StepSucceeded || err != nil {
		t.Fatalf("first apply: %s %q %v", st, summary, err)
	}
	resumed := newStepRunner(s, p)
	resumed.resuming = true
	st, summary, err := resumed.apply(ctx, p.Steps[0])
	if st != events.StepSucceeded || err != nil || !strings.Contains(summary, "already patched before the interruption") {
		t.Fatalf("resumed apply: %s %q %v", st, summary, err)
	}
	st, _, err = newStepRunner(s, p).apply(ctx, p.Steps[0])
	if st != events.StepFailed || !errors.Is(err, ErrStale) {
		t.Fatalf("apply again without a resume: %s %v, want stale", st, err)
	}
	if got := c.service(t, "web").Spec.Selector["app"]; got != "web" {
		t.Errorf("selector app=%s, want app=web", got)
	}
}
