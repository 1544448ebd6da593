package watcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/config"
	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
)

// trendWarnings is watcher.warnings with short windows for the unit
// tests.
func trendWarnings(mutate func(*config.Warnings)) WarningOptions {
	w := config.DefaultWarnings()
	if mutate != nil {
		mutate(&w)
	}
	return WarningOptions{Enabled: true, Config: w}
}

// trendFixture is a Deployment web (ReplicaSet web-7d9f, pod web-7d9f-a
// with container app limited to 512Mi) in namespace shop.
type trendFixture struct {
	deploy *appsv1.Deployment
	rs     *appsv1.ReplicaSet
	pod    *corev1.Pod
}

func newTrendFixture() trendFixture {
	yes := true
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web", UID: "uid-web", Generation: 1},
		Spec:   appsv1.DeploymentSpec{Replicas: ptr(int32(3))},
		Status: appsv1.DeploymentStatus{ObservedGeneration: 1, Replicas: 3, UpdatedReplicas: 3, ReadyReplicas: 3, AvailableReplicas: 3}}
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-7d9f", UID: "uid-rs",
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: "web", UID: "uid-web", Controller: &yes}}}}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-7d9f-a", UID: "uid-pod-a",
		CreationTimestamp: metav1.NewTime(t0.Add(-time.Hour)),
		OwnerReferences:   []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-7d9f", UID: "uid-rs", Controller: &yes}}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "web:1",
			Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("512Mi")}}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{{Name: "app", Ready: true,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(t0.Add(-time.Hour))}}}}}}
	return trendFixture{deploy: d, rs: rs, pod: pod}
}

// clock is a settable time for a Service under test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

// newTrendService is a Service that is not running: its caches are
// filled by hand, its clock is c.
func newTrendService(t *testing.T, w WarningOptions, c *clock, f trendFixture) *Service {
	t.Helper()
	s, err := New(Config{Cluster: "unit", Warnings: w}, Deps{NATS: embeddedBus(t, false), Kube: fake.NewClientset(), Now: c.now,
		Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatal(err)
	}
	for inf, obj := range map[interface{ Add(any) error }]any{s.cl.deploys.GetIndexer(): f.deploy, s.cl.rs.GetIndexer(): f.rs, s.cl.pods.GetIndexer(): f.pod} {
		if err := inf.Add(obj); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

var webKey = ownerKey{Namespace: "shop", Kind: "Deployment", Name: "web"}

// issuesOf returns the issues of type typ trendObs reports for k.
func issuesOf(s *Service, k ownerKey, now time.Time, typ events.IssueType) []ControllerIssue {
	obs, _ := s.trendObs(k, now)
	var out []ControllerIssue
	for _, o := range obs {
		for _, iss := range o.Issues {
			if iss.Type == typ {
				out = append(out, iss)
			}
		}
	}
	return out
}

// The warning of a memory trend: the numbers of the fit, in the evidence
// and in words.
func TestMemoryNearLimitEvidence(t *testing.T) {
	c := &clock{}
	s := newTrendService(t, trendWarnings(func(w *config.Warnings) { w.MemoryWindow = config.Duration{Duration: 2 * time.Hour} }), c, newTrendFixture())
	// Two hours a minute apart, 332Mi -> 412Mi: 40Mi an hour; the limit
	// (512Mi) 2.5 hours after the last sample.
	k := usageKey{owner: webKey, container: "app"}
	last := time.Date(2026, 12, 6, 15, 10, 0, 0, time.UTC)
	for i := range 121 {
		at := last.Add(time.Duration(i-120) * time.Minute)
		if !s.trends.hist.addSample(k, at, int64(332*mi+i*40*mi/60), 512*mi) {
			t.Fatalf("sample %d refused", i)
		}
	}
	c.set(last)
	got := issuesOf(s, webKey, last, events.IssueMemoryNearLimit)
	if len(got) != 1 {
		t.Fatalf("%d MemoryNearLimit, want 1", len(got))
	}
	iss := got[0]
	want := "container app of deployment web: working set 412Mi of its 512Mi limit, growing 40Mi/h over the last 2h (R² 1.00); projected to reach the limit around 17:40 UTC"
	if iss.Message != want || iss.Reason != reasonProjectedOOM || iss.Container != "app" {
		t.Errorf("issue %s/%s %q:\n got %s\nwant %s", iss.Type, iss.Reason, iss.Container, iss.Message, want)
	}
	fc := iss.Warning.Forecast
	if fc == nil || fc.Metric != "memory_working_set" || fc.Unit != events.UnitBytes || fc.Limit != 512*mi || fc.Samples != 121 ||
		fc.WindowSeconds != 7200 || fc.Confidence != 1 || fc.CrossesAt.Sub(last.Add(150*time.Minute)).Abs() > 2*time.Second ||
		fc.SlopePerHour < 40*mi-1024 || fc.SlopePerHour > 40*mi+1024 || fc.Current < 412*mi-1024 || fc.Current > 412*mi+1024 {
		t.Errorf("forecast %+v", fc)
	}
	if m := iss.Warning.Measurements; len(m) != 1 || m[0].Name != "memory_working_set" || m[0].Limit != 512*mi {
		t.Errorf("measurements %+v", m)
	}
	in := events.Incident{Type: iss.Type, Warning: iss.Warning}
	if err := in.Warning.Validate(); err != nil {
		t.Errorf("evidence does not validate: %v", err)
	}
	// The limit raised to 2Gi: the crossing is 40h away, past the 24h
	// horizon: no warning.
	s.trends.hist.addSample(k, last.Add(time.Minute), int64(412*mi+40*mi/60), 2<<30)
	c.set(last.Add(time.Minute))
	if got := issuesOf(s, webKey, last.Add(time.Minute), events.IssueMemoryNearLimit); len(got) != 0 {
		t.Errorf("still warned after the limit was raised: %s", got[0].Message)
	}
	// Samples that stopped (the pod went away) end the warning too.
	s.trends.hist.addSample(k, last.Add(2*time.Minute), int64(412*mi+80*mi/60), 512*mi)
	if got := issuesOf(s, webKey, last.Add(2*time.Minute), events.IssueMemoryNearLimit); len(got) != 1 {
		t.Fatal("no warning back at the old limit")
	}
	if got := issuesOf(s, webKey, last.Add(2*time.Minute+s.staleAfter()+time.Second), events.IssueMemoryNearLimit); len(got) != 0 {
		t.Error("stale samples still warn")
	}
}

// A MemoryNearLimit already given holds with slack (hysteresis): a
// crossing 30h away (past the 24h horizon, within 1.5 times it) does not
// start a warning but keeps one; 40h away ends it.
func TestMemoryNearLimitHoldsWithSlack(t *testing.T) {
	c := &clock{}
	s := newTrendService(t, trendWarnings(func(w *config.Warnings) { w.MemoryWindow = config.Duration{Duration: 2 * time.Hour} }), c, newTrendFixture())
	k := usageKey{owner: webKey, container: "app"}
	last := time.Date(2026, 12, 6, 15, 10, 0, 0, time.UTC)
	// 332Mi -> 412Mi over two hours (40Mi an hour) against limit:
	// the crossing is (limit-412Mi)/40Mi hours after the last sample.
	fill := func(limit int64) {
		for i := range 121 {
			at := last.Add(time.Duration(i-120) * time.Minute)
			s.trends.hist.addSample(k, at, int64(332*mi+i*40*mi/60), limit)
		}
	}
	c.set(last)
	fill((412 + 30*40) * mi) // crosses in 30h
	if got := issuesOf(s, webKey, last, events.IssueMemoryNearLimit); len(got) != 0 {
		t.Fatalf("a crossing 30h away (horizon 24h) started a warning: %s", got[0].Message)
	}
	s.trends.hist.setWarned(k, true)
	if got := issuesOf(s, webKey, last, events.IssueMemoryNearLimit); len(got) != 1 {
		t.Fatal("a warning given does not hold at a crossing 30h away (within 1.5 times the horizon)")
	}
	// The limit raised so that it crosses in 40h.
	next := last.Add(time.Minute)
	s.trends.hist.addSample(k, next, int64(412*mi+40*mi/60), (412+40*40)*mi)
	c.set(next)
	if got := issuesOf(s, webKey, next, events.IssueMemoryNearLimit); len(got) != 0 {
		t.Errorf("a warning given holds at a crossing 40h away: %s", got[0].Message)
	}
}

// A long memory_window keeps one sample per window/240 (42 minutes for 7
// days): the warning holds between two kept samples while the metrics
// still come every minute, and ends once they stop.
func TestMemoryNearLimitWithALongWindow(t *testing.T) {
	c := &clock{}
	s := newTrendService(t, trendWarnings(func(w *config.Warnings) {
		w.MemoryWindow, w.MemoryHorizon = config.Duration{Duration: 24 * time.Hour}, config.Duration{Duration: 7 * 24 * time.Hour}
	}), c, newTrendFixture())
	k := usageKey{owner: webKey, container: "app"}
	// 13 hours of samples a minute apart, 100Mi growing 10Mi an hour: the
	// 512Mi limit about 28 hours after the last.
	start := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	var last time.Time
	for i := range 13*60 + 15 {
		last = start.Add(time.Duration(i) * time.Minute)
		s.trends.hist.addSample(k, last, int64(100*mi+i*10*mi/60), 512*mi)
		if i < 13*60 {
			continue
		}
		// Every minute of the last quarter hour, as the sampling rounds
		// see it.
		if got := issuesOf(s, webKey, last, events.IssueMemoryNearLimit); len(got) != 1 {
			v := s.trends.hist.owner(webKey)[0]
			t.Fatalf("at %s: %d MemoryNearLimit, want 1 (the last kept sample is %s old)",
				last.Format(time.TimeOnly), len(got), last.Sub(v.mem[len(v.mem)-1].T))
		}
	}
	if got := issuesOf(s, webKey, last.Add(2*time.Hour), events.IssueMemoryNearLimit); len(got) != 0 {
		t.Error("samples stopped two hours ago and still warn")
	}
}

// recordUsage keeps, per workload container, the pod closest to its
// limit, and ignores containers without one.
func TestRecordUsageTakesThePodClosestToItsLimit(t *testing.T) {
	c := &clock{t: t0}
	f := newTrendFixture()
	s := newTrendService(t, trendWarnings(nil), c, f)
	b := f.pod.DeepCopy()
	b.Name, b.UID = "web-7d9f-b", "uid-pod-b"
	b.Spec.Containers = append(b.Spec.Containers, corev1.Container{Name: "sidecar"}) // no limit
	b.Spec.Containers[0].Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")}
	if err := s.cl.pods.GetIndexer().Add(b); err != nil {
		t.Fatal(err)
	}
	n := s.recordUsage([]podUsage{
		{Namespace: "shop", Name: "web-7d9f-a", Time: t0, Containers: []containerUsage{{"app", 400 * mi}}},                        // 78% of 512Mi
		{Namespace: "shop", Name: "web-7d9f-b", Time: t0, Containers: []containerUsage{{"app", 600 * mi}, {"sidecar", 900 * mi}}}, // 59% of 1Gi
		{Namespace: "shop", Name: "gone", Time: t0, Containers: []containerUsage{{"app", 1}}},
	}, t0)
	if n != 1 {
		t.Fatalf("%d samples added, want 1 (web/app)", n)
	}
	v := s.trends.hist.owner(webKey)
	if len(v) != 1 || v[0].container != "app" || v[0].limit != 512*mi || len(v[0].mem) != 1 || v[0].mem[0].V != 400*mi {
		t.Fatalf("history %+v, want web/app at 400Mi of 512Mi", v)
	}
}

// restartPod is the fixture's pod with container app restarted n times,
// the last run ended at end, waiting in reason when not empty.
func restartPod(f trendFixture, n int32, end time.Time, waiting string) *corev1.Pod {
	p := f.pod.DeepCopy()
	cs := &p.Status.ContainerStatuses[0]
	cs.RestartCount = n
	if n > 0 {
		cs.LastTerminationState.Terminated = &corev1.ContainerStateTerminated{Reason: "Error", ExitCode: 1, FinishedAt: metav1.NewTime(end)}
	}
	if waiting != "" {
		cs.State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: waiting}}
		cs.Ready = false
	}
	return p
}

func TestRecurringRestarts(t *testing.T) {
	f := newTrendFixture()
	hours := func(h float64) time.Time { return t0.Add(time.Duration(h * float64(time.Hour))) }
	for name, tc := range map[string]struct {
		restarts []float64 // hours after t0
		now      float64
		waiting  string
		want     bool
	}{
		"three restarts hours apart":         {[]float64{1, 5, 9}, 10, "", true},
		"now in CrashLoopBackOff":            {[]float64{1, 5, 9}, 10, "CrashLoopBackOff", false},
		"two restarts":                       {[]float64{1, 5}, 10, "", false},
		"the first left the 24h window":      {[]float64{1, 5, 9}, 25.5, "", false},
		"four, the first out of the window":  {[]float64{1, 5, 9, 20}, 25.5, "", true},
		"three restarts in one status write": {[]float64{9}, 10, "", true}, // count 0 -> 3 at once
	} {
		t.Run(name, func(t *testing.T) {
			c := &clock{t: t0}
			s := newTrendService(t, trendWarnings(nil), c, f)
			prev := f.pod
			var n int32
			for _, h := range tc.restarts {
				n++
				if name == "three restarts in one status write" {
					n = 3
				}
				c.set(hours(h))
				cur := restartPod(f, n, hours(h), "")
				s.restartsChanged(prev, cur)
				prev = cur
			}
			c.set(hours(tc.now))
			cur := restartPod(f, n, hours(tc.restarts[len(tc.restarts)-1]), tc.waiting)
			s.restartsChanged(prev, cur)
			if err := s.cl.pods.GetIndexer().Update(cur); err != nil {
				t.Fatal(err)
			}
			got := issuesOf(s, webKey, hours(tc.now), events.IssueRecurringRestarts)
			if (len(got) == 1) != tc.want {
				t.Fatalf("got %d RecurringRestarts, want %v: %+v", len(got), tc.want, got)
			}
			if tc.want {
				iss := got[0]
				if iss.Container != "app" || iss.Reason != reasonRestartsRecurring || !strings.Contains(iss.Message, "container app of deployment web restarted 3 times in the last 24h") ||
					!strings.Contains(iss.Message, "last exit: Error, code 1") {
					t.Errorf("issue %+v", iss)
				}
				if m := iss.Warning.Measurements; len(m) != 1 || m[0].Name != "restarts" || m[0].Value != 3 || m[0].WindowSeconds != 86400 {
					t.Errorf("measurements %+v", m)
				}
			}
		})
	}
}

// A workload deleted, or whose pods are all gone, has no RecurringRestarts
// warning although its restarts are still in the window: nothing of it
// restarts any more (its deletion re-evaluates it).
func TestRestartsOfAGoneWorkload(t *testing.T) {
	f := newTrendFixture()
	c := &clock{t: t0}
	s := newTrendService(t, trendWarnings(nil), c, f)
	prev := f.pod
	for i, h := range []time.Duration{1, 5, 9} {
		c.set(t0.Add(h * time.Hour))
		cur := restartPod(f, int32(i+1), t0.Add(h*time.Hour), "")
		s.restartsChanged(prev, cur)
		prev = cur
	}
	if err := s.cl.pods.GetIndexer().Update(prev); err != nil {
		t.Fatal(err)
	}
	now := t0.Add(10 * time.Hour)
	if got := issuesOf(s, webKey, now, events.IssueRecurringRestarts); len(got) != 1 {
		t.Fatalf("before the deletion: %d RecurringRestarts, want 1", len(got))
	}
	if err := s.cl.pods.GetIndexer().Delete(prev); err != nil {
		t.Fatal(err)
	}
	if err := s.cl.deploys.GetIndexer().Delete(f.deploy); err != nil {
		t.Fatal(err)
	}
	if got := issuesOf(s, webKey, now, events.IssueRecurringRestarts); len(got) != 0 {
		t.Fatalf("after the deletion: %+v, want none", got)
	}
}

// A pod seen for the first time (a restarted watcher, a relist) adds its
// last restart once, and only when the history does not have it.
func TestRestartsOfAPodSeenFirst(t *testing.T) {
	f := newTrendFixture()
	c := &clock{t: t0.Add(10 * time.Hour)}
	s := newTrendService(t, trendWarnings(nil), c, f)
	k := usageKey{owner: webKey, container: "app"}
	s.trends.hist.addEvent(k, t0.Add(time.Hour), true)
	s.trends.hist.addEvent(k, t0.Add(5*time.Hour), true)
	p := restartPod(f, 7, t0.Add(9*time.Hour), "")
	s.restartsChanged(nil, p)
	s.restartsChanged(nil, p)
	if v := s.trends.hist.owner(webKey); len(v) != 1 || len(v[0].restarts) != 3 {
		t.Fatalf("history %+v, want the two stored restarts and the pod's last", v)
	}
	old := restartPod(f, 1, t0.Add(-30*time.Hour), "")
	s.restartsChanged(nil, old)
	if v := s.trends.hist.owner(webKey); len(v[0].restarts) != 3 {
		t.Errorf("a restart older than the window was added: %v", v[0].restarts)
	}
}

// deployState is the fixture's Deployment with ready of 3 replicas
// ready, in a rollout when rolling.
func deployState(f trendFixture, desired, ready int32, rolling bool) *appsv1.Deployment {
	d := f.deploy.DeepCopy()
	d.Annotations = map[string]string{annotationRevision: "1"}
	d.Spec.Replicas = ptr(desired)
	d.Status.ReadyReplicas, d.Status.Replicas, d.Status.UpdatedReplicas = ready, desired, desired
	if rolling {
		// Pods of the old template still run beside one new one.
		d.Status.Replicas, d.Status.UpdatedReplicas = desired+1, 1
	}
	return d
}

func TestReadyReplicasDipping(t *testing.T) {
	f := newTrendFixture()
	type step struct {
		min     float64 // minutes after t0
		desired int32
		ready   int32
		rolling bool
	}
	dip := func(at float64) []step {
		return []step{{at, 3, 1, false}, {at + 1, 3, 2, false}, {at + 2, 3, 3, false}}
	}
	cat := func(ss ...[]step) []step {
		var out []step
		for _, s := range ss {
			out = append(out, s...)
		}
		return out
	}
	for name, tc := range map[string]struct {
		steps []step
		now   float64
		want  bool
	}{
		"three dips that recovered":          {cat(dip(0), dip(10), dip(20)), 25, true},
		"two dips":                           {cat(dip(0), dip(10)), 25, false},
		"the first dip left the window":      {cat(dip(0), dip(10), dip(20)), 61, false},
		"a dip that did not recover":         {cat(dip(0), dip(10), []step{{20, 3, 1, false}}), 25, false},
		"dips during a rollout":              {cat(dip(0), dip(10), []step{{20, 3, 1, true}, {21, 3, 3, true}, {22, 3, 3, false}}), 25, false},
		"scaling up is not a dip":            {cat(dip(0), dip(10), []step{{20, 4, 3, false}, {21, 4, 4, false}}), 25, false},
		"a rollout in the middle of a dip":   {cat(dip(0), dip(10), []step{{20, 3, 1, false}, {21, 3, 1, true}, {22, 3, 3, false}}), 25, false},
		"a dip and a rollout, then two dips": {cat(dip(0), []step{{5, 3, 1, true}, {6, 3, 3, false}}, dip(10), dip(20)), 25, true},
	} {
		t.Run(name, func(t *testing.T) {
			c := &clock{t: t0}
			s := newTrendService(t, trendWarnings(nil), c, f)
			prev := deployState(f, 3, 3, false)
			for _, st := range tc.steps {
				c.set(t0.Add(time.Duration(st.min * float64(time.Minute))))
				cur := deployState(f, st.desired, st.ready, st.rolling)
				s.readyChanged("Deployment", prev, cur)
				prev = cur
			}
			if err := s.cl.deploys.GetIndexer().Update(prev); err != nil {
				t.Fatal(err)
			}
			now := t0.Add(time.Duration(tc.now * float64(time.Minute)))
			got := issuesOf(s, webKey, now, events.IssueReadyReplicasDipping)
			if (len(got) == 1) != tc.want {
				t.Fatalf("got %d ReadyReplicasDipping, want %v: %+v", len(got), tc.want, got)
			}
			if tc.want {
				iss := got[0]
				if iss.Reason != reasonReadyReplicasDipping || iss.Container != "" ||
					!strings.HasPrefix(iss.Message, "deployment web fell below its 3 desired ready replicas 3 times in the last 1h and recovered each time") {
					t.Errorf("issue %+v", iss)
				}
				if m := iss.Warning.Measurements; len(m) != 2 || m[0].Value != 3 || m[1].Name != "ready_replicas" || m[1].Limit != 3 {
					t.Errorf("measurements %+v", m)
				}
			}
		})
	}
}

// fakeUsage is a usage source: the fixture pod's app container growing
// linearly from base by perSecond, or err.
type fakeUsage struct {
	mu        sync.Mutex
	start     time.Time
	base      float64
	perSecond float64
	err       error
	calls     int
}

func (f *fakeUsage) podUsage(_ context.Context, ns string) ([]podUsage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.err != nil {
		return nil, f.err
	}
	// Whole seconds, the history's resolution: the samples lie on a line.
	at := time.Now().Truncate(time.Second)
	v := f.base + f.perSecond*at.Sub(f.start).Seconds()
	return []podUsage{{Namespace: "shop", Name: "web-7d9f-a", Time: at, Containers: []containerUsage{{Name: "app", Memory: int64(v)}}}}, nil
}

func (f *fakeUsage) count() int { f.mu.Lock(); defer f.mu.Unlock(); return f.calls }

// trendRun is a running watcher over a fake clientset and a fake usage
// source.
type trendRun struct {
	svc  *Service
	reg  *prometheus.Registry
	stop func()
}

func startTrendWatcher(t *testing.T, nc *nats.Conn, f trendFixture, w WarningOptions, src usageSource) *trendRun {
	t.Helper()
	kube := fake.NewClientset(f.deploy, f.rs, f.pod)
	r := &trendRun{reg: prometheus.NewRegistry()}
	var err error
	r.svc, err = New(Config{Cluster: "unit", Timing: unitTiming, Debounce: 100 * time.Millisecond, Warnings: w},
		Deps{NATS: nc, Kube: kube, Registerer: r.reg, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatal(err)
	}
	r.svc.trends.src = src
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.svc.Run(ctx) }()
	var once sync.Once
	r.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(r.stop)
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

// issueLog collects the transitions published on ISSUES.
type issueLog struct {
	mu  sync.Mutex
	got []events.IncidentEvent
}

func collectIssues(t *testing.T, nc *nats.Conn) *issueLog {
	t.Helper()
	l := &issueLog{}
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
				l.mu.Lock()
				l.got = append(l.got, ev)
				l.mu.Unlock()
				return
			}
		}
		t.Errorf("undecodable message on %s: %v", m.Subject(), err)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cc.Stop)
	return l
}

// count is the number of transitions tr of incidents of type typ.
func (l *issueLog) count(typ events.IssueType, tr events.Transition) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, ev := range l.got {
		if ev.Incident.Type == typ && ev.Transition == tr {
			n++
		}
	}
	return n
}

// A restarted watcher keeps its trends: the history is on the bus. The
// second watcher gets no sample at all (the metrics API fails), yet
// keeps the warning and does not resolve it; a third one started after
// the history was purged resolves it (the control: without the stored
// history the warning would not survive).
func TestMemoryTrendSurvivesWatcherRestart(t *testing.T) {
	t.Parallel()
	nc := embeddedBus(t, true)
	f := newTrendFixture()
	w := trendWarnings(func(w *config.Warnings) {
		w.UsageInterval = config.Duration{Duration: time.Second}
		w.MemoryWindow = config.Duration{Duration: 6 * time.Second}
		w.MemoryHorizon = config.Duration{Duration: time.Hour}
		w.MemoryConfidence = 0.95
	})
	log := collectIssues(t, nc)
	// 400Mi growing 1Mi a second: the 512Mi limit in under 2 minutes.
	src := &fakeUsage{start: time.Now(), base: 400 * mi, perSecond: mi}
	r1 := startTrendWatcher(t, nc, f, w, src)
	waitFor(t, 30*time.Second, "MemoryNearLimit detected", func() (bool, string) {
		return log.count(events.IssueMemoryNearLimit, events.TransitionDetected) == 1, "not yet"
	})
	r1.stop()
	rounds := src.count()
	writes := testutil.ToFloat64(r1.svc.trends.writes)
	samples := testutil.ToFloat64(r1.svc.trends.samples)
	if writes < 1 || writes > float64(rounds+1) {
		t.Errorf("%v history writes for %d sampling rounds of one key: want at most one a round (and the last at shutdown)", writes, rounds)
	}
	if samples < 4 {
		t.Errorf("%v samples taken", samples)
	}
	mfs, err := r1.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	registered := map[string]bool{}
	for _, mf := range mfs {
		registered[mf.GetName()] = true
	}
	for _, name := range []string{"kaar_watcher_usage_samples_total", "kaar_watcher_usage_sample_errors_total", "kaar_watcher_usage_history_writes_total"} {
		if !registered[name] {
			t.Errorf("metric %s not registered", name)
		}
	}

	// The second watcher: no new samples.
	src2 := &fakeUsage{err: errors.New("metrics API unavailable (test)")}
	r2 := startTrendWatcher(t, nc, f, w, src2)
	if got := issuesOf(r2.svc, webKey, time.Now(), events.IssueMemoryNearLimit); len(got) != 1 {
		t.Fatalf("the restarted watcher has no trend: %d MemoryNearLimit from its history", len(got))
	}
	time.Sleep(unitTiming.ResolveWait + unitTiming.GroupInterval + 2*time.Second)
	if n := log.count(events.IssueMemoryNearLimit, events.TransitionResolved); n != 0 {
		t.Fatalf("the restarted watcher resolved the warning %d times", n)
	}
	if n := log.count(events.IssueMemoryNearLimit, events.TransitionDetected); n != 1 {
		t.Fatalf("the warning was announced %d times, want once", n)
	}
	if v := testutil.ToFloat64(r2.svc.trends.sampleErrors); v < 1 {
		t.Errorf("failed samples counted %v", v)
	}
	r2.stop()

	// The control: without the stored history the warning resolves.
	js, _ := jetstream.New(nc)
	kv, err := js.KeyValue(t.Context(), events.BucketUsage)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := usageKey{owner: webKey, container: "app"}.kvKey("unit")
	if err := kv.Purge(t.Context(), key); err != nil {
		t.Fatal(err)
	}
	startTrendWatcher(t, nc, f, w, src2)
	waitFor(t, 15*time.Second, "the warning resolved without its history", func() (bool, string) {
		return log.count(events.IssueMemoryNearLimit, events.TransitionResolved) == 1, "not yet"
	})
}

// Without the metrics API, MemoryNearLimit is off, said once, and the
// other trend warnings still work.
func TestTrendsWithoutMetricsAPI(t *testing.T) {
	t.Parallel()
	nc := embeddedBus(t, true)
	f := newTrendFixture()
	w := trendWarnings(func(w *config.Warnings) { w.UsageInterval = config.Duration{Duration: time.Second} })
	log := collectIssues(t, nc)
	var buf syncBuffer
	kube := fake.NewClientset(f.deploy, f.rs, f.pod) // its discovery serves no metrics.k8s.io
	svc, err := New(Config{Cluster: "unit", Timing: unitTiming, Debounce: 100 * time.Millisecond, Warnings: w},
		Deps{NATS: nc, Kube: kube, Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	if err != nil {
		t.Fatal(err)
	}
	runService(t, svc)
	waitFor(t, 10*time.Second, "MemoryNearLimit reported off", func() (bool, string) {
		return strings.Contains(buf.String(), "warnings off: the metrics API is not available"), buf.String()
	})
	// Restarts still count: three, an hour apart, recorded as they come.
	ctx2 := t.Context()
	for i := int32(1); i <= 3; i++ {
		p := restartPod(f, i, time.Now().Add(time.Duration(i-4)*time.Hour), "")
		if _, err := kube.CoreV1().Pods("shop").UpdateStatus(ctx2, p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	waitFor(t, 15*time.Second, "RecurringRestarts detected", func() (bool, string) {
		return log.count(events.IssueRecurringRestarts, events.TransitionDetected) == 1, "not yet"
	})
	time.Sleep(2500 * time.Millisecond) // two more rounds
	out := buf.String()
	if n := strings.Count(out, "warnings off: the metrics API is not available"); n != 1 {
		t.Errorf("said %d times that warnings are off, want once:\n%s", n, out)
	}
	if !strings.Contains(out, "MemoryNearLimit") || !strings.Contains(out, "does not serve metrics.k8s.io/v1beta1") {
		t.Errorf("the log does not say which warning is off and why:\n%s", out)
	}
}

// syncBuffer is a bytes buffer safe for a logger and a test.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// A Recreate rollout: the old pods go first (not yet a new revision),
// then the new template's come up. The revision's change cancels the dip.
func TestDipCancelledByANewRevision(t *testing.T) {
	f := newTrendFixture()
	c := &clock{t: t0}
	s := newTrendService(t, trendWarnings(func(w *config.Warnings) { w.DipMin = 2 }), c, f)
	at := func(m int) { c.set(t0.Add(time.Duration(m) * time.Minute)) }
	prev := deployState(f, 3, 3, false)
	step := func(m int, ready int32, rev string) {
		at(m)
		cur := deployState(f, 3, ready, false)
		cur.Annotations[annotationRevision] = rev
		s.readyChanged("Deployment", prev, cur)
		prev = cur
	}
	step(0, 1, "1")
	step(1, 3, "1") // a dip
	step(10, 0, "1")
	step(11, 0, "2") // the new ReplicaSet
	step(12, 3, "2")
	if v := s.trends.hist.owner(webKey); len(v) != 1 || len(v[0].dips) != 1 {
		t.Fatalf("history %+v, want the first dip alone", v)
	}
}

// A workload scaled to zero or deleted while its dips still warn has no
// warning (and a deleted one is evaluated without a crash: the cache
// lookup returns a typed nil); its deletion and the restored history
// after a restart re-evaluate it.
func TestDipsOfADeletedWorkload(t *testing.T) {
	f := newTrendFixture()
	c := &clock{t: t0}
	s := newTrendService(t, trendWarnings(nil), c, f)
	prev := deployState(f, 3, 3, false)
	for _, m := range []int{0, 1, 10, 11, 20, 21} {
		c.set(t0.Add(time.Duration(m) * time.Minute))
		ready := int32(1)
		if m%10 == 1 {
			ready = 3
		}
		cur := deployState(f, 3, ready, false)
		s.readyChanged("Deployment", prev, cur)
		prev = cur
	}
	now := t0.Add(25 * time.Minute)
	if got := issuesOf(s, webKey, now, events.IssueReadyReplicasDipping); len(got) != 1 {
		t.Fatalf("before the deletion: %d ReadyReplicasDipping, want 1", len(got))
	}
	// Scaled to zero on purpose: no replica is missing, nothing to warn.
	stopped := deployState(f, 0, 0, false)
	s.readyChanged("Deployment", prev, stopped)
	if err := s.cl.deploys.GetIndexer().Update(stopped); err != nil {
		t.Fatal(err)
	}
	if got := issuesOf(s, webKey, now, events.IssueReadyReplicasDipping); len(got) != 0 {
		t.Fatalf("scaled to zero: %+v, want none", got)
	}
	if err := s.cl.deploys.GetIndexer().Delete(f.deploy); err != nil {
		t.Fatal(err)
	}
	if got := issuesOf(s, webKey, now, events.IssueReadyReplicasDipping); len(got) != 0 {
		t.Fatalf("after the deletion: %+v, want none", got)
	}
}

// BenchmarkSampleRound10k is one sampling round at 10,000 bare pods, each
// a workload container with a memory limit and a full default window of
// history: the samples added (the pod cache looked up, the owner
// resolved), every verdict fitted, every key encoded for its write.
func BenchmarkSampleRound10k(b *testing.B) {
	const n = 10000
	s, err := New(Config{Cluster: "unit", Warnings: trendWarnings(nil)}, Deps{NATS: &nats.Conn{}, Kube: fake.NewClientset(),
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	f := newTrendFixture()
	usage := make([]podUsage, n)
	for i := range n {
		p := f.pod.DeepCopy()
		p.Name, p.UID, p.OwnerReferences = fmt.Sprintf("pod-%05d", i), types.UID(fmt.Sprintf("uid-%05d", i)), nil
		obj, _ := transform(p)
		if err := s.cl.pods.GetIndexer().Add(obj); err != nil {
			b.Fatal(err)
		}
		usage[i] = podUsage{Namespace: "shop", Name: p.Name, Containers: []containerUsage{{Name: "app", Memory: 300 * mi}}}
	}
	round := func(r int) {
		now := t0.Add(time.Duration(r) * time.Minute)
		for i := range usage {
			usage[i].Time = now
			usage[i].Containers[0].Memory = int64(300*mi + r*mi + i)
		}
		s.recordUsage(usage, now)
		s.memoryVerdicts(now)
		s.trends.hist.due(now, false)
	}
	for r := range 61 {
		round(r)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		round(61 + i)
	}
}
