package watcher

import (
	"fmt"
	"reflect"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// indexController is the index of pods, ReplicaSets and Jobs by their
// controlling owner (see controllerIndexKey).
const indexController = "kaar-controller"

// cluster is the watcher's view of the cluster: one shared informer
// factory with pod, ReplicaSet, Job, Deployment, StatefulSet, DaemonSet,
// Service and EndpointSlice informers, trimmed by transform (pods,
// ReplicaSets and Jobs indexed by controller, EndpointSlices by Service),
// a second one with the kubelet's Warning Failed events of
// pods (the causes of image pull failures), and a third with the
// controllers' Warning FailedCreate events.
type cluster struct {
	factory informers.SharedInformerFactory
	pods    cache.SharedIndexInformer
	rs      cache.SharedIndexInformer
	jobs    cache.SharedIndexInformer
	deploys cache.SharedIndexInformer
	sts     cache.SharedIndexInformer
	ds      cache.SharedIndexInformer
	// svcs and slices are the Services and their EndpointSlices (indexed
	// by Service name), for the traffic failures.
	svcs   cache.SharedIndexInformer
	slices cache.SharedIndexInformer
	// eventFactory is separate because its field selector must not apply
	// to the other informers, and because events are optional evidence:
	// the watcher does not wait for them (nor need the right to read them)
	// to detect.
	eventFactory informers.SharedInformerFactory
	events       cache.SharedIndexInformer
	// createFactory has the FailedCreate events of StatefulSets,
	// DaemonSets and Jobs (their only record of it); optional like the
	// pull failures.
	createFactory informers.SharedInformerFactory
	createEvents  cache.SharedIndexInformer
}

func newCluster(cs kubernetes.Interface, namespace string, resync time.Duration) (*cluster, error) {
	opts := []informers.SharedInformerOption{informers.WithTransform(transform)}
	if namespace != "" {
		opts = append(opts, informers.WithNamespace(namespace))
	}
	f := informers.NewSharedInformerFactoryWithOptions(cs, resync, opts...)
	ef := informers.NewSharedInformerFactoryWithOptions(cs, 0, append(opts,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.FieldSelector = eventFieldSelector }))...)
	cf := informers.NewSharedInformerFactoryWithOptions(cs, 0, append(opts,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.FieldSelector = createFailureFieldSelector }))...)
	c := &cluster{
		factory:       f,
		pods:          f.Core().V1().Pods().Informer(),
		rs:            f.Apps().V1().ReplicaSets().Informer(),
		jobs:          f.Batch().V1().Jobs().Informer(),
		deploys:       f.Apps().V1().Deployments().Informer(),
		sts:           f.Apps().V1().StatefulSets().Informer(),
		ds:            f.Apps().V1().DaemonSets().Informer(),
		svcs:          f.Core().V1().Services().Informer(),
		slices:        f.Discovery().V1().EndpointSlices().Informer(),
		eventFactory:  ef,
		events:        ef.Core().V1().Events().Informer(),
		createFactory: cf,
		createEvents:  cf.Core().V1().Events().Informer(),
	}
	for name, inf := range map[string]struct {
		i    cache.SharedIndexInformer
		self string
	}{"pods": {c.pods, "Pod"}, "replicasets": {c.rs, ""}, "jobs": {c.jobs, ""}} {
		self := inf.self
		err := inf.i.AddIndexers(cache.Indexers{indexController: func(obj any) ([]string, error) {
			m, ok := obj.(metav1.Object)
			if !ok {
				return nil, nil
			}
			if k := controllerIndexKey(m, self); k != "" {
				return []string{k}, nil
			}
			return nil, nil
		}})
		if err != nil {
			return nil, fmt.Errorf("add %s indexer: %w", name, err)
		}
	}
	if err := c.slices.AddIndexers(cache.Indexers{indexService: func(obj any) ([]string, error) {
		if es, ok := obj.(*discoveryv1.EndpointSlice); ok && es.Labels[labelServiceName] != "" {
			return []string{es.Namespace + "/" + es.Labels[labelServiceName]}, nil
		}
		return nil, nil
	}}); err != nil {
		return nil, fmt.Errorf("add endpointslices indexer: %w", err)
	}
	return c, nil
}

// indexService is the index of EndpointSlices by their Service
// (namespace/name).
const indexService = "kaar-service"

// inNamespace returns the cached objects of an informer in namespace ns.
func inNamespace[T any](inf cache.SharedIndexInformer, ns string) []*T {
	return byIndex[T](inf, cache.NamespaceIndex, ns)
}

// byIndex returns the cached objects of an informer under key in index.
func byIndex[T any](inf cache.SharedIndexInformer, index, key string) []*T {
	objs, _ := inf.GetIndexer().ByIndex(index, key)
	out := make([]*T, 0, len(objs))
	for _, o := range objs {
		if t, ok := o.(*T); ok {
			out = append(out, t)
		}
	}
	return out
}

// serviceSlices returns the cached EndpointSlices of Service ns/name.
func (c *cluster) serviceSlices(ns, name string) []*discoveryv1.EndpointSlice {
	return byIndex[discoveryv1.EndpointSlice](c.slices, indexService, ns+"/"+name)
}

// replicaSet and job implement ownerLookup from the caches.
func (c *cluster) replicaSet(ns, name string) *appsv1.ReplicaSet {
	return get[appsv1.ReplicaSet](c.rs, ns, name)
}

func (c *cluster) job(ns, name string) *batchv1.Job { return get[batchv1.Job](c.jobs, ns, name) }

// get returns the cached object ns/name of an informer, nil when absent.
func get[T any](inf cache.SharedIndexInformer, ns, name string) *T {
	obj, ok, _ := inf.GetIndexer().GetByKey(ns + "/" + name)
	if !ok {
		return nil
	}
	o, _ := obj.(*T)
	return o
}

// controlled returns the cached objects of an informer (ReplicaSets or
// Jobs) whose controller is k.
func controlled[T any](inf cache.SharedIndexInformer, k ownerKey) []*T {
	return byIndex[T](inf, indexController, k.String())
}

// podsOf returns the cached pods whose top controller is k, found through
// the controller indexes: the pods it controls directly, and those of the
// ReplicaSets and Jobs it controls.
func (c *cluster) podsOf(k ownerKey) []*corev1.Pod {
	var out []*corev1.Pod
	seen := map[string]bool{}
	addPods := func(key string) {
		objs, _ := c.pods.GetIndexer().ByIndex(indexController, key)
		for _, o := range objs {
			p, ok := o.(*corev1.Pod)
			if !ok || seen[p.Name] {
				continue
			}
			seen[p.Name] = true
			if ownerPending(p, c, time.Now()) {
				continue // attributed once its controller is cached
			}
			if owner, _ := resolveOwner(p, c); keyOf(owner) == k {
				out = append(out, p)
			}
		}
	}
	if k.Kind == "Pod" {
		obj, ok, _ := c.pods.GetIndexer().GetByKey(k.Namespace + "/" + k.Name)
		if p, isPod := obj.(*corev1.Pod); ok && isPod && metav1.GetControllerOfNoCopy(p) == nil {
			out = append(out, p)
		}
		return out
	}
	addPods(k.String())
	for _, inf := range []struct {
		i    cache.SharedIndexInformer
		kind string
	}{{c.rs, "ReplicaSet"}, {c.jobs, "Job"}} {
		objs, _ := inf.i.GetIndexer().ByIndex(indexController, k.String())
		for _, o := range objs {
			if m, ok := o.(metav1.Object); ok {
				addPods(ownerKey{Namespace: k.Namespace, Kind: inf.kind, Name: m.GetName()}.String())
			}
		}
	}
	return out
}

// transform trims every cached object to what the watcher reads:
// managedFields always go (nil-safe), pods keep their identity, labels,
// owner references, deletion state, restart policy, container names, ports
// and status, workload controllers their identity, owner references,
// replica counts, conditions, a summary of their pod template (its labels
// and what the configuration risks read: templateSummary) and
// (Deployments, ReplicaSets) revision, Services their type, selector and ports,
// EndpointSlices their Service and endpoints' readiness, and events their
// subject, reason, message and times. It returns new objects, so it is
// idempotent.
func transform(obj any) (any, error) {
	if v := reflect.ValueOf(obj); !v.IsValid() || v.Kind() == reflect.Pointer && v.IsNil() {
		return obj, nil
	}
	switch o := obj.(type) {
	case *corev1.Pod:
		return trimPod(o), nil
	case *appsv1.ReplicaSet:
		return trimReplicaSet(o), nil
	case *batchv1.Job:
		return trimJob(o), nil
	case *appsv1.Deployment:
		return trimDeployment(o), nil
	case *appsv1.StatefulSet:
		return trimStatefulSet(o), nil
	case *appsv1.DaemonSet:
		return trimDaemonSet(o), nil
	case *corev1.Event:
		return trimEvent(o), nil
	case *corev1.Service:
		return trimService(o), nil
	case *discoveryv1.EndpointSlice:
		return trimEndpointSlice(o), nil
	case metav1.ObjectMetaAccessor:
		if m := o.GetObjectMeta(); m != nil {
			m.SetManagedFields(nil)
		}
	}
	return obj, nil
}

// withRevision is trimMeta keeping the deployment controller's revision
// annotation, which the RolloutStuck message names.
func withRevision(m metav1.ObjectMeta) metav1.ObjectMeta {
	out := trimMeta(m)
	if rev, ok := m.Annotations[annotationRevision]; ok {
		out.Annotations = map[string]string{annotationRevision: rev}
	}
	return out
}

func trimReplicaSet(o *appsv1.ReplicaSet) *appsv1.ReplicaSet {
	return &appsv1.ReplicaSet{TypeMeta: o.TypeMeta, ObjectMeta: withRevision(o.ObjectMeta),
		Spec: appsv1.ReplicaSetSpec{Replicas: o.Spec.Replicas},
		Status: appsv1.ReplicaSetStatus{Replicas: o.Status.Replicas, ReadyReplicas: o.Status.ReadyReplicas,
			AvailableReplicas: o.Status.AvailableReplicas, ObservedGeneration: o.Status.ObservedGeneration,
			Conditions: o.Status.Conditions}}
}

func trimJob(o *batchv1.Job) *batchv1.Job {
	return &batchv1.Job{TypeMeta: o.TypeMeta, ObjectMeta: trimMeta(o.ObjectMeta),
		Spec: batchv1.JobSpec{Parallelism: o.Spec.Parallelism, Completions: o.Spec.Completions, Suspend: o.Spec.Suspend},
		Status: batchv1.JobStatus{Conditions: o.Status.Conditions, Active: o.Status.Active, Succeeded: o.Status.Succeeded,
			Failed: o.Status.Failed, StartTime: o.Status.StartTime, CompletionTime: o.Status.CompletionTime}}
}

func trimDeployment(o *appsv1.Deployment) *appsv1.Deployment {
	return &appsv1.Deployment{TypeMeta: o.TypeMeta, ObjectMeta: withRevision(o.ObjectMeta),
		Spec: appsv1.DeploymentSpec{Replicas: o.Spec.Replicas, Selector: o.Spec.Selector, Paused: o.Spec.Paused,
			ProgressDeadlineSeconds: o.Spec.ProgressDeadlineSeconds, Template: templateSummary(o.Spec.Template)},
		Status: appsv1.DeploymentStatus{ObservedGeneration: o.Status.ObservedGeneration, Replicas: o.Status.Replicas,
			UpdatedReplicas: o.Status.UpdatedReplicas, ReadyReplicas: o.Status.ReadyReplicas,
			AvailableReplicas: o.Status.AvailableReplicas, UnavailableReplicas: o.Status.UnavailableReplicas,
			Conditions: o.Status.Conditions}}
}

func trimStatefulSet(o *appsv1.StatefulSet) *appsv1.StatefulSet {
	return &appsv1.StatefulSet{TypeMeta: o.TypeMeta, ObjectMeta: trimMeta(o.ObjectMeta),
		Spec: appsv1.StatefulSetSpec{Replicas: o.Spec.Replicas, Selector: o.Spec.Selector, Template: templateSummary(o.Spec.Template),
			UpdateStrategy: o.Spec.UpdateStrategy},
		Status: appsv1.StatefulSetStatus{ObservedGeneration: o.Status.ObservedGeneration, Replicas: o.Status.Replicas,
			ReadyReplicas: o.Status.ReadyReplicas, UpdatedReplicas: o.Status.UpdatedReplicas,
			CurrentRevision: o.Status.CurrentRevision, UpdateRevision: o.Status.UpdateRevision, Conditions: o.Status.Conditions}}
}

func trimDaemonSet(o *appsv1.DaemonSet) *appsv1.DaemonSet {
	return &appsv1.DaemonSet{TypeMeta: o.TypeMeta, ObjectMeta: trimMeta(o.ObjectMeta),
		Spec: appsv1.DaemonSetSpec{Selector: o.Spec.Selector, Template: templateSummary(o.Spec.Template),
			UpdateStrategy: appsv1.DaemonSetUpdateStrategy{Type: o.Spec.UpdateStrategy.Type}},
		Status: appsv1.DaemonSetStatus{ObservedGeneration: o.Status.ObservedGeneration,
			DesiredNumberScheduled: o.Status.DesiredNumberScheduled, CurrentNumberScheduled: o.Status.CurrentNumberScheduled,
			NumberReady: o.Status.NumberReady, UpdatedNumberScheduled: o.Status.UpdatedNumberScheduled, NumberAvailable: o.Status.NumberAvailable,
			NumberUnavailable: o.Status.NumberUnavailable, Conditions: o.Status.Conditions}}
}

// templateLabels keeps a pod template's labels only: a Service selecting
// them explains a Service without pods (a workload scaled to zero).
func templateLabels(t corev1.PodTemplateSpec) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: t.Labels}}
}

// trimService keeps what ClassifyService reads: type, selector, ports and
// whether not-ready addresses are published.
func trimService(o *corev1.Service) *corev1.Service {
	out := &corev1.Service{TypeMeta: o.TypeMeta, ObjectMeta: trimMeta(o.ObjectMeta)}
	out.Spec = corev1.ServiceSpec{Type: o.Spec.Type, Selector: o.Spec.Selector,
		PublishNotReadyAddresses: o.Spec.PublishNotReadyAddresses}
	if n := len(o.Spec.Ports); n > 0 {
		out.Spec.Ports = make([]corev1.ServicePort, n)
		for i, p := range o.Spec.Ports {
			out.Spec.Ports[i] = corev1.ServicePort{Name: p.Name, Protocol: p.Protocol, Port: p.Port, TargetPort: p.TargetPort}
		}
	}
	return out
}

// trimEndpointSlice keeps its Service's name and its endpoints' readiness
// and pods.
func trimEndpointSlice(o *discoveryv1.EndpointSlice) *discoveryv1.EndpointSlice {
	out := &discoveryv1.EndpointSlice{TypeMeta: o.TypeMeta, ObjectMeta: trimMeta(o.ObjectMeta), AddressType: o.AddressType}
	if name, ok := o.Labels[labelServiceName]; ok {
		out.Labels = map[string]string{labelServiceName: name}
	}
	if n := len(o.Endpoints); n > 0 {
		out.Endpoints = make([]discoveryv1.Endpoint, n)
		for i, e := range o.Endpoints {
			out.Endpoints[i] = discoveryv1.Endpoint{Conditions: discoveryv1.EndpointConditions{Ready: e.Conditions.Ready}}
			if e.TargetRef != nil {
				out.Endpoints[i].TargetRef = &corev1.ObjectReference{Kind: e.TargetRef.Kind, Name: e.TargetRef.Name}
			}
		}
	}
	return out
}

func trimPod(p *corev1.Pod) *corev1.Pod {
	out := &corev1.Pod{TypeMeta: p.TypeMeta, ObjectMeta: trimMeta(p.ObjectMeta)}
	// Labels and container ports: which Services select the pod, and
	// whether it has their target ports.
	out.Labels = internLabels(p.Labels)
	out.Spec.RestartPolicy = p.Spec.RestartPolicy
	out.Spec.NodeName = intern(p.Spec.NodeName)
	out.Spec.Volumes = claimVolumes(p) // the claims it waits for
	// The cpu and memory requests (of the containers, shared by the
	// pods of a template, and of the pod): what a node's pods request
	// (NodeNearlyFull, podRequests).
	out.Spec.Resources = podLevelRequests(p.Spec.Resources)
	out.Spec.Overhead = p.Spec.Overhead
	if n := len(p.Spec.InitContainers); n > 0 {
		out.Spec.InitContainers = make([]corev1.Container, n)
		for i, c := range p.Spec.InitContainers {
			out.Spec.InitContainers[i] = corev1.Container{Name: c.Name, Image: c.Image, RestartPolicy: c.RestartPolicy,
				Resources: requestsOnly(c.Resources)}
		}
		out.Spec.InitContainers = internSlice(out.Spec.InitContainers) // one copy per pod template
	}
	if n := len(p.Spec.Containers); n > 0 {
		out.Spec.Containers = make([]corev1.Container, n)
		for i, c := range p.Spec.Containers {
			out.Spec.Containers[i] = corev1.Container{Name: c.Name, Image: c.Image, Ports: trimPorts(c.Ports),
				Resources: requestsOnly(c.Resources)}
			out.Spec.Containers[i].Resources.Limits = memoryLimitOnly(c.Resources) // what a memory trend runs into
		}
		out.Spec.Containers = internSlice(out.Spec.Containers) // one copy per pod template
	}
	out.Status = corev1.PodStatus{
		Phase:                 corev1.PodPhase(intern(string(p.Status.Phase))),
		Conditions:            trimPodConditions(p.Status.Conditions),
		Message:               p.Status.Message,
		Reason:                intern(p.Status.Reason),
		StartTime:             p.Status.StartTime,
		InitContainerStatuses: trimStatuses(p.Status.InitContainerStatuses),
		ContainerStatuses:     trimStatuses(p.Status.ContainerStatuses),
	}
	return out
}

func trimPorts(in []corev1.ContainerPort) []corev1.ContainerPort {
	if len(in) == 0 {
		return nil
	}
	out := make([]corev1.ContainerPort, len(in))
	for i, p := range in {
		out[i] = corev1.ContainerPort{Name: p.Name, ContainerPort: p.ContainerPort, Protocol: p.Protocol}
	}
	return out
}

// trimStatuses drops what the classifier does not read (image ids,
// resources, volume mounts, user, ...).
func trimStatuses(in []corev1.ContainerStatus) []corev1.ContainerStatus {
	if len(in) == 0 {
		return nil
	}
	out := make([]corev1.ContainerStatus, len(in))
	for i, cs := range in {
		out[i] = corev1.ContainerStatus{
			Name:                 intern(cs.Name),
			State:                trimContainerState(cs.State),
			LastTerminationState: trimContainerState(cs.LastTerminationState),
			Ready:                cs.Ready,
			RestartCount:         cs.RestartCount,
			Image:                intern(cs.Image),
			Started:              boolRef(cs.Started),
		}
	}
	return out
}

// maxEventMessage bounds a cached event message: a pull failure's cause is
// in its first few hundred bytes.
const maxEventMessage = 2048

func trimEvent(e *corev1.Event) *corev1.Event {
	out := &corev1.Event{
		TypeMeta: e.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{Name: e.Name, Namespace: e.Namespace, UID: e.UID, ResourceVersion: e.ResourceVersion,
			CreationTimestamp: e.CreationTimestamp},
		InvolvedObject: corev1.ObjectReference{Kind: e.InvolvedObject.Kind, Namespace: e.InvolvedObject.Namespace,
			Name: e.InvolvedObject.Name, UID: e.InvolvedObject.UID, FieldPath: e.InvolvedObject.FieldPath},
		Reason:         e.Reason,
		Message:        e.Message,
		Type:           e.Type,
		FirstTimestamp: e.FirstTimestamp,
		LastTimestamp:  e.LastTimestamp,
		EventTime:      e.EventTime,
		Count:          e.Count,
	}
	if len(out.Message) > maxEventMessage {
		out.Message = out.Message[:maxEventMessage]
	}
	if e.Series != nil {
		out.Series = &corev1.EventSeries{Count: e.Series.Count, LastObservedTime: e.Series.LastObservedTime}
	}
	return out
}
