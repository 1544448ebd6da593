package watcher

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// Deps are the watcher's connections and instruments.
type Deps struct {
	// NATS is the bus connection (required). The ISSUES stream and the
	// kaar_incidents bucket must exist (bus.Provision), and kaar_usage
	// when the trend warnings are on.
	NATS *nats.Conn
	// Kube reads pods, ReplicaSets, Jobs, Deployments, StatefulSets,
	// DaemonSets, Services, EndpointSlices and events (required; get,
	// list and watch are the only verbs used; events are optional
	// evidence), and the pod metrics of metrics.k8s.io (optional: the
	// memory trends).
	Kube kubernetes.Interface
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Registerer receives the metrics; nil leaves them unregistered.
	Registerer prometheus.Registerer
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Service is the watcher: informers, classifier, incident tracker,
// publisher and the analyze endpoint.
type Service struct {
	cfg Config
	// warningSources are the warning families (warn.go), set up by Run
	// when warnings are enabled.
	warningSources []warningSource
	nc             *nats.Conn
	js             jetstream.JetStream
	log            *slog.Logger
	now            func() time.Time
	cl             *cluster
	tracker        *tracker
	filter         nsFilter
	queue          workqueue.TypedRateLimitingInterface[ownerKey]
	metrics        *metrics
	store          *stateStore
	pulls          *pullMemory
	creates        *createMemory
	// cordons is since when each node is cordoned.
	cordons *cordonMemory
	storage *storageWatch // claims, StorageClasses, storage events
	probes  *probeWatch   // the kubelet's probe failures
	// rollouts is since when each StatefulSet and DaemonSet rollout has
	// not advanced.
	rollouts *rolloutMemory
	ingress  *ingressWatch  // Ingresses and IngressClasses
	nodes    *nodeWatch     // Nodes (cluster-wide watcher) and HPAs
	cron     *cronWatch     // CronJobs
	trends   *trendWatch    // usage history and the trend warnings (warn_trend.go)
	capacity *capacityWatch // quotas, LimitRanges, node requests, Certificates
	risks    *riskWatch     // configuration risks: PDBs, LimitRanges (nil with warnings off)
	ready    chan struct{}  // closed once the caches are synced
	ran      atomic.Bool
}

// New builds a watcher. It validates cfg (errors wrap ErrInvalidConfig and
// name the field), registers the metrics and the informers' event
// handlers; nothing runs until Run.
func New(cfg Config, deps Deps) (*Service, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if deps.NATS == nil {
		return nil, fmt.Errorf("%w: deps: NATS connection required", ErrInvalidConfig)
	}
	if deps.Kube == nil {
		return nil, fmt.Errorf("%w: deps: Kubernetes client required", ErrInvalidConfig)
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	js, err := bus.NewJetStream(deps.NATS, cfg.JetStreamDomain)
	if err != nil {
		return nil, fmt.Errorf("watcher: jetstream: %w", err)
	}
	m, err := newMetrics(deps.Registerer)
	if err != nil {
		return nil, err
	}
	cl, err := newCluster(deps.Kube, cfg.Namespace, cfg.ResyncPeriod)
	if err != nil {
		return nil, fmt.Errorf("watcher: informers: %w", err)
	}
	s := &Service{
		ready:    make(chan struct{}),
		cfg:      cfg,
		nc:       deps.NATS,
		js:       js,
		log:      deps.Logger,
		now:      deps.Now,
		cl:       cl,
		filter:   newNSFilter(cfg),
		pulls:    newPullMemory(),
		creates:  newCreateMemory(),
		cordons:  newCordonMemory(),
		rollouts: newRolloutMemory(),
		metrics:  m,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[ownerKey](500*time.Millisecond, 2*time.Minute),
			workqueue.TypedRateLimitingQueueConfig[ownerKey]{Name: "kaar-watcher"}),
	}
	s.tracker = newTracker(cfg.Cluster, cfg.Timing, s.filter.isProtected)
	if _, err := cl.pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { s.podChanged(nil, obj) },
		UpdateFunc: s.podChanged,
		DeleteFunc: func(obj any) {
			if p := podOf(obj); p != nil {
				s.pulls.forget(p.UID)
				s.storage.mounts.forget(p.UID)
			}
			s.podChanged(nil, obj)
		},
	}); err != nil {
		return nil, fmt.Errorf("watcher: pod handler: %w", err)
	}
	if _, err := cl.svcs.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    s.serviceChanged,
		UpdateFunc: func(_, obj any) { s.serviceChanged(obj) },
		DeleteFunc: s.serviceChanged,
	}); err != nil {
		return nil, fmt.Errorf("watcher: service handler: %w", err)
	}
	if _, err := cl.slices.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    s.sliceChanged,
		UpdateFunc: func(_, obj any) { s.sliceChanged(obj) },
		DeleteFunc: s.sliceChanged,
	}); err != nil {
		return nil, fmt.Errorf("watcher: endpointslice handler: %w", err)
	}
	if err := s.watchNodesAndHPAs(deps.Kube); err != nil {
		return nil, err
	}
	if err := s.watchTrends(deps.Kube, deps.Registerer); err != nil {
		return nil, err
	}
	if err := s.watchConfigRisks(deps.Kube); err != nil {
		return nil, err
	}
	if _, err := cl.events.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    s.eventChanged,
		UpdateFunc: func(_, obj any) { s.eventChanged(obj) },
	}); err != nil {
		return nil, fmt.Errorf("watcher: event handler: %w", err)
	}
	if _, err := cl.createEvents.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    s.createEventChanged,
		UpdateFunc: func(_, obj any) { s.createEventChanged(obj) },
	}); err != nil {
		return nil, fmt.Errorf("watcher: FailedCreate event handler: %w", err)
	}
	for kind, inf := range map[string]cache.SharedIndexInformer{"ReplicaSet": cl.rs, "Job": cl.jobs,
		"Deployment": cl.deploys, "StatefulSet": cl.sts, "DaemonSet": cl.ds} {
		if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { s.controllerChanged(kind, nil, obj) },
			UpdateFunc: func(old, cur any) { s.controllerChanged(kind, old, cur) },
			DeleteFunc: func(obj any) {
				if m := objectOf(obj); m != nil {
					s.creates.forget(m.GetUID())
					s.rollouts.forget(m.GetUID())
				}
				s.controllerChanged(kind, nil, obj)
			},
		}); err != nil {
			return nil, fmt.Errorf("watcher: %s handler: %w", kind, err)
		}
	}
	if err := s.watchStorage(deps.Kube); err != nil {
		return nil, err
	}
	if err := s.watchProbes(deps.Kube); err != nil {
		return nil, err
	}
	if err := s.watchIngresses(deps.Kube); err != nil {
		return nil, err
	}
	if err := s.watchCronJobs(deps.Kube); err != nil {
		return nil, err
	}
	if err := s.watchCapacity(deps.Kube); err != nil {
		return nil, err
	}
	return s, nil
}

// Run starts the informers and, once their caches are synced, evaluates
// failing workloads and publishes their transitions until ctx is done. It
// serves the analyze endpoint from the start (replying unavailable until
// the caches are synced). On shutdown it finishes the evaluations in
// flight. It returns nil on a clean shutdown. Run may be called once.
func (s *Service) Run(ctx context.Context) error {
	if !s.ran.CompareAndSwap(false, true) {
		return ErrAlreadyRun
	}
	defer s.queue.ShutDown()
	kv, err := s.js.KeyValue(ctx, events.BucketIncidents)
	if err != nil {
		return fmt.Errorf("watcher: open bucket %s (provision the bus first): %w", events.BucketIncidents, err)
	}
	s.store = &stateStore{kv: kv, cluster: s.cfg.Cluster, log: s.log}
	recs, err := s.store.load(ctx)
	if err != nil {
		return fmt.Errorf("watcher: %w", err)
	}
	// Records of namespaces outside this watcher's scope belong to another
	// watcher of the cluster: leave them alone.
	recs = slices.DeleteFunc(recs, func(r record) bool {
		return s.cfg.Namespace != "" && r.Incident.Namespace != s.cfg.Namespace
	})
	recs = s.withUnrecorded(ctx, recs)
	restored := s.tracker.Restore(recs)
	if err := s.loadTrends(ctx); err != nil {
		return err
	}
	s.log.Info("watcher starting", slog.Int("announced_incidents", len(restored)), slog.Int("records", len(recs)),
		slog.String("namespace", s.cfg.Namespace))

	svc, err := s.startEndpoints()
	if err != nil {
		return err
	}
	defer func() { _ = svc.Stop() }()

	s.reportForbiddenReads()
	g, gctx := errgroup.WithContext(ctx)
	s.cl.factory.StartWithContext(gctx)
	defer s.cl.factory.Shutdown()
	// Events are evidence, not a condition of detection: their informer
	// is not waited for (without the right to list events the watcher
	// still detects, with less precise image pull causes).
	s.cl.eventFactory.StartWithContext(gctx)
	defer s.cl.eventFactory.Shutdown()
	s.cl.createFactory.StartWithContext(gctx)
	defer s.cl.createFactory.Shutdown()
	s.ingress.start(gctx) // optional too
	defer s.ingress.shutdown()
	s.nodes.factory.StartWithContext(gctx) // optional too
	defer s.nodes.factory.Shutdown()
	s.startConfigRisks(gctx) // optional too
	defer s.risks.shutdown()
	s.cron.start(gctx)
	defer s.cron.shutdown()
	s.storage.start(gctx) // optional too
	defer s.storage.shutdown()
	s.probes.factory.StartWithContext(gctx) // optional too
	defer s.probes.factory.Shutdown()
	s.capacity.start(gctx, s) // optional too
	defer s.capacity.shutdown()
	g.Go(func() error {
		<-gctx.Done()
		s.queue.ShutDown() // workers finish the item in hand, then return
		return nil
	})
	if err := s.cl.factory.WaitForCacheSyncWithContext(gctx).AsError(); err != nil {
		_ = g.Wait()
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("watcher: wait for informer caches: %w", err)
	}
	// Give the events a moment to sync too, so that incidents found at
	// start-up name their image pull causes in their first announcement;
	// without the right to list events this costs eventSyncWait once.
	ectx, ecancel := context.WithTimeout(gctx, eventSyncWait)
	cache.WaitForCacheSync(ectx.Done(), append(s.storage.synced(), s.cl.events.HasSynced, s.cl.createEvents.HasSynced, s.probes.events.HasSynced)...)
	cache.WaitForCacheSync(ectx.Done(), append(s.ingress.synced(), append(s.cron.synced(), s.nodes.synced()...)...)...)
	cache.WaitForCacheSync(ectx.Done(), s.capacity.synced()...)
	cache.WaitForCacheSync(ectx.Done(), s.risks.synced()...)
	ecancel()
	releaseSyncGarbage()
	close(s.ready)
	for _, k := range restored {
		s.queue.Add(k) // resolves those that ended while the watcher was down
	}
	s.log.Info("watcher caches synced", slog.Int("pods", len(s.cl.pods.GetStore().ListKeys())))
	for range s.cfg.Workers {
		g.Go(func() error {
			for s.processNext(gctx) {
			}
			return nil
		})
	}
	g.Go(func() error { return s.expireLoop(gctx) })
	g.Go(func() error { return s.trendLoop(gctx) })
	err = g.Wait()
	s.log.Info("watcher stopped")
	return err
}

// eventSyncWait bounds how long Run waits for the events informer at
// start-up (events are evidence, not a condition of detection).
const eventSyncWait = 5 * time.Second

// Ready is closed once the informer caches are synced: the watcher then
// evaluates pods and answers analyze (for readiness probes).
func (s *Service) Ready() <-chan struct{} { return s.ready }

// synced reports whether Ready is closed.
func (s *Service) synced() bool {
	select {
	case <-s.ready:
		return true
	default:
		return false
	}
}

func (s *Service) startEndpoints() (micro.Service, error) {
	subject, err := events.ServiceSubject(s.cfg.Cluster, events.ServiceWatcher, events.VerbAnalyze)
	if err != nil {
		return nil, fmt.Errorf("watcher: %w", err)
	}
	svc, err := micro.AddService(s.nc, micro.Config{
		Name:        "kaar-" + events.ServiceWatcher,
		Version:     Version,
		Description: "kaar watcher: current incidents of cluster " + s.cfg.Cluster,
		Metadata:    map[string]string{"cluster": s.cfg.Cluster},
	})
	if err != nil {
		return nil, fmt.Errorf("watcher: add micro service: %w", err)
	}
	if err := svc.AddEndpoint(events.VerbAnalyze, micro.HandlerFunc(s.analyzeHandler), micro.WithEndpointSubject(subject)); err != nil {
		_ = svc.Stop()
		return nil, fmt.Errorf("watcher: add endpoint %s: %w", subject, err)
	}
	return svc, nil
}

// podChanged enqueues the owner of a pod whose state may matter: it has or
// had an issue, may get one by time alone, or its owner has incidents.
//
// The first failing pod of an owner without an open incident is evaluated
// at once (it is news: announced as detected without a group wait); every
// other change waits for the debounce, so a storm of updates of one owner
// is one evaluation.
func (s *Service) podChanged(oldObj, obj any) {
	pod := podOf(obj)
	if pod == nil || !s.filter.watched(pod.Namespace) {
		return
	}
	if oldObj == nil {
		// A pod that comes or goes may be a Service's first or last.
		s.podServicesChanged(pod)
	}
	owner, _ := resolveOwner(pod, s.cl)
	k := keyOf(owner)
	old := podOf(oldObj)
	if ownerPending(pod, s.cl, s.now()) {
		// Its ReplicaSet or Job is not cached yet: the controller's
		// arrival evaluates the real owner (controllerChanged).
		return
	}
	failing, soon := s.assess(pod)
	switch {
	case failing:
		s.enqueueFailing(k)
	case soon || old != nil && s.interesting(old) || s.tracker.Has(k):
		s.queue.AddAfter(k, s.cfg.Debounce)
	}
	if old != nil && !sameController(old, pod) {
		prev, _ := resolveOwner(old, s.cl)
		if pk := keyOf(prev); pk != k && s.tracker.Has(pk) {
			s.queue.AddAfter(pk, s.cfg.Debounce)
		}
	}
}

func (s *Service) interesting(pod *corev1.Pod) bool {
	failing, soon := s.assess(pod)
	return failing || soon
}

// assess reports whether pod has an issue now, and whether it may get one
// by the passage of time alone (a grace period running).
func (s *Service) assess(pod *corev1.Pod) (failing, soon bool) {
	issues, recheck := s.classifyPod(pod, s.now())
	return len(issues) > 0, !recheck.IsZero()
}

// eventChanged remembers the cause of an image pull failure from a kubelet
// event and re-evaluates the pod's owner when the cause is new: the pod's
// status alone may only say "Back-off pulling image".
func (s *Service) eventChanged(obj any) {
	ev, ok := obj.(*corev1.Event)
	if !ok {
		return
	}
	if ns := cmp.Or(ev.InvolvedObject.Namespace, ev.Namespace); !s.filter.watched(ns) {
		return
	}
	ns, name, uid, changed := s.pulls.observe(ev)
	if !changed {
		return
	}
	cached, ok, _ := s.cl.pods.GetIndexer().GetByKey(ns + "/" + name)
	if pod, isPod := cached.(*corev1.Pod); ok && isPod && pod.UID == uid {
		s.podChanged(nil, pod)
	}
}

// controllerChanged re-evaluates the owner of a workload controller
// (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job) whose own state
// is or was an issue (its pods cannot be created, its rollout stopped, it
// failed), or whose owner has incidents. A ReplicaSet or Job that appears,
// goes, or changes controller also re-evaluates the owners of its pods:
// owner resolution depends on it.
func (s *Service) controllerChanged(kind string, oldObj, obj any) {
	m := objectOf(obj)
	if m == nil || !s.filter.watched(m.GetNamespace()) {
		return
	}
	if missingPods(obj) <= 0 {
		// All its pods exist: earlier create failures are history.
		s.creates.clear(m.GetUID(), s.now())
	}
	s.rolloutChanged(obj)
	k := ownerOfController(kind, m)
	old := objectOf(oldObj)
	failing := s.controllerFailing(obj)
	switch {
	case failing:
		s.enqueueFailing(k)
	case old != nil && s.controllerFailing(oldObj) || s.tracker.Has(k):
		s.queue.AddAfter(k, s.cfg.Debounce)
	}
	if kind != "ReplicaSet" && kind != "Job" {
		return
	}
	if old != nil && controllerIndexKey(old, "") == controllerIndexKey(m, "") {
		return // a status update: owner resolution is unchanged
	}
	keys := []ownerKey{{Namespace: m.GetNamespace(), Kind: kind, Name: m.GetName()}, parseOwnerKey(controllerIndexKey(m, ""))}
	if old != nil {
		keys = append(keys, parseOwnerKey(controllerIndexKey(old, "")))
	}
	for _, k := range keys {
		if k.Name != "" && s.ownerInteresting(k) {
			s.queue.AddAfter(k, s.cfg.Debounce)
		}
	}
}

// controllerFailing reports a controller whose own state is an issue
// (a failed Job counts: whether it is the news is its owner's
// evaluation's business).
func (s *Service) controllerFailing(obj any) bool {
	switch o := obj.(type) {
	case *appsv1.ReplicaSet:
		return len(ClassifyReplicaSet(o)) > 0
	case *appsv1.Deployment:
		return len(ClassifyDeployment(o)) > 0
	case *appsv1.StatefulSet:
		return len(ClassifyStatefulSet(o, s.creates.get(o.UID))) > 0 || s.rolloutStalled(o)
	case *appsv1.DaemonSet:
		return len(ClassifyDaemonSet(o, s.creates.get(o.UID))) > 0 || s.rolloutStalled(o)
	case *batchv1.Job:
		failed, _ := jobFinished(o)
		return failed != nil || len(ClassifyJob(o, s.creates.get(o.UID))) > 0
	}
	return false
}

// createEventChanged remembers a controller's report that it could not
// create a pod, and evaluates the controller's owner when it is news.
func (s *Service) createEventChanged(obj any) {
	ev, _ := obj.(*corev1.Event)
	ref, fc, ok := CreateFailureOf(ev)
	if !ok || !s.filter.watched(ref.Namespace) || !s.creates.observe(ref.UID, fc) {
		return
	}
	k := ownerKey{Namespace: ref.Namespace, Kind: ref.Kind, Name: ref.Name}
	if ref.Kind == "Job" {
		if j := get[batchv1.Job](s.cl.jobs, ref.Namespace, ref.Name); j != nil && j.UID == ref.UID {
			k = ownerOfController("Job", j)
		}
	}
	s.enqueueFailing(k)
}

// enqueueFailing queues owner k, which has a new issue: at once when
// incidents are announced without a group wait and k has none open yet,
// else after the debounce.
func (s *Service) enqueueFailing(k ownerKey) {
	if s.cfg.Timing.GroupWait == 0 && !s.tracker.Open(k) {
		s.queue.Add(k)
		return
	}
	s.queue.AddAfter(k, s.cfg.Debounce)
}

// ownerOfController is the owner a controller's issues are reported on,
// the one its pods resolve to: a ReplicaSet's or Job's controller
// (Deployment, CronJob), or the object itself.
func ownerOfController(kind string, m metav1.Object) ownerKey {
	if kind == "ReplicaSet" || kind == "Job" {
		if ref := metav1.GetControllerOfNoCopy(m); ref != nil {
			return ownerKey{Namespace: m.GetNamespace(), Kind: ref.Kind, Name: ref.Name}
		}
	}
	return ownerKey{Namespace: m.GetNamespace(), Kind: kind, Name: m.GetName()}
}

func objectOf(obj any) metav1.Object {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	m, _ := obj.(metav1.Object)
	return m
}

// ownerInteresting reports an owner with incidents or a pod that has (or
// may soon have) an issue.
func (s *Service) ownerInteresting(k ownerKey) bool {
	if s.tracker.Has(k) {
		return true
	}
	return slices.ContainsFunc(s.cl.podsOf(k), s.interesting)
}

func parseOwnerKey(s string) ownerKey {
	parts := strings.SplitN(s, "/", 3)
	if len(parts) != 3 {
		return ownerKey{}
	}
	return ownerKey{Namespace: parts[0], Kind: parts[1], Name: parts[2]}
}

func podOf(obj any) *corev1.Pod {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	p, _ := obj.(*corev1.Pod)
	return p
}

func sameController(a, b *corev1.Pod) bool {
	ra, rb := metav1.GetControllerOfNoCopy(a), metav1.GetControllerOfNoCopy(b)
	if ra == nil || rb == nil {
		return ra == rb
	}
	return ra.UID == rb.UID && ra.Kind == rb.Kind && ra.Name == rb.Name
}

// processNext evaluates one owner; false when the queue is shut down.
func (s *Service) processNext(ctx context.Context) bool {
	k, shutdown := s.queue.Get()
	if shutdown {
		return false
	}
	defer s.queue.Done(k)
	// In-flight work finishes even when ctx is cancelled (drain), bounded
	// by the publish timeout.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*s.cfg.PublishTimeout)
	defer cancel()
	start := time.Now()
	err := s.reconcile(wctx, k)
	s.metrics.handling.Observe(time.Since(start).Seconds())
	if err != nil {
		s.log.Warn("evaluating owner failed; retrying with back-off", slog.String("namespace", k.Namespace),
			slog.String("owner", k.Kind+"/"+k.Name), slog.Any("error", err))
		s.queue.AddRateLimited(k)
		return true
	}
	s.queue.Forget(k)
	return true
}

// reconcile evaluates the pods of one owner and publishes the transitions
// that are due.
func (s *Service) reconcile(ctx context.Context, k ownerKey) error {
	now := s.now()
	owner := events.ObjectRef{Kind: k.Kind, Namespace: k.Namespace, Name: k.Name}
	var pods []podObs
	var recheck time.Time
	if s.filter.watched(k.Namespace) {
		for _, p := range s.cl.podsOf(k) {
			issues, rc := s.classifyPod(p, now)
			if !rc.IsZero() && (recheck.IsZero() || rc.Before(recheck)) {
				recheck = rc
			}
			if len(issues) == 0 {
				continue
			}
			o, chain := resolveOwner(p, s.cl)
			owner = o
			pods = append(pods, podObs{Name: p.Name, Chain: chain, Issues: issues})
		}
	}
	ctrls, rc := s.ownerObs(k, now)
	recheck = earliest(recheck, rc)
	warns, rc := s.warningObs(k, now)
	recheck = earliest(recheck, rc)
	ctrls = s.keepOn(append(ctrls, warns...))
	if len(pods) == 0 && len(ctrls) > 0 {
		chain := ctrls[0].Chain
		owner = chain[len(chain)-1]
	}
	due, next := s.tracker.ObserveOwner(owner, pods, ctrls, now)
	defer s.metrics.setIncidents(s.tracker.Counts())
	for _, a := range due {
		if err := s.announce(ctx, a); err != nil {
			if errors.Is(err, events.ErrInvalid) {
				// A bug, not a transient failure: retrying cannot help.
				s.log.Error("dropping invalid incident transition", slog.String("incident", a.Incident.ID), slog.Any("error", err))
				continue
			}
			return err
		}
		s.tracker.Commit(a)
	}
	if !recheck.IsZero() && (next.IsZero() || recheck.Before(next)) {
		next = recheck
	}
	if !next.IsZero() {
		s.queue.AddAfter(k, max(next.Sub(now), 0)+10*time.Millisecond)
	}
	return nil
}

// ownerObs classifies what owner k itself shows beside its pods: a
// Service, claim, Node or HPA, else a workload controller and the
// ReplicaSets and Jobs it controls. It returns when to look again while
// a grace period runs (zero for never). A Node is cluster-scoped: the
// namespace filters choose which of its pods are counted, not whether it
// is evaluated.
func (s *Service) ownerObs(k ownerKey, now time.Time) ([]ctrlObs, time.Time) {
	switch {
	case k.Kind == kindNode:
		return s.nodeObs(k, now)
	case !s.filter.watched(k.Namespace):
		return nil, time.Time{}
	case k.Kind == kindService:
		return s.serviceObs(k, now)
	case k.Kind == kindClaim:
		return s.claimObs(k, now)
	case k.Kind == kindHPA:
		return s.hpaObs(k, now)
	}
	return s.controllerObs(k, now), time.Time{}
}

// controllerObs classifies the controllers of owner k: k itself when it is
// a workload controller, and the ReplicaSets and Jobs it controls.
func (s *Service) controllerObs(k ownerKey, now time.Time) []ctrlObs {
	var out []ctrlObs
	add := func(issues []ControllerIssue, chain ...events.ObjectRef) {
		if len(issues) > 0 {
			out = append(out, ctrlObs{Chain: chain, Issues: issues})
		}
	}
	ref := func(kind, apiVersion string, m metav1.Object) events.ObjectRef {
		return events.ObjectRef{Kind: kind, Namespace: m.GetNamespace(), Name: m.GetName(), UID: string(m.GetUID()), APIVersion: apiVersion}
	}
	const apps, batch = "apps/v1", "batch/v1"
	switch k.Kind {
	case "Deployment":
		if d := get[appsv1.Deployment](s.cl.deploys, k.Namespace, k.Name); d != nil {
			add(ClassifyDeployment(d), ref(k.Kind, apps, d))
		}
	case "StatefulSet":
		if o := get[appsv1.StatefulSet](s.cl.sts, k.Namespace, k.Name); o != nil {
			add(append(ClassifyStatefulSet(o, s.createFailure(o, now)), s.rolloutObs(k, o, now)...), ref(k.Kind, apps, o))
		}
	case "DaemonSet":
		if o := get[appsv1.DaemonSet](s.cl.ds, k.Namespace, k.Name); o != nil {
			add(append(ClassifyDaemonSet(o, s.createFailure(o, now)), s.rolloutObs(k, o, now)...), ref(k.Kind, apps, o))
		}
	case "ReplicaSet":
		if o := get[appsv1.ReplicaSet](s.cl.rs, k.Namespace, k.Name); o != nil && metav1.GetControllerOfNoCopy(o) == nil {
			add(ClassifyReplicaSet(o), ref(k.Kind, apps, o))
		}
	case "CronJob":
		if cj, issues := s.cronJobObs(k, now); cj != nil {
			add(issues, ref(k.Kind, batch, cj))
		}
	case kindIngress:
		return s.ingressObs(k, now)
	case "Job":
		if o := get[batchv1.Job](s.cl.jobs, k.Namespace, k.Name); o != nil && metav1.GetControllerOfNoCopy(o) == nil {
			self := ref(k.Kind, batch, o)
			add(ClassifyJob(o, s.createFailure(o, now)), self)
			add(ClassifyJobRuns([]*batchv1.Job{o}), self)
		}
	}
	rss := controlled[appsv1.ReplicaSet](s.cl.rs, k)
	slices.SortFunc(rss, func(a, b *appsv1.ReplicaSet) int { return strings.Compare(a.Name, b.Name) })
	for _, rs := range rss {
		add(ClassifyReplicaSet(rs), ref("ReplicaSet", apps, rs), refOf(k.Namespace, metav1.GetControllerOfNoCopy(rs)))
	}
	jobs := controlled[batchv1.Job](s.cl.jobs, k)
	slices.SortFunc(jobs, func(a, b *batchv1.Job) int { return strings.Compare(a.Name, b.Name) })
	for _, j := range jobs {
		add(ClassifyJob(j, s.createFailure(j, now)), ref("Job", batch, j), refOf(k.Namespace, metav1.GetControllerOfNoCopy(j)))
	}
	if len(jobs) > 0 {
		add(ClassifyJobRuns(jobs), refOf(k.Namespace, metav1.GetControllerOfNoCopy(jobs[0])))
	}
	return out
}

// createFailure is the last create failure of a StatefulSet, DaemonSet or
// Job still short of pods; one that has them all forgets it.
func (s *Service) createFailure(obj metav1.Object, now time.Time) *CreateFailure {
	if missingPods(obj) <= 0 {
		s.creates.clear(obj.GetUID(), now)
		return nil
	}
	return s.creates.get(obj.GetUID())
}

// announce publishes a transition on the ISSUES stream, then records it in
// the kaar_incidents bucket.
func (s *Service) announce(ctx context.Context, a announcement) error {
	in := a.Incident
	subject, err := events.IssueSubject(s.cfg.Cluster, in.Namespace, in.Type)
	if err != nil {
		return err
	}
	ev := events.IncidentEvent{Transition: a.Transition, Incident: in, ObservedAt: a.At.UTC(), Observation: a.Observation}
	env, err := events.New(a.Transition.EventType(), events.SourceWatcher, s.cfg.Cluster, in.ID, ev)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.PublishTimeout)
	defer cancel()
	dup, err := bus.Publish(ctx, s.js, subject, env, events.IncidentMsgID(in.ID, a.Observation))
	if err == nil {
		err = s.store.put(ctx, record{Observation: a.Observation, Transition: a.Transition, PublishedAt: a.At, Incident: in})
	}
	if err != nil {
		s.metrics.publishErrors.Inc()
		return fmt.Errorf("announce incident %s %s: %w", in.ID, a.Transition, err)
	}
	if a.Transition == events.TransitionDetected && !dup {
		s.metrics.detections.WithLabelValues(string(in.Type)).Inc()
	}
	s.log.Info("incident "+string(a.Transition),
		slog.String("namespace", in.Namespace), slog.String("owner", in.Owner.Kind+"/"+in.Owner.Name),
		slog.String("incident", in.ID), slog.String("type", string(in.Type)), slog.String("container", in.Container),
		slog.String("reason", in.Reason), slog.Int("pod_count", in.PodCount), slog.Int64("observation", a.Observation),
		slog.Bool("duplicate", dup))
	return nil
}

// expireLoop forgets resolved incidents older than the state retention,
// at start and then hourly.
func (s *Service) expireLoop(ctx context.Context) error {
	tick := time.NewTicker(min(time.Hour, s.cfg.StateRetention))
	defer tick.Stop()
	for {
		s.pulls.prune(func(ns, name string, uid types.UID) bool {
			obj, ok, _ := s.cl.pods.GetIndexer().GetByKey(ns + "/" + name)
			p, isPod := obj.(*corev1.Pod)
			return ok && isPod && p.UID == uid
		})
		s.pruneStorage()
		for _, id := range s.tracker.Expire(s.now().Add(-s.cfg.StateRetention)) {
			if err := s.store.purge(ctx, id); err != nil && ctx.Err() == nil {
				s.log.Warn("purging expired incident record failed", slog.String("incident", id), slog.Any("error", err))
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}
