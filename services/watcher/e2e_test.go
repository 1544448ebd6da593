package watcher

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/kaar-dev/kaar/pkg/sandbox"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

func TestMain(m *testing.M) { os.Exit(sandbox.RunTests(m)) }

// testCluster names the cluster on each test's own embedded bus.
const testCluster = "sandbox"

// e2eTiming keeps the sandbox tests short; it has the default group wait
// (none): the first failing pod of a Deployment is announced at once and
// its other replicas join the incident as one "changed".
var e2eTiming = Timing{GroupInterval: 5 * time.Second, ResolveWait: 2 * time.Second}

// harness is one test's sandbox namespace, embedded NATS JetStream and
// ISSUES collector.
type harness struct {
	admin     kubernetes.Interface
	watcher   kubernetes.Interface // the kaar-watcher user: read-only RBAC
	watcherRC *rest.Config         // its client configuration
	ns        string
	nc        *nats.Conn
	// serviceGrace, when set before startWatcher, shortens ServiceGrace.
	serviceGrace time.Duration
	// configure, when set before startWatcher, edits the watcher's
	// configuration (node and HPA tests: a cluster-wide watcher, short
	// graces).
	configure func(*Config)
	// rolloutStall and cronGrace, when set before startWatcher, replace
	// RolloutStallAfter and CronJobGrace.
	rolloutStall, cronGrace time.Duration

	mu       sync.Mutex
	received []received
}

type received struct {
	subject string
	msgID   string
	event   events.IncidentEvent
	err     error
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	return newHarnessOn(t, sandbox.ForTest(t))
}

// newHarnessOn is newHarness on a given sandbox (a private one, for tests
// that stop its API server).
func newHarnessOn(t *testing.T, c *sandbox.Cluster) *harness {
	t.Helper()
	h := &harness{admin: c.Clientset()}
	h.ns = sandbox.NewNamespace(t, h.admin)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// The watcher runs as the sandbox's kaar-watcher user with read-only
	// access to what it watches, and nothing else (least privilege).
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "kaar-watcher"}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods", "events"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"apps"}, Resources: []string{"replicasets", "deployments", "statefulsets", "daemonsets"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"batch"}, Resources: []string{"jobs"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{""}, Resources: []string{"services"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"ingresses"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"batch"}, Resources: []string{"cronjobs"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"autoscaling"}, Resources: []string{"horizontalpodautoscalers"}, Verbs: []string{"get", "list", "watch"}},
	}}
	if _, err := h.admin.RbacV1().Roles(h.ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "kaar-watcher"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "kaar-watcher"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: "rbac.authorization.k8s.io", Name: "kaar-watcher"}}}
	if _, err := h.admin.RbacV1().RoleBindings(h.ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rc, err := c.RESTConfigFor("kaar-watcher")
	if err != nil {
		t.Fatal(err)
	}
	h.watcherRC = rc
	if h.watcher, err = kubernetes.NewForConfig(rc); err != nil {
		t.Fatal(err)
	}

	emb, err := bus.StartEmbedded(ctx, bus.EmbeddedOptions{DontListen: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Shutdown)
	if h.nc, err = emb.Connect(ctx, bus.ConnectOptions{Name: "watcher-test"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.nc.Close)
	js, _ := jetstream.New(h.nc)
	if _, err := bus.Provision(ctx, js, bus.Config{Clusters: []string{testCluster}}); err != nil {
		t.Fatal(err)
	}
	filter, _ := events.IssueFilter(testCluster)
	cons, err := js.OrderedConsumer(ctx, events.StreamIssues, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		r := received{subject: m.Subject(), msgID: m.Headers().Get(jetstream.MsgIDHeader)}
		env, err := events.Decode(m.Data())
		if err == nil {
			r.event, err = events.DecodeData[events.IncidentEvent](env)
		}
		if err == nil && env.Type != r.event.Transition.EventType() {
			err = fmt.Errorf("envelope type %s for a %s transition", env.Type, r.event.Transition)
		}
		r.err = err
		h.mu.Lock()
		h.received = append(h.received, r)
		h.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cc.Stop)
	return h
}

// startWatcher runs a new watcher Service on the harness's bus and waits
// until its cache is synced; the returned function stops it (also at
// cleanup) and checks that Run returned nil.
func (h *harness) startWatcher(t *testing.T) (stop func(), reg *prometheus.Registry) {
	t.Helper()
	reg = prometheus.NewRegistry()
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	cfg := Config{Cluster: testCluster, Namespace: h.ns, Timing: e2eTiming, serviceGrace: h.serviceGrace,
		rolloutStall: h.rolloutStall, cronGrace: h.cronGrace}
	if h.configure != nil {
		h.configure(&cfg)
	}
	svc, err := New(cfg, Deps{NATS: h.nc, Kube: h.watcher, Logger: log, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	stop = runService(t, svc)
	waitFor(t, time.Minute, "the watcher's cache to sync", func() (bool, string) {
		_, err := h.analyze(events.AnalyzeRequest{})
		return err == nil, fmt.Sprint(err)
	})
	return stop, reg
}

func (h *harness) analyze(req events.AnalyzeRequest) (events.AnalyzeResponse, error) {
	subject, _ := events.ServiceSubject(testCluster, events.ServiceWatcher, events.VerbAnalyze)
	body, _ := json.Marshal(req)
	msg, err := h.nc.Request(subject, body, 5*time.Second)
	if err != nil {
		return events.AnalyzeResponse{}, err
	}
	return events.DecodeReply[events.AnalyzeResponse](msg.Data, msg.Header.Get(events.HeaderError))
}

// events returns what the collector received so far, failing on anything
// that did not decode.
func (h *harness) events(t *testing.T) []received {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.received {
		if r.err != nil {
			t.Fatalf("invalid message on %s: %v", r.subject, r.err)
		}
	}
	return slices.Clone(h.received)
}

func (h *harness) waitEvent(t *testing.T, timeout time.Duration, id string, tr events.Transition) received {
	t.Helper()
	var found received
	waitFor(t, timeout, fmt.Sprintf("%s of incident %s", tr, id), func() (bool, string) {
		all := h.events(t)
		for _, r := range all {
			if r.event.Incident.ID == id && r.event.Transition == tr {
				found = r
				return true, ""
			}
		}
		return false, fmt.Sprintf("received %s", summary(all))
	})
	return found
}

func summary(rs []received) string {
	var parts []string
	for _, r := range rs {
		in := r.event.Incident
		parts = append(parts, fmt.Sprintf("%s %s/%s %s pods=%d obs=%d", r.event.Transition, in.Owner.Kind, in.Owner.Name, in.Type, in.PodCount, r.event.Observation))
	}
	return "[" + strings.Join(parts, "; ") + "]"
}

func count(rs []received, id string, tr events.Transition) int {
	n := 0
	for _, r := range rs {
		if r.event.Incident.ID == id && r.event.Transition == tr {
			n++
		}
	}
	return n
}

// waitFor polls cond until it holds or the timeout ends.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %s", timeout, what, why)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// quiet waits long enough for a watcher to have announced anything it
// was going to (debounce + group interval + margin): the assertions that
// follow are about what did NOT happen.
func quiet() { time.Sleep(DefaultDebounce + e2eTiming.GroupInterval + 2*time.Second) }

// waitIncident waits for an announcement (detected or changed) of
// incident id whose incident satisfies cond, and returns it.
func (h *harness) waitIncident(t *testing.T, timeout time.Duration, id, what string, cond func(events.Incident) bool) received {
	t.Helper()
	var found received
	waitFor(t, timeout, fmt.Sprintf("incident %s: %s", id, what), func() (bool, string) {
		all := h.events(t)
		for _, r := range all {
			if r.event.Incident.ID == id && r.event.Transition != events.TransitionResolved && cond(r.event.Incident) {
				found = r
				return true, ""
			}
		}
		return false, fmt.Sprintf("received %s", summary(all))
	})
	return found
}

// detectedOnce fails unless incident id was detected exactly once: the
// replicas that joined it later were announced as changes.
func detectedOnce(t *testing.T, all []received, id string) {
	t.Helper()
	if n := count(all, id, events.TransitionDetected); n != 1 {
		t.Errorf("incident %s detected %d times, want once: %s", id, n, summary(all))
	}
}

func testDeployment(name string, replicas int32, annotations map[string]string, c corev1.Container) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: annotations},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{c}},
			},
		},
	}
}

func (h *harness) create(t *testing.T, d *appsv1.Deployment) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := h.admin.AppsV1().Deployments(h.ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// fixCrash removes the crash annotation from a Deployment's pod template:
// a good spec, rolled out by the real controllers.
func (h *harness) fixCrash(t *testing.T, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	patch := fmt.Appendf(nil, `{"spec":{"template":{"metadata":{"annotations":{%q:null}}}}}`, sandbox.AnnotationCrashExitCode)
	if _, err := h.admin.AppsV1().Deployments(h.ns).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

func (h *harness) waitRolledOut(t *testing.T, name string, replicas int) {
	t.Helper()
	waitFor(t, 2*time.Minute, "deployment "+name+" to roll out", func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		d, err := h.admin.AppsV1().Deployments(h.ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		pods, err := h.admin.CoreV1().Pods(h.ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + name})
		if err != nil {
			return false, err.Error()
		}
		return sandbox.DeploymentAvailable(d) && len(pods.Items) == replicas, fmt.Sprintf("status %+v, %d pods", d.Status, len(pods.Items))
	})
}

func metricValue(t *testing.T, reg *prometheus.Registry, name, typ string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "type" && l.GetValue() == typ {
					if m.GetCounter() != nil {
						return m.GetCounter().GetValue()
					}
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	t.Fatalf("metric %s{type=%q} not found", name, typ)
	return 0
}

// TestCrashingDeploymentIsOneIncidentUntilFixed is the brief's story: a
// Deployment whose 3 replicas crash is one detected incident with 3 pods,
// analyze returns it, fixing the spec resolves it, and a restarted watcher
// does not announce it again.
func TestCrashingDeploymentIsOneIncidentUntilFixed(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	stop, reg := h.startWatcher(t)
	store := h.startPlanner(t)
	h.create(t, testDeployment("payments-api", 3, map[string]string{sandbox.AnnotationCrashExitCode: "1"},
		corev1.Container{Name: "app", Image: "registry.example/payments-api:3.2.0"}))
	id := events.IncidentID(testCluster, h.ns, "Deployment", "payments-api", "app", events.IssueCrashLoopBackOff)

	det := h.waitEvent(t, 2*time.Minute, id, events.TransitionDetected)
	wantSubject, _ := events.IssueSubject(testCluster, h.ns, events.IssueCrashLoopBackOff)
	if det.subject != wantSubject || det.msgID != events.IncidentMsgID(id, 1) || det.event.Observation != 1 {
		t.Errorf("published on %s with msg id %s, observation %d", det.subject, det.msgID, det.event.Observation)
	}
	// Detected with the first failing replica(s); the others join it.
	if n := det.event.Incident.PodCount; n < 1 || n > 3 || len(det.event.Incident.Pods) != n {
		t.Errorf("detected incident = %+v, want 1 to 3 pods", det.event.Incident)
	}
	in := h.waitIncident(t, time.Minute, id, "3 pods", func(in events.Incident) bool { return in.PodCount == 3 }).event.Incident
	if in.PodCount != 3 || len(in.Pods) != 3 || in.Reason != "exit_code_1" || in.ExitCode == nil || *in.ExitCode != 1 ||
		in.Owner.Kind != "Deployment" || in.Owner.Name != "payments-api" || in.Container != "app" || in.Severity != events.SeverityHigh {
		t.Errorf("detected incident = %+v", in)
	}
	if len(in.OwnerChain) != 2 || in.OwnerChain[0].Kind != "ReplicaSet" || in.OwnerChain[1].Kind != "Deployment" {
		t.Errorf("owner chain = %+v", in.OwnerChain)
	}
	// One revision: no rollback, a rollout restart after the logs.
	wantPlan(t, store, id, events.IssueCrashLoopBackOff, "Deployment", "payments-api", events.ActionRolloutRestart)

	resp, err := h.analyze(events.AnalyzeRequest{Namespace: h.ns})
	if err != nil || resp.Total != 1 || resp.Incidents[0].ID != id || resp.Incidents[0].PodCount != 3 || resp.ByType[events.IssueCrashLoopBackOff] != 1 {
		t.Errorf("analyze = %+v, %v; want the one incident with 3 pods", resp, err)
	}
	if resp, err := h.analyze(events.AnalyzeRequest{Type: events.IssueImagePullBackOff}); err != nil || resp.Total != 0 {
		t.Errorf("analyze type=ImagePullBackOff = %+v, %v; want none", resp, err)
	}
	if _, err := h.analyze(events.AnalyzeRequest{Limit: -1}); !strings.Contains(fmt.Sprint(err), "limit") {
		t.Errorf("analyze limit=-1: %v, want an invalid_argument naming limit", err)
	}

	settled := len(h.events(t))
	quiet()
	all := h.events(t)
	if len(all) != settled {
		t.Fatalf("announced %s while the pods kept crashing unchanged", summary(all[settled:]))
	}
	detectedOnce(t, all, id)
	if got := metricValue(t, reg, "kaar_watcher_detections_total", "CrashLoopBackOff"); got != 1 {
		t.Errorf("kaar_watcher_detections_total = %v, want 1", got)
	}
	if got := metricValue(t, reg, "kaar_watcher_incidents", "CrashLoopBackOff"); got != 1 {
		t.Errorf("kaar_watcher_incidents = %v, want 1", got)
	}

	h.fixCrash(t, "payments-api")
	res := h.waitEvent(t, 2*time.Minute, id, events.TransitionResolved)
	if res.event.Incident.PodCount != 0 || res.msgID != events.IncidentMsgID(id, res.event.Observation) {
		t.Errorf("resolved = %+v (msg id %s)", res.event, res.msgID)
	}
	all = h.events(t)
	for i, r := range all {
		if r.event.Observation != int64(i+1) {
			t.Errorf("observations are not 1, 2, 3...: %s", summary(all))
		}
	}
	detectedOnce(t, all, id)
	if resp, err := h.analyze(events.AnalyzeRequest{Namespace: h.ns}); err != nil || resp.Total != 0 {
		t.Errorf("analyze after the fix = %+v, %v; want nothing", resp, err)
	}

	// A restarted watcher (a new Service on the same bus) repeats nothing.
	stop()
	before := len(h.events(t))
	h.startWatcher(t)
	quiet()
	if after := h.events(t); len(after) != before {
		t.Errorf("the restarted watcher announced %s", summary(after[before:]))
	}
}

// TestRestartedWatcherNeitherRepeatsNorMissesResolution restarts the
// watcher while an incident is open (it must stay silent and still know
// the incident), then fixes the workload while no watcher runs (the next
// one must announce the resolution).
func TestRestartedWatcherNeitherRepeatsNorMissesResolution(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	stop, _ := h.startWatcher(t)
	store := h.startPlanner(t)
	h.create(t, testDeployment("worker", 2, map[string]string{sandbox.AnnotationCrashExitCode: "139"},
		corev1.Container{Name: "worker", Image: "registry.example/worker:1.0"}))
	id := events.IncidentID(testCluster, h.ns, "Deployment", "worker", "worker", events.IssueCrashLoopBackOff)
	det := h.waitEvent(t, 2*time.Minute, id, events.TransitionDetected)
	if det.event.Incident.Reason != "segfault" {
		t.Errorf("detected = %+v", det.event.Incident)
	}
	wantPlan(t, store, id, events.IssueCrashLoopBackOff, "Deployment", "worker", events.ActionRolloutRestart)
	h.waitIncident(t, time.Minute, id, "2 pods", func(in events.Incident) bool { return in.PodCount == 2 })
	announced := h.events(t)
	stop()

	stop, _ = h.startWatcher(t)
	waitFor(t, 30*time.Second, "the restarted watcher to know the incident", func() (bool, string) {
		resp, err := h.analyze(events.AnalyzeRequest{})
		return err == nil && resp.Total == 1, fmt.Sprintf("%+v %v", resp, err)
	})
	resp, _ := h.analyze(events.AnalyzeRequest{})
	if got := resp.Incidents[0]; got.ID != id || !got.FirstSeen.Equal(det.event.Incident.FirstSeen) {
		t.Errorf("after restart: %+v, want first seen %s kept", got, det.event.Incident.FirstSeen)
	}
	quiet()
	if all := h.events(t); len(all) != len(announced) {
		t.Fatalf("the restarted watcher announced again: %s", summary(all[len(announced):]))
	}
	stop()

	h.fixCrash(t, "worker")
	h.waitRolledOut(t, "worker", 2)
	h.startWatcher(t)
	res := h.waitEvent(t, time.Minute, id, events.TransitionResolved)
	if want := int64(len(announced) + 1); res.event.Observation != want {
		t.Errorf("resolved observation = %d, want %d", res.event.Observation, want)
	}
	all := h.events(t)
	if len(all) != len(announced)+1 {
		t.Errorf("want the announcements before the restarts then resolved, got %s", summary(all))
	}
	detectedOnce(t, all, id)
}

// TestWatcherStartedDuringImagePullBackOffNamesTheCause starts the
// watcher only once the pods of a Deployment show "Back-off pulling image"
// (the status no longer says why): the incident still names the cause,
// read from the kubelet's Failed events.
func TestWatcherStartedDuringImagePullBackOffNamesTheCause(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.create(t, testDeployment("web", 2, nil, corev1.Container{Name: "web", Image: "private.registry.example/team/web:1.0"}))
	waitFor(t, 2*time.Minute, "both pods to be in ImagePullBackOff", func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		pods, err := h.admin.CoreV1().Pods(h.ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return false, err.Error()
		}
		backOff := 0
		for _, p := range pods.Items {
			for _, cs := range p.Status.ContainerStatuses {
				if w := cs.State.Waiting; w != nil && w.Reason == "ImagePullBackOff" {
					backOff++
				}
			}
		}
		return backOff == 2, fmt.Sprintf("%d of %d pods in ImagePullBackOff", backOff, len(pods.Items))
	})

	h.startWatcher(t)
	store := h.startPlanner(t)
	id := events.IncidentID(testCluster, h.ns, "Deployment", "web", "web", events.IssueImagePullBackOff)
	in := h.waitEvent(t, time.Minute, id, events.TransitionDetected).event.Incident
	if in.Reason != "unauthorized" || !strings.Contains(in.Message, "401 Unauthorized") {
		t.Errorf("detected %+v, want reason unauthorized and the kubelet's 401 in the message", in)
	}
	in = h.waitIncident(t, time.Minute, id, "2 pods", func(in events.Incident) bool { return in.PodCount == 2 }).event.Incident
	if in.Reason != "unauthorized" || in.PodCount != 2 || !strings.Contains(in.Message, "401 Unauthorized") {
		t.Errorf("detected %+v, want reason unauthorized, 2 pods and the kubelet's 401 in the message", in)
	}
	// Credentials are a person's: diagnostic, saying so.
	p := wantPlan(t, store, id, events.IssueImagePullBackOff, "Deployment", "web", diagnostic)
	if !strings.Contains(stepTitles(p), "add imagePullSecrets to the pod template of deployment/web") {
		t.Errorf("plan does not name the missing credentials:\n%s", stepTitles(p))
	}
}

// TestDemoShopIncidents runs the watcher over the sandbox demo shop,
// rolled from good revisions to bad ones as on a real cluster: each broken
// workload is one incident of the expected type (OOMKilled and
// ImagePullBackOff among them) and the healthy ones (a StatefulSet, a
// completed Job, Deployments whose old pods were replaced) give none.
func TestDemoShopIncidents(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.startWatcher(t)
	store := h.startPlanner(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := sandbox.ApplyDemo(ctx, h.admin, sandbox.DemoOptions{Namespace: h.ns, Extras: true}, t.Output()); err != nil {
		t.Fatal(err)
	}
	want := []struct {
		owner     string
		container string
		typ       events.IssueType
		reason    string
		exit      int32 // -1: none
		action    events.ActionType
	}{
		// Rolled from a good revision: back to it.
		{"payments-api", "app", events.IssueCrashLoopBackOff, "exit_code_1", 1, events.ActionRollback},
		{"recommender", "app", events.IssueOOMKilled, "oom_killed", 137, events.ActionSetMemoryLimit},
		{"frontend", "app", events.IssueImagePullBackOff, "image_not_found", -1, events.ActionRollback},
		// Its request exceeds every node: lowered to fit the largest.
		{"analytics", "", events.IssuePending, "insufficient_cpu", -1, events.ActionSetResourceRequests},
		{"cache", "", events.IssueEvicted, "evicted_memory", -1, events.ActionDeleteEvictedPods},
		{"notifier", "app", events.IssueCreateContainerConfigError, "missing_configmap", -1, diagnostic},
	}
	for _, w := range want {
		id := events.IncidentID(testCluster, h.ns, "Deployment", w.owner, w.container, w.typ)
		h.waitEvent(t, time.Minute, id, events.TransitionDetected)
		// The cause may be refined by a later announcement (an image pull
		// failure's event seen after the status).
		in := h.waitIncident(t, time.Minute, id, "reason "+w.reason, func(in events.Incident) bool { return in.Reason == w.reason }).event.Incident
		if in.Reason != w.reason || in.PodCount < 1 || (w.exit < 0) != (in.ExitCode == nil) || in.ExitCode != nil && *in.ExitCode != w.exit {
			t.Errorf("%s: detected %+v, want reason %s exit %d", w.owner, in, w.reason, w.exit)
		}
		wantPlan(t, store, id, w.typ, "Deployment", w.owner, w.action)
	}
	quiet()
	all := h.events(t)
	var detected []string
	for _, r := range all {
		if r.event.Transition == events.TransitionDetected {
			detected = append(detected, r.event.Incident.Owner.Name+"/"+string(r.event.Incident.Type))
		}
	}
	if len(detected) != len(want) {
		t.Errorf("detected %v, want exactly the %d broken workloads (all: %s)", detected, len(want), summary(all))
	}
	resp, err := h.analyze(events.AnalyzeRequest{Namespace: h.ns})
	if err != nil || resp.Total != len(want) || len(resp.ByType) != len(want) {
		t.Errorf("analyze = %+v, %v", resp, err)
	}
	if resp.Total > 0 && resp.Incidents[len(resp.Incidents)-1].Severity != events.SeverityMedium {
		t.Errorf("analyze is not sorted worst first: %+v", resp.Incidents)
	}
}
