package executor

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/kaar-dev/kaar/pkg/sandbox"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// The user story: a Deployment was rolled from nginx:1.27 to an image that
// does not exist; the planner proposed a rollback; a person approves it;
// the executor rolls back (and restarts), verifies the workload is
// healthy, and records every step.
func TestApprovedRollbackHealsTheDeployment(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	e := startExecutor(t, startNATS(t), c.executor, Config{})
	c.createDeployment(t, "web")
	dep := c.rollToBadImage(t, "web")
	if dep.Generation != 2 {
		t.Fatalf("generation %d after the bad rollout, want 2", dep.Generation)
	}
	target := events.ObjectRef{Kind: "Deployment", Namespace: c.ns, Name: "web", UID: string(dep.UID), APIVersion: "apps/v1"}
	// A second patch planned against the same generation: it only applies
	// if the executor moves its generation test forward after the rollback.
	restart := events.Step{Action: events.ActionRolloutRestart, Title: "Restart deployment/web", Target: target,
		Risk: events.RiskLow, Mutating: true, PatchType: events.PatchJSON,
		Patch: generationPatch(dep.Generation, `{"op":"add","path":"/spec/template/metadata/annotations","value":{"kubectl.kubernetes.io/restartedAt":"2026-11-27T00:00:00Z"}}`)}
	p := c.rollbackPlan(t, dep, restart)
	e.createPlan(p)

	e.decide(p, events.DecisionApproved, "alice@example.com", p.Digest)
	trail := e.waitAudit(p.ID, events.AuditExecutionFinished, 1, 3*time.Minute)

	want := []events.AuditKind{events.AuditApproved, events.AuditClaimed,
		events.AuditStepStarted, events.AuditStepResult, events.AuditStepStarted, events.AuditStepResult,
		events.AuditStepStarted, events.AuditStepResult, events.AuditVerified, events.AuditExecutionFinished}
	if got := kinds(trail); !slices.Equal(got, want) {
		t.Fatalf("audit trail %v, want %v", got, want)
	}
	if trail[0].Actor != "alice@example.com" || trail[0].Via != events.ViaCLI {
		t.Errorf("approved record by %q via %q", trail[0].Actor, trail[0].Via)
	}
	for _, r := range trail {
		if r.Digest != p.Digest {
			t.Errorf("%s record digest %q, want %q", r.Kind, r.Digest, p.Digest)
		}
	}

	ex := e.execution(p.ID)
	if ex.State != events.ExecutionSucceeded || ex.Error != "" {
		t.Fatalf("execution %s: %s", ex.State, ex.Error)
	}
	if len(ex.Steps) != 3 {
		t.Fatalf("execution has %d step results, want 3: %+v", len(ex.Steps), ex.Steps)
	}
	wantStatus := []events.StepStatus{events.StepSkipped, events.StepSucceeded, events.StepSucceeded}
	for i, s := range ex.Steps {
		if s.Index != i || s.Status != wantStatus[i] || s.FinishedAt.IsZero() {
			t.Errorf("step %d: index %d status %s finished %v, want status %s", i, s.Index, s.Status, s.FinishedAt, wantStatus[i])
		}
	}
	if !strings.Contains(ex.Steps[1].APIResponse, "generation 3") || !strings.Contains(ex.Steps[2].APIResponse, "generation 4") {
		t.Errorf("API responses %q, %q: want generations 3 then 4", ex.Steps[1].APIResponse, ex.Steps[2].APIResponse)
	}
	v := ex.Verification
	if v == nil || !v.Healthy || v.DesiredReplicas != 2 || v.ReadyReplicas != 2 || v.UpdatedReplicas != 2 || len(v.FailingPods) != 0 {
		t.Fatalf("verification %+v", v)
	}
	if got := e.plan(p.ID); got.State != events.PlanSucceeded || len(got.History) != 1 || !strings.HasPrefix(got.History[0], claimNotePrefix) {
		t.Errorf("plan state %s history %q", got.State, got.History)
	}

	// The cluster agrees: back on nginx:1.27, every pod Running.
	healed := c.deployment(t, "web")
	if img := healed.Spec.Template.Spec.Containers[0].Image; img != "nginx:1.27" {
		t.Errorf("image %s after the rollback", img)
	}
	if healed.Spec.Template.Annotations["kubectl.kubernetes.io/restartedAt"] == "" {
		t.Error("the restart step did not apply")
	}
	waitFor(t, time.Minute, "only Running nginx:1.27 pods", func() (bool, string) {
		pods := c.pods(t, "web")
		ok := len(pods) == 2
		for _, p := range pods {
			ok = ok && p.Status.Phase == corev1.PodRunning && p.Spec.Containers[0].Image == "nginx:1.27" && p.DeletionTimestamp == nil
		}
		return ok, podStatuses(pods)
	})
	e.waitDrained(10 * time.Second)

	if n := testutil.ToFloat64(e.svc.metrics.executions.WithLabelValues(outcomeSucceeded)); n != 1 {
		t.Errorf("executions_total{outcome=succeeded} = %v", n)
	}
	// (check_logs, skipped), (rollback, succeeded), (rollout_restart, succeeded)
	if n := testutil.CollectAndCount(e.svc.metrics.stepDuration); n != 3 {
		t.Errorf("step duration series: %d, want 3", n)
	}

	// The status endpoint tells the same story.
	st := requestStatus(t, e, p.ID)
	if st.PlanState != events.PlanSucceeded || st.Execution == nil || st.Execution.State != events.ExecutionSucceeded || len(st.Execution.Steps) != 3 {
		t.Errorf("status %+v", st)
	}
}

var metav1PatchOptions = metav1.PatchOptions{}

func requestStatus(t *testing.T, e *env, planID string) events.ExecutionStatusResponse {
	t.Helper()
	subject, _ := events.ServiceSubject(testCluster, events.ServiceExecutor, events.VerbStatus)
	body, _ := json.Marshal(events.ExecutionStatusRequest{PlanID: planID})
	msg, err := e.nc.RequestWithContext(e.context(5*time.Second), subject, body)
	if err != nil {
		t.Fatalf("status request: %v", err)
	}
	resp, err := events.DecodeReply[events.ExecutionStatusResponse](msg.Data, msg.Header.Get(events.HeaderError))
	if err != nil {
		t.Fatalf("status reply: %v", err)
	}
	return resp
}

// Two people approve the same plan, and the first approval is delivered
// twice: the plan runs once; the redelivery is a no-op and the second
// approval is refused as already executed.
func TestApprovingTwiceExecutesOnce(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	e := startExecutor(t, startNATS(t), c.executor, Config{})
	c.createDeployment(t, "web")
	p := c.rollbackPlan(t, c.rollToBadImage(t, "web"))
	e.createPlan(p)

	alice := e.decide(p, events.DecisionApproved, "alice", p.Digest)
	e.publishDecision(alice, "redelivery-of-alice") // same envelope: a redelivery
	e.decide(p, events.DecisionApproved, "bob", p.Digest)

	e.waitAudit(p.ID, events.AuditExecutionFinished, 1, 3*time.Minute)
	e.waitAudit(p.ID, events.AuditRefused, 1, 30*time.Second)
	e.waitDrained(30 * time.Second)
	trail := e.auditTrail(p.ID)

	count := map[events.AuditKind]int{}
	for _, r := range trail {
		count[r.Kind]++
	}
	if count[events.AuditClaimed] != 1 || count[events.AuditApproved] != 1 || count[events.AuditExecutionFinished] != 1 || count[events.AuditRefused] != 1 {
		t.Fatalf("audit counts %v; trail %v", count, kinds(trail))
	}
	// Either approval may win the claim; the other one is refused. When
	// bob wins, alice's decision and its redelivery are both refused, but
	// the redelivered refusal has the same record id: one record.
	var winner string
	for _, r := range trail {
		if r.Kind == events.AuditApproved {
			winner = r.Actor
		}
	}
	if winner != "alice" && winner != "bob" {
		t.Fatalf("approved by %q", winner)
	}
	for _, r := range trail {
		switch r.Kind {
		case events.AuditRefused:
			if strings.Contains(r.Message, "by "+winner+":") {
				t.Errorf("the winner's approval was refused: %s", r.Message)
			}
			var ex events.Execution
			if err := json.Unmarshal(r.Data, &ex); err != nil || ex.RefusalReason != events.RefusalAlreadyExecuted {
				t.Errorf("refused record: %v %+v (%s)", err, ex, r.Message)
			}
		}
	}
	ex := e.execution(p.ID)
	if ex.State != events.ExecutionSucceeded || len(ex.Steps) != 2 {
		t.Fatalf("execution %s with %d steps (%s): the refusal must not overwrite it", ex.State, len(ex.Steps), ex.Error)
	}
	if got := e.plan(p.ID).State; got != events.PlanSucceeded {
		t.Errorf("plan state %s", got)
	}
	// Applied once: revision 1's template came back as revision 3, no
	// further rollout.
	if g := c.deployment(t, "web").Generation; g != 3 {
		t.Errorf("generation %d, want 3 (one rollback)", g)
	}
	if n := testutil.ToFloat64(e.svc.metrics.refusals.WithLabelValues(string(events.RefusalAlreadyExecuted))); n != 1 {
		t.Errorf("refusals_total{reason=already_executed} = %v", n)
	}
}

// refusedBeforeClaim checks a refusal that happens before the claim: a
// refused audit record with reason, an execution record in state refused,
// the plan left as it was and the cluster untouched.
func refusedBeforeClaim(t *testing.T, e *env, c cluster, p events.Plan, reason events.RefusalReason, wantState events.PlanState) {
	t.Helper()
	e.waitAudit(p.ID, events.AuditRefused, 1, 30*time.Second)
	e.waitDrained(10 * time.Second)
	trail := e.auditTrail(p.ID)
	if got := kinds(trail); !slices.Equal(got, []events.AuditKind{events.AuditRefused}) {
		t.Fatalf("audit trail %v, want only refused", got)
	}
	if !strings.Contains(trail[0].Message, string(reason)) {
		t.Errorf("refused message %q does not name %s", trail[0].Message, reason)
	}
	ex := e.execution(p.ID)
	if ex == nil || ex.State != events.ExecutionRefused || ex.RefusalReason != reason || len(ex.Steps) != 0 {
		t.Fatalf("execution record %+v, want refused (%s) without steps", ex, reason)
	}
	if got := e.plan(p.ID).State; got != wantState {
		t.Errorf("plan state %s, want %s", got, wantState)
	}
	dep := c.deployment(t, p.Target.Name)
	if dep.Generation != p.TargetGeneration {
		t.Errorf("deployment changed: generation %d (planned %d)", dep.Generation, p.TargetGeneration)
	}
	if img := dep.Spec.Template.Spec.Containers[0].Image; !strings.Contains(img, "nonexistent") {
		t.Errorf("image %s: the plan was applied", img)
	}
	if n := testutil.ToFloat64(e.svc.metrics.refusals.WithLabelValues(string(reason))); n != 1 {
		t.Errorf("refusals_total{reason=%s} = %v", reason, n)
	}
}

func TestApprovalWithWrongDigestIsRefused(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	e := startExecutor(t, startNATS(t), c.executor, Config{})
	c.createDeployment(t, "web")
	p := c.rollbackPlan(t, c.rollToBadImage(t, "web"))
	e.createPlan(p)

	other := "sha256:" + strings.Repeat("ab", 32)
	e.decide(p, events.DecisionApproved, "mallory", other)
	refusedBeforeClaim(t, e, c, p, events.RefusalDigestMismatch, events.PlanProposed)
}

func TestApprovalAfterExpiryIsRefused(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	e := startExecutor(t, startNATS(t), c.executor, Config{})
	c.createDeployment(t, "web")
	p := c.rollbackPlan(t, c.rollToBadImage(t, "web"))
	e.createPlan(p)

	// The approval was given in time, but the executor processes it after
	// expires_at by its own clock (a backlog, a restart): no step may run.
	e.clock.Set(p.ExpiresAt.Add(time.Second))
	e.decide(p, events.DecisionApproved, "alice", p.Digest)
	refusedBeforeClaim(t, e, c, p, events.RefusalExpired, events.PlanProposed)
}

// The Deployment was changed (scaled) after planning: the claimed plan is
// refused as stale, never applied, and the planner is asked for a new one.
func TestStalePlanIsRefusedAndReplanned(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	n := startNATS(t)
	e := startExecutor(t, n, c.executor, Config{})
	c.createDeployment(t, "web")
	dep := c.rollToBadImage(t, "web")
	p := c.rollbackPlan(t, dep)
	e.createPlan(p)
	fresh := c.rollbackPlan(t, dep)

	// A planner that answers the re-plan request.
	var mu sync.Mutex
	var requests []events.PlanRequest
	subject, _ := events.ServiceSubject(testCluster, events.ServicePlanner, events.VerbPlan)
	sub, err := n.nc.Subscribe(subject, func(m *nats.Msg) {
		var req events.PlanRequest
		_ = json.Unmarshal(m.Data, &req)
		mu.Lock()
		requests = append(requests, req)
		mu.Unlock()
		body, _ := events.EncodeReply(events.PlanResponse{Plan: fresh}, nil)
		_ = m.Respond(body)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })

	// Someone scales the Deployment after planning: generation 3.
	ctx := e.context(10 * time.Second)
	if _, err := c.admin.AppsV1().Deployments(c.ns).Patch(ctx, "web", "application/merge-patch+json", []byte(`{"spec":{"replicas":3}}`), metav1PatchOptions); err != nil {
		t.Fatal(err)
	}

	e.decide(p, events.DecisionApproved, "alice", p.Digest)
	trail := e.waitAudit(p.ID, events.AuditExecutionFinished, 1, time.Minute)
	want := []events.AuditKind{events.AuditApproved, events.AuditClaimed, events.AuditRefused, events.AuditExecutionFinished}
	if got := kinds(trail); !slices.Equal(got, want) {
		t.Fatalf("audit trail %v, want %v", got, want)
	}
	if !strings.Contains(trail[2].Message, "stale") || !strings.Contains(trail[2].Message, "new plan proposed") {
		t.Errorf("refused message %q", trail[2].Message)
	}
	ex := e.execution(p.ID)
	if ex.State != events.ExecutionRefused || ex.RefusalReason != events.RefusalStale || len(ex.Steps) != 0 {
		t.Fatalf("execution %+v", ex)
	}
	if got := e.plan(p.ID).State; got != events.PlanFailed {
		t.Errorf("plan state %s, want failed", got)
	}
	mu.Lock()
	if len(requests) != 1 || requests[0] != (events.PlanRequest{Namespace: c.ns, Kind: "Deployment", Name: "web", IssueType: events.IssueImagePullBackOff}) {
		t.Errorf("planner requests %+v", requests)
	}
	mu.Unlock()
	now := c.deployment(t, "web")
	if now.Generation != 3 || !strings.Contains(now.Spec.Template.Spec.Containers[0].Image, "nonexistent") {
		t.Errorf("deployment generation %d image %s: the stale plan was applied", now.Generation, now.Spec.Template.Spec.Containers[0].Image)
	}
	e.waitDrained(10 * time.Second)
}

// The target changes between the stale check and the patch: the
// generation test makes the API server refuse the patch, and nothing is
// applied. Driven directly through the step runner to hit the window.
func TestGenerationTestStopsAPatchOfAChangedObject(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	e := startExecutor(t, startNATS(t), c.executor, Config{})
	dep := c.createDeployment(t, "web")
	target := events.ObjectRef{Kind: "Deployment", Namespace: c.ns, Name: "web", UID: string(dep.UID)}
	p := newPlan(t, target, dep.Generation, dep.ResourceVersion, events.Step{Action: events.ActionSetImage, Title: "set image",
		Target: target, Risk: events.RiskLow, Mutating: true, PatchType: events.PatchJSON,
		Patch: generationPatch(dep.Generation, `{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"nginx:1.28"}`)})

	ctx := e.context(30 * time.Second)
	if _, err := c.admin.AppsV1().Deployments(c.ns).Patch(ctx, "web", "application/merge-patch+json", []byte(`{"spec":{"replicas":3}}`), metav1PatchOptions); err != nil {
		t.Fatal(err)
	}
	r := newStepRunner(e.svc, p)
	status, summary, err := r.apply(ctx, p.Steps[0])
	if status != events.StepFailed || err == nil || !r.stale || r.applied {
		t.Fatalf("status %s stale %t applied %t err %v", status, r.stale, r.applied, err)
	}
	t.Logf("API server answer: %s", summary)
	if img := c.deployment(t, "web").Spec.Template.Spec.Containers[0].Image; img != "nginx:1.27" {
		t.Errorf("image %s: the patch applied", img)
	}
	// A patch that fails for another reason is not taken for stale.
	bad := p.Steps[0]
	bad.Patch = generationPatch(c.deployment(t, "web").Generation, `{"op":"replace","path":"/spec/no/such/path","value":1}`)
	r = newStepRunner(e.svc, p)
	if status, summary, err := r.apply(ctx, bad); status != events.StepFailed || err == nil || r.stale {
		t.Fatalf("bad path: status %s stale %t err %v (%s)", status, r.stale, err, summary)
	}
}

func TestRejectionMarksThePlanRejected(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	e := startExecutor(t, startNATS(t), c.executor, Config{})
	c.createDeployment(t, "web")
	dep := c.rollToBadImage(t, "web")
	p := c.rollbackPlan(t, dep)
	e.createPlan(p)

	e.decide(p, events.DecisionRejected, "alice", p.Digest)
	trail := e.waitAudit(p.ID, events.AuditRejected, 1, 30*time.Second)
	e.waitDrained(10 * time.Second)
	if got := kinds(e.auditTrail(p.ID)); !slices.Equal(got, []events.AuditKind{events.AuditRejected}) {
		t.Fatalf("audit trail %v", got)
	}
	if trail[0].Actor != "alice" {
		t.Errorf("rejected by %q", trail[0].Actor)
	}
	if got := e.plan(p.ID).State; got != events.PlanRejected {
		t.Fatalf("plan state %s", got)
	}
	if ex := e.execution(p.ID); ex != nil {
		t.Errorf("execution record for a rejected plan: %+v", ex)
	}

	// A later approval of the rejected plan runs nothing either.
	e.decide(p, events.DecisionApproved, "bob", p.Digest)
	e.waitAudit(p.ID, events.AuditRefused, 1, 30*time.Second)
	e.waitDrained(10 * time.Second)
	if ex := e.execution(p.ID); ex == nil || ex.RefusalReason != events.RefusalNotApproved {
		t.Errorf("approval after rejection: %+v", ex)
	}
	if now := c.deployment(t, "web"); now.Generation != dep.Generation {
		t.Errorf("generation %d, want %d: something ran", now.Generation, dep.Generation)
	}
	if n := testutil.ToFloat64(e.svc.metrics.executions.WithLabelValues(outcomeRejected)); n != 1 {
		t.Errorf("executions_total{outcome=rejected} = %v", n)
	}
}

// Node memory pressure evicted a Deployment's pods; the ReplicaSet
// replaced them but the evicted pods linger. The approved cleanup deletes
// exactly those pods (UID preconditions) and verifies they are gone.
func TestEvictedPodsAreDeletedAndVerifiedGone(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	e := startExecutor(t, startNATS(t), c.executor, Config{})
	evicted, uids := c.evictAll(t, "cache")

	dep := c.deployment(t, "cache")
	target := events.ObjectRef{Kind: "Deployment", Namespace: c.ns, Name: "cache", UID: string(dep.UID), APIVersion: "apps/v1"}
	p := newPlan(t, target, dep.Generation, dep.ResourceVersion, events.Step{Action: events.ActionDeleteEvictedPods,
		Title: "Delete the evicted pods of deployment/cache", Target: target, Risk: events.RiskLow, Mutating: true,
		Params:  map[string]string{"pods": strings.Join(evicted, ","), "uids": strings.Join(uids, ",")},
		Kubectl: "kubectl -n " + c.ns + " delete pod " + strings.Join(evicted, " ")})
	p.Type = events.IssueEvicted
	signPlan(&p)
	e.createPlan(p)
	e.decide(p, events.DecisionApproved, "alice", p.Digest)
	trail := e.waitAudit(p.ID, events.AuditExecutionFinished, 1, 2*time.Minute)
	want := []events.AuditKind{events.AuditApproved, events.AuditClaimed, events.AuditStepStarted, events.AuditStepResult,
		events.AuditVerified, events.AuditExecutionFinished}
	if got := kinds(trail); !slices.Equal(got, want) {
		t.Fatalf("audit trail %v, want %v", got, want)
	}
	ex := e.execution(p.ID)
	if ex.State != events.ExecutionSucceeded || !strings.Contains(ex.Steps[0].APIResponse, "deleted 2 evicted pods") {
		t.Fatalf("execution %s (%s), step: %q", ex.State, ex.Error, ex.Steps[0].APIResponse)
	}
	for _, name := range evicted {
		if !strings.Contains(ex.Steps[0].APIResponse, name) {
			t.Errorf("step result %q does not name %s", ex.Steps[0].APIResponse, name)
		}
	}
	pods := c.pods(t, "cache")
	for _, p := range pods {
		if slices.Contains(evicted, p.Name) || p.Status.Phase != corev1.PodRunning {
			t.Errorf("pod %s left: %s", p.Name, podStatuses([]corev1.Pod{p}))
		}
	}
	if len(pods) != 2 {
		t.Errorf("%d pods, want the 2 replacements: %s", len(pods), podStatuses(pods))
	}
}

// A fix that does not heal (another image that does not exist) is applied,
// but verification fails at the deadline: the plan ends failed, with the
// failing pods named.
func TestVerificationFailsWhenTheFixDoesNotHeal(t *testing.T) {
	t.Parallel()
	// VerifyFailAfter above VerifyTimeout: only the deadline ends it.
	v := applyFixThatDoesNotHeal(t, Config{VerifyTimeout: 8 * time.Second, VerifyFailAfter: time.Hour})
	if !strings.Contains(v.Message, "not healthy after 8s") {
		t.Fatalf("verification message %q", v.Message)
	}
}

// Pods of the new revision failing without a break end verification
// before the deadline.
func TestVerificationFailsFastWhenNewPodsKeepFailing(t *testing.T) {
	t.Parallel()
	start := time.Now()
	v := applyFixThatDoesNotHeal(t, Config{VerifyTimeout: 5 * time.Minute, VerifyFailAfter: 3 * time.Second})
	if !strings.Contains(v.Message, "pods of the new revision kept failing for") {
		t.Fatalf("verification message %q", v.Message)
	}
	// Not a timing assertion on the machine: the deadline is minutes away.
	if took := time.Since(start); took > 4*time.Minute {
		t.Errorf("took %s: verification waited for the deadline", took)
	}
}

func applyFixThatDoesNotHeal(t *testing.T, cfg Config) *events.Verification {
	t.Helper()
	c := newCluster(t)
	e := startExecutor(t, startNATS(t), c.executor, cfg)
	c.createDeployment(t, "web")
	dep := c.rollToBadImage(t, "web")
	target := events.ObjectRef{Kind: "Deployment", Namespace: c.ns, Name: "web", UID: string(dep.UID), APIVersion: "apps/v1"}
	p := newPlan(t, target, dep.Generation, dep.ResourceVersion, events.Step{Action: events.ActionSetImage,
		Title: "Set image to nginx:1.28-nonexistent", Target: target, Risk: events.RiskLow, Mutating: true, PatchType: events.PatchJSON,
		Patch: generationPatch(dep.Generation, `{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"nginx:1.28-nonexistent"}`)})
	e.createPlan(p)
	e.decide(p, events.DecisionApproved, "alice", p.Digest)
	trail := e.waitAudit(p.ID, events.AuditExecutionFinished, 1, 6*time.Minute)
	want := []events.AuditKind{events.AuditApproved, events.AuditClaimed, events.AuditStepStarted, events.AuditStepResult,
		events.AuditVerificationFailed, events.AuditExecutionFinished}
	if got := kinds(trail); !slices.Equal(got, want) {
		t.Fatalf("audit trail %v, want %v", got, want)
	}
	ex := e.execution(p.ID)
	if ex.State != events.ExecutionFailed || ex.Steps[0].Status != events.StepSucceeded {
		t.Fatalf("execution %s, step %s", ex.State, ex.Steps[0].Status)
	}
	v := ex.Verification
	if v == nil || v.Healthy || len(v.FailingPods) == 0 {
		t.Fatalf("verification %+v", v)
	}
	if !strings.Contains(ex.Error, "verification failed") {
		t.Errorf("execution error %q", ex.Error)
	}
	if got := e.plan(p.ID).State; got != events.PlanFailed {
		t.Errorf("plan state %s, want failed", got)
	}
	if n := testutil.ToFloat64(e.svc.metrics.executions.WithLabelValues(outcomeFailed)); n != 1 {
		t.Errorf("executions_total{outcome=failed} = %v", n)
	}
	return v
}

// With remediation.undo_on_failure, a fix that does not heal is undone:
// the Deployment is back at the template it had before the plan, and the
// undo is recorded.
func TestFailedVerificationIsUndoneWhenPolicySaysSo(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	e := startExecutor(t, startNATS(t), c.executor, Config{VerifyTimeout: 5 * time.Minute, VerifyFailAfter: 3 * time.Second, UndoOnFailure: true})
	c.createDeployment(t, "web")
	dep := c.rollToBadImage(t, "web")
	before := dep.Spec.Template.Spec.Containers[0].Image
	target := events.ObjectRef{Kind: "Deployment", Namespace: c.ns, Name: "web", UID: string(dep.UID), APIVersion: "apps/v1"}
	p := newPlan(t, target, dep.Generation, dep.ResourceVersion, events.Step{Action: events.ActionSetImage,
		Title: "Set image to nginx:1.28-nonexistent", Target: target, Risk: events.RiskLow, Mutating: true, PatchType: events.PatchJSON,
		Patch:     generationPatch(dep.Generation, `{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"nginx:1.28-nonexistent"}`),
		UndoPatch: generationPatch(dep.Generation+1, `{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"`+before+`"}`)})
	e.createPlan(p)
	e.decide(p, events.DecisionApproved, "alice", p.Digest)
	trail := e.waitAudit(p.ID, events.AuditExecutionFinished, 1, 6*time.Minute)
	want := []events.AuditKind{events.AuditApproved, events.AuditClaimed, events.AuditStepStarted, events.AuditStepResult,
		events.AuditVerificationFailed, events.AuditUndo, events.AuditExecutionFinished}
	if got := kinds(trail); !slices.Equal(got, want) {
		t.Fatalf("audit trail %v, want %v", got, want)
	}
	ex := e.execution(p.ID)
	if ex.State != events.ExecutionFailed || len(ex.Undo) != 1 || ex.Undo[0].Status != events.StepSucceeded || !strings.Contains(ex.Error, "undone 1 of 1") {
		t.Fatalf("execution %s, undo %+v, error %q", ex.State, ex.Undo, ex.Error)
	}
	if img := c.deployment(t, "web").Spec.Template.Spec.Containers[0].Image; img != before {
		t.Errorf("image %s after undo, want %s", img, before)
	}
}

// With one execution per namespace, two plans approved at once in the
// same namespace run one after the other, and both run.
func TestExecutionsPerNamespaceAreBounded(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	e := startExecutor(t, startNATS(t), c.executor, Config{Workers: 4, MaxPerNamespace: 1})
	var plans []events.Plan
	for _, name := range []string{"a", "b"} {
		dep := c.createDeployment(t, name)
		target := events.ObjectRef{Kind: "Deployment", Namespace: c.ns, Name: name, UID: string(dep.UID), APIVersion: "apps/v1"}
		p := newPlan(t, target, dep.Generation, dep.ResourceVersion, events.Step{Action: events.ActionSetImage, Title: "Set image to nginx:1.28",
			Target: target, Risk: events.RiskLow, Mutating: true, PatchType: events.PatchJSON,
			Patch: generationPatch(dep.Generation, `{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"nginx:1.28"}`)})
		e.createPlan(p)
		plans = append(plans, p)
	}
	for _, p := range plans {
		e.decide(p, events.DecisionApproved, "alice", p.Digest)
	}
	var execs []*events.Execution
	for _, p := range plans {
		e.waitAudit(p.ID, events.AuditExecutionFinished, 1, 3*time.Minute)
		ex := e.execution(p.ID)
		if ex.State != events.ExecutionSucceeded {
			t.Fatalf("plan %s: %s (%s)", p.ID, ex.State, ex.Error)
		}
		execs = append(execs, ex)
	}
	first, second := execs[0], execs[1]
	if second.StartedAt.Before(first.StartedAt) {
		first, second = second, first
	}
	if second.StartedAt.Before(first.FinishedAt) {
		t.Errorf("executions overlap in one namespace with max 1: [%s, %s] and [%s, %s]",
			first.StartedAt.Format(time.RFC3339Nano), first.FinishedAt.Format(time.RFC3339Nano),
			second.StartedAt.Format(time.RFC3339Nano), second.FinishedAt.Format(time.RFC3339Nano))
	}
}

// evictAll creates a two-replica Deployment, has the simulated kubelet
// evict both pods and waits for the replacements: the names and UIDs of
// the evicted pods.
func (c cluster) evictAll(t *testing.T, name string) (names, uids []string) {
	t.Helper()
	c.createDeployment(t, name)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	evict := []byte(`{"metadata":{"annotations":{"` + sandbox.AnnotationEvict + `":"memory"}}}`)
	for _, p := range c.pods(t, name) {
		if _, err := c.admin.CoreV1().Pods(c.ns).Patch(ctx, p.Name, types.MergePatchType, evict, metav1PatchOptions); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 2*time.Minute, "two evicted pods and two running replacements", func() (bool, string) {
		pods := c.pods(t, name)
		names, uids = nil, nil
		running := 0
		for _, p := range pods {
			switch {
			case p.Status.Phase == corev1.PodFailed && p.Status.Reason == "Evicted":
				names, uids = append(names, p.Name), append(uids, string(p.UID))
			case p.Status.Phase == corev1.PodRunning:
				running++
			}
		}
		return len(names) == 2 && running == 2 && sandbox.DeploymentAvailable(c.deployment(t, name)), podStatuses(pods)
	})
	return names, uids
}

// A cleanup plan deletes the evicted pods it lists (at most max_pods of
// them) and leaves one that it does not list: it was not reviewed.
func TestEvictedPodsNotInThePlanAreLeft(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	e := startExecutor(t, startNATS(t), c.executor, Config{})
	names, uids := c.evictAll(t, "cache")
	dep := c.deployment(t, "cache")
	target := events.ObjectRef{Kind: "Deployment", Namespace: c.ns, Name: "cache", UID: string(dep.UID), APIVersion: "apps/v1"}
	p := newPlan(t, target, dep.Generation, dep.ResourceVersion, events.Step{Action: events.ActionDeleteEvictedPods,
		Title: "Delete the evicted pod of deployment/cache", Target: target, Risk: events.RiskLow, Mutating: true,
		Params: map[string]string{"pods": names[0], "uids": uids[0]}})
	p.Type = events.IssueEvicted
	signPlan(&p)
	e.createPlan(p)
	e.decide(p, events.DecisionApproved, "alice", p.Digest)
	e.waitAudit(p.ID, events.AuditExecutionFinished, 1, 2*time.Minute)
	ex := e.execution(p.ID)
	if ex.State != events.ExecutionSucceeded || !strings.Contains(ex.Steps[0].APIResponse, "deleted 1 evicted pods: "+names[0]) ||
		!strings.Contains(ex.Steps[0].APIResponse, "left 1 evicted after planning (not in the plan): "+names[1]) {
		t.Fatalf("execution %s (%s), step: %q", ex.State, ex.Error, ex.Steps[0].APIResponse)
	}
	left := false
	for _, pod := range c.pods(t, "cache") {
		if pod.Name == names[0] {
			t.Errorf("planned pod %s still there", pod.Name)
		}
		left = left || pod.Name == names[1]
	}
	if !left {
		t.Errorf("unplanned evicted pod %s was deleted", names[1])
	}
}
