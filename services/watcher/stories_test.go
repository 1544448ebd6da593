package watcher

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
)

// The stories below run the whole Service (informers, queue, tracker,
// publisher) over the fake clientset and an embedded bus: they are about
// the watcher's own wiring, the sandbox tests cover real kubelets.

// unitTiming has the default group wait (none): the first failing pod is
// announced at once.
var unitTiming = Timing{GroupInterval: time.Second, ResolveWait: 500 * time.Millisecond}

type unitRun struct {
	svc *Service
	reg *prometheus.Registry
	got chan events.IncidentEvent
}

// runUnit runs a watcher of cluster "unit" over kube until the test ends
// and collects what it publishes on ISSUES.
func runUnit(t *testing.T, nc *nats.Conn, kube *fake.Clientset, cfg Config) *unitRun {
	t.Helper()
	cfg.Cluster, cfg.Timing, cfg.Debounce = "unit", unitTiming, 100*time.Millisecond
	r := &unitRun{reg: prometheus.NewRegistry(), got: make(chan events.IncidentEvent, 100)}
	var err error
	r.svc, err = New(cfg, Deps{NATS: nc, Kube: kube, Registerer: r.reg, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	filter, _ := events.IssueFilter("unit")
	cons, err := js.OrderedConsumer(t.Context(), events.StreamIssues, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		env, err := events.Decode(m.Data())
		if err == nil {
			var ev events.IncidentEvent
			if ev, err = events.DecodeData[events.IncidentEvent](env); err == nil {
				r.got <- ev
				return
			}
		}
		t.Errorf("undecodable message on %s: %v", m.Subject(), err)
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.svc.Run(ctx) }()
	t.Cleanup(func() {
		cc.Stop()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	waitFor(t, 10*time.Second, "the caches to sync", func() (bool, string) {
		select {
		case <-r.svc.Ready():
			return true, ""
		default:
			return false, "not ready"
		}
	})
	return r
}

// next returns the next announcement, failing after 15s.
func (r *unitRun) next(t *testing.T, what string) events.IncidentEvent {
	t.Helper()
	select {
	case ev := <-r.got:
		return ev
	case <-time.After(15 * time.Second):
		t.Fatalf("no %s announcement", what)
	}
	return events.IncidentEvent{}
}

// none fails if anything is announced within d.
func (r *unitRun) none(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case ev := <-r.got:
		t.Errorf("unexpected announcement: %s %s %s/%s", ev.Transition, ev.Incident.Type, ev.Incident.Namespace, ev.Incident.Owner.Name)
	case <-time.After(d):
	}
}

// barePod is a copy of fixture name as a bare pod ns/name.
func barePod(t *testing.T, fixture, ns, name string) *corev1.Pod {
	t.Helper()
	p := loadPod(t, fixture).DeepCopy()
	p.Namespace, p.Name, p.UID, p.OwnerReferences = ns, name, types.UID("uid-"+ns+"-"+name), nil
	p.ResourceVersion = ""
	return p
}

// TestExcludedNamespacesAreSilentAndProtectedOnesFlagged: the namespace
// policy applies to what the informers deliver, not only to a filter.
func TestExcludedNamespacesAreSilentAndProtectedOnesFlagged(t *testing.T) {
	t.Parallel()
	kube := fake.NewClientset()
	r := runUnit(t, embeddedBus(t, true), kube, Config{ExcludeNamespaces: []string{"dev"}, ProtectedNamespaces: []string{"kube-system"}})
	for _, p := range []*corev1.Pod{barePod(t, "sandbox-crash-exit-1", "dev", "api"), barePod(t, "sandbox-crash-exit-1", "kube-system", "dns")} {
		if _, err := kube.CoreV1().Pods(p.Namespace).Create(t.Context(), p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	ev := r.next(t, "detected")
	if in := ev.Incident; ev.Transition != events.TransitionDetected || in.Namespace != "kube-system" || !in.Protected {
		t.Errorf("announced %s %+v, want the kube-system incident, flagged protected", ev.Transition, in)
	}
	r.none(t, 2*unitTiming.GroupInterval)
	if resp, err := query(r.svc.tracker, events.AnalyzeRequest{Namespace: "dev"}, "unit", time.Now()); err != nil || resp.Total != 0 {
		t.Errorf("analyze namespace dev = %+v, %v; want nothing from an excluded namespace", resp, err)
	}
}

// TestPullCauseFromALaterEventChangesTheIncident: a pod detected while
// its status only says "Back-off pulling image" gets its cause as soon as
// the kubelet's Failed event is seen, announced as changed.
func TestPullCauseFromALaterEventChangesTheIncident(t *testing.T) {
	t.Parallel()
	kube := fake.NewClientset()
	r := runUnit(t, embeddedBus(t, true), kube, Config{})
	pod := barePod(t, "sandbox-image-not-found", "shop", "web")
	if _, err := kube.CoreV1().Pods("shop").Create(t.Context(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if ev := r.next(t, "detected"); ev.Transition != events.TransitionDetected || ev.Incident.Reason != "pull_back_off" {
		t.Fatalf("first announcement %s reason %s, want detected pull_back_off (no event yet)", ev.Transition, ev.Incident.Reason)
	}
	e := pullEvent(t)
	e.Namespace, e.ResourceVersion = "shop", ""
	e.InvolvedObject.Namespace, e.InvolvedObject.Name, e.InvolvedObject.UID = "shop", "web", pod.UID
	if _, err := kube.CoreV1().Events("shop").Create(t.Context(), &e, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ev := r.next(t, "changed")
	if ev.Transition != events.TransitionChanged || ev.Incident.Reason != "image_not_found" || ev.Observation != 2 {
		t.Errorf("after the Failed event: %s reason %s observation %d, want changed image_not_found 2", ev.Transition, ev.Incident.Reason, ev.Observation)
	}
	// The cause stays once the pod is back to the generic status (and the
	// event expired): nothing more is announced.
	if err := kube.CoreV1().Events("shop").Delete(t.Context(), e.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	pod.Status.ContainerStatuses[0].State.Waiting.Message += " "
	if _, err := kube.CoreV1().Pods("shop").UpdateStatus(t.Context(), pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	r.none(t, 2*unitTiming.GroupInterval)
	if got := r.svc.pulls.evidence(pod.UID).PullCauses["web"].Reason; got != "image_not_found" {
		t.Errorf("remembered cause after the event went = %q", got)
	}
	// Deleting the pod resolves the incident and forgets the cause.
	if err := kube.CoreV1().Pods("shop").Delete(t.Context(), "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if ev := r.next(t, "resolved"); ev.Transition != events.TransitionResolved {
		t.Errorf("after deleting the pod: %s, want resolved", ev.Transition)
	}
	if n := r.svc.pulls.size(); n != 0 {
		t.Errorf("%d pods still remembered after the pod was deleted", n)
	}
}

// TestAnnouncementPublishedButNotRecordedIsNotRepeated covers a watcher
// that died between publishing "detected" and recording it in the
// incidents bucket: its successor publishes the same observation with the
// same Nats-Msg-Id, and the ISSUES stream drops it as a duplicate.
func TestAnnouncementPublishedButNotRecordedIsNotRepeated(t *testing.T) {
	t.Parallel()
	nc := embeddedBus(t, true)
	js, _ := jetstream.New(nc)
	ctx := t.Context()
	pod := barePod(t, "sandbox-crash-exit-1", "shop", "api")

	id := publishUnrecorded(t, js, pod) // what the first watcher published before it died

	kube := fake.NewClientset(pod)
	r := runUnit(t, nc, kube, Config{})
	if ev := r.next(t, "the first watcher's detected"); ev.Observation != 1 {
		t.Fatalf("first message: observation %d", ev.Observation)
	}
	kv, err := js.KeyValue(ctx, events.BucketIncidents)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := events.IncidentStateKey("unit", id)
	waitFor(t, 15*time.Second, "the successor to record observation 1", func() (bool, string) {
		e, err := kv.Get(ctx, key)
		if err != nil {
			return false, err.Error()
		}
		return true, string(e.Value())
	})
	r.none(t, 2*unitTiming.GroupInterval)
	st, err := js.Stream(ctx, events.StreamIssues)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Errorf("ISSUES holds %d messages, want 1: the successor's detected was not deduplicated", info.State.Msgs)
	}
	if got := metricValue(t, r.reg, "kaar_watcher_detections_total", "CrashLoopBackOff"); got != 0 {
		t.Errorf("kaar_watcher_detections_total = %v, want 0 (the stream said duplicate)", got)
	}
}

// TestAnnouncementPublishedButNotRecordedIsResolvedOnceHealed: a watcher
// died between publishing "detected" and recording it, and the failure
// healed (the pod is gone) before its successor looked. The successor
// reads the announcement back from the ISSUES stream, takes it as its
// record, and resolves it: the incident does not stay open for every
// consumer while no watcher knows it. (The HA failover test met this on
// the sandbox: its kill lands right after the last detection.)
func TestAnnouncementPublishedButNotRecordedIsResolvedOnceHealed(t *testing.T) {
	t.Parallel()
	nc := embeddedBus(t, true)
	js, _ := jetstream.New(nc)
	pod := barePod(t, "sandbox-crash-exit-1", "shop", "api")
	id := publishUnrecorded(t, js, pod) // what the first watcher published before it died

	// The pod is gone: the successor never sees the failure.
	r := runUnit(t, nc, fake.NewClientset(), Config{})
	if ev := r.next(t, "the first watcher's detected"); ev.Observation != 1 {
		t.Fatalf("first message: observation %d", ev.Observation)
	}
	ev := r.next(t, "the successor's resolution")
	if ev.Transition != events.TransitionResolved || ev.Incident.ID != id || ev.Observation != 2 {
		t.Fatalf("after the failover: %s of %s, observation %d; want resolved %s, observation 2", ev.Transition, ev.Incident.ID, ev.Observation, id)
	}
	r.none(t, 2*unitTiming.GroupInterval)
}

// publishUnrecorded publishes the detection of bare pod api's
// CrashLoopBackOff (observation 1) as a watcher that died before
// recording it did, and returns the incident's id.
func publishUnrecorded(t *testing.T, js jetstream.JetStream, pod *corev1.Pod) string {
	t.Helper()
	id := events.IncidentID("unit", "shop", "Pod", "api", "app", events.IssueCrashLoopBackOff)
	iss := Classify(pod, nil, time.Now(), DefaultClassifyOptions())[0]
	in := events.Incident{ID: id, Cluster: "unit", Namespace: "shop", Owner: events.ObjectRef{Kind: "Pod", Namespace: "shop", Name: "api"},
		Container: "app", Type: iss.Type, Reason: iss.Reason, Message: iss.Message, ExitCode: iss.ExitCode, Pods: []string{"api"}, PodCount: 1,
		FirstSeen: time.Now().UTC(), LastSeen: time.Now().UTC(), Count: 1, Severity: iss.Type.DefaultSeverity()}
	env, err := events.New(events.TransitionDetected.EventType(), events.SourceWatcher, "unit", id,
		events.IncidentEvent{Transition: events.TransitionDetected, Incident: in, ObservedAt: time.Now().UTC(), Observation: 1})
	if err != nil {
		t.Fatal(err)
	}
	subject, _ := events.IssueSubject("unit", "shop", events.IssueCrashLoopBackOff)
	if _, err := bus.Publish(t.Context(), js, subject, env, events.IncidentMsgID(id, 1)); err != nil {
		t.Fatal(err)
	}
	return id
}

// TestReplicasFailingOneByOneAreOneDetectedThenChanged runs the whole
// service with the default timing (no group wait): the first failing
// replica of a Deployment is announced as detected, the replicas that
// follow are one incident announced as changed (rate-limited by the group
// interval), never a second detected.
func TestReplicasFailingOneByOneAreOneDetectedThenChanged(t *testing.T) {
	t.Parallel()
	kube := fake.NewClientset()
	yes := true
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "payments-api-7d9f", UID: "uid-rs",
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: "payments-api", UID: "uid-dep", Controller: &yes}}}}
	if _, err := kube.AppsV1().ReplicaSets("shop").Create(t.Context(), rs, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	r := runUnit(t, embeddedBus(t, true), kube, Config{})
	for i := range 20 {
		p := barePod(t, "sandbox-crash-exit-1", "shop", fmt.Sprintf("payments-api-7d9f-%02d", i))
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs.Name, UID: rs.UID, Controller: &yes}}
		if _, err := kube.CoreV1().Pods("shop").Create(t.Context(), p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	id := events.IncidentID("unit", "shop", "Deployment", "payments-api", "app", events.IssueCrashLoopBackOff)
	ev := r.next(t, "detected")
	if ev.Transition != events.TransitionDetected || ev.Incident.ID != id || ev.Incident.PodCount < 1 || ev.Observation != 1 {
		t.Fatalf("first announcement = %s %+v", ev.Transition, ev.Incident)
	}
	for ev.Incident.PodCount < 20 {
		ev = r.next(t, "changed to 20 pods")
		if ev.Transition != events.TransitionChanged || ev.Incident.ID != id {
			t.Fatalf("announcement %s of %s, want only changes of %s", ev.Transition, ev.Incident.ID, id)
		}
	}
	r.none(t, 2*unitTiming.GroupInterval)
}
