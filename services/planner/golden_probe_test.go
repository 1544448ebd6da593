package planner

import (
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Plans of probe failures (a liveness kill, a readiness failure) and of
// crashes whose previous log says what is missing: the demo's
// payments-api (testdata/shop), its revision 2 crashing, with the
// watcher's reason, the probe in its template, the kubelet's events and
// the log the planner read.
func init() { planCases = append(planCases, probeCases...) }

// Log lines of the cases, as the sandbox's demo and tests write them.
const (
	logMissingEnv  = "Error: required environment variable DATABASE_URL is not set"
	logMissingFile = "Error: open /etc/payments/settings.yaml: no such file or directory"
)

var probeCases = []planCase{
	{name: "deployment-liveness-probe-diagnostic", id: 130, workload: "probe:liveness", typ: events.IssueCrashLoopBackOff, edit: inputEdit{noHistory: true},
		expect: expect{actions: []events.ActionType{events.ActionCheckLogs, events.ActionDiagnostic, events.ActionDiagnostic, events.ActionDiagnostic},
			diagnosticOnly: true, risk: events.RiskNone,
			notes:   []string{"the kubelet already restarts container app at every liveness probe failure"},
			summary: []string{"CrashLoopBackOff of container app in deployment/payments-api (exit code 137, liveness probe, 1 pod)"},
			fields: []fieldCheck{
				has("/steps/1/title", "The kubelet kills container app because its liveness probe fails (this is not the application exiting on its own, nor an OOM kill)"),
				has("/steps/1/title", "httpGet /healthz on port 8080, every 10s, timeout 1s, first after 5s, fails after 3 failures in a row (about 30s)"),
				has("/steps/1/title", `the kubelet says Liveness probe failed: HTTP probe failed with statuscode: 500`),
				eq("/steps/2/kubectl", "kubectl -n shop logs payments-api-cfb97d7cb-hlrcr -c app --previous"),
				has("/steps/3/title", "a startupProbe for a slow start"), eq("/steps/3/kubectl", "kubectl -n shop edit deployment/payments-api"),
				eq("/evidence/5/kind", "probe"), eq("/evidence/5/data/probe", "liveness"), eq("/evidence/5/data/events", "2"),
				has("/evidence/5/lines/0", "liveness probe: httpGet /healthz on port 8080"),
				has("/evidence/5/lines/1", "Warning Unhealthy pod/payments-api-cfb97d7cb-hlrcr (x3"),
				has("/evidence/5/lines/2", "Normal Killing pod/payments-api-cfb97d7cb-hlrcr (x3"),
			}}},
	{name: "deployment-liveness-probe-rollback", id: 131, workload: "probe:liveness", typ: events.IssueCrashLoopBackOff,
		expect: expect{actions: []events.ActionType{events.ActionCheckLogs, events.ActionRollback}, risk: events.RiskMedium,
			summary: []string{"(exit code 137, liveness probe, 1 pod) since revision 2; roll back to revision 1."}}},
	{name: "deployment-readiness-probe-diagnostic", id: 132, workload: "probe:readiness", typ: events.IssueNotReady,
		expect: expect{actions: []events.ActionType{events.ActionDiagnostic, events.ActionDiagnostic, events.ActionDiagnostic},
			diagnosticOnly: true, risk: events.RiskNone,
			summary: []string{"NotReady of container app in deployment/payments-api (readiness probe, 1 pod)"},
			fields: []fieldCheck{
				has("/steps/0/title", "Container app runs but its readiness probe fails, so it gets no traffic: it probes httpGet /ready on port http, every 5s"),
				has("/steps/0/title", "the kubelet says Readiness probe failed: HTTP probe failed with statuscode: 503"),
				eq("/steps/1/kubectl", "kubectl -n shop logs payments-api-cfb97d7cb-hlrcr -c app"),
				eq("/steps/2/kubectl", "kubectl -n shop edit deployment/payments-api"),
				eq("/evidence/4/kind", "probe"), eq("/evidence/4/data/probe", "readiness"), eq("/evidence/4/data/declared", "true"),
			}}},
	{name: "deployment-crashloop-log-env-var-rollback", id: 133, workload: "probe:log-env", typ: events.IssueCrashLoopBackOff,
		expect: expect{actions: []events.ActionType{events.ActionCheckLogs, events.ActionRollback}, risk: events.RiskMedium,
			summary: []string{`1 pod, its previous log says "Error: required environment variable DATABASE_URL is not set") since revision 2; roll back to revision 1.`},
			fields:  []fieldCheck{eq("/evidence/2/kind", "logs"), has("/evidence/2/lines/1", logMissingEnv)}}},
	{name: "deployment-crashloop-log-env-var-diagnostic", id: 134, workload: "probe:log-env", typ: events.IssueCrashLoopBackOff,
		strategies: []Strategy{{Name: "check_logs"}},
		expect: expect{actions: []events.ActionType{events.ActionCheckLogs, events.ActionDiagnostic, events.ActionDiagnostic, events.ActionDiagnostic, events.ActionDiagnostic},
			diagnosticOnly: true,
			fields: []fieldCheck{
				has("/steps/1/title", `Container app exits because its log says "Error: required environment variable DATABASE_URL is not set": environment variable DATABASE_URL is missing or empty (the pod template does not set it); set it in the pod template of deployment/payments-api`),
				eq("/steps/1/kubectl", "kubectl -n shop set env deployment/payments-api -c app --list"),
				has("/steps/2/title", "Exit code 1"),
			}}},
	{name: "deployment-crashloop-log-missing-file-diagnostic", id: 135, workload: "probe:log-file", typ: events.IssueCrashLoopBackOff,
		strategies: []Strategy{{Name: "check_logs"}},
		expect: expect{actions: []events.ActionType{events.ActionCheckLogs, events.ActionDiagnostic, events.ActionDiagnostic, events.ActionDiagnostic, events.ActionDiagnostic},
			diagnosticOnly: true,
			summary:        []string{`its previous log says "Error: open /etc/payments/settings.yaml: no such file or directory"`},
			fields: []fieldCheck{
				has("/steps/1/title", "/etc/payments/settings.yaml does not exist in the container; mount it (a ConfigMap or Secret volume), or point the application at a file that exists (env CONFIG_PATH is /etc/payments/settings.yaml)"),
			}}},
}

// probeInput is the payments-api fixture as the watcher reports it for
// variant: liveness (a liveness kill: exit code 137 after Unhealthy and
// Killing events, a livenessProbe in the template), readiness (running,
// not ready, its readinessProbe failing), log-env and log-file (a crash
// whose previous log names a missing variable or file).
func probeInput(t *testing.T, cfg Config, variant string) planInput {
	t.Helper()
	f := loadShop(t, "payments-api")
	typ := events.IssueCrashLoopBackOff
	if variant == "readiness" {
		typ = events.IssueNotReady
	}
	in := f.input(t, cfg, typ, "app")
	pod := in.Pod.DeepCopy()
	in.Pod = pod
	in.Pods = []corev1.Pod{*pod}
	ctr := &in.Owner.Spec.Containers[0]
	at := metav1.NewTime(in.Now.Add(-30 * time.Second))
	event := func(typ, reason, msg string) corev1.Event {
		return corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: pod.Name + "." + reason, Namespace: pod.Namespace, UID: types.UID("ev-" + reason)},
			InvolvedObject: corev1.ObjectReference{Kind: KindPod, Name: pod.Name, Namespace: pod.Namespace, FieldPath: "spec.containers{app}"},
			Type:           typ, Reason: reason, Message: msg, Count: 3, FirstTimestamp: at, LastTimestamp: at}
	}
	switch variant {
	case "liveness":
		ctr.LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8080)}},
			InitialDelaySeconds: 5}
		pod.Status.ContainerStatuses[0].LastTerminationState.Terminated.ExitCode = 137
		in.Incident.Reason, in.Incident.ExitCode = reasonLivenessProbe, new(int32(137))
		in.Incident.Message = "container app was killed by the kubelet after failing its liveness probe (exit code 137), 3 restarts: Liveness probe failed: HTTP probe failed with statuscode: 500 (x3)"
		in.Events = append(in.Events,
			event(corev1.EventTypeWarning, "Unhealthy", "Liveness probe failed: HTTP probe failed with statuscode: 500"),
			event(corev1.EventTypeNormal, "Killing", "Container app failed liveness probe, will be restarted"))
		in.Logs = &logsResult{Pod: pod.Name, Container: "app", Lines: []string{"listening on :8080", "GET /healthz 500 (database pool exhausted)"}}
	case "readiness":
		ctr.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromString("http")}},
			PeriodSeconds: 5}
		cs := &pod.Status.ContainerStatuses[0]
		cs.State = corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: at}}
		cs.LastTerminationState, cs.RestartCount, cs.Ready = corev1.ContainerState{}, 0, false
		in.Incident.Reason, in.Incident.ExitCode = reasonReadinessProbe, nil
		in.Incident.Message = "container app has not been ready for 10m30s: containers with unready status: [app]; Readiness probe failed: HTTP probe failed with statuscode: 503 (x3)"
		in.Events = append(in.Events, event(corev1.EventTypeWarning, "Unhealthy", "Readiness probe failed: HTTP probe failed with statuscode: 503"))
	case "log-env":
		in.Logs = &logsResult{Pod: pod.Name, Container: "app", Lines: []string{"starting payments-api 3.2.0", logMissingEnv}}
	case "log-file":
		in.Logs = &logsResult{Pod: pod.Name, Container: "app", Lines: []string{"loading configuration from /etc/payments/settings.yaml", logMissingFile}}
	default:
		t.Fatalf("unknown probe variant %q", variant)
	}
	return in
}
