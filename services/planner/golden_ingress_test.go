package planner

import (
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Plans of an Ingress that routes nowhere, a CronJob that stopped
// scheduling, and a StatefulSet or DaemonSet rollout that stalled: all
// diagnostic (the catalogue has no step that changes an Ingress, ends a
// run, or rolls back anything but a Deployment).
func init() { planCases = append(planCases, ingressCronRolloutCases...) }

var ingressCronRolloutCases = []planCase{
	{name: "ingress-service-not-found-diagnostic", id: 90, workload: "ingress:" + ingressServiceNotFound, typ: events.IssueIngressUnavailable,
		expect: expect{actions: []events.ActionType{events.ActionDiagnostic, events.ActionDiagnostic, events.ActionDiagnostic}, diagnosticOnly: true,
			notes:   []string{"kaar does not change Ingresses or Services"},
			summary: []string{"IngressUnavailable in ingress/shop (service not found)"},
			fields: []fieldCheck{
				eq("/target/kind", "Ingress"), eq("/target/api_version", "networking.k8s.io/v1"),
				eq("/steps/0/title", "The rule shop.example.com/api of ingress/shop routes to service api, which does not exist in namespace apps"),
				eq("/steps/0/kubectl", "kubectl -n apps get services"), eq("/steps/0/target/kind", "Ingress"),
				eq("/steps/1/kubectl", "kubectl -n apps edit ingress shop"),
				eq("/steps/2/kubectl", "kubectl -n apps describe ingress shop"),
				eq("/evidence/0/kind", "traffic"), eq("/evidence/0/data/missing_services", "api"),
				eq("/evidence/0/lines/1", "ingressclasses: nginx (default)"),
				eq("/evidence/0/lines/2", "rule shop.example.com/ -> service web port http: service ClusterIP ports http=80"),
				eq("/evidence/0/lines/3", "rule shop.example.com/api -> service api port 8080: service not found"),
			}}},
	{name: "ingress-service-port-not-found-diagnostic", id: 91, workload: "ingress:" + ingressPortNotFound, typ: events.IssueIngressUnavailable,
		expect: expect{actions: []events.ActionType{events.ActionDiagnostic, events.ActionDiagnostic, events.ActionDiagnostic}, diagnosticOnly: true,
			fields: []fieldCheck{
				eq("/steps/0/title", "The rule shop.example.com/ of ingress/shop routes to port https of service/web, which exposes http=80"),
				has("/steps/0/kubectl", "get service web -o"),
			}}},
	{name: "ingress-class-not-found-diagnostic", id: 92, workload: "ingress:" + ingressClassNotFound, typ: events.IssueIngressUnavailable,
		expect: expect{actions: []events.ActionType{events.ActionDiagnostic, events.ActionDiagnostic, events.ActionDiagnostic}, diagnosticOnly: true,
			fields: []fieldCheck{
				eq("/steps/0/title", "ingress/shop names IngressClass nginx-internal, which does not exist: no ingress controller serves it. The cluster's IngressClasses: nginx (default)"),
				eq("/steps/0/kubectl", "kubectl -n apps get ingressclasses"),
				has("/steps/1/title", "Set spec.ingressClassName of ingress/shop"),
			}}},
	{name: "cronjob-previous-run-active-diagnostic", id: 93, workload: "cronjob-late:" + cronPreviousRunActive, typ: events.IssueCronJobNotScheduling,
		expect: expect{actions: []events.ActionType{events.ActionDiagnostic, events.ActionDiagnostic, events.ActionDiagnostic}, diagnosticOnly: true,
			notes: []string{"ending a run that is still active"},
			fields: []fieldCheck{
				eq("/target/kind", "CronJob"),
				has("/steps/0/title", "cronjob/report has concurrencyPolicy Forbid, and its run job/report-29412000 is still active"),
				eq("/steps/0/kubectl", "kubectl -n apps describe job report-29412000"),
				eq("/steps/1/kubectl", "kubectl -n apps delete job report-29412000"),
				eq("/evidence/1/kind", "conditions"),
				has("/evidence/1/lines/0", `schedule "*/10 * * * *" (time zone of the controller), suspended false, concurrencyPolicy Forbid, startingDeadlineSeconds -`),
			}}},
	{name: "cronjob-missed-schedule-diagnostic", id: 94, workload: "cronjob-late:missed_schedule", typ: events.IssueCronJobNotScheduling,
		expect: expect{actions: []events.ActionType{events.ActionDiagnostic, events.ActionDiagnostic, events.ActionDiagnostic}, diagnosticOnly: true,
			fields: []fieldCheck{
				has("/steps/0/title", "No run of cronjob/report started though its schedule (*/10 * * * *) called for one"),
				eq("/steps/0/kubectl", "kubectl -n apps describe cronjob/report"),
			}}},
	{name: "cronjob-jobs-quota-diagnostic", id: 97, workload: "cronjob-late:jobs_quota", typ: events.IssueFailedCreate,
		expect: expect{actions: []events.ActionType{events.ActionDiagnostic, events.ActionDiagnostic, events.ActionDiagnostic}, diagnosticOnly: true,
			fields: []fieldCheck{
				has("/steps/0/title", "ResourceQuota jobs is full: cronjob/report asks for count/jobs.batch=1"),
				eq("/steps/0/target/kind", "ResourceQuota"),
				has("/steps/2/title", "Or keep fewer Jobs: lower successfulJobsHistoryLimit and failedJobsHistoryLimit of cronjob/report"),
				eq("/steps/2/kubectl", "kubectl -n apps get jobs --sort-by=.metadata.creationTimestamp"),
			}}},
	{name: "statefulset-rollout-stalled-diagnostic", id: 95, workload: "stalled:StatefulSet", typ: events.IssueRolloutStuck,
		expect: expect{actions: []events.ActionType{events.ActionDiagnostic, events.ActionDiagnostic, events.ActionDiagnostic, events.ActionDiagnostic}, diagnosticOnly: true,
			notes: []string{"rollback is planned for Deployments only, not for statefulset/db"},
			fields: []fieldCheck{
				eq("/target/kind", "StatefulSet"),
				has("/steps/0/title", "The rollout of statefulset/db to revision db-7c9f5 stopped: the new pods do not become ready: container db of pod/db-2 is waiting: CrashLoopBackOff"),
				eq("/steps/0/kubectl", "kubectl -n apps rollout status statefulset/db"),
				eq("/steps/2/kubectl", "kubectl -n apps rollout undo statefulset/db"),
				eq("/steps/3/kubectl", "kubectl -n apps delete pod db-2"),
				has("/evidence/3/lines/0", "current 2 (revision db-5d4f8), updated 1 (revision db-7c9f5)"),
			}}},
	{name: "daemonset-rollout-stalled-diagnostic", id: 96, workload: "stalled:DaemonSet", typ: events.IssueRolloutStuck,
		expect: expect{actions: []events.ActionType{events.ActionDiagnostic, events.ActionDiagnostic, events.ActionDiagnostic}, diagnosticOnly: true,
			fields: []fieldCheck{
				eq("/steps/2/kubectl", "kubectl -n apps rollout undo daemonset/agent"),
				has("/steps/2/title", "the controller then replaces the broken pods itself"),
			}}},
}

// ingressInput: Ingress apps/shop of class nginx (the default class)
// routing shop.example.com/ to service web port http and /api to service
// api port 8080, for an IngressUnavailable incident of reason: api does
// not exist (service_not_found); the first rule asks for port https
// (service_port_not_found); the class is nginx-internal
// (ingress_class_not_found).
func ingressInput(t *testing.T, cfg Config, reason string) planInput {
	t.Helper()
	class := "nginx"
	path := func(p, svc string, port networkingv1.ServiceBackendPort) networkingv1.HTTPIngressPath {
		return networkingv1.HTTPIngressPath{Path: p, Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: svc, Port: port}}}
	}
	paths := []networkingv1.HTTPIngressPath{path("/", "web", networkingv1.ServiceBackendPort{Name: "http"})}
	web := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "apps"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}
	read := &ingressRead{Services: map[string]*corev1.Service{"web": web},
		Classes: []networkingv1.IngressClass{{ObjectMeta: metav1.ObjectMeta{Name: "nginx", Annotations: map[string]string{annotationDefaultIngressClass: "true"}}}}}
	msg := ""
	switch reason {
	case ingressServiceNotFound:
		paths = append(paths, path("/api", "api", networkingv1.ServiceBackendPort{Number: 8080}))
		read.Missing = []string{"api"}
		msg = "ingress shop: rule shop.example.com/api routes to service api, which does not exist"
	case ingressPortNotFound:
		paths[0] = path("/", "web", networkingv1.ServiceBackendPort{Name: "https"})
		msg = "ingress shop: rule shop.example.com/ routes to port https of service web, which has no such port (its ports: http=80)"
	case ingressClassNotFound:
		class = "nginx-internal"
		msg = `ingress shop: ingressClassName "nginx-internal" names no IngressClass (the cluster has: nginx), so no ingress controller serves it`
	case ingressNoController:
		read.Classes[0].Spec.Controller = "k8s.io/ingress-nginx"
		msg = `ingress shop: IngressClass "nginx" (spec.controller k8s.io/ingress-nginx) exists, but no Ingress of that class has an address ` +
			`(status.loadBalancer) and this one has had none for 20m0s, so its controller does not seem to run (or it does not publish addresses)`
	default:
		t.Fatalf("no ingress input for reason %q", reason)
	}
	ing := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: "apps", UID: "ing-uid", Generation: 1, ResourceVersion: "610"},
		Spec: networkingv1.IngressSpec{IngressClassName: &class, Rules: []networkingv1.IngressRule{{Host: "shop.example.com",
			IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{Paths: paths}}}}}}
	read.Ingress = ing
	w, err := workloadOf(ing)
	if err != nil {
		t.Fatal(err)
	}
	return planInput{Cfg: cfg, Owner: w, Ingress: read, Now: goldenNow,
		Incident: noPodIncident(w.Ref, events.IssueIngressUnavailable, reason, msg)}
}

// cronJobLateInput: CronJob apps/report (every 10 minutes) whose last run
// started 30 minutes ago; for previous_run_active it has concurrencyPolicy
// Forbid and that run is still active; for jobs_quota a ResourceQuota on
// count/jobs.batch refuses its Jobs (FailedCreate).
func cronJobLateInput(t *testing.T, cfg Config, reason string) planInput {
	t.Helper()
	started := metav1.NewTime(goldenLastSeen.Add(-30 * time.Minute))
	cj := &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Name: "report", Namespace: "apps", UID: "cj-uid", Generation: 1, ResourceVersion: "78"},
		Spec: batchv1.CronJobSpec{Schedule: "*/10 * * * *", JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "app", Image: "report:3"}}}}}}},
		Status: batchv1.CronJobStatus{LastScheduleTime: &started}}
	owned := []metav1.OwnerReference{{Kind: KindCronJob, Name: "report", UID: "cj-uid", Controller: new(true)}}
	job := batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "report-29412000", Namespace: "apps", UID: "j3", CreationTimestamp: started, OwnerReferences: owned},
		Status: batchv1.JobStatus{Active: 1, StartTime: &started}}
	msg := "cronjob report (schedule \"*/10 * * * *\") has not started 3 scheduled runs since: its last run started at 2026-11-27T00:30:00Z, the latest due at 2026-11-27T00:50:00Z"
	var jobs []batchv1.Job
	switch reason {
	case cronPreviousRunActive:
		cj.Spec.ConcurrencyPolicy = batchv1.ForbidConcurrent
		cj.Status.Active = []corev1.ObjectReference{{Kind: KindJob, Name: job.Name}}
		jobs = []batchv1.Job{job}
		msg += "; concurrencyPolicy Forbid skips every run while job report-29412000 is still running"
	case "missed_schedule":
		msg += "; the CronJob names no cause: the cronjob controller did not start it"
	case "jobs_quota":
		// What the watcher reports from the cronjob controller's Warning
		// FailedCreate on the CronJob.
		w, err := workloadOf(cj)
		if err != nil {
			t.Fatal(err)
		}
		return planInput{Cfg: cfg, Owner: w, Now: goldenNow, Incident: noPodIncident(w.Ref, events.IssueFailedCreate, createExceededQuota,
			`cronjob report cannot create its jobs: Error creating job: jobs.batch "report-29412010" is forbidden: exceeded quota: jobs, requested: count/jobs.batch=1, used: count/jobs.batch=10, limited: count/jobs.batch=10`)}
	default:
		t.Fatalf("no cronjob input for reason %q", reason)
	}
	w, err := workloadOf(cj)
	if err != nil {
		t.Fatal(err)
	}
	return planInput{Cfg: cfg, Owner: w, Jobs: jobs, Now: goldenNow, Incident: noPodIncident(w.Ref, events.IssueCronJobNotScheduling, reason, msg)}
}

// stalledInput: StatefulSet apps/db (3 replicas, rolling from revision
// db-5d4f8 to db-7c9f5, its pod db-2 of the new revision crash-looping)
// or DaemonSet apps/agent (3 nodes, 1 updated, its new pod crash-looping).
func stalledInput(t *testing.T, cfg Config, kind string) planInput {
	t.Helper()
	tmpl := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "db"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "db", Image: "postgres:17"}}}}
	sel := &metav1.LabelSelector{MatchLabels: tmpl.Labels}
	pod := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "db-2", Namespace: "apps", Labels: map[string]string{"app": "db", appsv1.ControllerRevisionHashLabelKey: "db-7c9f5"}},
		Spec: tmpl.Spec, Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse}},
			ContainerStatuses: []corev1.ContainerStatus{{Name: "db", RestartCount: 3, State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}}}}}
	var obj any
	reason, msg := "statefulset_rollout_stalled",
		"rollout of statefulset db to revision db-7c9f5 stopped: 1 of 3 replicas updated, 2 ready, no progress for 10m0s; pod db-2 of the new revision is not ready: container db waiting (CrashLoopBackOff)"
	switch kind {
	case KindStatefulSet:
		obj = &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "apps", UID: "sts-uid", Generation: 2, ResourceVersion: "90"},
			Spec: appsv1.StatefulSetSpec{Replicas: new(int32(3)), Selector: sel, Template: tmpl},
			Status: appsv1.StatefulSetStatus{ObservedGeneration: 2, Replicas: 3, ReadyReplicas: 2, CurrentReplicas: 2, UpdatedReplicas: 1,
				CurrentRevision: "db-5d4f8", UpdateRevision: "db-7c9f5"}}
	case KindDaemonSet:
		pod.Name = "agent-x7k2p"
		obj = &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "agent", Namespace: "apps", UID: "ds-uid", Generation: 2, ResourceVersion: "91"},
			Spec: appsv1.DaemonSetSpec{Selector: sel, Template: tmpl},
			Status: appsv1.DaemonSetStatus{ObservedGeneration: 2, DesiredNumberScheduled: 3, CurrentNumberScheduled: 3, UpdatedNumberScheduled: 1,
				NumberReady: 2, NumberAvailable: 2, NumberUnavailable: 1}}
		reason, msg = "daemonset_rollout_stalled",
			"rollout of daemonset agent (generation 2) stopped: 1 of 3 nodes run the updated pod, 2 available, no progress for 10m0s; pod agent-x7k2p is not ready: container db waiting (CrashLoopBackOff)"
	default:
		t.Fatalf("no stalled input for kind %q", kind)
	}
	w, err := workloadOf(obj)
	if err != nil {
		t.Fatal(err)
	}
	inc := noPodIncident(w.Ref, events.IssueRolloutStuck, reason, msg)
	inc.PodCount = 1
	return planInput{Cfg: cfg, Owner: w, Pods: []corev1.Pod{pod}, Pod: &pod, Now: goldenNow, Incident: inc}
}
