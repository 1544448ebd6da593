package planner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
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
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
)

func TestMain(m *testing.M) { os.Exit(sandbox.RunTests(m)) }

// testSigner is the planner key of every test planner.
var testSigner = func() *events.Signer {
	s, err := events.GenerateSigner()
	if err != nil {
		panic(err)
	}
	return s
}()

// harness is one integration test's world: a namespace in the shared
// sandbox cluster and an embedded NATS JetStream server, provisioned.
type harness struct {
	t    *testing.T
	kube kubernetes.Interface
	// plannerKube, when set, is the planner's client (default: kube, the
	// sandbox admin).
	plannerKube kubernetes.Interface
	ns          string
	nc          *nats.Conn
	js          jetstream.JetStream
	store       *bus.PlanStore
}

// newHarness starts the bus; withCluster also attaches the sandbox and
// creates the test's namespace.
func newHarness(t *testing.T, withCluster bool) *harness {
	t.Helper()
	h := &harness{t: t}
	if withCluster {
		c := sandbox.ForTest(t)
		h.kube = c.Clientset()
		h.ns = sandbox.NewNamespace(t, h.kube)
	}
	ctx := h.ctx(30 * time.Second)
	e, err := bus.StartEmbedded(ctx, bus.EmbeddedOptions{DontListen: true})
	if err != nil {
		t.Fatalf("embedded nats: %v", err)
	}
	t.Cleanup(e.Shutdown)
	if h.nc, err = e.Connect(ctx, bus.ConnectOptions{Name: t.Name(), Logger: testLogger(t)}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.nc.Close)
	if h.js, err = jetstream.New(h.nc); err != nil {
		t.Fatal(err)
	}
	if _, err := bus.Provision(ctx, h.js, bus.Config{Clusters: []string{testCluster}}); err != nil {
		t.Fatalf("provision: %v", err)
	}
	if h.store, err = bus.OpenPlanStore(ctx, h.js); err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *harness) ctx(d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	h.t.Cleanup(cancel)
	return ctx
}

// testLogger writes to the test log (shown on failure or with -v).
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// startPlanner runs a planner on the harness's bus and cluster until the
// test ends; Run must return nil then.
func (h *harness) startPlanner(edit func(*Config)) (*Service, *prometheus.Registry) {
	h.t.Helper()
	cfg := testConfig(h.t)
	if edit != nil {
		edit(&cfg)
	}
	kube := h.kube
	if h.plannerKube != nil {
		kube = h.plannerKube
	}
	if kube == nil {
		kube = unreachableKube(h.t)
	}
	reg := prometheus.NewRegistry()
	s, err := New(cfg, Deps{NATS: h.nc, Kube: kube, Logger: testLogger(h.t), Registerer: reg, Signer: testSigner})
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	h.t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				h.t.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			h.t.Error("Run did not return within 30s of cancel")
		}
	})
	select {
	case <-s.Ready():
	case err := <-done:
		h.t.Fatalf("Run ended early: %v", err)
	case <-time.After(20 * time.Second):
		h.t.Fatal("planner not ready after 20s")
	}
	return s, reg
}

// unreachableKube is a client for tests that must not touch a cluster:
// an empty fake clientset (every read finds nothing).
func unreachableKube(t *testing.T) kubernetes.Interface {
	t.Helper()
	return fake.NewClientset()
}

// eventually polls cond every 100ms until it returns true or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	last := ""
	for time.Now().Before(deadline) {
		ok, why := cond()
		if ok {
			return
		}
		last = why
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s (last: %s)", d, what, last)
}

// deployment creates a one-container Deployment, edited by edits first.
func (h *harness) deployment(name, image string, replicas int32, annotations map[string]string, memLimit string, edits ...func(*appsv1.Deployment)) *appsv1.Deployment {
	h.t.Helper()
	labels := map[string]string{"app": name}
	res := corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("32Mi")}}
	if memLimit != "" {
		res.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse(memLimit)}
	}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: h.ns, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: annotations},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image, Resources: res}}},
			},
		},
	}
	for _, e := range edits {
		e(d)
	}
	d, err := h.kube.AppsV1().Deployments(h.ns).Create(h.ctx(30*time.Second), d, metav1.CreateOptions{})
	if err != nil {
		h.t.Fatalf("create deployment %s: %v", name, err)
	}
	return d
}

func (h *harness) getDeployment(name string) *appsv1.Deployment {
	h.t.Helper()
	d, err := h.kube.AppsV1().Deployments(h.ns).Get(h.ctx(10*time.Second), name, metav1.GetOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	return d
}

// waitAvailable waits until the Deployment's latest revision is rolled
// out and every pod of it is Running.
func (h *harness) waitAvailable(name string, d time.Duration) {
	h.t.Helper()
	eventually(h.t, d, "deployment "+name+" available with all pods Running", func() (bool, string) {
		dep := h.getDeployment(name)
		pods := h.pods(name)
		var states []string
		running := 0
		for _, p := range pods {
			states = append(states, p.Name+":"+sandbox.PodStatus(&p))
			if sandbox.PodStatus(&p) == "Running" {
				running++
			}
		}
		ok := sandbox.DeploymentAvailable(dep) && running == len(pods) && int32(len(pods)) == *dep.Spec.Replicas
		return ok, fmt.Sprintf("gen %d observed %d, pods %v", dep.Generation, dep.Status.ObservedGeneration, states)
	})
}

func (h *harness) pods(app string) []corev1.Pod {
	h.t.Helper()
	list, err := h.kube.CoreV1().Pods(h.ns).List(h.ctx(10*time.Second), metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		h.t.Fatal(err)
	}
	return list.Items
}

// setImage changes the image of container app.
func (h *harness) setImage(name, image string) {
	h.t.Helper()
	patch := fmt.Appendf(nil, `[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":%q}]`, image)
	if _, err := h.kube.AppsV1().Deployments(h.ns).Patch(h.ctx(10*time.Second), name, types.JSONPatchType, patch, metav1.PatchOptions{}); err != nil {
		h.t.Fatal(err)
	}
}

// incident builds the incident the watcher would announce for pods of
// a Deployment.
func (h *harness) incident(dep *appsv1.Deployment, typ events.IssueType, reason string, pods []corev1.Pod) events.Incident {
	h.t.Helper()
	owner := events.ObjectRef{Kind: KindDeployment, Namespace: h.ns, Name: dep.Name, UID: string(dep.UID), APIVersion: "apps/v1"}
	inc := events.Incident{
		ID:      events.IncidentID(testCluster, h.ns, KindDeployment, dep.Name, "app", typ),
		Cluster: testCluster, Namespace: h.ns, Owner: owner, Container: "app", Type: typ, Reason: reason,
		PodCount: len(pods), FirstSeen: time.Now().UTC().Add(-time.Minute).Truncate(time.Second),
		LastSeen: time.Now().UTC().Truncate(time.Second), Count: 1, Severity: typ.DefaultSeverity(),
	}
	for _, p := range pods {
		inc.Pods = append(inc.Pods, p.Name)
		if c := metav1.GetControllerOf(&p); c != nil && len(inc.OwnerChain) == 0 {
			inc.OwnerChain = []events.ObjectRef{{Kind: c.Kind, Namespace: h.ns, Name: c.Name, UID: string(c.UID), APIVersion: c.APIVersion}, owner}
		}
		if cs := containerStatus(&p, "app"); cs != nil && cs.LastTerminationState.Terminated != nil && inc.ExitCode == nil {
			code := cs.LastTerminationState.Terminated.ExitCode
			inc.ExitCode, inc.RestartCount = &code, cs.RestartCount
		}
	}
	if err := inc.Validate(); err != nil {
		h.t.Fatalf("incident: %v", err)
	}
	return inc
}

// publishIssue publishes an incident transition as the watcher does and
// returns its stream sequence. msgID "" uses the watcher's id.
func (h *harness) publishIssue(tr events.Transition, inc events.Incident, observation int64, msgID string) uint64 {
	h.t.Helper()
	ev := events.IncidentEvent{Transition: tr, Incident: inc, ObservedAt: time.Now().UTC(), Observation: observation}
	env, err := events.New(tr.EventType(), events.SourceWatcher, testCluster, inc.ID, &ev)
	if err != nil {
		h.t.Fatal(err)
	}
	subject, err := events.IssueSubject(testCluster, inc.Namespace, inc.Type)
	if err != nil {
		h.t.Fatal(err)
	}
	if msgID == "" {
		msgID = events.IncidentMsgID(inc.ID, observation)
	}
	return h.publishRaw(subject, mustMarshal(h.t, env), msgID)
}

func (h *harness) publishRaw(subject string, body []byte, msgID string) uint64 {
	h.t.Helper()
	ack, err := h.js.Publish(h.ctx(10*time.Second), subject, body, jetstream.WithMsgID(msgID))
	if err != nil {
		h.t.Fatal(err)
	}
	if ack.Duplicate {
		h.t.Fatalf("publish %s: duplicate message id %s", subject, msgID)
	}
	return ack.Sequence
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// waitHandled waits until the planner's consumer has acknowledged (or
// terminated) every message up to seq.
func (h *harness) waitHandled(seq uint64) {
	h.t.Helper()
	name, _ := events.PlannerConsumer(testCluster)
	eventually(h.t, 90*time.Second, fmt.Sprintf("issue %d handled", seq), func() (bool, string) {
		c, err := h.js.Consumer(h.ctx(5*time.Second), events.StreamIssues, name)
		if err != nil {
			return false, err.Error()
		}
		info, err := c.Info(h.ctx(5 * time.Second))
		if err != nil {
			return false, err.Error()
		}
		return info.AckFloor.Stream >= seq, fmt.Sprintf("ack floor %d, pending acks %d", info.AckFloor.Stream, info.NumAckPending)
	})
}

// plans lists the stored plans of an incident, oldest first.
func (h *harness) plans(incidentID string) []events.Plan {
	h.t.Helper()
	all, err := h.store.List(h.ctx(10 * time.Second))
	if err != nil {
		h.t.Fatal(err)
	}
	var out []events.Plan
	for _, sp := range all {
		if sp.Plan.IncidentID == incidentID {
			// Every plan the planner stores is signed by its key, and the
			// signature covers what the tests read.
			if err := events.VerifyPlan(sp.Plan, []string{testSigner.PublicKey()}); err != nil {
				h.t.Fatalf("stored plan %s: %v", sp.Plan.ID, err)
			}
			out = append(out, sp.Plan)
		}
	}
	slices.SortFunc(out, func(a, b events.Plan) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// proposed returns the incident's single proposed plan.
func (h *harness) proposed(incidentID string) events.Plan {
	h.t.Helper()
	var got []events.Plan
	for _, p := range h.plans(incidentID) {
		if p.State == events.PlanProposed {
			got = append(got, p)
		}
	}
	if len(got) != 1 {
		h.t.Fatalf("want 1 proposed plan for incident %s, got %d: %s", incidentID, len(got), mustJSON(got))
	}
	return got[0]
}

// count counts the messages of a stream on one subject.
func (h *harness) count(stream, subject string) uint64 {
	h.t.Helper()
	st, err := h.js.Stream(h.ctx(10*time.Second), stream)
	if err != nil {
		h.t.Fatal(err)
	}
	info, err := st.Info(h.ctx(10*time.Second), jetstream.WithSubjectFilter(subject))
	if err != nil {
		h.t.Fatal(err)
	}
	return info.State.Subjects[subject]
}

// planEvents returns the plan ids announced with event ev, in order.
func (h *harness) planEvents(ev events.PlanEvent) []string {
	h.t.Helper()
	subject, _ := events.PlanEventSubject(testCluster, ev)
	return h.subjects(events.StreamPlanEvents, subject)
}

// auditPlans returns the plan ids of the audit records of kind.
func (h *harness) auditPlans(kind events.AuditKind) []string {
	h.t.Helper()
	subject, _ := events.AuditSubject(testCluster, kind)
	return h.subjects(events.StreamAudit, subject)
}

// subjects reads every message of a subject and returns the envelope
// subjects (plan ids).
func (h *harness) subjects(stream, subject string) []string {
	h.t.Helper()
	ctx := h.ctx(10 * time.Second)
	c, err := h.js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		h.t.Fatal(err)
	}
	n := h.count(stream, subject)
	var out []string
	for uint64(len(out)) < n {
		msg, err := c.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			h.t.Fatalf("read %s: %v", subject, err)
		}
		env, err := events.Decode(msg.Data())
		if err != nil {
			h.t.Fatalf("%s: %v", subject, err)
		}
		out = append(out, env.Subject)
	}
	return out
}

// step returns the plan's step of an action.
func step(t *testing.T, p events.Plan, a events.ActionType) events.Step {
	t.Helper()
	for _, s := range p.Steps {
		if s.Action == a {
			return s
		}
	}
	t.Fatalf("plan has no %s step: %s\nnotes (why other steps were not proposed): %s\nevidence: %s", a, mustJSON(p.Steps), mustJSON(p.Notes), mustJSON(p.Evidence))
	return events.Step{}
}

// applyForReal applies a plan's mutating patch with the admin client, as
// the executor would (only to prove the patch heals the workload).
func (h *harness) applyForReal(s events.Step) {
	h.t.Helper()
	if _, err := h.kube.AppsV1().Deployments(h.ns).Patch(h.ctx(10*time.Second), s.Target.Name, types.JSONPatchType, s.Patch, metav1.PatchOptions{}); err != nil {
		h.t.Fatalf("apply %s: %v", s.Action, err)
	}
}

// requestPlan calls the planner's endpoint.
func (h *harness) requestPlan(req any) (events.PlanResponse, error) {
	h.t.Helper()
	subject, _ := events.ServiceSubject(testCluster, events.ServicePlanner, events.VerbPlan)
	msg, err := h.nc.RequestWithContext(h.ctx(60*time.Second), subject, mustMarshal(h.t, req))
	if err != nil {
		h.t.Fatalf("request %s: %v", subject, err)
	}
	return events.DecodeReply[events.PlanResponse](msg.Data, msg.Header.Get(events.HeaderError))
}

// errorReply extracts the ErrorReply of an error.
func errorReply(t *testing.T, err error) *events.ErrorReply {
	t.Helper()
	var er *events.ErrorReply
	if !errors.As(err, &er) {
		t.Fatalf("want an ErrorReply, got %v", err)
	}
	return er
}
