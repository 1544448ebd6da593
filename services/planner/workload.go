package planner

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/kaar-dev/kaar/pkg/events"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// Kubernetes kinds the planner knows how to plan for.
const (
	KindDeployment  = "Deployment"
	KindStatefulSet = "StatefulSet"
	KindDaemonSet   = "DaemonSet"
	KindReplicaSet  = "ReplicaSet"
	KindJob         = "Job"
	KindCronJob     = "CronJob"
	KindPod         = "Pod"
)

// Well-known annotations and labels.
const (
	annotationRevision    = "deployment.kubernetes.io/revision"
	annotationRestartedAt = "kubectl.kubernetes.io/restartedAt"
	labelPodTemplateHash  = "pod-template-hash"
)

// workload is the controlling owner a plan acts on, reduced to what the
// step builders need whatever its kind.
type workload struct {
	Ref             events.ObjectRef
	Generation      int64
	ResourceVersion string
	Labels          map[string]string
	Annotations     map[string]string
	// Template is the pod template; nil for a bare pod.
	Template *corev1.PodTemplateSpec
	// TemplatePath is Template's JSON pointer ("/spec/template").
	TemplatePath string
	// Spec is the pod spec the steps change (the template's, or the bare
	// pod's) and SpecPath its JSON pointer.
	Spec     *corev1.PodSpec
	SpecPath string
	// Selector selects the workload's pods (nil for a bare pod).
	Selector *metav1.LabelSelector
	// Deployment is set for a Deployment (rollback needs its history).
	Deployment *appsv1.Deployment
	// TemplateMutable is false where the API server refuses template
	// changes (Jobs).
	TemplateMutable bool
	// Restartable is true where a rollout restart exists (Deployment,
	// StatefulSet, DaemonSet).
	Restartable bool
	// BarePod is true for a pod without a controller.
	BarePod bool
}

// kindRef builds the ObjectRef of an object.
func kindRef(kind, apiVersion string, m metav1.ObjectMeta) events.ObjectRef {
	return events.ObjectRef{Kind: kind, Namespace: m.Namespace, Name: m.Name, UID: string(m.UID), APIVersion: apiVersion}
}

// workloadOf wraps a typed owner object.
func workloadOf(obj any) (*workload, error) {
	switch o := obj.(type) {
	case *appsv1.Deployment:
		return &workload{Ref: kindRef(KindDeployment, "apps/v1", o.ObjectMeta), Generation: o.Generation, ResourceVersion: o.ResourceVersion,
			Labels: o.Labels, Annotations: o.Annotations, Template: &o.Spec.Template, TemplatePath: "/spec/template",
			Spec: &o.Spec.Template.Spec, SpecPath: "/spec/template/spec", Selector: o.Spec.Selector, Deployment: o,
			TemplateMutable: true, Restartable: true}, nil
	case *appsv1.StatefulSet:
		return &workload{Ref: kindRef(KindStatefulSet, "apps/v1", o.ObjectMeta), Generation: o.Generation, ResourceVersion: o.ResourceVersion,
			Labels: o.Labels, Annotations: o.Annotations, Template: &o.Spec.Template, TemplatePath: "/spec/template",
			Spec: &o.Spec.Template.Spec, SpecPath: "/spec/template/spec", Selector: o.Spec.Selector,
			TemplateMutable: true, Restartable: true}, nil
	case *appsv1.DaemonSet:
		return &workload{Ref: kindRef(KindDaemonSet, "apps/v1", o.ObjectMeta), Generation: o.Generation, ResourceVersion: o.ResourceVersion,
			Labels: o.Labels, Annotations: o.Annotations, Template: &o.Spec.Template, TemplatePath: "/spec/template",
			Spec: &o.Spec.Template.Spec, SpecPath: "/spec/template/spec", Selector: o.Spec.Selector,
			TemplateMutable: true, Restartable: true}, nil
	case *appsv1.ReplicaSet:
		return &workload{Ref: kindRef(KindReplicaSet, "apps/v1", o.ObjectMeta), Generation: o.Generation, ResourceVersion: o.ResourceVersion,
			Labels: o.Labels, Annotations: o.Annotations, Template: &o.Spec.Template, TemplatePath: "/spec/template",
			Spec: &o.Spec.Template.Spec, SpecPath: "/spec/template/spec", Selector: o.Spec.Selector,
			// A template change of a bare ReplicaSet does not replace its pods.
			TemplateMutable: false}, nil
	case *batchv1.Job:
		return &workload{Ref: kindRef(KindJob, "batch/v1", o.ObjectMeta), Generation: o.Generation, ResourceVersion: o.ResourceVersion,
			Labels: o.Labels, Annotations: o.Annotations, Template: &o.Spec.Template, TemplatePath: "/spec/template",
			Spec: &o.Spec.Template.Spec, SpecPath: "/spec/template/spec", Selector: o.Spec.Selector,
			TemplateMutable: false}, nil
	case *batchv1.CronJob:
		t := &o.Spec.JobTemplate.Spec.Template
		return &workload{Ref: kindRef(KindCronJob, "batch/v1", o.ObjectMeta), Generation: o.Generation, ResourceVersion: o.ResourceVersion,
			Labels: o.Labels, Annotations: o.Annotations, Template: t, TemplatePath: "/spec/jobTemplate/spec/template",
			Spec: &t.Spec, SpecPath: "/spec/jobTemplate/spec/template/spec", TemplateMutable: true}, nil
	case *corev1.Pod:
		return &workload{Ref: kindRef(KindPod, "v1", o.ObjectMeta), Generation: o.Generation, ResourceVersion: o.ResourceVersion,
			Labels: o.Labels, Annotations: o.Annotations, Spec: &o.Spec, SpecPath: "/spec",
			BarePod: metav1.GetControllerOf(o) == nil}, nil
	}
	return nil, fmt.Errorf("unsupported owner type %T", obj)
}

// ref is "deployment/web", as kubectl spells it.
func (w *workload) ref() string { return strings.ToLower(w.Ref.Kind) + "/" + w.Ref.Name }

// container returns the index and the container named name in the spec
// (containers first, then init containers); with name empty, the first
// container. init reports an init container.
func (w *workload) container(name string) (idx int, c *corev1.Container, init bool) {
	if w.Spec == nil {
		return -1, nil, false
	}
	for i := range w.Spec.Containers {
		if name == "" || w.Spec.Containers[i].Name == name {
			return i, &w.Spec.Containers[i], false
		}
	}
	for i := range w.Spec.InitContainers {
		if w.Spec.InitContainers[i].Name == name {
			return i, &w.Spec.InitContainers[i], true
		}
	}
	return -1, nil, false
}

// containerPath is the JSON pointer of a container of the spec.
func (w *workload) containerPath(idx int, init bool) string {
	list := "containers"
	if init {
		list = "initContainers"
	}
	return fmt.Sprintf("%s/%s/%d", w.SpecPath, list, idx)
}

// managedBy names the GitOps or Helm tool that manages the workload, with
// the label or annotation that says so; empty when none does. A change
// applied to such an object directly is reverted by the tool's next sync.
// Labels are checked before annotations, each in key order, so the answer
// is deterministic.
func managedBy(objLabels, annotations map[string]string) (tool, evidence string) {
	for _, src := range []struct {
		m    map[string]string
		what string
	}{{objLabels, "label"}, {annotations, "annotation"}} {
		for _, k := range slices.Sorted(maps.Keys(src.m)) {
			v := src.m[k]
			switch {
			case strings.HasPrefix(k, "argocd.argoproj.io/"):
				tool = "Argo CD"
			case strings.Contains(k, "fluxcd.io/"):
				tool = "Flux"
			case k == "app.kubernetes.io/managed-by" && strings.EqualFold(v, "Helm"),
				strings.HasPrefix(k, "meta.helm.sh/"):
				tool = "Helm"
			default:
				continue
			}
			return tool, fmt.Sprintf("%s %s=%s", src.what, k, v)
		}
	}
	return "", ""
}

// metaSelector converts the workload's label selector.
func metaSelector(w *workload) (labels.Selector, error) {
	return metav1.LabelSelectorAsSelector(w.Selector)
}
