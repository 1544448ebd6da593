package watcher

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/kaar-dev/kaar/pkg/sandbox"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Probe failures and crashes that explain themselves in their log, on
// the sandbox: the kwok stages play the kubelet (sandbox.kaar.dev/liveness,
// sandbox.kaar.dev/readiness: Unhealthy and Killing events, kills with
// exit code 137) and serve the log of sandbox.kaar.dev/log. A real
// planner on the same bus plans each incident, so the tests check the
// plan too. Each test owns its namespace.

// probed is a container with an HTTP liveness and readiness probe.
func probed() corev1.Container {
	get := func(path string) corev1.ProbeHandler {
		return corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromInt32(8080)}}
	}
	return corev1.Container{Name: "app", Image: "nginx:1.27",
		LivenessProbe:  &corev1.Probe{ProbeHandler: get("/healthz"), PeriodSeconds: 10, FailureThreshold: 3},
		ReadinessProbe: &corev1.Probe{ProbeHandler: get("/ready"), PeriodSeconds: 5}}
}

// stepTitles are a plan's step titles, one per line.
func stepTitles(p events.Plan) string {
	var b strings.Builder
	for _, s := range p.Steps {
		b.WriteString(s.Title + "\n")
	}
	return b.String()
}

func TestLivenessKillIsToldApartFromOOMAndExits(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.startWatcher(t)
	store := h.startPlanner(t)
	c := probed()
	c.ReadinessProbe = nil // ready between kills, as a liveness-only container is
	h.create(t, testDeployment("web", 1, map[string]string{sandbox.AnnotationLiveness: "fail"}, c))

	id := events.IncidentID(testCluster, h.ns, "Deployment", "web", "app", events.IssueCrashLoopBackOff)
	in := h.waitIncident(t, 2*time.Minute, id, "reason liveness_probe", func(in events.Incident) bool {
		return in.Reason == reasonClassLivenessProbe
	}).event.Incident
	if in.Owner.Kind != "Deployment" || in.Owner.Name != "web" || in.ExitCode == nil || *in.ExitCode != 137 ||
		!strings.Contains(in.Message, "killed by the kubelet after failing its liveness probe") ||
		!strings.Contains(in.Message, "Liveness probe failed: HTTP probe failed with statuscode: 500") {
		t.Errorf("incident: owner %+v, exit code %v, message %q", in.Owner, in.ExitCode, in.Message)
	}
	if slices.ContainsFunc(h.events(t), func(r received) bool { return r.event.Incident.Type == events.IssueOOMKilled }) {
		t.Errorf("a liveness kill was reported as OOMKilled: %s", summary(h.events(t)))
	}
	p := waitPlan(t, store, id, events.IssueCrashLoopBackOff)
	steps := stepTitles(p)
	if !p.DiagnosticOnly || !strings.Contains(steps, "The kubelet kills container app because its liveness probe fails") ||
		!strings.Contains(steps, "httpGet /healthz on port 8080, every 10s, timeout 1s, first after 0s, fails after 3 failures in a row") ||
		!slices.ContainsFunc(p.Evidence, func(e events.Evidence) bool { return e.Kind == events.EvidenceProbe && e.Data["events"] != "0" }) {
		t.Errorf("plan: diagnostic %t, summary %q, steps:\n%s", p.DiagnosticOnly, p.Summary, steps)
	}
}

func TestReadinessFailureIsNotReadyQuotingTheProbe(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.configure = func(c *Config) {
		c.Classify = DefaultClassifyOptions()
		c.Classify.NotReadyAfter = 5 * time.Second
	}
	h.startWatcher(t)
	store := h.startPlanner(t)
	h.create(t, testDeployment("api", 1, map[string]string{sandbox.AnnotationReadiness: "fail"}, probed()))

	id := events.IncidentID(testCluster, h.ns, "Deployment", "api", "app", events.IssueNotReady)
	in := h.waitIncident(t, 2*time.Minute, id, "reason readiness_probe", func(in events.Incident) bool {
		return in.Reason == reasonClassReadinessProbe
	}).event.Incident
	if in.Owner.Kind != "Deployment" || in.Owner.Name != "api" ||
		!strings.Contains(in.Message, "Readiness probe failed: HTTP probe failed with statuscode: 503") {
		t.Errorf("incident: owner %+v, message %q", in.Owner, in.Message)
	}
	p := waitPlan(t, store, id, events.IssueNotReady)
	steps := stepTitles(p)
	if !p.DiagnosticOnly || !strings.Contains(steps, "Container app runs but its readiness probe fails, so it gets no traffic: it probes httpGet /ready on port 8080, every 5s") ||
		!strings.Contains(steps, "Readiness probe failed: HTTP probe failed with statuscode: 503") {
		t.Errorf("plan: diagnostic %t, summary %q, steps:\n%s", p.DiagnosticOnly, p.Summary, steps)
	}
}

func TestCrashWhoseLogNamesTheMissingVariableIsExplainedByIt(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.startWatcher(t)
	store := h.startPlanner(t)
	const line = "Error: required environment variable DATABASE_URL is not set"
	h.create(t, testDeployment("billing", 1, map[string]string{sandbox.AnnotationCrashExitCode: "1",
		sandbox.AnnotationLog: "starting billing 2.1.0\n" + line}, corev1.Container{Name: "app", Image: "nginx:1.27"}))

	id := events.IncidentID(testCluster, h.ns, "Deployment", "billing", "app", events.IssueCrashLoopBackOff)
	in := h.waitIncident(t, 2*time.Minute, id, "exit_code_1", func(in events.Incident) bool { return in.Reason == "exit_code_1" }).event.Incident
	if in.Owner.Kind != "Deployment" || in.Owner.Name != "billing" || !strings.Contains(in.Message, "exited with code 1") {
		t.Errorf("incident: owner %+v, message %q", in.Owner, in.Message)
	}
	p := waitPlan(t, store, id, events.IssueCrashLoopBackOff)
	if !strings.Contains(p.Summary, `its previous log says "`+line+`"`) {
		t.Errorf("plan summary %q does not cite the log line", p.Summary)
	}
	if !slices.ContainsFunc(p.Evidence, func(e events.Evidence) bool { return e.Kind == events.EvidenceLogs && slices.Contains(e.Lines, line) }) {
		t.Errorf("the logs evidence does not quote %q: %+v", line, p.Evidence)
	}
	// One revision, so no rollback: a rollout restart is the typed step,
	// and the summary says what the log said all the same.
	if p.DiagnosticOnly && !strings.Contains(stepTitles(p), "environment variable DATABASE_URL is missing or empty") {
		t.Errorf("diagnostic plan without the variable step:\n%s", stepTitles(p))
	}
	wantPlan(t, store, id, events.IssueCrashLoopBackOff, "Deployment", "billing", events.ActionRolloutRestart)
}

func TestOOMKillWithAFailingLivenessProbeStaysOOMKilled(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.startWatcher(t)
	store := h.startPlanner(t)
	c := probed()
	c.ReadinessProbe = nil
	c.Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")}
	h.create(t, testDeployment("cache", 1, map[string]string{sandbox.AnnotationMemoryUsage: "200Mi", sandbox.AnnotationLiveness: "fail"}, c))

	id := events.IncidentID(testCluster, h.ns, "Deployment", "cache", "app", events.IssueOOMKilled)
	in := h.waitIncident(t, 2*time.Minute, id, "oom_killed", func(in events.Incident) bool { return in.Reason == reasonClassOOMKilled }).event.Incident
	if in.Owner.Name != "cache" || strings.Contains(in.Message, "liveness") {
		t.Errorf("incident: owner %+v, message %q", in.Owner, in.Message)
	}
	// One revision: the limit times memory_factor.
	wantPlan(t, store, id, events.IssueOOMKilled, "Deployment", "cache", events.ActionSetMemoryLimit)
	quiet()
	if slices.ContainsFunc(h.events(t), func(r received) bool { return r.event.Incident.Reason == reasonClassLivenessProbe }) {
		t.Errorf("an OOM kill was reported as a liveness kill: %s", summary(h.events(t)))
	}
}

func TestPassingProbesAreNoIncident(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.configure = func(c *Config) {
		c.Classify = DefaultClassifyOptions()
		c.Classify.NotReadyAfter = 5 * time.Second
	}
	h.startWatcher(t)
	h.create(t, testDeployment("fine", 2, map[string]string{sandbox.AnnotationLog: "listening on :8080"}, probed()))
	waitFor(t, 2*time.Minute, "deployment fine available", func() (bool, string) {
		d, err := h.admin.AppsV1().Deployments(h.ns).Get(ctx30(t), "fine", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return sandbox.DeploymentAvailable(d) && d.Status.ReadyReplicas == 2, "not available"
	})
	time.Sleep(5 * time.Second) // past not_ready_after
	quiet()
	if all := h.events(t); len(all) != 0 {
		t.Errorf("announcements for a workload whose probes pass: %s", summary(all))
	}
	if resp, err := h.analyze(events.AnalyzeRequest{}); err != nil || len(resp.Incidents) != 0 {
		t.Errorf("analyze = %+v, %v; want no incident", resp, err)
	}
}
