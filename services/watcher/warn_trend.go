package watcher

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// Trend warnings: what usage and status sampled over time say is coming.
//   - MemoryNearLimit (projected_oom): a container's working set (the
//     pod of the workload closest to its limit, from the metrics API
//     every usage_interval) fitted by a line over memory_window, growing
//     with R² >= memory_confidence, reaching the limit within
//     memory_horizon.
//   - RecurringRestarts (restarts_recurring): a container of a workload
//     that restarted restart_min times within restart_window and is not
//     a failure now (CrashLoopBackOff, or not yet recovered: it recovers
//     and fails again).
//   - ReadyReplicasDipping (ready_replicas_dipping): a Deployment or
//     StatefulSet whose ready replicas fell below the desired count and
//     recovered dip_min times within dip_window, outside rollouts.
//
// The history they need is kept on the bus (usage.go), so a restarted
// watcher keeps its trends. Trends change with time, not with informer
// events: every usage_interval a sampling round appends the samples,
// enqueues the owners whose memory verdict is or was a warning, and
// writes the changed series.

// Reason classes of the trend warnings.
const (
	reasonProjectedOOM         = "projected_oom"
	reasonRestartsRecurring    = "restarts_recurring"
	reasonReadyReplicasDipping = "ready_replicas_dipping"
)

// metricMemoryWorkingSet is the sampled metric's name in the evidence.
const metricMemoryWorkingSet = "memory_working_set"

// trendWatch is the state of the trend warnings.
type trendWatch struct {
	hist  *usageHistory
	store *usageStore // nil until Run opened the bucket
	src   usageSource

	mu sync.Mutex
	// off says why memory sampling is off ("" while on); retryAt is when
	// to ask the source again.
	off     string
	retryAt time.Time
	failing bool // the last round failed (logged once per streak)
	// dips are the ready replica dips in progress.
	dips map[ownerKey]*dipState

	samples      prometheus.Counter
	sampleErrors prometheus.Counter
	writes       prometheus.Counter
}

// dipState is a dip in progress: since when, and the fewest ready.
type dipState struct {
	since   time.Time
	desired int32
	lowest  int32
}

// trendTypes are the types of this family.
var trendTypes = []events.IssueType{events.IssueMemoryNearLimit, events.IssueRecurringRestarts, events.IssueReadyReplicasDipping}

// trendsOn reports whether any trend warning is evaluated.
func (s *Service) trendsOn() bool {
	for _, t := range trendTypes {
		if s.cfg.Warnings.on(t) {
			return true
		}
	}
	return false
}

// watchTrends sets up the trend warnings (called by New): the usage
// source, the metrics, the pod and workload handlers that record
// restarts and dips, and the warning source.
func (s *Service) watchTrends(kube kubernetes.Interface, reg prometheus.Registerer) error {
	w := s.cfg.Warnings.Config
	t := &trendWatch{
		hist: newUsageHistory(usageLimits{interval: w.UsageInterval.Duration, memoryWindow: w.MemoryWindow.Duration,
			restartWindow: w.RestartWindow.Duration, dipWindow: w.DipWindow.Duration}),
		src:  newMetricsAPI(kube),
		dips: map[ownerKey]*dipState{},
		samples: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kaar_watcher_usage_samples_total",
			Help: "Container memory samples taken from the metrics API and added to the usage history (one per workload container and round).",
		}),
		sampleErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kaar_watcher_usage_sample_errors_total",
			Help: "Sampling rounds of the metrics API that failed (tried again at the next usage_interval).",
		}),
		writes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kaar_watcher_usage_history_writes_total",
			Help: "Usage history keys written to the kaar_usage bucket (at most one per key and usage_interval).",
		}),
	}
	s.trends = t
	if reg != nil {
		for _, c := range []prometheus.Collector{t.samples, t.sampleErrors, t.writes} {
			if err := reg.Register(c); err != nil {
				return fmt.Errorf("register watcher usage metrics (one watcher per registry): %w", err)
			}
		}
	}
	if !s.cfg.Warnings.Enabled || !s.trendsOn() {
		return nil
	}
	if _, err := s.cl.pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { s.restartsChanged(nil, obj) },
		UpdateFunc: s.restartsChanged,
	}); err != nil {
		return fmt.Errorf("watcher: pod restart handler: %w", err)
	}
	for kind, inf := range map[string]cache.SharedIndexInformer{"Deployment": s.cl.deploys, "StatefulSet": s.cl.sts} {
		if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			UpdateFunc: func(old, cur any) { s.readyChanged(kind, old, cur) },
			DeleteFunc: func(obj any) {
				if m := objectOf(obj); m != nil {
					t.mu.Lock()
					delete(t.dips, ownerKey{Namespace: m.GetNamespace(), Kind: kind, Name: m.GetName()})
					t.mu.Unlock()
				}
			},
		}); err != nil {
			return fmt.Errorf("watcher: %s dip handler: %w", kind, err)
		}
	}
	s.warningSources = append(s.warningSources, s.trendObs)
	return nil
}

// loadTrends opens the kaar_usage bucket and reads the history back
// (called by Run before the informers start, so that the first
// evaluations see it).
func (s *Service) loadTrends(ctx context.Context) error {
	if !s.cfg.Warnings.Enabled || !s.trendsOn() {
		return nil
	}
	kv, err := s.js.KeyValue(ctx, events.BucketUsage)
	if err != nil {
		return fmt.Errorf("watcher: open bucket %s (provision the bus first): %w", events.BucketUsage, err)
	}
	st := &usageStore{kv: kv, cluster: s.cfg.Cluster, log: s.log}
	series, err := st.load(ctx, func(k usageKey) bool { return s.filter.watched(k.owner.Namespace) })
	if err != nil {
		return fmt.Errorf("watcher: %w", err)
	}
	for k, v := range series {
		s.trends.hist.restore(k, v)
	}
	s.trends.store = st
	s.log.Info("usage history loaded", slog.Int("series", len(series)))
	return nil
}

// trendLoop samples usage every usage_interval until ctx is done, then
// writes what is left.
func (s *Service) trendLoop(ctx context.Context) error {
	if !s.cfg.Warnings.Enabled || !s.trendsOn() {
		return nil
	}
	tick := time.NewTicker(s.cfg.Warnings.Config.UsageInterval.Duration)
	defer tick.Stop()
	for {
		s.sampleRound(ctx, s.now())
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.PublishTimeout)
			s.flushUsage(fctx, s.now(), true)
			cancel()
			return nil
		case <-tick.C:
		}
	}
}

// sampleRound is one round: sample, enqueue the owners whose memory
// verdict is or was a warning, forget what is out of every window, and
// write the changed series.
func (s *Service) sampleRound(ctx context.Context, now time.Time) {
	t := s.trends
	if s.cfg.Warnings.on(events.IssueMemoryNearLimit) {
		s.sampleMemory(ctx, now)
	}
	if s.cfg.Warnings.on(events.IssueMemoryNearLimit) {
		for _, k := range s.memoryVerdicts(now) {
			s.queue.Add(k)
		}
	}
	t.hist.prune(now)
	s.flushUsage(ctx, now, false)
}

// sampleMemory asks the usage source and adds a sample per workload
// container; an unavailable metrics API turns MemoryNearLimit off (said
// once) and is asked again every usageRetry.
func (s *Service) sampleMemory(ctx context.Context, now time.Time) {
	t := s.trends
	t.mu.Lock()
	wait := t.off != "" && now.Before(t.retryAt)
	t.mu.Unlock()
	if wait {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, max(s.cfg.PublishTimeout, s.cfg.Warnings.Config.UsageInterval.Duration))
	pods, err := t.src.podUsage(rctx, s.cfg.Namespace)
	cancel()
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case errors.Is(err, errUsageOff):
		if t.off == "" {
			s.log.Warn("warnings off: the metrics API is not available; the other warnings still work",
				slog.Any("off", []string{string(events.IssueMemoryNearLimit)}), slog.String("why", err.Error()))
		}
		t.off, t.retryAt = err.Error(), now.Add(usageRetry)
		return
	case err != nil:
		if ctx.Err() != nil {
			return
		}
		t.sampleErrors.Inc()
		if !t.failing {
			s.log.Warn("sampling container memory failed; trying again every usage_interval", slog.Any("error", err))
		}
		t.failing = true
		return
	}
	if t.off != "" {
		s.log.Info("the metrics API is available again: MemoryNearLimit is on")
	}
	t.off, t.failing = "", false
	t.samples.Add(float64(s.recordUsage(pods, now)))
}

// usageRetry is how often an unavailable metrics API is asked again.
const usageRetry = 5 * time.Minute

// recordUsage adds one sample per workload container: the working set of
// its pod closest to the limit (the largest share of it). It returns the
// samples added.
func (s *Service) recordUsage(pods []podUsage, now time.Time) int {
	type best struct {
		ratio        float64
		at           time.Time
		bytes, limit int64
	}
	top := map[usageKey]best{}
	for _, pu := range pods {
		if !s.filter.watched(pu.Namespace) {
			continue
		}
		pod := get[corev1.Pod](s.cl.pods, pu.Namespace, pu.Name)
		if pod == nil || pod.DeletionTimestamp != nil || ownerPending(pod, s.cl, now) {
			continue
		}
		owner, _ := resolveOwner(pod, s.cl)
		at := pu.Time
		if at.IsZero() {
			at = now
		}
		for _, c := range pu.Containers {
			limit := memoryLimit(pod, c.Name)
			if limit <= 0 {
				continue // nothing to run into
			}
			k := usageKey{owner: keyOf(owner), container: c.Name}
			r := float64(c.Memory) / float64(limit)
			if b, ok := top[k]; !ok || r > b.ratio {
				top[k] = best{ratio: r, at: at, bytes: c.Memory, limit: limit}
			}
		}
	}
	n := 0
	for k, b := range top {
		if s.trends.hist.addSample(k, b.at, b.bytes, b.limit) {
			n++
		}
	}
	return n
}

// memoryLimit is the memory limit of container name of pod in bytes (0:
// none).
func memoryLimit(pod *corev1.Pod, name string) int64 {
	for _, c := range pod.Spec.Containers {
		if c.Name == name {
			if q, ok := c.Resources.Limits[corev1.ResourceMemory]; ok {
				return q.Value()
			}
		}
	}
	return 0
}

// memoryVerdicts evaluates every memory series and returns the owners
// whose verdict is a warning or was one at the last round: their
// incidents are due for an update or a resolution.
func (s *Service) memoryVerdicts(now time.Time) []ownerKey {
	h := s.trends.hist
	var out []ownerKey
	buf := make([]point, 0, maxMemSamples)
	for _, k := range h.memoryKeys() {
		pts, limit := h.memPoints(k, buf[:0])
		_, warn := s.memoryProjection(pts, limit, h.isWarned(k), now)
		if prev := h.setWarned(k, warn); (warn || prev) && (len(out) == 0 || out[len(out)-1] != k.owner) {
			out = append(out, k.owner)
		}
	}
	return out
}

// flushUsage writes the series due at now (final: every changed one,
// at shutdown).
func (s *Service) flushUsage(ctx context.Context, now time.Time, final bool) {
	t := s.trends
	if t.store == nil {
		return
	}
	ws := t.hist.due(now, final)
	if len(ws) == 0 {
		return
	}
	n, failed := t.store.write(ctx, ws, s.cfg.PublishTimeout)
	t.writes.Add(float64(n))
	for _, k := range failed {
		t.hist.failed(k)
	}
	if len(failed) > 0 && ctx.Err() == nil {
		s.log.Warn("storing usage history failed; retrying at the next usage_interval", slog.Int("keys", len(failed)))
	}
}

// restartsChanged records the restarts of a pod's containers in their
// workload container's history: each increase of a restart count, at the
// end of the container's previous run. A pod seen for the first time (at
// start-up) adds its last restart unless the history has it already.
func (s *Service) restartsChanged(oldObj, obj any) {
	if !s.cfg.Warnings.on(events.IssueRecurringRestarts) {
		return
	}
	pod := podOf(obj)
	if pod == nil || !s.filter.watched(pod.Namespace) || ownerPending(pod, s.cl, s.now()) {
		return
	}
	old := podOf(oldObj)
	var k ownerKey
	resolved, added := false, false
	for _, cs := range pod.Status.ContainerStatuses {
		prev := int32(-1) // first sight
		if old != nil {
			prev = restartCount(old, cs.Name)
		}
		if cs.RestartCount <= 0 || cs.RestartCount <= prev {
			continue
		}
		if !resolved {
			owner, _ := resolveOwner(pod, s.cl)
			k, resolved = keyOf(owner), true
		}
		added = s.recordRestarts(usageKey{owner: k, container: cs.Name}, cs, prev) || added
	}
	if added {
		s.queue.AddAfter(k, s.cfg.Debounce)
	}
}

// restartCount is container name's restart count in pod (0 when absent).
func restartCount(pod *corev1.Pod, name string) int32 {
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name == name {
			return cs.RestartCount
		}
	}
	return 0
}

// recordRestarts adds the restarts of cs since its count was prev (-1:
// seen for the first time, when only its last restart can be known).
func (s *Service) recordRestarts(k usageKey, cs corev1.ContainerStatus, prev int32) bool {
	now := s.now()
	at := now
	if lt := cs.LastTerminationState.Terminated; lt != nil && !lt.FinishedAt.IsZero() {
		at = lt.FinishedAt.Time
	}
	h := s.trends.hist
	if prev < 0 {
		return at.After(h.latestEvent(k, true)) && now.Sub(at) < s.cfg.Warnings.Config.RestartWindow.Duration && h.addEvent(k, at, true)
	}
	added := false
	n := min(cs.RestartCount-prev, int32(maxEvents))
	for i := range n {
		// Restarts folded into one status update: a second apart, the
		// last at the end of the previous run; each after the last
		// recorded (a run's end time is not always new: another pod's,
		// a coarse clock).
		t := at.Add(time.Duration(i-n+1) * time.Second)
		if last := h.latestEvent(k, true); !t.After(last) {
			t = last.Add(time.Second)
		}
		added = h.addEvent(k, t, true) || added
	}
	return added
}

// replicaState is a Deployment's or StatefulSet's desired and ready
// replicas, whether a rollout is under way (a new generation not yet
// observed, pods of an older template still running, a StatefulSet
// revision not yet current everywhere), and the revision of its
// template. A missing pod being replaced is not a rollout: its
// replacement has the current template.
func replicaState(obj any) (desired, ready int32, rollout bool, revision string, ok bool) {
	desiredOf := func(r *int32) int32 {
		if r == nil {
			return 1
		}
		return *r
	}
	switch o := obj.(type) {
	case *appsv1.Deployment:
		st := o.Status
		return desiredOf(o.Spec.Replicas), st.ReadyReplicas, o.Generation > st.ObservedGeneration || st.Replicas > st.UpdatedReplicas,
			o.Annotations[annotationRevision], true
	case *appsv1.StatefulSet:
		st := o.Status
		return desiredOf(o.Spec.Replicas), st.ReadyReplicas, o.Generation > st.ObservedGeneration ||
			st.UpdateRevision != "" && st.CurrentRevision != st.UpdateRevision, st.UpdateRevision, true
	}
	return 0, 0, false, "", false
}

// readyChanged follows a Deployment's or StatefulSet's ready replicas: a
// fall below the desired count opens a dip, the return to it records the
// dip in the history. A rollout or a new desired count cancels the dip in
// progress: replicas are expected to be missing then.
func (s *Service) readyChanged(kind string, oldObj, obj any) {
	if !s.cfg.Warnings.on(events.IssueReadyReplicasDipping) {
		return
	}
	m := objectOf(obj)
	if m == nil || !s.filter.watched(m.GetNamespace()) || m.GetDeletionTimestamp() != nil {
		return
	}
	desired, ready, rollout, rev, ok := replicaState(obj)
	oDesired, oReady, _, oRev, oldOK := replicaState(oldObj)
	if !ok || !oldOK {
		return
	}
	rollout = rollout || rev != oRev
	k := ownerKey{Namespace: m.GetNamespace(), Kind: kind, Name: m.GetName()}
	now := s.now()
	t := s.trends
	t.mu.Lock()
	d := t.dips[k]
	var recovered *dipState
	switch {
	case rollout || desired != oDesired || desired == 0:
		delete(t.dips, k)
	case d == nil && oReady >= desired && ready < desired:
		t.dips[k] = &dipState{since: now, desired: desired, lowest: ready}
	case d != nil && ready < desired:
		d.lowest = min(d.lowest, ready)
	case d != nil:
		recovered = d
		delete(t.dips, k)
	}
	t.mu.Unlock()
	if recovered != nil && t.hist.addEvent(usageKey{owner: k, container: ownerSeries}, recovered.since, false) {
		s.queue.AddAfter(k, s.cfg.Debounce)
	}
}

// trendObs is the warning source of the trends: owner k's memory
// projections, recurring restarts and ready replica dips.
func (s *Service) trendObs(k ownerKey, now time.Time) ([]ctrlObs, time.Time) {
	views := s.trends.hist.owner(k)
	if len(views) == 0 {
		return nil, time.Time{}
	}
	pods := s.cl.podsOf(k)
	var issues []ControllerIssue
	var recheck time.Time
	for _, v := range views {
		if v.container == ownerSeries {
			if s.cfg.Warnings.on(events.IssueReadyReplicasDipping) {
				iss, rc := s.dipWarning(k, v, now)
				issues, recheck = append(issues, iss...), earliest(recheck, rc)
			}
			continue
		}
		if s.cfg.Warnings.on(events.IssueMemoryNearLimit) {
			if iss, ok := s.memoryWarning(k, v, now); ok {
				issues = append(issues, iss)
				// Stale samples end the warning: look again then.
				recheck = earliest(recheck, v.mem[len(v.mem)-1].T.Add(s.staleAfter()))
			}
		}
		if s.cfg.Warnings.on(events.IssueRecurringRestarts) {
			iss, rc := s.restartWarning(k, v, pods, now)
			issues, recheck = append(issues, iss...), earliest(recheck, rc)
		}
	}
	if len(issues) == 0 {
		return nil, recheck
	}
	return []ctrlObs{{Chain: []events.ObjectRef{s.ownerRef(k, pods)}, Issues: issues}}, recheck
}

// ownerRef is owner k as a reference: resolved from one of its pods,
// else from the workload caches.
func (s *Service) ownerRef(k ownerKey, pods []*corev1.Pod) events.ObjectRef {
	if len(pods) > 0 {
		owner, _ := resolveOwner(pods[0], s.cl)
		return owner
	}
	ref := events.ObjectRef{Kind: k.Kind, Namespace: k.Namespace, Name: k.Name}
	switch k.Kind {
	case "Deployment":
		if d := get[appsv1.Deployment](s.cl.deploys, k.Namespace, k.Name); d != nil {
			ref.UID, ref.APIVersion = string(d.UID), "apps/v1"
		}
	case "StatefulSet":
		if o := get[appsv1.StatefulSet](s.cl.sts, k.Namespace, k.Name); o != nil {
			ref.UID, ref.APIVersion = string(o.UID), "apps/v1"
		}
	}
	return ref
}

// staleAfter is how old the last memory sample may be for a verdict. A
// long window keeps a sample only every window/maxMemSamples (addSample's
// spacing: 6 minutes for 24h), so the last one kept may be that old while
// the samples still come.
func (s *Service) staleAfter() time.Duration {
	w := s.cfg.Warnings.Config
	spacing := max(w.UsageInterval.Duration/2, w.MemoryWindow.Duration/maxMemSamples)
	return max(3*w.UsageInterval.Duration, 2*time.Minute, spacing+2*w.UsageInterval.Duration)
}

// memoryProjection projects a container's samples to its limit; warn
// when the projection warns and the samples are fresh. A warning already
// given (held) holds with some slack (hysteresis): a fit whose R² or
// crossing sits at the edge would otherwise resolve and come back round
// after round, and each resolution supersedes the plan a person asked
// for. It clears once R² falls holdConfidenceSlack below
// memory_confidence or the crossing moves past holdHorizonFactor times
// memory_horizon (or the samples stop, or the slope is no longer
// positive).
func (s *Service) memoryProjection(pts []point, limit int64, held bool, now time.Time) (p memoryProjection, warn bool) {
	w := s.cfg.Warnings.Config
	if len(pts) == 0 || limit <= 0 || now.Sub(pts[len(pts)-1].T) > s.staleAfter() {
		return memoryProjection{}, false
	}
	confidence, horizon := w.MemoryConfidence, w.MemoryHorizon.Duration
	if held {
		confidence = max(0, confidence-holdConfidenceSlack)
		horizon = time.Duration(float64(horizon) * holdHorizonFactor)
	}
	p, ok := projectMemory(pts, float64(limit), w.MemoryWindow.Duration, horizon, confidence, now)
	return p, ok && p.Warn
}

// The slack of a MemoryNearLimit already given (memoryProjection).
const (
	holdConfidenceSlack = 0.1
	holdHorizonFactor   = 1.5
)

// memoryWarning is the MemoryNearLimit of a container's series, if its
// projection warns.
func (s *Service) memoryWarning(k ownerKey, v seriesView, now time.Time) (ControllerIssue, bool) {
	p, warn := s.memoryProjection(v.mem, v.limit, v.warned, now)
	if !warn {
		return ControllerIssue{}, false
	}
	f := p.Fit
	fc := &events.Forecast{Metric: metricMemoryWorkingSet, Unit: events.UnitBytes, Current: math.Round(p.Current),
		Limit: float64(v.limit), SlopePerHour: math.Round(f.Slope * 3600), CrossesAt: p.CrossesAt.UTC().Truncate(time.Second),
		Confidence: math.Round(f.R2*1000) / 1000, WindowSeconds: int64(f.Span / time.Second), Samples: f.N}
	msg := fmt.Sprintf("container %s of %s %s: working set %s of its %s limit, growing %s/h over the last %s (R² %.2f); projected to reach the limit %s",
		v.container, strings.ToLower(k.Kind), k.Name, sizeText(p.Last.V), sizeText(float64(v.limit)), sizeText(f.Slope*3600),
		spanText(f.Span), f.R2, crossingText(p.CrossesAt, now))
	return ControllerIssue{Type: events.IssueMemoryNearLimit, Reason: reasonProjectedOOM, Container: v.container, Message: msg,
		Warning: &events.WarningEvidence{
			Measurements: []events.Measurement{{Name: metricMemoryWorkingSet, Value: p.Last.V, Limit: float64(v.limit), Unit: events.UnitBytes}},
			Forecast:     fc,
		}}, true
}

// restartWarning is the RecurringRestarts of a container's series, and
// when the count may fall below the minimum.
func (s *Service) restartWarning(k ownerKey, v seriesView, pods []*corev1.Pod, now time.Time) ([]ControllerIssue, time.Time) {
	w := s.cfg.Warnings.Config
	in := within(v.restarts, now.Add(-w.RestartWindow.Duration))
	if len(in) == 0 {
		return nil, time.Time{}
	}
	recheck := in[0].Add(w.RestartWindow.Duration)
	// Without pods (the workload deleted or scaled to zero) nothing
	// restarts any more, whatever the window still holds.
	if len(in) < w.RestartMin || len(pods) == 0 || s.restartFailing(pods, v.container, now) {
		return nil, recheck
	}
	last := in[len(in)-1]
	msg := fmt.Sprintf("container %s of %s %s restarted %d times in the last %s, recovering each time (not in CrashLoopBackOff); last restart at %s%s",
		v.container, strings.ToLower(k.Kind), k.Name, len(in), spanText(w.RestartWindow.Duration), last.UTC().Format(time.RFC3339),
		lastExitText(pods, v.container))
	return []ControllerIssue{{Type: events.IssueRecurringRestarts, Reason: reasonRestartsRecurring, Container: v.container, Message: msg,
		Warning: &events.WarningEvidence{Measurements: []events.Measurement{{Name: "restarts", Value: float64(len(in)),
			Limit: float64(w.RestartMin), Unit: events.UnitCount, WindowSeconds: int64(w.RestartWindow.Duration / time.Second)}}}}}, recheck
}

// dipWarning is the ReadyReplicasDipping of a workload's series.
func (s *Service) dipWarning(k ownerKey, v seriesView, now time.Time) ([]ControllerIssue, time.Time) {
	w := s.cfg.Warnings.Config
	in := within(v.dips, now.Add(-w.DipWindow.Duration))
	if len(in) == 0 {
		return nil, time.Time{}
	}
	recheck := in[0].Add(w.DipWindow.Duration)
	if len(in) < w.DipMin {
		return nil, recheck
	}
	// A typed nil in obj would match replicaState's case and crash:
	// only a cached object is assigned.
	var obj any
	switch k.Kind {
	case "Deployment":
		if d := get[appsv1.Deployment](s.cl.deploys, k.Namespace, k.Name); d != nil {
			obj = d
		}
	case "StatefulSet":
		if o := get[appsv1.StatefulSet](s.cl.sts, k.Namespace, k.Name); o != nil {
			obj = o
		}
	}
	desired, ready, _, _, ok := replicaState(obj)
	if !ok || desired == 0 {
		return nil, recheck // gone, or stopped on purpose
	}
	msg := fmt.Sprintf("%s %s fell below its %s %d times in the last %s and recovered each time, outside rollouts; last dip at %s; %d ready now",
		strings.ToLower(k.Kind), k.Name, plural(int(desired), "desired ready replica"), len(in), spanText(w.DipWindow.Duration),
		in[len(in)-1].UTC().Format(time.RFC3339), ready)
	return []ControllerIssue{{Type: events.IssueReadyReplicasDipping, Reason: reasonReadyReplicasDipping, Message: msg,
		Warning: &events.WarningEvidence{Measurements: []events.Measurement{
			{Name: "ready_replica_dips", Value: float64(len(in)), Limit: float64(w.DipMin), Unit: events.UnitCount,
				WindowSeconds: int64(w.DipWindow.Duration / time.Second)},
			{Name: "ready_replicas", Value: float64(ready), Limit: float64(desired), Unit: events.UnitCount},
		}}}}, recheck
}

// within returns the times at or after from (ts in order).
func within(ts []time.Time, from time.Time) []time.Time {
	for i, t := range ts {
		if !t.Before(from) {
			return ts[i:]
		}
	}
	return nil
}

// restartFailing reports whether container name of any of pods is a
// failure now: in CrashLoopBackOff, or restarted and not yet running for
// watcher.recovered_after (CrashLoopBackOff or OOMKilled). That is the
// failure's incident; the warning is for a container that recovers
// between its restarts. The failure's end re-evaluates the owner (the
// classifier's recheck).
func (s *Service) restartFailing(pods []*corev1.Pod, name string, now time.Time) bool {
	for _, p := range pods {
		issues, _ := s.classifyPod(p, now)
		for _, iss := range issues {
			if iss.Container == name && (iss.Type == events.IssueCrashLoopBackOff || iss.Type == events.IssueOOMKilled) {
				return true
			}
		}
	}
	return false
}

// lastExitText is "; last exit: OOMKilled, code 137" from the pod whose
// container ended last.
func lastExitText(pods []*corev1.Pod, name string) string {
	var last *corev1.ContainerStateTerminated
	for _, p := range pods {
		for _, cs := range p.Status.ContainerStatuses {
			if lt := cs.LastTerminationState.Terminated; cs.Name == name && lt != nil && (last == nil || lt.FinishedAt.After(last.FinishedAt.Time)) {
				last = lt
			}
		}
	}
	if last == nil {
		return ""
	}
	return fmt.Sprintf("; last exit: %s, code %d", truncate(cmp.Or(last.Reason, "unknown"), 64), last.ExitCode)
}

// sizeText is a byte count as people write it: 412Mi, 1.5Gi, 900Ki.
func sizeText(b float64) string {
	const ki, mi, gi = 1 << 10, 1 << 20, 1 << 30
	neg := ""
	if b < 0 {
		neg, b = "-", -b
	}
	switch {
	case b >= 10*gi:
		return fmt.Sprintf("%s%.0fGi", neg, b/gi)
	case b >= gi:
		return fmt.Sprintf("%s%.1fGi", neg, b/gi)
	case b >= mi:
		return fmt.Sprintf("%s%.0fMi", neg, b/mi)
	case b >= ki:
		return fmt.Sprintf("%s%.0fKi", neg, b/ki)
	}
	return fmt.Sprintf("%s%.0f bytes", neg, b)
}

// spanText is a span as people write it: 2h, 1h30m, 45m, 1m30s, 30s
// (to the second; to the minute from an hour).
func spanText(d time.Duration) string {
	d = d.Round(time.Second)
	if d >= time.Hour {
		d = d.Round(time.Minute)
	}
	h, m, sec := int(d/time.Hour), int(d%time.Hour/time.Minute), int(d%time.Minute/time.Second)
	var b strings.Builder
	if h > 0 {
		fmt.Fprintf(&b, "%dh", h)
	}
	if m > 0 {
		fmt.Fprintf(&b, "%dm", m)
	}
	if sec > 0 || b.Len() == 0 {
		fmt.Fprintf(&b, "%ds", sec)
	}
	return b.String()
}

// crossingText says when the projection reaches the limit: "now", "around
// 17:40 UTC" within a day, else with the date.
func crossingText(at, now time.Time) string {
	switch {
	case !at.After(now):
		return "now"
	case at.Sub(now) < 24*time.Hour:
		return "around " + at.UTC().Round(time.Minute).Format("15:04 MST")
	}
	return "around " + at.UTC().Round(time.Minute).Format("Jan 2 15:04 MST")
}
