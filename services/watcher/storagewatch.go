package watcher

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// indexClaim is the index of pods by the claims they use
// (namespace/claim).
const indexClaim = "kaar-claim"

// storageWatch is the watcher's view of storage: the claims and
// StorageClasses (trimmed by storageTransform), the claims' Warning
// events and the kubelet's FailedMount events. All of it is optional, like
// the pull failure events: a watcher that may not read claims or classes
// (a namespaced Role cannot grant StorageClasses) still detects
// everything else, and reports a waiting claim as the scheduler says
// (Pending, unbound_pvc).
type storageWatch struct {
	factory informers.SharedInformerFactory
	claims  cache.SharedIndexInformer
	classes cache.SharedIndexInformer

	claimEventFactory informers.SharedInformerFactory
	claimEvents       cache.SharedIndexInformer
	mountEventFactory informers.SharedInformerFactory
	mountEvents       cache.SharedIndexInformer

	failures *uidMemory[ClaimFailure]
	mounts   *uidMemory[MountFailure]
}

func newStorageWatch(cs kubernetes.Interface, namespace string, resync time.Duration) *storageWatch {
	opts := []informers.SharedInformerOption{informers.WithTransform(storageTransform)}
	if namespace != "" {
		opts = append(opts, informers.WithNamespace(namespace))
	}
	withSelector := func(sel string) informers.SharedInformerFactory {
		return informers.NewSharedInformerFactoryWithOptions(cs, 0, append(opts,
			informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.FieldSelector = sel }))...)
	}
	f := informers.NewSharedInformerFactoryWithOptions(cs, resync, opts...)
	st := &storageWatch{factory: f, claims: f.Core().V1().PersistentVolumeClaims().Informer(),
		classes:           f.Storage().V1().StorageClasses().Informer(),
		claimEventFactory: withSelector(claimEventFieldSelector), mountEventFactory: withSelector(mountEventFieldSelector),
		failures: newUIDMemory[ClaimFailure](), mounts: newUIDMemory[MountFailure]()}
	st.claimEvents = st.claimEventFactory.Core().V1().Events().Informer()
	st.mountEvents = st.mountEventFactory.Core().V1().Events().Informer()
	return st
}

// start runs the storage informers until ctx is done.
func (st *storageWatch) start(ctx context.Context) {
	for _, f := range []informers.SharedInformerFactory{st.factory, st.claimEventFactory, st.mountEventFactory} {
		f.StartWithContext(ctx)
	}
}

func (st *storageWatch) shutdown() {
	for _, f := range []informers.SharedInformerFactory{st.factory, st.claimEventFactory, st.mountEventFactory} {
		f.Shutdown()
	}
}

// synced are the informers' HasSynced, for a bounded wait at start-up.
func (st *storageWatch) synced() []cache.InformerSynced {
	return []cache.InformerSynced{st.claims.HasSynced, st.classes.HasSynced, st.claimEvents.HasSynced, st.mountEvents.HasSynced}
}

// watchStorage indexes the pods by claim and registers the storage
// handlers; New calls it before anything runs.
func (s *Service) watchStorage(cs kubernetes.Interface) error {
	s.storage = newStorageWatch(cs, s.cfg.Namespace, s.cfg.ResyncPeriod)
	st := s.storage
	if err := s.cl.pods.AddIndexers(cache.Indexers{indexClaim: func(obj any) ([]string, error) {
		p, ok := obj.(*corev1.Pod)
		if !ok {
			return nil, nil
		}
		var keys []string
		for _, c := range podClaims(p) {
			keys = append(keys, p.Namespace+"/"+c)
		}
		return keys, nil
	}}); err != nil {
		return fmt.Errorf("watcher: add pods claim indexer: %w", err)
	}
	handlers := []struct {
		what string
		inf  cache.SharedIndexInformer
		h    cache.ResourceEventHandlerFuncs
	}{
		{"persistentvolumeclaim", st.claims, cache.ResourceEventHandlerFuncs{
			AddFunc:    s.claimChanged,
			UpdateFunc: func(_, obj any) { s.claimChanged(obj) },
			DeleteFunc: func(obj any) {
				if m := objectOf(obj); m != nil {
					st.failures.forget(m.GetUID())
				}
				s.claimChanged(obj)
			},
		}},
		{"storageclass", st.classes, cache.ResourceEventHandlerFuncs{
			AddFunc:    func(any) { s.classChanged() },
			UpdateFunc: func(any, any) { s.classChanged() },
			DeleteFunc: func(any) { s.classChanged() },
		}},
		{"claim event", st.claimEvents, cache.ResourceEventHandlerFuncs{
			AddFunc:    s.claimEventChanged,
			UpdateFunc: func(_, obj any) { s.claimEventChanged(obj) },
		}},
		{"FailedMount event", st.mountEvents, cache.ResourceEventHandlerFuncs{
			AddFunc:    s.mountEventChanged,
			UpdateFunc: func(_, obj any) { s.mountEventChanged(obj) },
		}},
	}
	for _, h := range handlers {
		if _, err := h.inf.AddEventHandler(h.h); err != nil {
			return fmt.Errorf("watcher: %s handler: %w", h.what, err)
		}
	}
	return nil
}

// evidence is what Classify knows of pod uid besides its status: its
// image pull causes and its last mount failure.
func (s *Service) evidence(uid types.UID) Evidence {
	ev := s.pulls.evidence(uid)
	if mf, ok := s.storage.mounts.get(uid); ok {
		ev.Mount = &mf
	}
	ev.Probes = s.probeFailures(uid)
	return ev
}

// classifyPod is classify with the claims the pod waits for: when one of
// them cannot be bound, its cause (PVCPending) replaces the scheduler's
// Pending; while one is within its grace, the Pending waits too, so the
// incident does not start as Pending and turn into PVCPending.
func (s *Service) classifyPod(p *corev1.Pod, now time.Time) ([]PodIssue, time.Time) {
	issues, recheck := classify(p, s.evidence(p.UID), now, s.cfg.Classify)
	claims := podClaims(p)
	if len(claims) == 0 || p.Spec.NodeName != "" || p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodPending {
		return issues, recheck
	}
	slices.Sort(claims)
	var found *ClaimIssue
	waiting := false
	for _, name := range claims {
		pvc := get[corev1.PersistentVolumeClaim](s.storage.claims, p.Namespace, name)
		if pvc == nil || pvc.Status.Phase == corev1.ClaimBound {
			continue // a missing claim is the scheduler's missing_pvc
		}
		iss, rc := ClassifyClaim(pvc, s.claimContext(pvc, true), now)
		switch {
		case iss != nil && found == nil:
			found = iss
		case !rc.IsZero():
			waiting = true
			if recheck.IsZero() || rc.Before(recheck) {
				recheck = rc
			}
		}
	}
	if found == nil && !waiting {
		return issues, recheck
	}
	issues = slices.DeleteFunc(issues, func(i PodIssue) bool { return i.Type == events.IssuePending })
	if found != nil {
		issues = append(issues, PodIssue{Type: events.IssuePVCPending, Reason: found.Reason, Message: found.Message})
		sortIssues(issues)
	}
	return issues, recheck
}

// claimContext gathers what ClassifyClaim reads about pvc from the
// caches.
func (s *Service) claimContext(pvc *corev1.PersistentVolumeClaim, waiting bool) ClaimContext {
	c := ClaimContext{Waiting: waiting, Grace: s.cfg.Classify.PendingGrace}
	if f, ok := s.storage.failures.get(pvc.UID); ok {
		c.Failure = &f
	}
	if s.storage.classes.HasSynced() {
		c.Classes = map[string]*storagev1.StorageClass{}
		for _, o := range s.storage.classes.GetStore().List() {
			if sc, ok := o.(*storagev1.StorageClass); ok && sc.DeletionTimestamp == nil {
				c.Classes[sc.Name] = sc
			}
		}
	}
	return c
}

// claimUsers are the pods that use claim ns/name and are neither
// finished nor being deleted.
func (s *Service) claimUsers(ns, name string) []*corev1.Pod {
	pods := byIndex[corev1.Pod](s.cl.pods, indexClaim, ns+"/"+name)
	return slices.DeleteFunc(pods, func(p *corev1.Pod) bool {
		return p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
	})
}

// claimChanged evaluates the owners of the pods that use a claim that
// appeared, changed or went, or the claim itself when no pod uses it.
func (s *Service) claimChanged(obj any) {
	m := objectOf(obj)
	if m == nil || !s.filter.watched(m.GetNamespace()) {
		return
	}
	users := s.claimUsers(m.GetNamespace(), m.GetName())
	for _, p := range users {
		if owner, _ := resolveOwner(p, s.cl); !ownerPending(p, s.cl, s.now()) {
			s.queue.AddAfter(keyOf(owner), s.cfg.Debounce)
		}
	}
	k := ownerKey{Namespace: m.GetNamespace(), Kind: kindClaim, Name: m.GetName()}
	pvc, _ := obj.(*corev1.PersistentVolumeClaim)
	if s.tracker.Has(k) || len(users) == 0 && pvc != nil && pvc.Status.Phase != corev1.ClaimBound {
		s.queue.AddAfter(k, s.cfg.Debounce)
	}
}

// classChanged re-evaluates every claim not bound: a StorageClass that
// appears, changes or goes changes their cause.
func (s *Service) classChanged() {
	for _, o := range s.storage.claims.GetStore().List() {
		if pvc, ok := o.(*corev1.PersistentVolumeClaim); ok && pvc.Status.Phase != corev1.ClaimBound {
			s.claimChanged(pvc)
		}
	}
}

// claimEventChanged remembers a claim's last warning (a provisioner's
// ProvisioningFailed) and re-evaluates the claim when it is news.
func (s *Service) claimEventChanged(obj any) {
	ev, _ := obj.(*corev1.Event)
	if ev == nil || ev.Type != corev1.EventTypeWarning || ev.InvolvedObject.Kind != kindClaim || ev.InvolvedObject.UID == "" {
		return
	}
	ns := cmp.Or(ev.InvolvedObject.Namespace, ev.Namespace)
	if !s.filter.watched(ns) {
		return
	}
	f := ClaimFailure{Reason: ev.Reason, Message: truncate(ev.Message, 512), At: eventTime(ev)}
	if !s.storage.failures.observe(ev.InvolvedObject.UID, ns, ev.InvolvedObject.Name, f, func(prev, cur ClaimFailure) bool { return cur.At.After(prev.At) }) {
		return
	}
	if pvc := get[corev1.PersistentVolumeClaim](s.storage.claims, ns, ev.InvolvedObject.Name); pvc != nil && pvc.UID == ev.InvolvedObject.UID {
		s.claimChanged(pvc)
	}
}

// mountEventChanged remembers the kubelet's last FailedMount report about
// a pod and re-evaluates the pod's owner when it is news.
func (s *Service) mountEventChanged(obj any) {
	ev, _ := obj.(*corev1.Event)
	mf, ok := MountFailureOf(ev)
	if !ok || ev.InvolvedObject.UID == "" {
		return
	}
	ns := cmp.Or(ev.InvolvedObject.Namespace, ev.Namespace)
	if !s.filter.watched(ns) || !s.storage.mounts.observe(ev.InvolvedObject.UID, ns, ev.InvolvedObject.Name, mf, func(prev, cur MountFailure) bool {
		_, changed := newerMount(&prev, cur)
		return changed
	}) {
		return
	}
	if pod := get[corev1.Pod](s.cl.pods, ns, ev.InvolvedObject.Name); pod != nil && pod.UID == ev.InvolvedObject.UID {
		s.podChanged(nil, pod)
	}
}

// claimObs classifies a claim that no pod uses (owner kind
// PersistentVolumeClaim); a claim that pods use is reported on their
// owner. It returns when to look again while a grace period runs.
func (s *Service) claimObs(k ownerKey, now time.Time) ([]ctrlObs, time.Time) {
	pvc := get[corev1.PersistentVolumeClaim](s.storage.claims, k.Namespace, k.Name)
	if pvc == nil || len(s.claimUsers(k.Namespace, k.Name)) > 0 {
		return nil, time.Time{}
	}
	iss, recheck := ClassifyClaim(pvc, s.claimContext(pvc, false), now)
	if iss == nil {
		return nil, recheck
	}
	ref := events.ObjectRef{Kind: kindClaim, APIVersion: "v1", Namespace: pvc.Namespace, Name: pvc.Name, UID: string(pvc.UID)}
	return []ctrlObs{{Chain: []events.ObjectRef{ref}, Issues: []ControllerIssue{{Type: events.IssuePVCPending, Reason: iss.Reason, Message: iss.Message}}}}, recheck
}

// uidMemory remembers one report per object (a claim's last warning, a
// pod's last mount failure), beyond the life of its events, until the
// object is deleted or pruned. Safe for concurrent use.
type uidMemory[T any] struct {
	mu      sync.Mutex
	reports map[types.UID]uidReport[T]
}

type uidReport[T any] struct {
	namespace, name string
	report          T
}

func newUIDMemory[T any]() *uidMemory[T] { return &uidMemory[T]{reports: map[types.UID]uidReport[T]{}} }

// observe records r about uid when there is none yet or newer(prev, r);
// it returns whether it did.
func (m *uidMemory[T]) observe(uid types.UID, ns, name string, r T, newer func(prev, cur T) bool) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if prev, ok := m.reports[uid]; ok && !newer(prev.report, r) {
		return false
	}
	m.reports[uid] = uidReport[T]{namespace: ns, name: name, report: r}
	return true
}

func (m *uidMemory[T]) get(uid types.UID) (T, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.reports[uid]
	return r.report, ok
}

func (m *uidMemory[T]) forget(uid types.UID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.reports, uid)
}

// prune drops the reports about objects for which exists is false.
func (m *uidMemory[T]) prune(exists func(ns, name string, uid types.UID) bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for uid, r := range m.reports {
		if !exists(r.namespace, r.name, uid) {
			delete(m.reports, uid)
		}
	}
}

// pruneStorage drops the reports about claims and pods the caches no
// longer have (an event that arrived after its object was deleted).
func (s *Service) pruneStorage() {
	s.storage.failures.prune(func(ns, name string, uid types.UID) bool {
		pvc := get[corev1.PersistentVolumeClaim](s.storage.claims, ns, name)
		return pvc != nil && pvc.UID == uid
	})
	s.storage.mounts.prune(func(ns, name string, uid types.UID) bool {
		p := get[corev1.Pod](s.cl.pods, ns, name)
		return p != nil && p.UID == uid
	})
}
