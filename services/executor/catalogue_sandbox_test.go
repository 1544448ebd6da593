package executor

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// A plan outside the action catalogue, stored in the plans bucket with a
// correct digest and the planner's signature (a compromised or buggy
// planner: the signature says who wrote it, not that it is safe) and
// approved by a person, is refused by the executor on its own reading of
// the steps: the refusal is in the audit stream with its reason, and
// neither the target nor anything else in the cluster changes.
func TestPlanOutsideTheCatalogueIsRefusedAndTheClusterUntouched(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	e := startExecutor(t, startNATS(t), c.executor, Config{})
	web := c.settledDeployment(t, "web")
	other := c.settledDeployment(t, "other")
	otherPods := c.pods(t, "other")
	if len(otherPods) == 0 {
		t.Fatal("deployment other has no pods")
	}
	target := events.ObjectRef{Kind: kindDeployment, Namespace: c.ns, Name: "web", UID: string(web.UID), APIVersion: "apps/v1"}
	otherRef := events.ObjectRef{Kind: kindDeployment, Namespace: c.ns, Name: "other", UID: string(other.UID), APIVersion: "apps/v1"}
	patch := func(ops ...string) json.RawMessage { return generationPatch(web.Generation, ops...) }
	setImage := `{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"nginx:1.28"}`
	tmpl, err := json.Marshal(web.Spec.Template)
	if err != nil {
		t.Fatal(err)
	}
	escalated := web.Spec.Template.DeepCopy()
	escalated.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{Privileged: ptr(true)}
	escalatedJSON, err := json.Marshal(escalated)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		step events.Step
		want string
		// claimed: refused after the claim (the check reads the
		// cluster), before the first step.
		claimed bool
	}{
		{name: "set_image that also makes the container privileged",
			step: events.Step{Action: events.ActionSetImage, Target: target, Risk: events.RiskMedium, PatchType: events.PatchJSON,
				Patch: patch(setImage, `{"op":"add","path":"/spec/template/spec/containers/0/securityContext","value":{"privileged":true}}`)},
			want: "operation 2 (add /spec/template/spec/containers/0/securityContext)"},
		{name: "rollback that also scales to zero",
			step: events.Step{Action: events.ActionRollback, Target: target, Risk: events.RiskMedium, PatchType: events.PatchJSON,
				Patch: patch(`{"op":"replace","path":"/spec/template","value":`+string(tmpl)+`}`, `{"op":"replace","path":"/spec/replicas","value":0}`)},
			want: "operation 2 (replace /spec/replicas)"},
		{name: "an unguarded merge patch",
			step: events.Step{Action: events.ActionRolloutRestart, Target: target, Risk: events.RiskLow, PatchType: events.PatchMerge,
				Patch: json.RawMessage(`{"spec":{"replicas":0}}`)},
			want: `patch_type "merge"`},
		{name: "a step on another Deployment",
			step: events.Step{Action: events.ActionSetImage, Target: otherRef, Risk: events.RiskMedium, PatchType: events.PatchJSON,
				Patch: patch(setImage)},
			want: "Deployment/" + c.ns + "/other is not the plan's target Deployment/" + c.ns + "/web"},
		{name: "a rollback to a template the Deployment never ran",
			step: events.Step{Action: events.ActionRollback, Target: target, Risk: events.RiskMedium, PatchType: events.PatchJSON,
				Patch: patch(`{"op":"replace","path":"/spec/template","value":` + string(escalatedJSON) + `}`)},
			want: "the template is not that of any ReplicaSet of Deployment/" + c.ns + "/web", claimed: true},
		{name: "the deletion of another Deployment's pod",
			step: events.Step{Action: events.ActionDeletePod, Risk: events.RiskLow,
				Target: events.ObjectRef{Kind: kindPod, Namespace: c.ns, Name: otherPods[0].Name, UID: string(otherPods[0].UID)}},
			want: "pod Pod/" + c.ns + "/" + otherPods[0].Name + " is not controlled by the plan's target", claimed: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := tt.step
			st.Title, st.Mutating = tt.name, true
			p := newPlan(t, target, web.Generation, web.ResourceVersion, st) // sealed and signed
			e.createPlan(p)
			e.decide(p, events.DecisionApproved, "alice@example.com", p.Digest)
			trail := e.waitAudit(p.ID, events.AuditRefused, 1, time.Minute)
			want := []events.AuditKind{events.AuditRefused}
			if tt.claimed {
				trail = e.waitAudit(p.ID, events.AuditExecutionFinished, 1, time.Minute)
				want = []events.AuditKind{events.AuditApproved, events.AuditClaimed, events.AuditRefused, events.AuditExecutionFinished}
			}
			if got := kinds(trail); !slices.Equal(got, want) {
				t.Fatalf("audit trail %v, want %v", got, want)
			}
			i := slices.IndexFunc(trail, func(r events.AuditRecord) bool { return r.Kind == events.AuditRefused })
			msg := trail[i].Message
			if !strings.Contains(msg, string(events.RefusalInvalidStep)) || !strings.Contains(msg, "step 0 ("+string(st.Action)+")") || !strings.Contains(msg, tt.want) {
				t.Errorf("refusal %q: want reason %s, step 0 (%s) and %q", msg, events.RefusalInvalidStep, st.Action, tt.want)
			}
			var ex events.Execution
			if err := json.Unmarshal(trail[i].Data, &ex); err != nil || ex.RefusalReason != events.RefusalInvalidStep {
				t.Errorf("refused record data %+v (%v)", ex, err)
			}
			if rec := e.execution(p.ID); rec == nil || rec.State != events.ExecutionRefused || rec.RefusalReason != events.RefusalInvalidStep || len(rec.Steps) != 0 {
				t.Errorf("execution record %+v: want refused, invalid_step, no step", rec)
			}
		})
	}
	e.waitDrained(30 * time.Second)

	// Nothing in the cluster changed: same resourceVersions, no field
	// ever written by the executor, the other Deployment's pods alive.
	for _, before := range []*appsv1.Deployment{web, other} {
		now := c.deployment(t, before.Name)
		if now.ResourceVersion != before.ResourceVersion || now.Generation != before.Generation {
			t.Errorf("deployment %s changed: resourceVersion %s -> %s, generation %d -> %d",
				before.Name, before.ResourceVersion, now.ResourceVersion, before.Generation, now.Generation)
		}
		for _, m := range now.ManagedFields {
			if m.Manager == Actor {
				t.Errorf("deployment %s has fields managed by %s: %+v", before.Name, Actor, m)
			}
		}
	}
	for _, p := range otherPods {
		if now := c.pod(t, p.Name); now == nil || now.UID != p.UID || now.DeletionTimestamp != nil {
			t.Errorf("pod %s (uid %s) of deployment other was deleted or replaced: %v", p.Name, p.UID, now)
		}
	}
}

// settledDeployment creates a Deployment and waits until its controller
// has nothing left to write (rollout complete), so that its
// resourceVersion only moves if somebody changes it.
func (c cluster) settledDeployment(t *testing.T, name string) *appsv1.Deployment {
	t.Helper()
	c.createDeployment(t, name)
	waitFor(t, 2*time.Minute, "deployment "+name+" rollout complete", func() (bool, string) {
		d := c.deployment(t, name)
		for _, cond := range d.Status.Conditions {
			if cond.Type == appsv1.DeploymentProgressing && cond.Reason == "NewReplicaSetAvailable" {
				return sandboxAvailable(d), ""
			}
		}
		return false, fmt.Sprintf("%+v", d.Status.Conditions)
	})
	return c.deployment(t, name)
}

func sandboxAvailable(d *appsv1.Deployment) bool {
	return d.Status.ObservedGeneration >= d.Generation && d.Status.AvailableReplicas == *d.Spec.Replicas
}

// pod reads a pod; nil when it does not exist.
func (c cluster) pod(t *testing.T, name string) *corev1.Pod {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := c.admin.CoreV1().Pods(c.ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil
	}
	return p
}
