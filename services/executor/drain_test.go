package executor

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// healthyFake is a fake cluster holding a rolled-out Deployment "web"
// (the fake runs no controllers: the status is written as a controller
// would). Only the shutdown behaviour is under test here.
func healthyFake() *fake.Clientset {
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", UID: "dep", Generation: 2,
			Annotations: map[string]string{annotationDeploymentRevision: "2"}},
		Spec:   appsv1.DeploymentSpec{Replicas: ptr(int32(1)), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}},
		Status: appsv1.DeploymentStatus{ObservedGeneration: 2, Replicas: 1, UpdatedReplicas: 1, ReadyReplicas: 1, AvailableReplicas: 1},
	}
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: "web-2", Namespace: "shop", UID: "rs",
		Labels: map[string]string{"app": "web"}, OwnerReferences: controller("Deployment", "web", "dep"),
		Annotations: map[string]string{annotationDeploymentRevision: "2"}}}
	return fake.NewClientset(dep, rs)
}

// Run's context ends while a plan is being verified: Run drains it (the
// plan finishes and is recorded) before returning, or, past DrainTimeout,
// cancels it and records the interrupted verification.
func TestShutdownDrainsInFlightExecutions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		drain     time.Duration
		wantState events.ExecutionState
		wantMsg   string
	}{
		{"drained", 30 * time.Second, events.ExecutionSucceeded, "healthy"},
		{"drain timeout", 500 * time.Millisecond, events.ExecutionFailed, "verification interrupted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := startNATS(t)
			kube := healthyFake()
			svc, err := New(Config{Cluster: testCluster, VerifyStable: 3 * time.Second, VerifyInterval: 200 * time.Millisecond,
				DrainTimeout: tt.drain, FetchWait: time.Second},
				Deps{NATS: n.nc, Kube: kube, Logger: testLogger(t), Registerer: prometheus.NewRegistry(), Trust: testTrust()})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- svc.Run(ctx) }()
			<-svc.Ready()
			e := &env{natsEnv: n, t: t, svc: svc}

			target := events.ObjectRef{Kind: "Deployment", Namespace: "shop", Name: "web", UID: "dep"}
			p := newPlan(t, target, 2, "1", events.Step{Action: events.ActionRolloutRestart, Title: "restart", Target: target,
				Risk: events.RiskLow, Mutating: true, PatchType: events.PatchJSON,
				Patch: generationPatch(2, `{"op":"add","path":"/spec/template/metadata/annotations","value":{"kubectl.kubernetes.io/restartedAt":"now"}}`)})
			e.createPlan(p)
			e.decide(p, events.DecisionApproved, "alice", p.Digest)
			e.waitAudit(p.ID, events.AuditStepResult, 1, 10*time.Second)

			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("Run: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("Run did not return")
			}
			// Run returned: the execution is over and recorded.
			ex := e.execution(p.ID)
			if ex.State != tt.wantState || ex.Verification == nil || !strings.Contains(ex.Verification.Message, tt.wantMsg) {
				t.Fatalf("execution %s, verification %+v; want %s with %q", ex.State, ex.Verification, tt.wantState, tt.wantMsg)
			}
			trail := e.auditTrail(p.ID)
			if last := trail[len(trail)-1]; last.Kind != events.AuditExecutionFinished {
				t.Fatalf("last audit record %s", last.Kind)
			}
		})
	}
}

// A refused decision that is delivered again is refused again, but the
// refusal is one audit record (its id derives from the decision) and
// counted once.
func TestRedeliveredRefusalIsRecordedOnce(t *testing.T) {
	t.Parallel()
	e := startExecutor(t, startNATS(t), healthyFake(), Config{VerifyStable: 300 * time.Millisecond, VerifyInterval: 100 * time.Millisecond})
	target := events.ObjectRef{Kind: "Deployment", Namespace: "shop", Name: "web", UID: "dep"}
	p := newPlan(t, target, 2, "1", events.Step{Action: events.ActionRolloutRestart, Title: "restart", Target: target,
		Risk: events.RiskLow, Mutating: true, PatchType: events.PatchJSON,
		Patch: generationPatch(2, `{"op":"add","path":"/spec/template/metadata/annotations","value":{"kubectl.kubernetes.io/restartedAt":"now"}}`)})
	e.createPlan(p)
	e.decide(p, events.DecisionApproved, "bob", p.Digest)
	e.waitAudit(p.ID, events.AuditExecutionFinished, 1, 20*time.Second)

	alice := e.decide(p, events.DecisionApproved, "alice", p.Digest)
	e.waitAudit(p.ID, events.AuditRefused, 1, 10*time.Second)
	e.publishDecision(alice, "alice-again")
	e.waitDrained(10 * time.Second)

	refused := 0
	for _, r := range e.auditTrail(p.ID) {
		if r.Kind == events.AuditRefused {
			refused++
		}
	}
	if refused != 1 {
		t.Fatalf("%d refused records, want 1", refused)
	}
	if n := testutil.ToFloat64(e.svc.metrics.refusals.WithLabelValues(string(events.RefusalAlreadyExecuted))); n != 1 {
		t.Errorf("refusals_total{reason=already_executed} = %v, want 1", n)
	}
	if ex := e.execution(p.ID); ex.State != events.ExecutionSucceeded {
		t.Errorf("execution %s: overwritten by a refusal", ex.State)
	}
}
