package planner

import (
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Plans of storage failures: diagnostic by design (the fix is a
// StorageClass, a PersistentVolume, a ConfigMap or Secret, or a claim
// created again), with the claims, their volumes and events and the
// StorageClasses as evidence; and a Pending pod whose bound volume lives
// on no node it can use.
func init() { planCases = append(planCases, storageCases...) }

var storageNote = []string{"objects, data and choices the executor's catalogue has no step for: diagnostic steps only"}

var storageCases = []planCase{
	{name: "pvc-storage-class-missing-diagnostic", id: 110, workload: "storage:" + storageClassMissing, typ: events.IssuePVCPending,
		expect: expect{actions: []events.ActionType{events.ActionDiagnostic, events.ActionDiagnostic, events.ActionDiagnostic}, diagnosticOnly: true,
			risk: events.RiskNone, notes: storageNote,
			summary: []string{"PVCPending in deployment/db (storage class missing, 1 pod)"},
			fields: []fieldCheck{
				eq("/target/kind", "Deployment"),
				has("/steps/0/title", `Claim data (volume data of deployment/db) asks for StorageClass fast, which does not exist; the cluster's classes: standard (default)`),
				eq("/steps/0/kubectl", "kubectl get storageclass"), eq("/steps/0/target/kind", "PersistentVolumeClaim"), eq("/steps/0/target/name", "data"),
				has("/steps/1/title", "A claim's storageClassName cannot be changed: delete claim data and create it again"),
				eq("/steps/2/kubectl", "kubectl -n apps describe pvc data"),
				eq("/evidence/2/kind", "storage"), eq("/evidence/2/data/default_storage_class", "standard"),
				has("/evidence/2/lines/0", "persistentvolumeclaim/data (volume data): Pending, class fast, 1Gi"),
				has("/evidence/2/lines/1", `event Warning ProvisioningFailed: storageclass.storage.k8s.io "fast" not found`),
				has("/evidence/2/lines/2", "storageclasses: standard (default): ebs.csi.aws.com, WaitForFirstConsumer"),
			}}},
	{name: "pvc-provisioning-failed-statefulset-diagnostic", id: 111, workload: "storage:" + storageProvisionFail, typ: events.IssuePVCPending,
		expect: expect{actions: []events.ActionType{events.ActionDiagnostic, events.ActionDiagnostic, events.ActionDiagnostic}, diagnosticOnly: true,
			fields: []fieldCheck{
				eq("/target/kind", "StatefulSet"),
				has("/steps/0/title", `StorageClass standard of claim data-db-0 uses provisioner ebs.csi.aws.com, which failed: ProvisioningFailed: failed to provision volume with StorageClass "standard": rpc error: code = ResourceExhausted`),
				eq("/steps/1/kubectl", "kubectl get storageclass standard -o yaml"),
				has("/evidence/2/lines/0", "persistentvolumeclaim/data-db-0 (volume data): Pending, class standard, 1Gi"),
			}}},
	{name: "pvc-no-storage-class-claim-diagnostic", id: 112, workload: "storage:" + storageNoClass, typ: events.IssuePVCPending,
		expect: expect{actions: []events.ActionType{events.ActionDiagnostic, events.ActionDiagnostic, events.ActionDiagnostic}, diagnosticOnly: true,
			summary: []string{"PVCPending in persistentvolumeclaim/scratch (no storage class)"},
			fields: []fieldCheck{
				eq("/target/kind", "PersistentVolumeClaim"), eq("/target/name", "scratch"),
				has("/steps/0/title", "Claim scratch names no StorageClass and the cluster has no default one: it waits for a PersistentVolume created by hand; the cluster's classes: none"),
				has("/steps/1/title", "mark one StorageClass default"),
				eq("/steps/1/kubectl", "kubectl get pv"),
				has("/evidence/0/lines/0", "persistentvolumeclaim/scratch: Pending, class (none), 5Gi"),
				has("/evidence/0/lines/1", "event Normal FailedBinding: no persistent volumes available for this claim and no storage class is set"),
			}}},
	{name: "failed-mount-missing-configmap-diagnostic", id: 113, workload: "storage:" + mountMissingConfigMap, typ: events.IssueFailedMount,
		expect: expect{actions: []events.ActionType{events.ActionDiagnostic, events.ActionDiagnostic, events.ActionDiagnostic}, diagnosticOnly: true,
			fields: []fieldCheck{
				has("/steps/0/title", "ConfigMap web-config, which volume cfg of deployment/web needs, does not exist in namespace apps (the pod template's volume cfg, projected volume all): the containers are not created until it does"),
				eq("/steps/0/kubectl", "kubectl -n apps get configmap web-config"),
				eq("/steps/1/kubectl", "kubectl -n apps edit deployment/web"),
				eq("/steps/2/kubectl", "kubectl -n apps describe pod web-5d4f-a"),
				eq("/evidence/3/kind", "storage"), eq("/evidence/3/data/missing_name", "web-config"), eq("/evidence/3/data/volume", "cfg"),
			}}},
	{name: "pending-volume-node-affinity-diagnostic", id: 114, workload: "storage:volume_node_affinity", typ: events.IssuePending,
		strategies: []Strategy{{Name: "diagnostic"}},
		expect: expect{actions: []events.ActionType{events.ActionDiagnostic}, diagnosticOnly: true,
			fields: []fieldCheck{
				has("/steps/0/title", "3 of 3 nodes are outside the volumes' node affinity: PersistentVolume pv-cache of claim cache-data may only be used on nodes where kubernetes.io/hostname in (node-gone); of the cluster's 3 nodes, none matches"),
				has("/evidence/3/lines/1", "persistentvolume/pv-cache node affinity: kubernetes.io/hostname in (node-gone)"),
			}}},
}

// storageInput: a storage incident of reason, with what gather would have
// read: Deployment apps/db whose pod waits for claim data of a class that
// does not exist; StatefulSet apps/db whose claim data-db-0 its
// provisioner fails; claim apps/scratch without class and no default;
// Deployment apps/web whose volume cfg (and projected volume all) names
// ConfigMap web-config, which does not exist; Deployment apps/cache
// whose claim is bound to a volume on node node-gone.
func storageInput(t *testing.T, cfg Config, reason string) planInput {
	t.Helper()
	created := metav1.NewTime(goldenLastSeen.Add(-time.Hour))
	wffc := storagev1.VolumeBindingWaitForFirstConsumer
	standard := storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "standard", Annotations: map[string]string{annotationDefaultStorageClass: "true"}},
		Provisioner: "ebs.csi.aws.com", VolumeBindingMode: &wffc}
	claim := func(name string, class *string, size string) *corev1.PersistentVolumeClaim {
		return &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "apps", UID: "pvc-uid", ResourceVersion: "77", CreationTimestamp: created},
			Spec: corev1.PersistentVolumeClaimSpec{StorageClassName: class, AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}}},
			Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimPending}}
	}
	event := func(typ, reason, msg string) corev1.Event {
		return corev1.Event{Type: typ, Reason: reason, Message: msg, LastTimestamp: metav1.NewTime(goldenLastSeen.Add(-time.Minute))}
	}
	tmpl := func(volumes ...corev1.Volume) corev1.PodTemplateSpec {
		return corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "db"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "db:1"}}, Volumes: volumes}}
	}
	claimVol := func(claim string) corev1.Volume {
		return corev1.Volume{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim}}}
	}
	pod := func(name string, spec corev1.PodSpec) corev1.Pod {
		return corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "apps", UID: "pod-uid"}, Spec: spec,
			Status: corev1.PodStatus{Phase: corev1.PodPending}}
	}
	meta := func(name string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: name, Namespace: "apps", UID: "w-uid", Generation: 3, ResourceVersion: "300", CreationTimestamp: created}
	}
	podIncident := func(owner events.ObjectRef, typ events.IssueType, reason, msg string, pods ...string) events.Incident {
		inc := noPodIncident(owner, typ, reason, msg)
		inc.Pods, inc.PodCount = pods, len(pods)
		return inc
	}
	var obj any
	var in planInput
	switch reason {
	case storageClassMissing:
		d := &appsv1.Deployment{ObjectMeta: meta("db"), Spec: appsv1.DeploymentSpec{Replicas: new(int32(1)), Template: tmpl(claimVol("data"))}}
		obj = d
		p := pod("db-5d4f-a", d.Spec.Template.Spec)
		in.Pods, in.Pod = []corev1.Pod{p}, &p
		in.Storage = &storageRead{Classes: []storagev1.StorageClass{standard}, Claims: []claimRead{{Name: "data", Where: "volume data",
			Claim: claim("data", new("fast"), "1Gi"), Events: []corev1.Event{event("Warning", "ProvisioningFailed", `storageclass.storage.k8s.io "fast" not found`)}}}}
		in.Incident = podIncident(kindRef(KindDeployment, "apps/v1", d.ObjectMeta), events.IssuePVCPending, reason,
			`claim data (1Gi) asks for StorageClass "fast", which does not exist: nothing can provision it`, "db-5d4f-a")
	case storageProvisionFail:
		s := &appsv1.StatefulSet{ObjectMeta: meta("db"), Spec: appsv1.StatefulSetSpec{Replicas: new(int32(1)), Template: tmpl(),
			VolumeClaimTemplates: []corev1.PersistentVolumeClaim{*claim("data", new("standard"), "1Gi")}}}
		obj = s
		spec := s.Spec.Template.Spec
		spec.Volumes = []corev1.Volume{claimVol("data-db-0")}
		p := pod("db-0", spec)
		in.Pods, in.Pod = []corev1.Pod{p}, &p
		failed := `failed to provision volume with StorageClass "standard": rpc error: code = ResourceExhausted desc = volume limit exceeded`
		in.Storage = &storageRead{Classes: []storagev1.StorageClass{standard}, Claims: []claimRead{{Name: "data-db-0", Where: "volume data",
			Claim: claim("data-db-0", new("standard"), "1Gi"), Events: []corev1.Event{event("Warning", "ProvisioningFailed", failed)}}}}
		in.Incident = podIncident(kindRef(KindStatefulSet, "apps/v1", s.ObjectMeta), events.IssuePVCPending, reason,
			`claim data-db-0 (1Gi) of StorageClass "standard": provisioner ebs.csi.aws.com failed: `+failed, "db-0")
	case storageNoClass:
		c := claim("scratch", nil, "5Gi")
		obj = c
		in.Storage = &storageRead{Claims: []claimRead{{Name: "scratch", Claim: c,
			Events: []corev1.Event{event("Normal", "FailedBinding", "no persistent volumes available for this claim and no storage class is set")}}}}
		in.Incident = noPodIncident(kindRef(KindPersistentVolumeClaim, "v1", c.ObjectMeta), events.IssuePVCPending, reason,
			"claim scratch (5Gi) names no StorageClass and the cluster has no default StorageClass: it waits for a PersistentVolume that nobody creates")
	case mountMissingConfigMap:
		cfg := corev1.Volume{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "web-config"}}}}
		all := corev1.Volume{Name: "all", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
			{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "web-config"}}}}}}}
		d := &appsv1.Deployment{ObjectMeta: meta("web"), Spec: appsv1.DeploymentSpec{Replicas: new(int32(2)), Template: tmpl(cfg, all)}}
		obj = d
		p := pod("web-5d4f-a", d.Spec.Template.Spec)
		p.Spec.NodeName = "kwok-node-0"
		in.Pods, in.Pod = []corev1.Pod{p}, &p
		msg := `MountVolume.SetUp failed for volume "cfg" : configmap "web-config" not found`
		in.Events = []corev1.Event{event("Warning", "FailedMount", msg)}
		in.Storage = &storageRead{Mount: &mountRead{Message: msg, Volume: "cfg", Kind: "configmap", Name: "web-config"}}
		in.Incident = podIncident(kindRef(KindDeployment, "apps/v1", d.ObjectMeta), events.IssueFailedMount, reason,
			"volume cfg needs ConfigMap web-config, which does not exist: the containers are not created ("+msg+")", "web-5d4f-a")
	case "volume_node_affinity":
		d := &appsv1.Deployment{ObjectMeta: meta("cache"), Spec: appsv1.DeploymentSpec{Replicas: new(int32(1)), Template: tmpl(claimVol("cache-data"))}}
		obj = d
		msg := "0/3 nodes are available: 3 node(s) didn't match PersistentVolume's node affinity. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
		p := pod("cache-5d4f-a", d.Spec.Template.Spec)
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: "Unschedulable", Message: msg}}
		in.Pods, in.Pod = []corev1.Pod{p}, &p
		empty := ""
		c := claim("cache-data", &empty, "1Gi")
		c.Spec.VolumeName, c.Status.Phase = "pv-cache", corev1.ClaimBound
		pv := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv-cache"}, Spec: corev1.PersistentVolumeSpec{
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "kubernetes.io/hostname", Operator: corev1.NodeSelectorOpIn, Values: []string{"node-gone"}}}}}}}}}
		in.Storage = &storageRead{Claims: []claimRead{{Name: "cache-data", Where: "volume data", Claim: c, Volume: pv}}}
		in.Nodes = loadNodes(t)
		in.Incident = podIncident(kindRef(KindDeployment, "apps/v1", d.ObjectMeta), events.IssuePending, reason,
			"0/3 nodes: 3 volume node affinity conflict", "cache-5d4f-a")
	default:
		t.Fatalf("no storage input for reason %q", reason)
	}
	w, err := workloadOf(obj)
	if err != nil {
		t.Fatal(err)
	}
	in.Cfg, in.Owner, in.Now = cfg, w, goldenNow
	return in
}
