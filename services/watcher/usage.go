package watcher

import (
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kaar-dev/kaar/pkg/config"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Usage: what the trend warnings sample over time and keep on the bus.
//
// Memory comes from the resource metrics API (metrics.k8s.io/v1beta1
// PodMetrics, served by metrics-server) through a usageSource. The
// watcher reads it with a raw GET through the Kubernetes clientset it is
// given rather than with k8s.io/metrics's typed clientset: that clientset
// needs a rest.Config, and the watcher is handed a kubernetes.Interface
// (one client, one credential, one rate limiter for everything it
// reads); the answer is decoded into the few fields read here, so no
// module is added for four JSON fields.
//
// The history (memory samples, restart and dip times) is kept per
// workload container in the kaar_usage bucket, one key each:
// "<cluster>.<namespace>.<kind>.<container>.<name>" (the name last: it
// may hold dots), the owner's own events (ready replica dips) under the
// container "_", which no container can be named. A value is a compact
// binary ring (usageSeries.encode): about 4 bytes a memory sample, a
// window of 60 samples in under 300 bytes. A key is written at most once
// per usage_interval and only when it changed; the bucket's TTL
// (usage_retention) drops the keys of workloads that are gone.

// usageSource lists the memory working set of the containers of pods.
type usageSource interface {
	// podUsage returns the pods of namespace ns ("" for all) that have
	// metrics. An error wrapping errUsageOff says the API is not there or
	// not readable (the warnings that need it are off); other errors are
	// a failed sample, tried again at the next interval.
	podUsage(ctx context.Context, ns string) ([]podUsage, error)
}

// podUsage is one pod's metrics.
type podUsage struct {
	Namespace, Name string
	// Time is when the metrics were collected.
	Time       time.Time
	Containers []containerUsage
}

// containerUsage is a container's working set in bytes.
type containerUsage struct {
	Name   string
	Memory int64
}

// errUsageOff is wrapped by the errors of a usage source that cannot
// serve at all: the metrics API is not served, or the watcher may not
// read it.
var errUsageOff = errors.New("container usage is not available")

// metricsGroupVersion is the resource metrics API.
const metricsGroupVersion = "metrics.k8s.io/v1beta1"

// metricsAPI reads PodMetrics from the resource metrics API.
type metricsAPI struct {
	disc discovery.DiscoveryInterface
	rc   rest.Interface
}

func newMetricsAPI(kube kubernetes.Interface) *metricsAPI {
	m := &metricsAPI{disc: kube.Discovery()}
	if m.disc != nil {
		m.rc = m.disc.RESTClient()
	}
	return m
}

// podMetricsList is the part of a metrics.k8s.io/v1beta1 PodMetricsList
// the watcher reads.
type podMetricsList struct {
	Items []struct {
		Metadata struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
		Timestamp  time.Time `json:"timestamp"`
		Containers []struct {
			Name  string                       `json:"name"`
			Usage map[string]resource.Quantity `json:"usage"`
		} `json:"containers"`
	} `json:"items"`
}

func (m *metricsAPI) podUsage(ctx context.Context, ns string) ([]podUsage, error) {
	if m.disc == nil {
		return nil, fmt.Errorf("%w: no discovery client", errUsageOff)
	}
	if _, err := m.disc.ServerResourcesForGroupVersion(metricsGroupVersion); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("%w: the cluster does not serve %s", errUsageOff, metricsGroupVersion)
		}
		if apierrors.IsForbidden(err) {
			return nil, fmt.Errorf("%w: discovery of %s is forbidden", errUsageOff, metricsGroupVersion)
		}
		return nil, fmt.Errorf("discover %s: %w", metricsGroupVersion, err)
	}
	if m.rc == nil {
		return nil, fmt.Errorf("%w: the Kubernetes client has no REST client", errUsageOff)
	}
	path := []string{"/apis/" + metricsGroupVersion}
	if ns != "" {
		path = append(path, "namespaces", ns)
	}
	raw, err := m.rc.Get().AbsPath(append(path, "pods")...).Do(ctx).Raw()
	switch {
	case apierrors.IsForbidden(err):
		return nil, fmt.Errorf("%w: listing pods.metrics.k8s.io is forbidden (RBAC: get, list on pods of metrics.k8s.io)", errUsageOff)
	case apierrors.IsNotFound(err):
		return nil, fmt.Errorf("%w: the cluster does not serve pods.metrics.k8s.io", errUsageOff)
	case err != nil:
		return nil, fmt.Errorf("list pods.metrics.k8s.io: %w", err)
	}
	var l podMetricsList
	if err := json.Unmarshal(raw, &l); err != nil {
		return nil, fmt.Errorf("decode pods.metrics.k8s.io: %w", err)
	}
	out := make([]podUsage, 0, len(l.Items))
	for _, it := range l.Items {
		pu := podUsage{Namespace: it.Metadata.Namespace, Name: it.Metadata.Name, Time: it.Timestamp}
		for _, c := range it.Containers {
			if q, ok := c.Usage["memory"]; ok {
				pu.Containers = append(pu.Containers, containerUsage{Name: c.Name, Memory: q.Value()})
			}
		}
		out = append(out, pu)
	}
	return out, nil
}

// usageKey names one series: a workload's container, or the workload
// itself (container ownerSeries).
type usageKey struct {
	owner     ownerKey
	container string
}

// ownerSeries is the container token of a workload's own series (ready
// replica dips): not a valid container name.
const ownerSeries = "_"

// usageKeyToken is a key token: a namespace, kind or container name.
var usageKeyToken = regexp.MustCompile(`^[A-Za-z0-9_][-A-Za-z0-9_]*$`)

// usageNameRE is an object name as a key's last tokens.
var usageNameRE = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9_]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9_]*[A-Za-z0-9])?)*$`)

// kvKey is the key in the kaar_usage bucket; false for names a key
// cannot hold.
func (k usageKey) kvKey(cluster string) (string, bool) {
	for _, t := range []string{k.owner.Namespace, k.owner.Kind, k.container} {
		if !usageKeyToken.MatchString(t) {
			return "", false
		}
	}
	if !usageNameRE.MatchString(k.owner.Name) {
		return "", false
	}
	return cluster + "." + k.owner.Namespace + "." + k.owner.Kind + "." + k.container + "." + k.owner.Name, true
}

// parseUsageKey is the inverse of kvKey.
func parseUsageKey(cluster, key string) (usageKey, bool) {
	rest, ok := strings.CutPrefix(key, cluster+".")
	if !ok {
		return usageKey{}, false
	}
	parts := strings.SplitN(rest, ".", 4)
	if len(parts) != 4 {
		return usageKey{}, false
	}
	k := usageKey{owner: ownerKey{Namespace: parts[0], Kind: parts[1], Name: parts[3]}, container: parts[2]}
	if kk, ok := k.kvKey(cluster); !ok || kk != key {
		return usageKey{}, false
	}
	return k, true
}

// memSample is a memory sample as kept: seconds since usageEpoch and KiB
// (8 bytes; the watcher may hold thousands of series).
type memSample struct {
	t   uint32
	kib uint32
}

// usageEpoch is the origin of memSample times.
var usageEpoch = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

func toEpoch(t time.Time) uint32 {
	s := t.Sub(usageEpoch) / time.Second
	return uint32(min(max(s, 0), 1<<32-1))
}

func fromEpoch(s uint32) time.Time { return usageEpoch.Add(time.Duration(s) * time.Second) }

func toKiB(b int64) uint32 { return uint32(min(max((b+512)/1024, 0), 1<<32-1)) }

// usageSeries is one key's history.
type usageSeries struct {
	// limitKiB is the memory limit of the container last sampled (0:
	// none).
	limitKiB uint32
	mem      []memSample
	// restarts and dips are when the container restarted and when the
	// workload's ready replicas fell (for dips that recovered), seconds
	// since usageEpoch, oldest first.
	restarts []uint32
	dips     []uint32
	// dirty: changed since it was last written; written: when.
	dirty   bool
	written time.Time
	// warned is the memory verdict of the last sampling round.
	warned bool
}

// Bounds of a series: the window of samples a fit needs, at most
// maxMemSamples of them, and at most maxEvents restart or dip times.
const (
	maxMemSamples = 240
	maxEvents     = config.MaxWarningEvents // restart_min and dip_min are bounded by it
	seriesVersion = 1
)

// encode is the value stored in the bucket: a version byte, the limit,
// then the samples (first time absolute, then deltas, each with its KiB),
// the restart times and the dip times (deltas), all uvarints.
func (s *usageSeries) encode() []byte {
	b := make([]byte, 0, 8+len(s.mem)*5+(len(s.restarts)+len(s.dips))*3)
	b = append(b, seriesVersion)
	b = binary.AppendUvarint(b, uint64(s.limitKiB))
	b = binary.AppendUvarint(b, uint64(len(s.mem)))
	var prev uint32
	for _, m := range s.mem {
		b = binary.AppendUvarint(b, uint64(m.t-prev))
		b = binary.AppendUvarint(b, uint64(m.kib))
		prev = m.t
	}
	for _, ts := range [][]uint32{s.restarts, s.dips} {
		b = binary.AppendUvarint(b, uint64(len(ts)))
		prev = 0
		for _, t := range ts {
			b = binary.AppendUvarint(b, uint64(t-prev))
			prev = t
		}
	}
	return b
}

var errBadSeries = errors.New("not a usage series")

// decodeSeries reads what encode wrote.
func decodeSeries(b []byte) (*usageSeries, error) {
	if len(b) == 0 || b[0] != seriesVersion {
		return nil, errBadSeries
	}
	b = b[1:]
	next := func() (uint32, error) {
		v, n := binary.Uvarint(b)
		if n <= 0 || v > 1<<32-1 {
			return 0, errBadSeries
		}
		b = b[n:]
		return uint32(v), nil
	}
	s := &usageSeries{}
	var err error
	if s.limitKiB, err = next(); err != nil {
		return nil, err
	}
	n, err := next()
	if err != nil || n > maxMemSamples {
		return nil, errBadSeries
	}
	var t uint32
	for range n {
		dt, err1 := next()
		kib, err2 := next()
		if err := errors.Join(err1, err2); err != nil {
			return nil, err
		}
		t += dt
		s.mem = append(s.mem, memSample{t: t, kib: kib})
	}
	for _, dst := range []*[]uint32{&s.restarts, &s.dips} {
		n, err := next()
		if err != nil || n > maxEvents {
			return nil, errBadSeries
		}
		t = 0
		for range n {
			dt, err := next()
			if err != nil {
				return nil, err
			}
			t += dt
			*dst = append(*dst, t)
		}
	}
	if len(b) != 0 {
		return nil, errBadSeries
	}
	return s, nil
}

// points are the memory samples as bytes over time.
func (s *usageSeries) points() []point {
	out := make([]point, len(s.mem))
	for i, m := range s.mem {
		out[i] = point{T: fromEpoch(m.t), V: float64(m.kib) * 1024}
	}
	return out
}

// usageLimits are the spans a history keeps.
type usageLimits struct {
	interval, memoryWindow, restartWindow, dipWindow time.Duration
}

// usageHistory holds the series of every workload container sampled or
// with events, indexed by owner. Safe for concurrent use.
type usageHistory struct {
	mu     sync.Mutex
	lim    usageLimits
	owners map[ownerKey]map[string]*usageSeries
}

func newUsageHistory(lim usageLimits) *usageHistory {
	return &usageHistory{lim: lim, owners: map[ownerKey]map[string]*usageSeries{}}
}

// seriesLocked returns k's series, creating it.
func (h *usageHistory) seriesLocked(k usageKey) *usageSeries {
	m := h.owners[k.owner]
	if m == nil {
		m = map[string]*usageSeries{}
		h.owners[k.owner] = m
	}
	s := m[k.container]
	if s == nil {
		s = &usageSeries{}
		m[k.container] = s
	}
	return s
}

// addSample appends a memory sample taken at t; false when it is not
// newer than the last one by at least a sample spacing (nothing new).
func (h *usageHistory) addSample(k usageKey, t time.Time, bytes, limit int64) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.seriesLocked(k)
	et := toEpoch(t)
	// Spacing: one sample per interval at most, and never more than
	// maxMemSamples over the window.
	spacing := max(h.lim.interval/2, h.lim.memoryWindow/maxMemSamples)
	if n := len(s.mem); n > 0 && (et <= s.mem[n-1].t || fromEpoch(et).Sub(fromEpoch(s.mem[n-1].t)) < spacing) {
		return false
	}
	s.mem = append(s.mem, memSample{t: et, kib: toKiB(bytes)})
	s.limitKiB = toKiB(limit)
	// Keep the window and the sample before it.
	from := toEpoch(t.Add(-h.lim.memoryWindow))
	i := 0
	for i+1 < len(s.mem) && s.mem[i+1].t <= from {
		i++
	}
	if over := len(s.mem) - maxMemSamples; over > i {
		i = over
	}
	s.mem = slices.Delete(s.mem, 0, i)
	s.dirty = true
	return true
}

// addEvent records a restart (restart=true) or a recovered dip at t
// unless one is recorded at that second already or later; it keeps the
// window's and at most maxEvents.
func (h *usageHistory) addEvent(k usageKey, t time.Time, restart bool) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.seriesLocked(k)
	ts, window := &s.dips, h.lim.dipWindow
	if restart {
		ts, window = &s.restarts, h.lim.restartWindow
	}
	et := toEpoch(t)
	if n := len(*ts); n > 0 && et <= (*ts)[n-1] {
		return false
	}
	*ts = append(*ts, et)
	*ts = pruneTimes(*ts, toEpoch(t.Add(-window)))
	s.dirty = true
	return true
}

// latestEvent is k's last restart or dip time (zero for none).
func (h *usageHistory) latestEvent(k usageKey, restart bool) time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.owners[k.owner][k.container]
	if s == nil {
		return time.Time{}
	}
	ts := s.dips
	if restart {
		ts = s.restarts
	}
	if len(ts) == 0 {
		return time.Time{}
	}
	return fromEpoch(ts[len(ts)-1])
}

func pruneTimes(ts []uint32, from uint32) []uint32 {
	i := 0
	for i < len(ts) && ts[i] < from {
		i++
	}
	if over := len(ts) - maxEvents; over > i {
		i = over
	}
	return slices.Delete(ts, 0, i)
}

// seriesView is a copy of a series for evaluation.
type seriesView struct {
	container string
	limit     int64
	mem       []point
	restarts  []time.Time
	dips      []time.Time
	// warned is the memory verdict of the last sampling round.
	warned bool
}

// owner returns copies of owner k's series, containers sorted.
func (h *usageHistory) owner(k ownerKey) []seriesView {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []seriesView
	for c, s := range h.owners[k] {
		v := seriesView{container: c, limit: int64(s.limitKiB) * 1024, mem: s.points(), warned: s.warned}
		for _, t := range s.restarts {
			v.restarts = append(v.restarts, fromEpoch(t))
		}
		for _, t := range s.dips {
			v.dips = append(v.dips, fromEpoch(t))
		}
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b seriesView) int { return strings.Compare(a.container, b.container) })
	return out
}

// memoryKeys are the keys of the series with memory samples, sorted by
// owner.
func (h *usageHistory) memoryKeys() []usageKey {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []usageKey
	for o, m := range h.owners {
		for c, s := range m {
			if len(s.mem) > 0 || s.warned {
				out = append(out, usageKey{owner: o, container: c})
			}
		}
	}
	slices.SortFunc(out, func(a, b usageKey) int {
		return cmp.Or(strings.Compare(a.owner.Namespace, b.owner.Namespace), strings.Compare(a.owner.Kind, b.owner.Kind),
			strings.Compare(a.owner.Name, b.owner.Name))
	})
	return out
}

// memPoints appends k's memory samples to buf and returns them with the
// limit in bytes.
func (h *usageHistory) memPoints(k usageKey, buf []point) ([]point, int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.owners[k.owner][k.container]
	if s == nil {
		return buf, 0
	}
	for _, m := range s.mem {
		buf = append(buf, point{T: fromEpoch(m.t), V: float64(m.kib) * 1024})
	}
	return buf, int64(s.limitKiB) * 1024
}

// pendingWrite is a series to store.
type pendingWrite struct {
	key   usageKey
	value []byte
}

// due returns the series to write at now: changed, and not written
// within the last interval (at most one write per interval and key;
// final, at shutdown, writes every changed one). It marks them written;
// a failed write marks them dirty again (retry).
func (h *usageHistory) due(now time.Time, final bool) []pendingWrite {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []pendingWrite
	for o, m := range h.owners {
		for c, s := range m {
			if !s.dirty || !final && !s.written.IsZero() && now.Sub(s.written) < h.lim.interval*9/10 {
				continue
			}
			s.dirty, s.written = false, now
			out = append(out, pendingWrite{key: usageKey{owner: o, container: c}, value: s.encode()})
		}
	}
	return out
}

// failed marks k's series dirty again after a failed write.
func (h *usageHistory) failed(k usageKey) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if s := h.owners[k.owner][k.container]; s != nil {
		s.dirty, s.written = true, time.Time{}
	}
}

// restore adds a stored series (at start-up).
func (h *usageHistory) restore(k usageKey, s *usageSeries) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s.written = time.Time{}
	m := h.owners[k.owner]
	if m == nil {
		m = map[string]*usageSeries{}
		h.owners[k.owner] = m
	}
	m[k.container] = s
}

// isWarned is the memory verdict of the last sampling round.
func (h *usageHistory) isWarned(k usageKey) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.owners[k.owner][k.container]
	return s != nil && s.warned
}

// setWarned records the memory verdict of a sampling round and returns
// the previous one.
func (h *usageHistory) setWarned(k usageKey, warned bool) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.owners[k.owner][k.container]
	if s == nil {
		return false
	}
	prev := s.warned
	s.warned = warned
	return prev
}

// prune forgets the series with nothing left in their windows at now
// (their keys expire in the bucket by its TTL).
func (h *usageHistory) prune(now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for o, m := range h.owners {
		for c, s := range m {
			s.restarts = pruneTimes(s.restarts, toEpoch(now.Add(-h.lim.restartWindow)))
			s.dips = pruneTimes(s.dips, toEpoch(now.Add(-h.lim.dipWindow)))
			if n := len(s.mem); n > 0 && fromEpoch(s.mem[n-1].t).Before(now.Add(-h.lim.memoryWindow)) {
				s.mem = nil
			}
			if len(s.mem) == 0 && len(s.restarts) == 0 && len(s.dips) == 0 && !s.warned {
				delete(m, c)
			}
		}
		if len(m) == 0 {
			delete(h.owners, o)
		}
	}
}

// usageStore keeps the series of one cluster in the kaar_usage bucket.
type usageStore struct {
	kv      jetstream.KeyValue
	cluster string
	log     *slog.Logger
}

// load reads every series of the cluster. A value that does not decode
// is logged and skipped.
func (u *usageStore) load(ctx context.Context, keep func(usageKey) bool) (map[usageKey]*usageSeries, error) {
	w, err := u.kv.Watch(ctx, u.cluster+".>", jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("load usage history: %w", err)
	}
	defer func() { _ = w.Stop() }()
	out := map[usageKey]*usageSeries{}
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("load usage history: %w", ctx.Err())
		case e, ok := <-w.Updates():
			if !ok {
				return nil, errors.New("load usage history: watcher closed")
			}
			if e == nil {
				return out, nil
			}
			k, ok := parseUsageKey(u.cluster, e.Key())
			if !ok || !keep(k) {
				continue
			}
			s, err := decodeSeries(e.Value())
			if err != nil {
				u.log.Warn("skipping undecodable usage history", slog.String("key", e.Key()), slog.Any("error", err))
				continue
			}
			out[k] = s
		}
	}
}

// storeParallel bounds the writes in flight.
const storeParallel = 8

// write stores the due series; it returns how many were written and the
// keys that failed (to retry).
func (u *usageStore) write(ctx context.Context, ws []pendingWrite, timeout time.Duration) (int, []usageKey) {
	var mu sync.Mutex
	var failed []usageKey
	var g errgroup.Group
	g.SetLimit(storeParallel)
	for _, w := range ws {
		g.Go(func() error {
			key, ok := w.key.kvKey(u.cluster)
			if !ok {
				return nil
			}
			wctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			if _, err := u.kv.Put(wctx, key, w.value); err != nil {
				mu.Lock()
				failed = append(failed, w.key)
				mu.Unlock()
			}
			return nil
		})
	}
	_ = g.Wait()
	return len(ws) - len(failed), failed
}

// memoryLimitOnly keeps a container's memory limit (for the cached pods:
// what MemoryNearLimit projects a working set to), nil without one.
func memoryLimitOnly(r corev1.ResourceRequirements) corev1.ResourceList {
	q, ok := r.Limits[corev1.ResourceMemory]
	if !ok {
		return nil
	}
	return corev1.ResourceList{corev1.ResourceMemory: q}
}
