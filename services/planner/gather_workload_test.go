package planner

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/kaar-dev/kaar/pkg/events"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func TestParseFailedCreate(t *testing.T) {
	cases := []struct {
		msg, reason string
		check       func(failedCreate) bool
	}{
		{quotaMsg, createExceededQuota, func(f failedCreate) bool {
			return f.Quota == "compute" && f.Requested == "limits.memory=512Mi" && f.Used == "limits.memory=1Gi" && f.Limited == "limits.memory=1Gi"
		}},
		{`pods "a-" is forbidden: exceeded quota: team-q, requested: pods=1,requests.cpu=2, used: pods=10,requests.cpu=8, limited: pods=10,requests.cpu=8`, createExceededQuota,
			func(f failedCreate) bool {
				return f.Quota == "team-q" && f.Requested == "pods=1,requests.cpu=2" && f.Limited == "pods=10,requests.cpu=8"
			}},
		{quotaLimitsMsg, createQuotaRequiresLimits, func(f failedCreate) bool {
			return f.Quota == "compute" && f.Missing == "limits.cpu for: app; limits.memory for: app"
		}},
		{serviceAccountMsg, createMissingServiceAccount, func(f failedCreate) bool { return f.ServiceAccount == "web-sa" }},
		{podSecurityMsg, createPodSecurity, func(f failedCreate) bool {
			return f.Level == "restricted:latest" && len(f.Violations) == 2 && strings.HasSuffix(f.Violations[0], "allowPrivilegeEscalation=false)")
		}},
		{webhookDeniedMsg, createWebhookDenied, func(f failedCreate) bool {
			return f.Webhook == "require-team.policy.example.com" && f.Detail == `label "team" is required`
		}},
		{webhookCallMsg, createWebhookUnreachable, func(f failedCreate) bool {
			return f.Webhook == "require-team.policy.example.com" && strings.HasSuffix(f.Detail, "connection refused")
		}},
		{limitRangeMsg, createLimitRange, func(f failedCreate) bool {
			return f.LimitRange == "maximum memory usage per Container is 256Mi, but limit is 512Mi"
		}},
		{`pods "a-" is forbidden: cpu max limit to request ratio per Container is 2, but provided ratio is 4.000000`, createLimitRange,
			func(f failedCreate) bool { return strings.HasPrefix(f.LimitRange, "cpu max limit to request ratio") }},
		{"something else went wrong", createOther, func(failedCreate) bool { return true }},
	}
	for _, c := range cases {
		// Without the watcher's reason the message decides it.
		f := parseFailedCreate("", c.msg)
		if f.Reason != c.reason || !c.check(f) {
			t.Errorf("parseFailedCreate(%q) = %+v, want reason %s", c.msg, f, c.reason)
		}
		// The watcher's reason wins, the details are parsed all the same.
		if g := parseFailedCreate(createOther, c.msg); g.Reason != createOther || !c.check(g) {
			t.Errorf("with reason other: %+v", g)
		}
	}
}

// A FailedCreate on a Deployment with no pod: gather reads the events of
// its current ReplicaSet and the quota the message names, and says so in
// the evidence when RBAC forbids reading it.
func TestGatherFailedCreateReadsTheQuota(t *testing.T) {
	cfg := testConfig(t)
	in0 := failedCreateInput(t, cfg, createExceededQuota, false)
	dep := in0.Owner.Deployment.DeepCopy()
	rs := in0.ReplicaSets[0].DeepCopy()
	objs := []runtime.Object{dep, rs, in0.Events[0].DeepCopy(), in0.Policy.Quota.DeepCopy()}
	inc := in0.Incident
	inc.Message = "" // the event's message is read instead
	r := reader{kube: fake.NewClientset(objs...), cfg: cfg}
	in, err := r.gather(context.Background(), inc)
	if err != nil {
		t.Fatal(err)
	}
	if in.Pod != nil || len(in.Pods) != 0 || in.Logs != nil {
		t.Errorf("pod %v, pods %d, logs %+v: want none", in.Pod, len(in.Pods), in.Logs)
	}
	if len(in.Events) != 1 || in.Events[0].InvolvedObject.Name != rs.Name {
		t.Fatalf("events %+v, want the ReplicaSet's FailedCreate", in.Events)
	}
	if in.Policy == nil || in.Policy.Quota == nil || in.Policy.Quota.Name != "compute" || len(in.Policy.Errs) != 0 {
		t.Fatalf("policy %+v", in.Policy)
	}
	ev := collectEvidence(in)
	if e := ev[len(ev)-1]; e.Kind != events.EvidencePolicy || !slices.Contains(e.Lines, "resourcequota/compute hard: limits.memory=1Gi, pods=10") {
		t.Errorf("policy evidence %+v", e)
	}

	cs := fake.NewClientset(objs...)
	cs.PrependReactor("get", "resourcequotas", func(a k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, forbiddenErr("resourcequotas", "compute")
	})
	r = reader{kube: cs, cfg: cfg}
	in, err = r.gather(context.Background(), inc)
	if err != nil {
		t.Fatalf("a forbidden quota read failed the plan: %v", err)
	}
	if in.Policy.Quota != nil || len(in.Policy.Errs) != 1 || !strings.Contains(in.Policy.Errs[0], "not readable with the planner's role (RBAC)") {
		t.Errorf("policy %+v", in.Policy)
	}
}

// A stuck rollout with no pod named: gather finds the current revision's
// pods (not the old revision's, not another controller's) and the pod
// that shows the cause.
func TestGatherRolloutStuckFindsTheNewPods(t *testing.T) {
	cfg := testConfig(t)
	f := loadShop(t, "frontend")
	in0 := f.input(t, cfg, events.IssueRolloutStuck, "")
	stuck(&in0)
	r := reader{kube: fakeCluster(t, f), cfg: cfg}
	in, err := r.gather(context.Background(), in0.Incident)
	if err != nil {
		t.Fatal(err)
	}
	if len(in.Pods) != 1 || in.Pod == nil || in.Pod.Name != "frontend-6d84965659-7zp77" {
		t.Fatalf("pods %d, pod %v: want the one pod of revision 2", len(in.Pods), in.Pod)
	}
	if !slices.ContainsFunc(in.Events, func(e corev1.Event) bool { return e.InvolvedObject.Name == "frontend-6d84965659" }) {
		t.Error("the current ReplicaSet's events were not read")
	}
	if got := podCause(in); !strings.Contains(got, "is waiting: ImagePullBackOff") {
		t.Errorf("cause %q", got)
	}
}

// A CronJob whose newest run failed: gather reads its runs (not another
// CronJob's), newest first, the failed run's pods and their last logs.
func TestGatherCronJobRuns(t *testing.T) {
	cfg := testConfig(t)
	in0 := cronJobFailedInput(t, cfg)
	cj := in0.Owner.Object.(*batchv1.CronJob).DeepCopy()
	objs := []runtime.Object{cj}
	for i := range in0.Jobs {
		j := in0.Jobs[i].DeepCopy()
		j.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"batch.kubernetes.io/controller-uid": string(j.UID)}}
		objs = append(objs, j)
	}
	other := in0.Jobs[0].DeepCopy()
	other.Name, other.UID, other.OwnerReferences[0].UID = "other-1", "other-uid", "other-cronjob"
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "report-29412000-abcde", Namespace: "apps", UID: "p1",
		Labels:          map[string]string{"batch.kubernetes.io/controller-uid": "j2"},
		OwnerReferences: []metav1.OwnerReference{{Kind: KindJob, Name: "report-29412000", UID: "j2", Controller: new(true)}}},
		Spec:   corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "report:3"}}},
		Status: corev1.PodStatus{Phase: corev1.PodFailed}}
	objs = append(objs, other, pod)
	r := reader{kube: fake.NewClientset(objs...), cfg: cfg}
	in, err := r.gather(context.Background(), in0.Incident)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, j := range in.Jobs {
		names = append(names, j.Name)
	}
	if !slices.Equal(names, []string{"report-29412000", "report-29411940"}) {
		t.Errorf("runs %v", names)
	}
	if in.Pod == nil || in.Pod.Name != pod.Name {
		t.Fatalf("pod %v", in.Pod)
	}
	if in.Logs == nil || !in.Logs.Current || in.Logs.Err != "" || !slices.Equal(in.Logs.Lines, []string{"fake logs"}) {
		t.Errorf("logs %+v", in.Logs)
	}
}

// The way out of a full quota depends on the kind: fewer replicas where
// there are replicas, smaller requests and limits otherwise.
func TestFailedCreateStepsNameTheWorkloadKinds(t *testing.T) {
	cfg := testConfig(t)
	in := failedCreateInput(t, cfg, createExceededQuota, false)
	ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "agent", Namespace: "apps", UID: "ds-uid", Generation: 2},
		Spec: appsv1.DaemonSetSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "agent", Image: "agent:1",
			Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("512Mi")}}}}}}}}
	w, err := workloadOf(ds)
	if err != nil {
		t.Fatal(err)
	}
	in.Owner, in.ReplicaSets, in.Incident.Owner = w, nil, w.Ref
	steps := humanSteps(in)
	// A DaemonSet has no replicas to lower: the way out is its resources.
	if got := steps[2].Kubectl; !strings.Contains(got, "set resources daemonset/agent -c agent") {
		t.Errorf("kubectl %q", got)
	}
}
