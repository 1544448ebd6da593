package planner

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/kaar-dev/kaar/pkg/events/text"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
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
	KindService     = "Service"
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
	// Object is the typed object read from the cluster (*appsv1.Deployment,
	// *batchv1.Job, ...): its status says how the workload fails when no
	// pod does.
	Object any
}

// kindRef builds the ObjectRef of an object.
func kindRef(kind, apiVersion string, m metav1.ObjectMeta) events.ObjectRef {
	return events.ObjectRef{Kind: kind, Namespace: m.Namespace, Name: m.Name, UID: string(m.UID), APIVersion: apiVersion}
}

// workloadOf wraps a typed owner object.
func workloadOf(obj any) (*workload, error) {
	w, err := wrap(obj)
	if err != nil {
		return nil, err
	}
	w.Object = obj
	return w, nil
}

func wrap(obj any) (*workload, error) {
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
	case *networkingv1.Ingress:
		// An Ingress: its plans are diagnostic (kaar does not change
		// Ingresses).
		return &workload{Ref: kindRef(KindIngress, "networking.k8s.io/v1", o.ObjectMeta), Generation: o.Generation, ResourceVersion: o.ResourceVersion,
			Labels: o.Labels, Annotations: o.Annotations}, nil
	case *corev1.PersistentVolumeClaim:
		// A claim no pod uses: its plans are diagnostic.
		return &workload{Ref: kindRef(KindPersistentVolumeClaim, "v1", o.ObjectMeta), ResourceVersion: o.ResourceVersion,
			Labels: o.Labels, Annotations: o.Annotations}, nil
	case *corev1.Service:
		// A Service has no pod template: its plans are diagnostic.
		return &workload{Ref: kindRef(KindService, "v1", o.ObjectMeta), Generation: o.Generation, ResourceVersion: o.ResourceVersion,
			Labels: o.Labels, Annotations: o.Annotations}, nil
	case *corev1.Node:
		// A Node: its plans are diagnostic (kaar never acts on nodes).
		return &workload{Ref: kindRef(KindNode, "v1", o.ObjectMeta), Generation: o.Generation, ResourceVersion: o.ResourceVersion,
			Labels: o.Labels, Annotations: o.Annotations}, nil
	case *autoscalingv2.HorizontalPodAutoscaler:
		// An HPA: its plans are diagnostic (kaar does not change HPAs).
		return &workload{Ref: kindRef(KindHPA, "autoscaling/v2", o.ObjectMeta), Generation: o.Generation, ResourceVersion: o.ResourceVersion,
			Labels: o.Labels, Annotations: o.Annotations}, nil
	case *corev1.Pod:
		return &workload{Ref: kindRef(KindPod, "v1", o.ObjectMeta), Generation: o.Generation, ResourceVersion: o.ResourceVersion,
			Labels: o.Labels, Annotations: o.Annotations, Spec: &o.Spec, SpecPath: "/spec",
			BarePod: metav1.GetControllerOf(o) == nil}, nil
	}
	if w, ok := wrapWarningOwner(obj); ok {
		return w, nil
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

// Labels and annotations that say who manages an object.
const (
	argoTrackingID      = "argocd.argoproj.io/tracking-id"
	argoInstance        = "argocd.argoproj.io/instance"
	argoPrefix          = "argocd.argoproj.io/"
	labelInstance       = "app.kubernetes.io/instance"
	labelManagedBy      = "app.kubernetes.io/managed-by"
	fluxKustomization   = "kustomize.toolkit.fluxcd.io/name"
	fluxKustomizationNS = "kustomize.toolkit.fluxcd.io/namespace"
	fluxHelmRelease     = "helm.toolkit.fluxcd.io/name"
	fluxHelmReleaseNS   = "helm.toolkit.fluxcd.io/namespace"
	helmReleaseName     = "meta.helm.sh/release-name"
)

// gitops says which GitOps or Helm tool manages a workload (Tool empty
// when none does), the label or annotation that says so (Evidence), and
// the object holding the workload's desired state (Owner: an Argo CD
// Application, a Flux Kustomization or HelmRelease, a Helm release).
type gitops struct {
	Tool     string
	Evidence string
	Owner    string
}

// managedBy recognises Argo CD (annotation tracking-id, label or
// annotation instance, or label app.kubernetes.io/instance next to an
// Argo CD annotation), Flux (labels of kustomize-controller and
// helm-controller) and Helm (label app.kubernetes.io/managed-by=Helm or
// annotation meta.helm.sh/release-name), in that order: Argo CD and Flux
// often deploy Helm charts, and they are the ones that revert a change
// made in the cluster. A bare app.kubernetes.io/instance label is not
// enough: Helm charts and people set it too.
//
// Annotation values are free text anyone with write access sets: the
// ones quoted in the plan are withheld when they look like a credential.
func managedBy(objLabels, annotations map[string]string) gitops {
	annotations = redactValues(annotations)
	get := func(k string) (string, string, bool) {
		if v, ok := objLabels[k]; ok {
			return v, "label", true
		}
		if v, ok := annotations[k]; ok {
			return v, "annotation", true
		}
		return "", "", false
	}
	hasArgoAnnotation := slices.ContainsFunc(slices.Collect(maps.Keys(annotations)), func(k string) bool { return strings.HasPrefix(k, argoPrefix) })
	if v, ok := annotations[argoTrackingID]; ok {
		app, _, _ := strings.Cut(v, ":")
		return gitops{Tool: "Argo CD", Evidence: "annotation " + argoTrackingID + "=" + v, Owner: "Application " + app}
	}
	if v, what, ok := get(argoInstance); ok {
		return gitops{Tool: "Argo CD", Evidence: what + " " + argoInstance + "=" + v, Owner: "Application " + v}
	}
	if v, ok := objLabels[labelInstance]; ok && hasArgoAnnotation {
		return gitops{Tool: "Argo CD", Evidence: "label " + labelInstance + "=" + v + " with Argo CD annotations", Owner: "Application " + v}
	}
	if v, ok := objLabels[fluxHelmRelease]; ok {
		return gitops{Tool: "Flux", Evidence: "label " + fluxHelmRelease + "=" + v, Owner: "HelmRelease " + nsName(objLabels[fluxHelmReleaseNS], v)}
	}
	if v, ok := objLabels[fluxKustomization]; ok {
		return gitops{Tool: "Flux", Evidence: "label " + fluxKustomization + "=" + v, Owner: "Kustomization " + nsName(objLabels[fluxKustomizationNS], v)}
	}
	if v, ok := annotations[helmReleaseName]; ok {
		return gitops{Tool: "Helm", Evidence: "annotation " + helmReleaseName + "=" + v, Owner: "release " + v}
	}
	if v := objLabels[labelManagedBy]; strings.EqualFold(v, "Helm") {
		rel := objLabels[labelInstance]
		if rel == "" {
			rel = "(see helm list)"
		}
		return gitops{Tool: "Helm", Evidence: "label " + labelManagedBy + "=" + v, Owner: "release " + rel}
	}
	return gitops{}
}

func nsName(ns, name string) string {
	if ns == "" {
		return name
	}
	return ns + "/" + name
}

// source is where the lasting change belongs.
func (g gitops) source() string {
	switch g.Tool {
	case "Argo CD":
		return "the Git source of Argo CD " + g.Owner
	case "Flux":
		return "the Git repository reconciled by Flux " + g.Owner
	case "Helm":
		return "the chart values of Helm " + g.Owner
	}
	return ""
}

// advice says why a change made in the cluster does not last.
func (g gitops) advice() string {
	switch g.Tool {
	case "Argo CD":
		return "Argo CD reverts a change made in the cluster on its next sync (at once with self-heal); make the change in " + g.source() + ", or pause auto-sync while the live fix holds"
	case "Flux":
		return "Flux reverts drift on its next reconciliation; make the change in " + g.source() + ", or suspend it while the live fix holds"
	case "Helm":
		return "the next helm upgrade reapplies the chart and undoes a change made in the cluster; make the change in " + g.source()
	}
	return ""
}

// metaSelector converts the workload's label selector.
func metaSelector(w *workload) (labels.Selector, error) {
	return metav1.LabelSelectorAsSelector(w.Selector)
}

// redactValues copies m with every value that looks like a credential
// withheld.
func redactValues(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = text.RedactText(v)
	}
	return out
}
