package watcher

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Storage failures: a PersistentVolumeClaim that cannot be bound
// (PVCPending), reported on the workload whose pods wait for it, or on
// the claim when no pod uses it; and a pod volume the kubelet cannot
// mount because its ConfigMap, Secret or claim does not exist
// (FailedMount). A pod that waits for a claim is Pending too: when the
// claim's own state says why, the claim's cause replaces the scheduler's
// "unbound immediate PersistentVolumeClaims", so one cause is reported
// once. A claim that does not exist at all stays a Pending incident
// (reason missing_pvc): the scheduler says so, and no claim can say more.

// Reason classes of PVCPending.
const (
	reasonStorageClassMissing   = "storage_class_missing"
	reasonNoStorageClass        = "no_storage_class"
	reasonProvisioningFailed    = "provisioning_failed"
	reasonWaitingForProvisioner = "waiting_for_provisioner"
	reasonNoMatchingVolume      = "no_matching_volume"
	reasonClaimLost             = "claim_lost"
)

// storageTypes are the issue types ClassifyClaim reports (through
// classifyPod for the pods that wait for a claim); Classify reports
// FailedMount.
var storageTypes = map[events.IssueType]bool{events.IssuePVCPending: true}

// Reason classes of FailedMount.
const (
	reasonMountMissingConfigMap = "missing_configmap"
	reasonMountMissingSecret    = "missing_secret"
	reasonMountMissingPVC       = "missing_pvc"
	reasonMountFailed           = "mount_failed"
)

// Kubernetes names the storage classifier reads.
const (
	// kindClaim is the owner kind of a claim that no pod uses.
	kindClaim = "PersistentVolumeClaim"
	// noProvisioner is the provisioner of classes whose volumes are
	// created by hand (local volumes).
	noProvisioner = "kubernetes.io/no-provisioner"

	annotationDefaultStorageClass     = "storageclass.kubernetes.io/is-default-class"
	annotationBetaDefaultStorageClass = "storageclass.beta.kubernetes.io/is-default-class"
	annotationSelectedNode            = "volume.kubernetes.io/selected-node"
	annotationProvisioner             = "volume.kubernetes.io/storage-provisioner"
	annotationBetaProvisioner         = "volume.beta.kubernetes.io/storage-provisioner"

	eventReasonProvisioningFailed = "ProvisioningFailed"
	eventReasonFailedMount        = "FailedMount"
	// claimEventFieldSelector and mountEventFieldSelector filter the
	// storage events informers server-side: the claims' warnings (the PV
	// controller's and external provisioners' ProvisioningFailed) and the
	// kubelet's FailedMount warnings, nothing else.
	claimEventFieldSelector = "involvedObject.kind=PersistentVolumeClaim,type=Warning"
	mountEventFieldSelector = "involvedObject.kind=Pod,type=Warning,reason=FailedMount"
)

// ProvisionGrace is how long a claim may wait for its provisioner before
// it is reported as waiting_for_provisioner (a failure the provisioner
// reports is reported after the pending grace): cloud disks take seconds
// to a minute. Not configurable, like ServiceGrace.
const ProvisionGrace = 2 * time.Minute

// ClaimFailure is a Warning event about a claim (ProvisioningFailed),
// the only record of why its provisioner fails.
type ClaimFailure struct {
	Reason, Message string
	At              time.Time
}

// ClaimContext is what ClassifyClaim reads besides the claim.
type ClaimContext struct {
	// Classes are the cluster's StorageClasses by name; nil when they are
	// not known (the watcher may not read them, or its cache has not
	// synced): a missing class is then known from the PV controller's
	// event only.
	Classes map[string]*storagev1.StorageClass
	// Failure is the last Warning event about the claim, nil for none.
	Failure *ClaimFailure
	// Waiting is true when a pod that uses the claim waits for it (not
	// scheduled yet). A WaitForFirstConsumer claim is no issue without.
	Waiting bool
	// Grace is how long a claim may be Pending before it is reported;
	// a provisioner that is silent gets ProvisionGrace.
	Grace time.Duration
}

// ClaimIssue is why a claim cannot be bound.
type ClaimIssue struct {
	Claim, Reason, Message string
}

var classNotFoundRE = regexp.MustCompile(`storageclass\.storage\.k8s\.io "([^"]+)" not found`)

// ClassifyClaim says why claim pvc cannot be bound at time now, nil when
// it is bound, may still be, or nothing tells; and when to look again
// while a grace period runs (zero for never). It is a pure function of
// its arguments.
func ClassifyClaim(pvc *corev1.PersistentVolumeClaim, c ClaimContext, now time.Time) (*ClaimIssue, time.Time) {
	if pvc == nil || pvc.DeletionTimestamp != nil {
		return nil, time.Time{}
	}
	issue := func(reason, format string, args ...any) *ClaimIssue {
		return &ClaimIssue{Claim: pvc.Name, Reason: reason, Message: fmt.Sprintf("claim %s", pvc.Name) + fmt.Sprintf(format, args...)}
	}
	switch pvc.Status.Phase {
	case corev1.ClaimLost:
		return issue(reasonClaimLost, " lost its PersistentVolume %s (deleted?): its data is gone, or the volume must be restored and bound again",
			orSomething(pvc.Spec.VolumeName)), time.Time{}
	case corev1.ClaimBound:
		return nil, time.Time{}
	}
	if due := pvc.CreationTimestamp.Add(c.Grace); now.Before(due) {
		return nil, due
	}
	name := ""
	if pvc.Spec.StorageClassName != nil {
		name = *pvc.Spec.StorageClassName
	}
	size := ""
	if q, ok := pvc.Spec.Resources.Requests[corev1.ResourceStorage]; ok {
		size = " (" + q.String() + ")"
	}
	if name == "" {
		return classless(pvc, c, size, issue), time.Time{}
	}
	failure := currentFailure(c, name)
	class, known := c.Classes[name]
	missing := c.Classes != nil && !known
	if m := classNotFoundRE.FindStringSubmatch(eventMessage(c.Failure)); m != nil && m[1] == name && !known {
		missing = true
	}
	if missing {
		return issue(reasonStorageClassMissing, "%s asks for StorageClass %q, which does not exist: nothing can provision it", size, name), time.Time{}
	}
	if class == nil {
		return nil, time.Time{} // classes unknown and no event says why
	}
	provisioner := class.Provisioner
	wffc := class.VolumeBindingMode != nil && *class.VolumeBindingMode == storagev1.VolumeBindingWaitForFirstConsumer
	if wffc && !c.Waiting && pvc.Annotations[annotationSelectedNode] == "" {
		return nil, time.Time{} // waits for its first consumer, by design
	}
	if failure != nil && failure.Reason == eventReasonProvisioningFailed {
		return issue(reasonProvisioningFailed, "%s of StorageClass %q: provisioner %s failed: %s", size, name, provisioner, failure.Message), time.Time{}
	}
	if provisioner == noProvisioner {
		if !c.Waiting {
			return nil, time.Time{}
		}
		return issue(reasonNoMatchingVolume, "%s of StorageClass %q (%s: volumes are created by hand) matches no available PersistentVolume",
			size, name, noProvisioner), time.Time{}
	}
	if due := pvc.CreationTimestamp.Add(max(ProvisionGrace, c.Grace)); now.Before(due) {
		return nil, due
	}
	return issue(reasonWaitingForProvisioner, "%s of StorageClass %q has waited %s for provisioner %s, which has not created its volume (is it installed and running?)",
		size, name, now.Sub(pvc.CreationTimestamp.Time).Round(time.Second), provisioner), time.Time{}
}

// classless says why a claim without a StorageClass waits, nil when the
// PV controller is about to give it the default class.
func classless(pvc *corev1.PersistentVolumeClaim, c ClaimContext, size string, issue func(string, string, ...any) *ClaimIssue) *ClaimIssue {
	if pvc.Spec.StorageClassName == nil && c.Classes != nil && defaultClass(c.Classes) != "" {
		return nil
	}
	if pvc.Spec.VolumeName != "" {
		return issue(reasonNoStorageClass, "%s names PersistentVolume %s, which is not available to it, and no StorageClass that could provision another",
			size, pvc.Spec.VolumeName)
	}
	why := "names no StorageClass and the cluster has no default StorageClass"
	if pvc.Spec.StorageClassName != nil {
		why = `asks for a volume without a class (storageClassName: "")`
	}
	return issue(reasonNoStorageClass, "%s %s: it waits for a PersistentVolume that nobody creates (no persistent volumes available for this claim and no storage class is set)",
		size, why)
}

// currentFailure is the claim's last warning unless it dates from before
// its class existed (the class was missing then, it exists now).
func currentFailure(c ClaimContext, class string) *ClaimFailure {
	f, sc := c.Failure, c.Classes[class]
	if f == nil || sc == nil {
		return f
	}
	if m := classNotFoundRE.FindStringSubmatch(f.Message); m != nil && m[1] == class || f.At.Before(sc.CreationTimestamp.Time) {
		return nil
	}
	return f
}

func eventMessage(f *ClaimFailure) string {
	if f == nil {
		return ""
	}
	return f.Message
}

func orSomething(s string) string {
	if s == "" {
		return "(none named)"
	}
	return s
}

// defaultClass is the name of the default StorageClass, "" for none
// (the newest when several claim it, as the admission plugin picks).
func defaultClass(classes map[string]*storagev1.StorageClass) string {
	var best *storagev1.StorageClass
	for _, sc := range classes {
		if sc.Annotations[annotationDefaultStorageClass] != "true" && sc.Annotations[annotationBetaDefaultStorageClass] != "true" {
			continue
		}
		if best == nil || sc.CreationTimestamp.After(best.CreationTimestamp.Time) ||
			sc.CreationTimestamp.Equal(&best.CreationTimestamp) && sc.Name < best.Name {
			best = sc
		}
	}
	if best == nil {
		return ""
	}
	return best.Name
}

// MountFailure is the kubelet's last report that it cannot mount a
// volume of a pod (a Warning FailedMount event).
type MountFailure struct {
	// Reason is the class: missing_configmap, missing_secret, missing_pvc
	// or mount_failed.
	Reason string
	// Volume is the pod's volume, Object the ConfigMap, Secret or claim
	// that does not exist, when the message names them.
	Volume, Object string
	Message        string
	At             time.Time
}

var (
	mountVolumeRE  = regexp.MustCompile(`for volume "([^"]+)"`)
	mountMissingRE = regexp.MustCompile(`(?i)\b(configmap|secret|persistentvolumeclaims?) "([^"]+)" not found`)
)

// MountFailureOf reads one event: the kubelet's Warning FailedMount about
// a pod, such as `MountVolume.SetUp failed for volume "cfg" : configmap
// "app-config" not found`.
func MountFailureOf(ev *corev1.Event) (MountFailure, bool) {
	if ev == nil || ev.InvolvedObject.Kind != "Pod" || ev.Type != corev1.EventTypeWarning || ev.Reason != eventReasonFailedMount {
		return MountFailure{}, false
	}
	mf := MountFailure{Reason: reasonMountFailed, Message: truncate(strings.TrimSpace(ev.Message), 512), At: eventTime(ev)}
	if m := mountVolumeRE.FindStringSubmatch(ev.Message); m != nil {
		mf.Volume = m[1]
	}
	if m := mountMissingRE.FindStringSubmatch(ev.Message); m != nil {
		mf.Object = m[2]
		switch strings.ToLower(m[1]) {
		case "configmap":
			mf.Reason = reasonMountMissingConfigMap
		case "secret":
			mf.Reason = reasonMountMissingSecret
		default:
			mf.Reason = reasonMountMissingPVC
		}
	}
	return mf, true
}

// newerMount keeps the more telling of two reports about one pod: a
// missing object over a generic timeout ("unmounted volumes=[cfg]"), the
// newer of two of the same kind.
func newerMount(prev *MountFailure, mf MountFailure) (*MountFailure, bool) {
	if prev != nil {
		specific, prevSpecific := mf.Reason != reasonMountFailed, prev.Reason != reasonMountFailed
		if prevSpecific && !specific || specific == prevSpecific && !mf.At.After(prev.At) {
			return prev, false
		}
	}
	return &mf, true
}

// mountIssue reports a scheduled pod whose containers wait to be created
// while the kubelet cannot mount one of its volumes (mf), once it has
// been so for grace (from the pod's creation); before that it calls
// later with when to look again.
func mountIssue(pod *corev1.Pod, mf *MountFailure, now time.Time, grace time.Duration, later func(time.Time)) (PodIssue, bool) {
	if mf == nil || pod.Spec.NodeName == "" || pod.Status.Phase != corev1.PodPending {
		return PodIssue{}, false
	}
	for _, cs := range append(slices.Clip(pod.Status.InitContainerStatuses), pod.Status.ContainerStatuses...) {
		if cs.State.Running != nil || cs.State.Terminated != nil || cs.State.Waiting != nil && cs.State.Waiting.Reason != "ContainerCreating" && cs.State.Waiting.Reason != "PodInitializing" {
			return PodIssue{}, false // the volumes are mounted
		}
	}
	if due := pod.CreationTimestamp.Add(grace); now.Before(due) {
		later(due)
		return PodIssue{}, false
	}
	msg := mf.Message
	if mf.Volume != "" && mf.Object != "" {
		what := map[string]string{reasonMountMissingConfigMap: "ConfigMap", reasonMountMissingSecret: "Secret", reasonMountMissingPVC: "PersistentVolumeClaim"}[mf.Reason]
		msg = fmt.Sprintf("volume %s needs %s %s, which does not exist: the containers are not created (%s)", mf.Volume, what, mf.Object, mf.Message)
	}
	return PodIssue{Type: events.IssueFailedMount, Reason: mf.Reason, Message: msg}, true
}

// claimVolumes keeps the volumes of a pod that use a claim, as
// persistentVolumeClaim volumes naming it (a generic ephemeral volume's
// claim is <pod>-<volume>): the watcher maps claims to the pods that wait
// for them.
func claimVolumes(p *corev1.Pod) []corev1.Volume {
	var out []corev1.Volume
	for _, v := range p.Spec.Volumes {
		claim := ""
		switch {
		case v.PersistentVolumeClaim != nil:
			claim = v.PersistentVolumeClaim.ClaimName
		case v.Ephemeral != nil:
			claim = p.Name + "-" + v.Name
		}
		if claim != "" {
			out = append(out, corev1.Volume{Name: v.Name, VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim}}})
		}
	}
	return out
}

// podClaims are the claims a (trimmed) pod uses.
func podClaims(p *corev1.Pod) []string {
	var out []string
	for _, v := range p.Spec.Volumes {
		if v.PersistentVolumeClaim != nil {
			out = append(out, v.PersistentVolumeClaim.ClaimName)
		}
	}
	return out
}

// trimClaim keeps what ClassifyClaim reads: class, volume, requested
// size, phase and the annotations naming the selected node and the
// provisioner.
func trimClaim(o *corev1.PersistentVolumeClaim) *corev1.PersistentVolumeClaim {
	out := &corev1.PersistentVolumeClaim{TypeMeta: o.TypeMeta, ObjectMeta: trimMeta(o.ObjectMeta)}
	for _, k := range []string{annotationSelectedNode, annotationProvisioner, annotationBetaProvisioner} {
		if v, ok := o.Annotations[k]; ok {
			if out.Annotations == nil {
				out.Annotations = map[string]string{}
			}
			out.Annotations[k] = v
		}
	}
	out.Spec.StorageClassName = o.Spec.StorageClassName
	out.Spec.VolumeName = o.Spec.VolumeName
	if q, ok := o.Spec.Resources.Requests[corev1.ResourceStorage]; ok {
		out.Spec.Resources.Requests = corev1.ResourceList{corev1.ResourceStorage: q}
	}
	out.Status.Phase = o.Status.Phase
	return out
}

// trimClass keeps a StorageClass's provisioner, binding mode and whether
// it is the default.
func trimClass(o *storagev1.StorageClass) *storagev1.StorageClass {
	out := &storagev1.StorageClass{TypeMeta: o.TypeMeta, ObjectMeta: metav1.ObjectMeta{Name: o.Name, UID: o.UID,
		ResourceVersion: o.ResourceVersion, CreationTimestamp: o.CreationTimestamp, DeletionTimestamp: o.DeletionTimestamp},
		Provisioner: o.Provisioner, VolumeBindingMode: o.VolumeBindingMode}
	for _, k := range []string{annotationDefaultStorageClass, annotationBetaDefaultStorageClass} {
		if v, ok := o.Annotations[k]; ok {
			if out.Annotations == nil {
				out.Annotations = map[string]string{}
			}
			out.Annotations[k] = v
		}
	}
	return out
}

// storageTransform trims the storage informers' objects.
func storageTransform(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.PersistentVolumeClaim:
		return trimClaim(o), nil
	case *storagev1.StorageClass:
		return trimClass(o), nil
	}
	return transform(obj)
}
