package watcher

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	corev1informers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// The informers of the capacity warnings (warn_capacity.go), set up only
// when warnings are on:
//   - ResourceQuotas and LimitRanges (core/v1), trimmed to what their
//     classifiers read; a quota's change re-evaluates it and the
//     namespace's LimitRanges;
//   - for a watcher of the whole cluster, the pods already cached, indexed
//     by the node they are bound to (terminated pods left out), and the
//     nodes' allocatable (trimNode): a pod bound to a node, gone from it or
//     terminated re-evaluates the node after the debounce, and summing a
//     node's pods reads its ~100 pods, never the whole cache;
//   - cert-manager Certificates, only while the cluster serves
//     cert-manager.io/v1 (discovery is looked up every minute, so a CRD
//     installed after the watcher started is picked up, and one removed
//     stops the informer), through a dynamic informer whose transform
//     keeps the expiry, renewal time, Ready and Issuing conditions and the
//     secret's name; kaar never reads Secrets.
//
// A kind the watcher may not list is not watched: its warnings are off,
// and the watcher says so once, at start (for Certificates, when the
// state changes).

// indexNodeName is the index of the pods by the node they are bound to.
const indexNodeName = "kaar-node"

// certDiscoveryInterval is how often the watcher looks whether the
// cluster serves cert-manager's Certificates.
const certDiscoveryInterval = time.Minute

// certificatesGVR is cert-manager's Certificate resource.
var certificatesGVR = schema.GroupVersionResource{Group: "cert-manager.io", Version: "v1", Resource: "certificates"}

// capacityWatch is the capacity warnings' view of the cluster.
type capacityWatch struct {
	cs kubernetes.Interface
	// quotas and limits are nil when their warnings are off; running
	// says whether they were allowed to start.
	quotas, limits               cache.SharedIndexInformer
	quotasRunning, limitsRunning atomic.Bool
	// nodes: the pods are indexed by node (a watcher of the whole cluster
	// with NodeNearlyFull on).
	nodes bool
	// certs is the Certificates' informer while the cluster serves them.
	certs      atomic.Pointer[certInformer]
	certsEvery time.Duration
	certsState string // what was last logged about Certificates
	wg         sync.WaitGroup
}

// certInformer is a running Certificate informer.
type certInformer struct {
	inf    cache.SharedIndexInformer
	cancel context.CancelFunc
	done   chan struct{}
}

// watchCapacity builds the capacity informers and registers the handlers
// and the warning source; New calls it before anything runs. With
// warnings off it builds nothing (and needs no rights).
func (s *Service) watchCapacity(cs kubernetes.Interface) error {
	w := &capacityWatch{cs: cs, certsEvery: cmp.Or(s.cfg.certDiscovery, certDiscoveryInterval)}
	s.capacity = w
	if !s.cfg.Warnings.Enabled {
		return nil
	}
	on := s.cfg.Warnings.on
	indexers := cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc}
	if on(events.IssueQuotaNearLimit) || on(events.IssueLimitRangeExceedsQuota) {
		w.quotas = corev1informers.NewFilteredResourceQuotaInformer(cs, s.cfg.Namespace, s.cfg.ResyncPeriod, indexers, nil)
		if err := w.quotas.SetTransform(capacityTransform); err != nil {
			return fmt.Errorf("watcher: resourcequota transform: %w", err)
		}
		if _, err := w.quotas.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { s.quotaChanged(nil, obj) },
			UpdateFunc: s.quotaChanged,
			DeleteFunc: func(obj any) { s.quotaChanged(nil, obj) },
		}); err != nil {
			return fmt.Errorf("watcher: resourcequota handler: %w", err)
		}
	}
	if on(events.IssueLimitRangeExceedsQuota) {
		w.limits = corev1informers.NewFilteredLimitRangeInformer(cs, s.cfg.Namespace, s.cfg.ResyncPeriod, indexers, nil)
		if err := w.limits.SetTransform(capacityTransform); err != nil {
			return fmt.Errorf("watcher: limitrange transform: %w", err)
		}
		if _, err := w.limits.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    s.capLimitRangeChanged,
			UpdateFunc: func(_, obj any) { s.capLimitRangeChanged(obj) },
			DeleteFunc: s.capLimitRangeChanged,
		}); err != nil {
			return fmt.Errorf("watcher: limitrange handler: %w", err)
		}
	}
	if on(events.IssueNodeNearlyFull) && s.nodes != nil && s.nodes.nodes != nil {
		if err := w.watchNodeRequests(s); err != nil {
			return err
		}
	}
	s.warningSources = append(s.warningSources, s.capacityObs)
	return nil
}

// watchNodeRequests indexes the pods by node and re-evaluates a node
// when a pod is bound to it, leaves it or terminates, and when its
// allocatable changes.
func (w *capacityWatch) watchNodeRequests(s *Service) error {
	if err := s.cl.pods.AddIndexers(cache.Indexers{indexNodeName: func(obj any) ([]string, error) {
		if p, ok := obj.(*corev1.Pod); ok && p.Spec.NodeName != "" && !podTerminated(p) {
			return []string{p.Spec.NodeName}, nil
		}
		return nil, nil
	}}); err != nil {
		return fmt.Errorf("watcher: add pods node indexer: %w", err)
	}
	if _, err := s.cl.pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { s.podNodeChanged(nil, obj) },
		UpdateFunc: s.podNodeChanged,
		DeleteFunc: func(obj any) { s.podNodeChanged(nil, obj) },
	}); err != nil {
		return fmt.Errorf("watcher: pod node handler: %w", err)
	}
	if _, err := s.nodes.nodes.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { s.nodeAllocatableChanged(nil, obj) },
		UpdateFunc: func(old, obj any) {
			s.nodeAllocatableChanged(old, obj)
		},
	}); err != nil {
		return fmt.Errorf("watcher: node allocatable handler: %w", err)
	}
	w.nodes = true
	return nil
}

func podTerminated(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
}

// start runs the informers the watcher may list, logs once which
// capacity warnings are off and why, and looks for cert-manager's
// Certificates until ctx is done.
func (w *capacityWatch) start(ctx context.Context, s *Service) {
	if !s.cfg.Warnings.Enabled {
		return
	}
	var off []string
	run := func(inf cache.SharedIndexInformer, running *atomic.Bool, resource string, list func(context.Context) error, types ...events.IssueType) {
		if inf == nil {
			return
		}
		if err := list(ctx); apierrors.IsForbidden(err) || apierrors.IsNotFound(err) {
			off = append(off, fmt.Sprintf("%s (may not list %s)", typeNames(types), resource))
			return
		}
		// Other errors are the informer's to retry.
		running.Store(true)
		w.wg.Go(func() { inf.RunWithContext(ctx) })
	}
	ns, one := s.cfg.Namespace, metav1.ListOptions{Limit: 1}
	run(w.quotas, &w.quotasRunning, "resourcequotas", func(ctx context.Context) error {
		_, err := w.cs.CoreV1().ResourceQuotas(ns).List(ctx, one)
		return err
	}, events.IssueQuotaNearLimit, events.IssueLimitRangeExceedsQuota)
	run(w.limits, &w.limitsRunning, "limitranges", func(ctx context.Context) error {
		_, err := w.cs.CoreV1().LimitRanges(ns).List(ctx, one)
		return err
	}, events.IssueLimitRangeExceedsQuota)
	if s.cfg.Warnings.on(events.IssueNodeNearlyFull) && !w.nodes {
		off = append(off, "NodeNearlyFull (a watcher of one namespace does not read nodes)")
	}
	if len(off) > 0 {
		s.log.Warn("capacity warnings off: "+strings.Join(off, "; "), slog.String("namespace", ns))
	}
	if s.cfg.Warnings.on(events.IssueCertificateExpiring) {
		// The first look is now, so that the Certificates' informer is
		// among those Run waits for (their restored warnings do not
		// resolve for want of a cache).
		w.discoverCerts(ctx, s)
		w.wg.Go(func() { w.certLoop(ctx, s) })
	}
}

// shutdown waits for the informers to stop (ctx, given to start, is
// done).
func (w *capacityWatch) shutdown() { w.wg.Wait() }

// synced are the HasSynced of the running informers, for the bounded
// wait at start-up.
func (w *capacityWatch) synced() []cache.InformerSynced {
	var out []cache.InformerSynced
	if w.quotasRunning.Load() {
		out = append(out, w.quotas.HasSynced)
	}
	if w.limitsRunning.Load() {
		out = append(out, w.limits.HasSynced)
	}
	if c := w.certs.Load(); c != nil {
		out = append(out, c.inf.HasSynced)
	}
	return out
}

func typeNames(types []events.IssueType) string {
	out := make([]string, len(types))
	for i, t := range types {
		out[i] = string(t)
	}
	return strings.Join(out, ", ")
}

// certLoop looks every certsEvery whether the cluster serves
// Certificates, and starts or stops their informer accordingly.
func (w *capacityWatch) certLoop(ctx context.Context, s *Service) {
	defer w.stopCerts(s)
	tick := time.NewTicker(w.certsEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		w.discoverCerts(ctx, s)
	}
}

// logCerts logs what the watcher does about Certificates when it changed.
func (w *capacityWatch) logCerts(s *Service, state string, attrs ...any) {
	if state == w.certsState {
		return
	}
	w.certsState = state
	s.log.Info(state, attrs...)
}

func (w *capacityWatch) discoverCerts(ctx context.Context, s *Service) {
	served, err := servesCertificates(w.cs)
	running := w.certs.Load() != nil
	switch {
	case err != nil:
		// Discovery failed for another reason: keep the current state.
		return
	case !served && running:
		w.stopCerts(s)
		w.logCerts(s, "CertificateExpiring off: the cluster no longer serves cert-manager.io/v1 Certificates")
	case !served:
		w.logCerts(s, "CertificateExpiring off until the cluster serves cert-manager.io/v1 Certificates (looked up every "+w.certsEvery.String()+")")
	case !running:
		rc, ok := w.cs.CoreV1().RESTClient().(*rest.RESTClient)
		if !ok || rc == nil {
			return // a fake clientset
		}
		dyn, err := dynamicOf(rc)
		if err != nil {
			s.log.Warn("CertificateExpiring off: cannot build a client for certificates", slog.Any("error", err))
			return
		}
		_, err = dyn.Resource(certificatesGVR).Namespace(s.cfg.Namespace).List(ctx, metav1.ListOptions{Limit: 1})
		if apierrors.IsForbidden(err) {
			w.logCerts(s, "CertificateExpiring off: may not list certificates.cert-manager.io", slog.Any("error", err))
			return
		}
		if err := w.runCerts(ctx, s, dyn); err != nil {
			s.log.Warn("CertificateExpiring off: cannot watch certificates", slog.Any("error", err))
			return
		}
		w.logCerts(s, "CertificateExpiring on: the cluster serves cert-manager.io/v1 Certificates")
	}
}

// dynamicOf is a dynamic client over rc's HTTP client (its credentials,
// transport and rate limiter): dynamic.New(rc) would decode watch events
// with the clientset's scheme, which knows no custom kind, so every watch
// of Certificates ended in "no kind is registered" and only relists
// brought changes.
func dynamicOf(rc *rest.RESTClient) (dynamic.Interface, error) {
	base := rc.Get().AbsPath("/").URL()
	base.RawQuery = ""
	return dynamic.NewForConfigAndClient(&rest.Config{Host: base.String(), RateLimiter: rc.GetRateLimiter()}, rc.Client)
}

// servesCertificates reports whether discovery lists cert-manager.io/v1
// certificates.
func servesCertificates(cs kubernetes.Interface) (bool, error) {
	list, err := cs.Discovery().ServerResourcesForGroupVersion(certificatesGVR.GroupVersion().String())
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	for _, r := range list.APIResources {
		if r.Name == certificatesGVR.Resource {
			return true, nil
		}
	}
	return false, nil
}

func (w *capacityWatch) runCerts(ctx context.Context, s *Service, dyn dynamic.Interface) error {
	inf := dynamicinformer.NewFilteredDynamicInformer(dyn, certificatesGVR, s.cfg.Namespace, s.cfg.ResyncPeriod,
		cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc}, nil).Informer()
	if err := inf.SetTransform(certTransform); err != nil {
		return err
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { s.certChanged(nil, obj) },
		UpdateFunc: s.certChanged,
		DeleteFunc: func(obj any) { s.certChanged(nil, obj) },
	}); err != nil {
		return err
	}
	cctx, cancel := context.WithCancel(ctx)
	c := &certInformer{inf: inf, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		inf.RunWithContext(cctx)
	}()
	w.certs.Store(c)
	return nil
}

// stopCerts stops the Certificate informer, and re-evaluates the
// Certificates it had: with no informer, their warnings resolve.
func (w *capacityWatch) stopCerts(s *Service) {
	c := w.certs.Swap(nil)
	if c == nil {
		return
	}
	keys := c.inf.GetStore().ListKeys()
	c.cancel()
	<-c.done
	for _, key := range keys {
		ns, name, _ := cache.SplitMetaNamespaceKey(key)
		if k := (ownerKey{Namespace: ns, Kind: kindCertificate, Name: name}); s.tracker.Has(k) {
			s.queue.AddAfter(k, s.cfg.Debounce)
		}
	}
}

// capacityTransform trims ResourceQuotas and LimitRanges (managedFields go
// from anything else, as transform does).
func capacityTransform(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.ResourceQuota:
		if o == nil {
			return obj, nil
		}
		return trimQuota(o), nil
	case *corev1.LimitRange:
		if o == nil {
			return obj, nil
		}
		return trimCapLimitRange(o), nil
	}
	return transform(obj)
}

// trimQuota keeps what ClassifyQuota and ClassifyLimitRange read: the
// scopes, and the status's hard limits and usage.
func trimQuota(o *corev1.ResourceQuota) *corev1.ResourceQuota {
	return &corev1.ResourceQuota{TypeMeta: o.TypeMeta, ObjectMeta: trimMeta(o.ObjectMeta),
		Spec:   corev1.ResourceQuotaSpec{Scopes: o.Spec.Scopes, ScopeSelector: o.Spec.ScopeSelector},
		Status: corev1.ResourceQuotaStatus{Hard: o.Status.Hard, Used: o.Status.Used}}
}

// trimCapLimitRange keeps the containers' default limits and requests of
// cpu and memory.
func trimCapLimitRange(o *corev1.LimitRange) *corev1.LimitRange {
	out := &corev1.LimitRange{TypeMeta: o.TypeMeta, ObjectMeta: trimMeta(o.ObjectMeta)}
	for _, it := range o.Spec.Limits {
		if it.Type != corev1.LimitTypeContainer {
			continue
		}
		d, dr := requestsOnly(corev1.ResourceRequirements{Requests: it.Default}), requestsOnly(corev1.ResourceRequirements{Requests: it.DefaultRequest})
		if d.Requests != nil || dr.Requests != nil {
			out.Spec.Limits = append(out.Spec.Limits, corev1.LimitRangeItem{Type: it.Type, Default: d.Requests, DefaultRequest: dr.Requests})
		}
	}
	return out
}

// certTransform turns a Certificate (unstructured) into its
// CertificateSummary; anything else is returned as is (a summary already,
// or a tombstone).
func certTransform(obj any) (any, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok || u == nil {
		return obj, nil
	}
	c := &CertificateSummary{TypeMeta: metav1.TypeMeta{APIVersion: u.GetAPIVersion(), Kind: u.GetKind()},
		ObjectMeta: trimMeta(metav1.ObjectMeta{Name: u.GetName(), Namespace: u.GetNamespace(), UID: u.GetUID(),
			ResourceVersion: u.GetResourceVersion(), Generation: u.GetGeneration(), CreationTimestamp: u.GetCreationTimestamp(),
			DeletionTimestamp: u.GetDeletionTimestamp()})}
	c.SecretName, _, _ = unstructured.NestedString(u.Object, "spec", "secretName")
	c.NotAfter = nestedTime(u, "status", "notAfter")
	c.RenewalTime = nestedTime(u, "status", "renewalTime")
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, raw := range conds {
		m, ok := raw.(map[string]any)
		if !ok {
			continue
		}
		str := func(k string) string { s, _ := m[k].(string); return s }
		cond := &CertificateCondition{Status: str("status"), Reason: str("reason"), Message: truncateMessage(str("message"))}
		switch str("type") {
		case "Ready":
			c.Ready = cond
		case "Issuing":
			c.Issuing = cond
		}
	}
	return c, nil
}

// truncateMessage bounds a cached condition message (cluster text).
func truncateMessage(s string) string {
	if len(s) > maxEventMessage {
		return s[:maxEventMessage]
	}
	return s
}

func nestedTime(u *unstructured.Unstructured, fields ...string) time.Time {
	s, _, _ := unstructured.NestedString(u.Object, fields...)
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}
	}
	return t
}

// quotaChanged re-evaluates a quota that warns, did, or has incidents,
// and the LimitRanges of its namespace whose verdict may change with it.
func (s *Service) quotaChanged(oldObj, obj any) {
	q, _ := objectOf(obj).(*corev1.ResourceQuota)
	if q == nil || !s.filter.watched(q.Namespace) {
		return
	}
	old, _ := objectOf(oldObj).(*corev1.ResourceQuota)
	th := s.cfg.Warnings.Config.QuotaThreshold
	if k := (ownerKey{Namespace: q.Namespace, Kind: kindQuota, Name: q.Name}); len(ClassifyQuota(q, th)) > 0 ||
		old != nil && len(ClassifyQuota(old, th)) > 0 || s.tracker.Has(k) {
		s.queue.AddAfter(k, s.cfg.Debounce)
	}
	if s.capacity.limits == nil {
		return
	}
	for _, lr := range inNamespace[corev1.LimitRange](s.capacity.limits, q.Namespace) {
		s.capLimitRangeChanged(lr)
	}
}

// capLimitRangeChanged re-evaluates a LimitRange that warns or has
// incidents.
func (s *Service) capLimitRangeChanged(obj any) {
	lr, _ := objectOf(obj).(*corev1.LimitRange)
	if lr == nil || !s.filter.watched(lr.Namespace) || s.capacity.quotas == nil {
		return
	}
	k := ownerKey{Namespace: lr.Namespace, Kind: kindLimitRange, Name: lr.Name}
	if s.tracker.Has(k) || len(ClassifyLimitRange(lr, inNamespace[corev1.ResourceQuota](s.capacity.quotas, lr.Namespace))) > 0 {
		s.queue.AddAfter(k, s.cfg.Debounce)
	}
}

// podNodeChanged re-evaluates, after the debounce, the nodes a pod was
// bound to or left, or on which it terminated.
func (s *Service) podNodeChanged(oldObj, obj any) {
	p, old := podOf(obj), podOf(oldObj)
	if p == nil {
		return
	}
	if old != nil && old.Spec.NodeName == p.Spec.NodeName && podTerminated(old) == podTerminated(p) {
		return // a status update: the node's sums are unchanged
	}
	for _, n := range []*corev1.Pod{p, old} {
		if n != nil && n.Spec.NodeName != "" {
			s.queue.AddAfter(nodeKey(n.Spec.NodeName), s.cfg.Debounce)
		}
	}
}

// nodeAllocatableChanged re-evaluates a node that appears or whose
// allocatable changed.
func (s *Service) nodeAllocatableChanged(oldObj, obj any) {
	n, _ := nodeOf(obj)
	if n == nil {
		return
	}
	if old, _ := nodeOf(oldObj); old != nil && equality.Semantic.DeepEqual(old.Status.Allocatable, n.Status.Allocatable) {
		return
	}
	s.queue.AddAfter(nodeKey(n.Name), s.cfg.Debounce)
}

// certChanged re-evaluates a Certificate after the debounce (there are
// few, and whether one warns depends on the time: ClassifyCertificate
// says when to look again).
func (s *Service) certChanged(oldObj, obj any) {
	m := objectOf(obj)
	if m == nil || !s.filter.watched(m.GetNamespace()) {
		return
	}
	s.queue.AddAfter(ownerKey{Namespace: m.GetNamespace(), Kind: kindCertificate, Name: m.GetName()}, s.cfg.Debounce)
}

// capacityHoldSlack is the hysteresis of the quota and node warnings: one
// already given holds until the usage falls this many percentage points
// under its threshold (watcher.warnings.quota_threshold, node_threshold).
// A namespace or node hovering at the threshold would otherwise resolve
// and come back with every pod that comes and goes, and each resolution
// supersedes a plan a person asked for.
const capacityHoldSlack = 5

// heldThreshold is the threshold a capacity warning is judged by: lower
// by capacityHoldSlack (at least 1) once it is open.
func heldThreshold(threshold int, open bool) int {
	if open {
		return max(1, threshold-capacityHoldSlack)
	}
	return threshold
}

// capacityObs is the capacity warnings' source (warningSource): the
// warnings of a ResourceQuota, LimitRange, Node or Certificate.
func (s *Service) capacityObs(k ownerKey, now time.Time) ([]ctrlObs, time.Time) {
	w, opts := s.capacity, s.cfg.Warnings
	// A cache not synced yet (a Certificate informer just started) knows
	// nothing: look again soon; the resolve wait keeps an open warning
	// open meanwhile.
	unsynced := func(inf cache.SharedIndexInformer) bool { return !inf.HasSynced() }
	soon := now.Add(time.Second)
	var issues []ControllerIssue
	var recheck time.Time
	var ref events.ObjectRef
	switch k.Kind {
	case kindQuota:
		if !w.quotasRunning.Load() || !opts.on(events.IssueQuotaNearLimit) {
			return nil, time.Time{}
		}
		if unsynced(w.quotas) {
			return nil, soon
		}
		q := get[corev1.ResourceQuota](w.quotas, k.Namespace, k.Name)
		if q == nil {
			return nil, time.Time{}
		}
		issues = ClassifyQuota(q, heldThreshold(opts.Config.QuotaThreshold, s.tracker.OpenOf(k, events.IssueQuotaNearLimit)))
		ref = events.ObjectRef{Kind: kindQuota, APIVersion: "v1", Namespace: q.Namespace, Name: q.Name, UID: string(q.UID)}
	case kindLimitRange:
		if !w.limitsRunning.Load() || !w.quotasRunning.Load() {
			return nil, time.Time{}
		}
		if unsynced(w.limits) || unsynced(w.quotas) {
			return nil, soon
		}
		lr := get[corev1.LimitRange](w.limits, k.Namespace, k.Name)
		if lr == nil {
			return nil, time.Time{}
		}
		issues = ClassifyLimitRange(lr, inNamespace[corev1.ResourceQuota](w.quotas, k.Namespace))
		ref = events.ObjectRef{Kind: kindLimitRange, APIVersion: "v1", Namespace: lr.Namespace, Name: lr.Name, UID: string(lr.UID)}
	case kindNode:
		if !w.nodes {
			return nil, time.Time{}
		}
		obj, _, _ := s.nodes.nodes.GetIndexer().GetByKey(k.Name)
		n, _ := obj.(*corev1.Node)
		if n == nil {
			return nil, time.Time{}
		}
		var req NodeRequested
		for _, p := range byIndex[corev1.Pod](s.cl.pods, indexNodeName, n.Name) {
			req.add(p)
		}
		issues = ClassifyNodeCapacity(n, req, heldThreshold(opts.Config.NodeThreshold, s.tracker.OpenOf(k, events.IssueNodeNearlyFull)))
		ref = events.ObjectRef{Kind: kindNode, APIVersion: "v1", Name: n.Name, UID: string(n.UID)}
	case kindCertificate:
		c := w.certs.Load()
		if c == nil {
			return nil, time.Time{}
		}
		if unsynced(c.inf) {
			return nil, soon
		}
		cert := get[CertificateSummary](c.inf, k.Namespace, k.Name)
		if cert == nil {
			return nil, time.Time{}
		}
		issues, recheck = ClassifyCertificate(cert, now, opts.Config.CertificateHorizon.Duration)
		ref = events.ObjectRef{Kind: kindCertificate, APIVersion: certificatesGVR.GroupVersion().String(), Namespace: cert.Namespace,
			Name: cert.Name, UID: string(cert.UID)}
	default:
		return nil, time.Time{}
	}
	if len(issues) == 0 {
		return nil, recheck
	}
	return []ctrlObs{{Chain: []events.ObjectRef{ref}, Issues: issues}}, recheck
}
