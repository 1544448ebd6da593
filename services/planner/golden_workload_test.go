package planner

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

// Plans of the failures reported on a workload, with no failing pod
// (FailedCreate, RolloutStuck, JobFailed): FailedCreate and JobFailed are
// diagnostic by design, whatever the strategies; a stuck Deployment with
// an older revision gets the typed rollback.
func init() { planCases = append(planCases, workloadCases...) }

// The controller's messages, as the API server words them.
const (
	quotaMsg          = `pods "web-7d9c5b8f4-x2x9q" is forbidden: exceeded quota: compute, requested: limits.memory=512Mi, used: limits.memory=1Gi, limited: limits.memory=1Gi`
	quotaLimitsMsg    = `pods "web-7d9c5b8f4-x2x9q" is forbidden: failed quota: compute: must specify limits.cpu for: app; limits.memory for: app`
	serviceAccountMsg = `pods "web-7d9c5b8f4-" is forbidden: error looking up service account apps/web-sa: serviceaccount "web-sa" not found`
	podSecurityMsg    = `pods "web-7d9c5b8f4-x2x9q" is forbidden: violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false (container "app" must set securityContext.allowPrivilegeEscalation=false), runAsNonRoot != true (pod or container "app" must set securityContext.runAsNonRoot=true)`
	webhookDeniedMsg  = `admission webhook "require-team.policy.example.com" denied the request: label "team" is required`
	webhookCallMsg    = `Internal error occurred: failed calling webhook "require-team.policy.example.com": failed to call webhook: Post "https://policy-webhook.policy.svc:443/validate?timeout=10s": dial tcp 10.96.0.42:443: connect: connection refused`
	limitRangeMsg     = `pods "web-7d9c5b8f4-x2x9q" is forbidden: maximum memory usage per Container is 256Mi, but limit is 512Mi`
	stuckMsg          = `ReplicaSet "frontend-6d84965659" has timed out progressing.`
)

var workloadCases = []planCase{
	{name: "deployment-failedcreate-quota-diagnostic", id: 40, workload: "web:" + createExceededQuota, typ: events.IssueFailedCreate,
		expect: expect{actions: []events.ActionType{events.ActionDiagnostic, events.ActionDiagnostic, events.ActionDiagnostic}, diagnosticOnly: true, risk: events.RiskNone,
			notes: []string{"kaar never changes"},
			fields: []fieldCheck{
				has("/steps/0/title", "ResourceQuota compute is full"), has("/steps/0/title", "limits.memory=512Mi"),
				eq("/steps/0/kubectl", "kubectl -n apps describe resourcequota compute"),
				eq("/steps/0/target/kind", "ResourceQuota"), eq("/steps/0/target/name", "compute"),
				eq("/steps/1/kubectl", "kubectl -n apps edit resourcequota compute"),
				has("/steps/2/title", "or its replicas (3 now)"), eq("/steps/2/kubectl", "kubectl -n apps scale deployment/web '--replicas=<fewer>'"),
				eq("/evidence/4/kind", "policy"), eq("/evidence/4/data/quota", "compute"), eq("/evidence/4/data/used", "limits.memory=1Gi"),
				eq("/evidence/4/lines/6", "resourcequota/compute hard: limits.memory=1Gi, pods=10"),
				eq("/evidence/3/kind", "conditions"), has("/evidence/3/lines/2", "ReplicaFailure=True FailedCreate"),
				eq("/evidence/0/kind", "events"), has("/evidence/0/lines/0", "Warning FailedCreate replicaset/web-7d9c5b8f4"),
			}}},
	{name: "deployment-failedcreate-quota-requires-limits-diagnostic", id: 41, workload: "web:" + createQuotaRequiresLimits, typ: events.IssueFailedCreate,
		expect: expect{actions: diagnosticOnly, diagnosticOnly: true,
			fields: []fieldCheck{
				has("/steps/0/title", "requires every pod to declare limits.cpu for: app; limits.memory for: app"),
				has("/steps/1/kubectl", "set resources deployment/web -c app"),
			}}},
	{name: "deployment-failedcreate-serviceaccount-diagnostic", id: 42, workload: "web:" + createMissingServiceAccount, typ: events.IssueFailedCreate,
		expect: expect{actions: diagnosticOnly, diagnosticOnly: true,
			fields: []fieldCheck{
				eq("/steps/0/kubectl", "kubectl -n apps get serviceaccount web-sa"), eq("/steps/0/target/kind", "ServiceAccount"),
				has("/steps/1/title", "or fix serviceAccountName in the pod template of deployment/web (now \"web-sa\")"),
			}}},
	{name: "deployment-failedcreate-pod-security-diagnostic", id: 43, workload: "web:" + createPodSecurity, typ: events.IssueFailedCreate,
		expect: expect{actions: diagnosticOnly, diagnosticOnly: true,
			fields: []fieldCheck{
				has("/steps/0/title", `at level "restricted:latest"`),
				has("/steps/0/title", `allowPrivilegeEscalation != false (container "app" must set securityContext.allowPrivilegeEscalation=false); runAsNonRoot`),
				eq("/steps/0/kubectl", "kubectl -n apps get namespace apps --show-labels"),
				eq("/evidence/4/data/level", "restricted:latest"),
				has("/evidence/4/lines/5", "namespace/apps labels: pod-security.kubernetes.io/enforce=restricted"),
			}}},
	{name: "deployment-failedcreate-webhook-denied-diagnostic", id: 44, workload: "web:" + createWebhookDenied, typ: events.IssueFailedCreate,
		expect: expect{actions: diagnosticOnly, diagnosticOnly: true,
			fields: []fieldCheck{
				has("/steps/0/title", `require-team.policy.example.com denies the pods of deployment/web: label "team" is required`),
				eq("/steps/0/kubectl", "kubectl -n apps get validatingwebhookconfigurations,mutatingwebhookconfigurations"),
				eq("/evidence/4/data/webhook", "require-team.policy.example.com"),
			}}},
	{name: "deployment-failedcreate-webhook-unreachable-diagnostic", id: 45, workload: "web:" + createWebhookUnreachable, typ: events.IssueFailedCreate,
		expect: expect{actions: diagnosticOnly, diagnosticOnly: true,
			fields: []fieldCheck{has("/steps/0/title", "connection refused"), has("/steps/1/title", "Bring the webhook's backend back")}}},
	{name: "deployment-failedcreate-limitrange-diagnostic", id: 46, workload: "web:" + createLimitRange, typ: events.IssueFailedCreate,
		expect: expect{actions: diagnosticOnly, diagnosticOnly: true,
			fields: []fieldCheck{
				has("/steps/0/title", "maximum memory usage per Container is 256Mi, but limit is 512Mi"),
				eq("/steps/0/kubectl", "kubectl -n apps describe limitrange"),
				has("/evidence/4/lines/3", "limitrange/limits Container: min -; max memory=256Mi"),
			}}},
	// A FailedCreate whose quota the planner may not read: said in the
	// evidence, the plan is made all the same. Strategies configured for
	// FailedCreate do not make it mutating.
	{name: "deployment-failedcreate-quota-unreadable-diagnostic", id: 47, workload: "web:" + createExceededQuota + ":forbidden", typ: events.IssueFailedCreate,
		strategies: []Strategy{{Name: "lower_requests"}, {Name: "rollout_restart"}},
		expect: expect{actions: []events.ActionType{events.ActionDiagnostic, events.ActionDiagnostic, events.ActionDiagnostic}, diagnosticOnly: true,
			summary: []string{"FailedCreate in deployment/web (exceeded quota, 2 pods); diagnostic only: the pods are refused by a policy object"},
			fields:  []fieldCheck{has("/evidence/4/lines/6", "resourcequota/compute: not readable with the planner's role (RBAC)")}}},

	{name: "deployment-rolloutstuck-rollback", id: 48, fixture: "frontend", typ: events.IssueRolloutStuck,
		edit: inputEdit{rolloutStuck: true},
		expect: expect{actions: []events.ActionType{events.ActionDiagnostic, events.ActionDiagnostic, events.ActionRollback}, risk: events.RiskMedium,
			summary: []string{"RolloutStuck in deployment/frontend (progress deadline exceeded, 1 pod) since revision 2; roll back to revision 1."},
			fields: []fieldCheck{
				has("/steps/0/title", "to revision 2 (replicaset/frontend-6d84965659) stopped progressing: its new pods: container app of pod/frontend-6d84965659-7zp77 is waiting: ImagePullBackOff"),
				eq("/steps/0/kubectl", "kubectl -n shop rollout status deployment/frontend"), eq("/steps/0/target/kind", KindDeployment),
				eq("/steps/2/params/revision", "1"), eq("/steps/2/patch/1/path", "/spec/template"),
				eq("/steps/2/patch/1/value/spec/containers/0/image", "nginx:1.27"),
			}}},
	{name: "deployment-rolloutstuck-no-history-diagnostic", id: 49, fixture: "frontend", typ: events.IssueRolloutStuck,
		edit: inputEdit{rolloutStuck: true, noHistory: true},
		expect: expect{actions: []events.ActionType{events.ActionDiagnostic, events.ActionDiagnostic, events.ActionDiagnostic}, diagnosticOnly: true,
			notes: []string{"strategy rollback does not apply"},
			fields: []fieldCheck{has("/steps/2/title", "has no older revision to roll back to"), has("/evidence/4/lines/3", "Progressing=False ProgressDeadlineExceeded"),
				has("/steps/0/title", "The rollout of deployment/frontend stopped progressing: its new pods: container app")}}},

	{name: "job-failed-backoff-limit-diagnostic", id: 50, workload: "job-failed:" + jobBackoffLimit, typ: events.IssueJobFailed,
		expect: expect{actions: []events.ActionType{events.ActionDiagnostic, events.ActionDiagnostic, events.ActionDiagnostic}, diagnosticOnly: true,
			notes: []string{"a failed Job is never re-run without a person"},
			fields: []fieldCheck{
				has("/steps/0/title", "job/migrate failed after its backoffLimit of 2 retries"),
				eq("/steps/1/kubectl", "kubectl -n apps logs migrate-x7k2p -c app"), eq("/steps/1/target/kind", KindPod),
				eq("/evidence/2/kind", "logs"), eq("/evidence/2/title", "Last logs of container app (2 lines)"),
				has("/evidence/4/lines/2", "condition Failed=True BackoffLimitExceeded"),
			}}},
	{name: "job-failed-deadline-diagnostic", id: 51, workload: "job-failed:" + jobDeadline, typ: events.IssueJobFailed,
		expect: expect{actions: []events.ActionType{events.ActionDiagnostic, events.ActionDiagnostic, events.ActionDiagnostic}, diagnosticOnly: true,
			fields: []fieldCheck{has("/steps/0/title", "ran longer than its activeDeadlineSeconds (600s)")}}},
	{name: "cronjob-failed-diagnostic", id: 52, workload: "cronjob-failed", typ: events.IssueJobFailed,
		expect: expect{actions: []events.ActionType{events.ActionDiagnostic, events.ActionDiagnostic, events.ActionDiagnostic, events.ActionDiagnostic}, diagnosticOnly: true,
			fields: []fieldCheck{
				has("/steps/0/title", "job/report-29412000 failed"),
				has("/steps/1/title", "No pod of job/report-29412000 remains"),
				eq("/steps/3/kubectl", "kubectl -n apps create job report-manual --from=cronjob/report"),
				eq("/evidence/1/data/failed_job", "report-29412000"),
				has("/evidence/1/lines/2", "job/report-29412000 condition Failed=True BackoffLimitExceeded"),
				has("/evidence/1/lines/4", "job/report-29411940 condition Complete=True (since 2026-11-26T23:10:00Z)"),
			}}},
}

// workloadInput is the input of a workload case: "web:<reason>[:forbidden]"
// (a Deployment whose ReplicaSet cannot create pods), "job-failed:<reason>"
// or "cronjob-failed"; false for another workload.
func workloadInput(t *testing.T, cfg Config, c planCase) (planInput, bool) {
	t.Helper()
	var in planInput
	parts := append(strings.Split(c.workload, ":"), "", "")
	switch kind, reason := parts[0], parts[1]; kind {
	case "web":
		in = failedCreateInput(t, cfg, reason, parts[2] == "forbidden")
	case "job-failed":
		in = jobFailedInput(t, cfg, reason)
	case "cronjob-failed":
		in = cronJobFailedInput(t, cfg)
	case "service":
		in = trafficInput(t, cfg, reason, parts[2])
	case "storage":
		in = storageInput(t, cfg, reason)
	case "ingress":
		in = ingressInput(t, cfg, reason)
	case "cronjob-late":
		in = cronJobLateInput(t, cfg, reason)
	case "stalled":
		in = stalledInput(t, cfg, reason)
	case "node":
		in = nodeInput(t, cfg, reason)
	case "hpa":
		in = hpaInput(t, cfg, reason)
	case "probe":
		in = probeInput(t, cfg, reason)
	case "warning":
		in = warningInput(t, cfg, reason) // golden_warning_test.go
	default:
		return planInput{}, false
	}
	if err := in.Incident.Validate(); err != nil {
		t.Fatalf("case %s: incident: %v", c.name, err)
	}
	return in, true
}

// forbiddenErr is the API server's answer to a read RBAC does not allow.
func forbiddenErr(resourceName, name string) error {
	return apierrors.NewForbidden(schema.GroupResource{Resource: resourceName}, name,
		fmt.Errorf(`User "kaar-planner" cannot get resource %q in API group "" in the namespace "apps"`, resourceName))
}

// stuck makes the fixture's Deployment past its progress deadline, as
// the watcher reports it: on the Deployment, with no pod named.
func stuck(in *planInput) {
	dep := in.Owner.Deployment
	dep.Spec.ProgressDeadlineSeconds = new(int32(600))
	for i, c := range dep.Status.Conditions {
		if c.Type == appsv1.DeploymentProgressing {
			dep.Status.Conditions[i] = appsv1.DeploymentCondition{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionFalse,
				Reason: "ProgressDeadlineExceeded", Message: stuckMsg, LastUpdateTime: c.LastUpdateTime, LastTransitionTime: c.LastTransitionTime}
		}
	}
	inc := noPodIncident(in.Owner.Ref, events.IssueRolloutStuck, "progress_deadline_exceeded",
		"rollout of deployment frontend (revision 2) stopped: it did not progress within its deadline of 600s; 1 of 2 replicas updated, 2 available: "+stuckMsg)
	inc.PodCount = 1 // its unavailable replicas
	inc.FirstSeen, inc.LastSeen, inc.OwnerChain = in.Incident.FirstSeen, in.Incident.LastSeen, nil
	in.Incident = inc
}

// noPodIncident is the incident the watcher announces on a workload
// with no failing pod.
func noPodIncident(owner events.ObjectRef, typ events.IssueType, reason, msg string) events.Incident {
	return events.Incident{ID: events.IncidentID(testCluster, owner.Namespace, owner.Kind, owner.Name, "", typ), Cluster: testCluster,
		Namespace: owner.Namespace, Owner: owner, Type: typ, Reason: reason, Message: msg,
		FirstSeen: goldenLastSeen.Add(-10 * time.Minute), LastSeen: goldenLastSeen, Count: 4, Severity: typ.DefaultSeverity()}
}

// failedCreateInput: Deployment apps/web (3 replicas, 1 ready) whose
// ReplicaSet web-7d9c5b8f4 cannot create pods for reason.
func failedCreateInput(t *testing.T, cfg Config, reason string, forbidden bool) planInput {
	t.Helper()
	msg := map[string]string{createExceededQuota: quotaMsg, createQuotaRequiresLimits: quotaLimitsMsg, createMissingServiceAccount: serviceAccountMsg,
		createPodSecurity: podSecurityMsg, createWebhookDenied: webhookDeniedMsg, createWebhookUnreachable: webhookCallMsg, createLimitRange: limitRangeMsg}[reason]
	if msg == "" {
		t.Fatalf("no message for reason %q", reason)
	}
	at := metav1.NewTime(goldenLastSeen.Add(-5 * time.Minute))
	container := corev1.Container{Name: "app", Image: "web:2", Resources: corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("256Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("512Mi")}}}
	if reason == createQuotaRequiresLimits {
		container.Resources = corev1.ResourceRequirements{}
	}
	tmpl := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{ServiceAccountName: "web-sa", Containers: []corev1.Container{container}}}
	if reason != createMissingServiceAccount {
		tmpl.Spec.ServiceAccountName = ""
	}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "apps", UID: "web-uid", Generation: 4, ResourceVersion: "812",
			Annotations: map[string]string{annotationRevision: "1"}},
		Spec: appsv1.DeploymentSpec{Replicas: new(int32(3)), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}, Template: tmpl},
		Status: appsv1.DeploymentStatus{ObservedGeneration: 4, Replicas: 1, UpdatedReplicas: 1, ReadyReplicas: 1, AvailableReplicas: 1, UnavailableReplicas: 2,
			Conditions: []appsv1.DeploymentCondition{
				{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionFalse, Reason: "MinimumReplicasUnavailable", Message: "Deployment does not have minimum availability.", LastUpdateTime: at},
				{Type: appsv1.DeploymentReplicaFailure, Status: corev1.ConditionTrue, Reason: "FailedCreate", Message: msg, LastUpdateTime: at},
				{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionTrue, Reason: "NewReplicaSetAvailable", Message: `ReplicaSet "web-7d9c5b8f4" has successfully progressed.`, LastUpdateTime: at},
			}},
	}
	rsTmpl := tmpl
	rsTmpl.Labels = map[string]string{"app": "web", labelPodTemplateHash: "7d9c5b8f4"}
	rs := appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web-7d9c5b8f4", Namespace: "apps", UID: "web-rs-uid", Annotations: map[string]string{annotationRevision: "1"},
			Labels:          rsTmpl.Labels,
			OwnerReferences: []metav1.OwnerReference{{Kind: KindDeployment, Name: "web", UID: "web-uid", Controller: new(true)}}},
		Spec:   appsv1.ReplicaSetSpec{Replicas: new(int32(3)), Template: rsTmpl},
		Status: appsv1.ReplicaSetStatus{Replicas: 1, ReadyReplicas: 1},
	}
	w, err := workloadOf(dep)
	if err != nil {
		t.Fatal(err)
	}
	ev := corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: "web-7d9c5b8f4.1", Namespace: "apps", UID: "ev-1"},
		InvolvedObject: corev1.ObjectReference{Kind: KindReplicaSet, Namespace: "apps", Name: rs.Name},
		Type:           corev1.EventTypeWarning, Reason: "FailedCreate", Message: msg, Count: 12, LastTimestamp: at}
	in := planInput{Cfg: cfg, Owner: w, ReplicaSets: []appsv1.ReplicaSet{rs}, Events: []corev1.Event{ev}, Now: goldenNow,
		Incident: noPodIncident(w.Ref, events.IssueFailedCreate, reason, "replicaset web-7d9c5b8f4 cannot create its pods: "+msg)}
	in.Incident.PodCount = 2 // the replicas it could not create
	in.Policy = &policyRead{Cause: parseFailedCreate(reason, msg)}
	switch {
	case forbidden:
		in.Policy.Errs = []string{readErr("resourcequota/compute", forbiddenErr("resourcequotas", "compute"))}
	case reason == createExceededQuota || reason == createQuotaRequiresLimits:
		hard := corev1.ResourceList{corev1.ResourceLimitsMemory: resource.MustParse("1Gi"), corev1.ResourcePods: resource.MustParse("10")}
		used := corev1.ResourceList{corev1.ResourceLimitsMemory: resource.MustParse("1Gi"), corev1.ResourcePods: resource.MustParse("2")}
		in.Policy.Quota = &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Name: "compute", Namespace: "apps"},
			Spec: corev1.ResourceQuotaSpec{Hard: hard}, Status: corev1.ResourceQuotaStatus{Hard: hard, Used: used}}
	case reason == createLimitRange:
		in.Policy.LimitRanges = []corev1.LimitRange{{ObjectMeta: metav1.ObjectMeta{Name: "limits", Namespace: "apps"},
			Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{{Type: corev1.LimitTypeContainer,
				Max: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")}}}}}}
	case reason == createPodSecurity:
		in.Policy.Namespace = &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "apps", Labels: map[string]string{
			"kubernetes.io/metadata.name": "apps", "pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "latest"}}}
	}
	return in
}

// jobFailedInput: Job apps/migrate failed for reason, one failed pod
// left with its last logs.
func jobFailedInput(t *testing.T, cfg Config, reason string) planInput {
	t.Helper()
	start := metav1.NewTime(goldenLastSeen.Add(-15 * time.Minute))
	end := metav1.NewTime(goldenLastSeen.Add(-2 * time.Minute))
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "migrate", Namespace: "apps", UID: "job-uid", Generation: 1, ResourceVersion: "9"},
		Spec: batchv1.JobSpec{BackoffLimit: new(int32(2)), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"batch.kubernetes.io/controller-uid": "job-uid"}},
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "app", Image: "migrate:1"}}}}},
		Status: batchv1.JobStatus{Failed: 3, StartTime: &start}}
	cond, msg := "BackoffLimitExceeded", "Job has reached the specified backoff limit"
	if reason == jobDeadline {
		job.Spec.ActiveDeadlineSeconds = new(int64(600))
		cond, msg = "DeadlineExceeded", "Job was active longer than specified deadline"
		job.Status.Failed = 1
	}
	job.Status.Conditions = []batchv1.JobCondition{
		{Type: batchv1.JobFailureTarget, Status: corev1.ConditionTrue, Reason: cond, Message: msg, LastTransitionTime: end},
		{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: cond, Message: msg, LastTransitionTime: end},
	}
	w, err := workloadOf(job)
	if err != nil {
		t.Fatal(err)
	}
	pod := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "migrate-x7k2p", Namespace: "apps", UID: "migrate-x7k2p-uid",
		OwnerReferences: []metav1.OwnerReference{{Kind: KindJob, Name: "migrate", UID: types.UID("job-uid"), Controller: new(true)}}},
		Status: corev1.PodStatus{Phase: corev1.PodFailed, ContainerStatuses: []corev1.ContainerStatus{{Name: "app",
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, Reason: "Error", StartedAt: start, FinishedAt: end}}}}}}
	in := planInput{Cfg: cfg, Owner: w, Pods: []corev1.Pod{pod}, Now: goldenNow,
		Incident: noPodIncident(w.Ref, events.IssueJobFailed, reason, fmt.Sprintf("job migrate failed (%s): %s; %d failed pods", cond, msg, job.Status.Failed)),
		Logs: &logsResult{Pod: pod.Name, Container: "app", Current: true,
			Lines: []string{"running migration 0042_add_orders_index", `ERROR: relation "orders" does not exist`}}}
	in.Pod = &in.Pods[0]
	return in
}

// cronJobFailedInput: CronJob apps/report whose newest run failed (its
// pods gone) after one that completed.
func cronJobFailedInput(t *testing.T, cfg Config) planInput {
	t.Helper()
	at := func(m int) *metav1.Time {
		tm := metav1.NewTime(goldenLastSeen.Add(time.Duration(m) * time.Minute))
		return &tm
	}
	cj := &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Name: "report", Namespace: "apps", UID: "cj-uid", Generation: 2, ResourceVersion: "77"},
		Spec: batchv1.CronJobSpec{Schedule: "0 * * * *", JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{BackoffLimit: new(int32(1)),
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "app", Image: "report:3"}}}}}}},
		Status: batchv1.CronJobStatus{LastScheduleTime: at(-60), LastSuccessfulTime: at(-110)}}
	w, err := workloadOf(cj)
	if err != nil {
		t.Fatal(err)
	}
	owned := []metav1.OwnerReference{{Kind: KindCronJob, Name: "report", UID: "cj-uid", Controller: new(true)}}
	jobs := []batchv1.Job{
		{ObjectMeta: metav1.ObjectMeta{Name: "report-29412000", Namespace: "apps", UID: "j2", CreationTimestamp: *at(-60), OwnerReferences: owned},
			Spec: batchv1.JobSpec{BackoffLimit: new(int32(1))},
			Status: batchv1.JobStatus{Failed: 2, StartTime: at(-60), Conditions: []batchv1.JobCondition{{Type: batchv1.JobFailed, Status: corev1.ConditionTrue,
				Reason: "BackoffLimitExceeded", Message: "Job has reached the specified backoff limit", LastTransitionTime: *at(-55)}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "report-29411940", Namespace: "apps", UID: "j1", CreationTimestamp: *at(-120), OwnerReferences: owned},
			Spec: batchv1.JobSpec{BackoffLimit: new(int32(1))},
			Status: batchv1.JobStatus{Succeeded: 1, StartTime: at(-120), Conditions: []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionTrue,
				LastTransitionTime: *at(-110)}}}},
	}
	return planInput{Cfg: cfg, Owner: w, Jobs: jobs, Now: goldenNow,
		Incident: noPodIncident(w.Ref, events.IssueJobFailed, jobBackoffLimit,
			"job report-29412000 failed (BackoffLimitExceeded): Job has reached the specified backoff limit; 2 failed pods; 1 of the last 2 runs failed")}
}
