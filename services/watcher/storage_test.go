package watcher

import (
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

var storageT0 = time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)

func testClaim(name string, class *string, phase corev1.PersistentVolumeClaimPhase) *corev1.PersistentVolumeClaim {
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop", UID: "uid-" + "claim-" + "x", CreationTimestamp: metav1.NewTime(storageT0)},
		Spec: corev1.PersistentVolumeClaimSpec{StorageClassName: class,
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}},
		Status: corev1.PersistentVolumeClaimStatus{Phase: phase},
	}
}

func testClass(name, provisioner string, mode storagev1.VolumeBindingMode, isDefault bool) *storagev1.StorageClass {
	sc := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(storageT0.Add(-time.Hour))},
		Provisioner: provisioner, VolumeBindingMode: &mode}
	if isDefault {
		sc.Annotations = map[string]string{annotationDefaultStorageClass: "true"}
	}
	return sc
}

func classes(scs ...*storagev1.StorageClass) map[string]*storagev1.StorageClass {
	m := map[string]*storagev1.StorageClass{}
	for _, sc := range scs {
		m[sc.Name] = sc
	}
	return m
}

func ptr[T any](v T) *T { return &v }

func TestClassifyClaim(t *testing.T) {
	const grace = 30 * time.Second
	later := storageT0.Add(time.Minute)
	fast := testClass("fast", "ebs.csi.aws.com", storagev1.VolumeBindingImmediate, true)
	local := testClass("local", noProvisioner, storagev1.VolumeBindingWaitForFirstConsumer, false)
	wffc := testClass("gp3", "ebs.csi.aws.com", storagev1.VolumeBindingWaitForFirstConsumer, false)
	lost := testClaim("data", ptr("fast"), corev1.ClaimLost)
	lost.Spec.VolumeName = "pv-1"
	prebound := testClaim("data", ptr(""), corev1.ClaimPending)
	prebound.Spec.VolumeName = "pv-gone"
	notFound := &ClaimFailure{Reason: eventReasonProvisioningFailed, Message: `storageclass.storage.k8s.io "slow" not found`, At: storageT0}
	for _, c := range []struct {
		name    string
		pvc     *corev1.PersistentVolumeClaim
		ctx     ClaimContext
		now     time.Time
		reason  string // "" for no issue
		message string
		recheck time.Time
	}{
		{"bound", testClaim("data", ptr("fast"), corev1.ClaimBound), ClaimContext{Classes: classes(fast)}, later, "", "", time.Time{}},
		{"lost", lost, ClaimContext{}, storageT0, reasonClaimLost, "claim data lost its PersistentVolume pv-1", time.Time{}},
		{"missing class, in grace", testClaim("data", ptr("slow"), corev1.ClaimPending), ClaimContext{Classes: classes(fast)}, storageT0.Add(10 * time.Second),
			"", "", storageT0.Add(grace)},
		{"missing class", testClaim("data", ptr("slow"), corev1.ClaimPending), ClaimContext{Classes: classes(fast)}, later,
			reasonStorageClassMissing, `claim data (1Gi) asks for StorageClass "slow", which does not exist`, time.Time{}},
		{"missing class known from the event only", testClaim("data", ptr("slow"), corev1.ClaimPending), ClaimContext{Failure: notFound}, later,
			reasonStorageClassMissing, `StorageClass "slow", which does not exist`, time.Time{}},
		{"classes unknown, no event: nothing said", testClaim("data", ptr("slow"), corev1.ClaimPending), ClaimContext{}, later, "", "", time.Time{}},
		{"no class, no default", testClaim("data", nil, corev1.ClaimPending), ClaimContext{Classes: classes(local)}, later,
			reasonNoStorageClass, "names no StorageClass and the cluster has no default StorageClass: it waits for a PersistentVolume that nobody creates", time.Time{}},
		{"no class, a default the PV controller assigns", testClaim("data", nil, corev1.ClaimPending), ClaimContext{Classes: classes(fast)}, later, "", "", time.Time{}},
		{`explicit "" class`, testClaim("data", ptr(""), corev1.ClaimPending), ClaimContext{Classes: classes(fast)}, later,
			reasonNoStorageClass, `asks for a volume without a class (storageClassName: "")`, time.Time{}},
		{"pre-bound to a volume that is not there", prebound, ClaimContext{Classes: classes(fast)}, later,
			reasonNoStorageClass, "names PersistentVolume pv-gone, which is not available to it", time.Time{}},
		{"provisioning failed", testClaim("data", ptr("fast"), corev1.ClaimPending),
			ClaimContext{Classes: classes(fast), Failure: &ClaimFailure{Reason: eventReasonProvisioningFailed, Message: "rpc error: code = ResourceExhausted desc = quota", At: later}}, later,
			reasonProvisioningFailed, `of StorageClass "fast": provisioner ebs.csi.aws.com failed: rpc error: code = ResourceExhausted desc = quota`, time.Time{}},
		{"a class-not-found event from before the class existed is history", testClaim("data", ptr("fast"), corev1.ClaimPending),
			ClaimContext{Classes: classes(fast), Failure: &ClaimFailure{Reason: eventReasonProvisioningFailed, Message: `storageclass.storage.k8s.io "fast" not found`, At: storageT0}}, later,
			"", "", storageT0.Add(ProvisionGrace)},
		{"provisioner silent, in its grace", testClaim("data", ptr("fast"), corev1.ClaimPending), ClaimContext{Classes: classes(fast)}, later,
			"", "", storageT0.Add(ProvisionGrace)},
		{"provisioner silent", testClaim("data", ptr("fast"), corev1.ClaimPending), ClaimContext{Classes: classes(fast)}, storageT0.Add(3 * time.Minute),
			reasonWaitingForProvisioner, `has waited 3m0s for provisioner ebs.csi.aws.com`, time.Time{}},
		{"WaitForFirstConsumer without a consumer", testClaim("data", ptr("gp3"), corev1.ClaimPending), ClaimContext{Classes: classes(wffc)}, storageT0.Add(time.Hour),
			"", "", time.Time{}},
		{"WaitForFirstConsumer with a waiting consumer", testClaim("data", ptr("gp3"), corev1.ClaimPending), ClaimContext{Classes: classes(wffc), Waiting: true}, storageT0.Add(3 * time.Minute),
			reasonWaitingForProvisioner, "provisioner ebs.csi.aws.com", time.Time{}},
		{"no provisioner, no consumer", testClaim("data", ptr("local"), corev1.ClaimPending), ClaimContext{Classes: classes(local)}, later, "", "", time.Time{}},
		{"no provisioner, a consumer waits", testClaim("data", ptr("local"), corev1.ClaimPending), ClaimContext{Classes: classes(local), Waiting: true}, later,
			reasonNoMatchingVolume, `of StorageClass "local" (kubernetes.io/no-provisioner: volumes are created by hand) matches no available PersistentVolume`, time.Time{}},
		{"being deleted", func() *corev1.PersistentVolumeClaim {
			p := testClaim("data", ptr("slow"), corev1.ClaimPending)
			p.DeletionTimestamp = &metav1.Time{Time: storageT0}
			return p
		}(), ClaimContext{Classes: classes(fast)}, later, "", "", time.Time{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.ctx.Grace = grace
			iss, recheck := ClassifyClaim(c.pvc, c.ctx, c.now)
			switch {
			case c.reason == "" && iss != nil:
				t.Fatalf("issue %+v, want none", iss)
			case c.reason != "" && iss == nil:
				t.Fatalf("no issue, want %s", c.reason)
			case iss != nil && (iss.Reason != c.reason || !strings.Contains(iss.Message, c.message) || iss.Claim != "data"):
				t.Errorf("issue %+v, want reason %s and a message containing %q", iss, c.reason, c.message)
			}
			if !recheck.Equal(c.recheck) {
				t.Errorf("recheck %v, want %v", recheck, c.recheck)
			}
		})
	}
}

func TestMountFailureOf(t *testing.T) {
	ev := func(reason, msg string) *corev1.Event {
		return &corev1.Event{InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: "web-1", UID: "u1"}, Type: corev1.EventTypeWarning,
			Reason: reason, Message: msg, LastTimestamp: metav1.NewTime(storageT0)}
	}
	for _, c := range []struct {
		msg, reason, volume, object string
	}{
		{`MountVolume.SetUp failed for volume "cfg" : configmap "app-config" not found`, reasonMountMissingConfigMap, "cfg", "app-config"},
		{`MountVolume.SetUp failed for volume "creds" : secret "db-creds" not found`, reasonMountMissingSecret, "creds", "db-creds"},
		{`Unable to attach or mount volumes: unmounted volumes=[data], unattached volumes=[data]: error processing PVC shop/data: failed to fetch PVC from API server: persistentvolumeclaims "data" not found`,
			reasonMountMissingPVC, "", "data"},
		{`Unable to attach or mount volumes: unmounted volumes=[cfg], unattached volumes=[cfg kube-api-access-x]: timed out waiting for the condition`, reasonMountFailed, "", ""},
		// A quoted name is data: "not found" inside it says nothing.
		{`MountVolume.SetUp failed for volume "configmap \"x\" not found" : mount failed: exit status 32`, reasonMountFailed, "configmap \\", ""},
	} {
		mf, ok := MountFailureOf(ev("FailedMount", c.msg))
		if !ok || mf.Reason != c.reason || mf.Object != c.object || !mf.At.Equal(storageT0) {
			t.Errorf("MountFailureOf(%q) = %+v, %v; want reason %s, object %q", c.msg, mf, ok, c.reason, c.object)
		}
		if c.volume != "" && !strings.HasPrefix(mf.Volume, strings.TrimSuffix(c.volume, "\\")) {
			t.Errorf("MountFailureOf(%q) volume %q, want %q", c.msg, mf.Volume, c.volume)
		}
	}
	for _, e := range []*corev1.Event{nil, ev("Failed", "Error: configmap \"x\" not found"), func() *corev1.Event {
		e := ev("FailedMount", "x")
		e.Type = corev1.EventTypeNormal
		return e
	}()} {
		if mf, ok := MountFailureOf(e); ok {
			t.Errorf("MountFailureOf(%+v) = %+v, want no mount failure", e, mf)
		}
	}
}

// containerCreatingPod is a scheduled pod whose containers wait to be
// created, as a kubelet shows one whose volumes cannot be mounted.
func containerCreatingPod(created time.Time) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "shop", UID: "u1", CreationTimestamp: metav1.NewTime(created)},
		Spec:       corev1.PodSpec{NodeName: "node-1", Containers: []corev1.Container{{Name: "app", Image: "nginx"}}},
		Status: corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{{Name: "app",
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}}}},
	}
}

func TestClassifyFailedMount(t *testing.T) {
	opts := DefaultClassifyOptions()
	mount := func(msg string, at time.Time) corev1.Event {
		return corev1.Event{InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: "web-1", UID: "u1"}, Type: corev1.EventTypeWarning,
			Reason: eventReasonFailedMount, Message: msg, LastTimestamp: metav1.NewTime(at)}
	}
	missing := mount(`MountVolume.SetUp failed for volume "cfg" : configmap "app-config" not found`, storageT0.Add(5*time.Second))
	timeout := mount(`Unable to attach or mount volumes: unmounted volumes=[cfg]: timed out waiting for the condition`, storageT0.Add(2*time.Minute))

	got := Classify(containerCreatingPod(storageT0), []corev1.Event{missing, timeout}, storageT0.Add(3*time.Minute), opts)
	if len(got) != 1 || got[0].Type != events.IssueFailedMount || got[0].Reason != reasonMountMissingConfigMap || got[0].Container != "" ||
		got[0].Message != `volume cfg needs ConfigMap app-config, which does not exist: the containers are not created (MountVolume.SetUp failed for volume "cfg" : configmap "app-config" not found)` {
		t.Errorf("Classify = %+v; want FailedMount missing_configmap naming the volume and the ConfigMap (the later timeout says less)", got)
	}
	if got := Classify(containerCreatingPod(storageT0), []corev1.Event{missing}, storageT0.Add(10*time.Second), opts); len(got) != 0 {
		t.Errorf("within the pending grace: Classify = %+v, want nothing", got)
	}
	running := containerCreatingPod(storageT0)
	running.Status.Phase = corev1.PodRunning
	running.Status.ContainerStatuses[0].State = corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(storageT0)}}
	if got := Classify(running, []corev1.Event{missing}, storageT0.Add(time.Hour), opts); len(got) != 0 {
		t.Errorf("mounted at last (running): Classify = %+v, want nothing", got)
	}
	other := missing
	other.InvolvedObject.UID = "another-pod"
	if got := Classify(containerCreatingPod(storageT0), []corev1.Event{other}, storageT0.Add(time.Hour), opts); len(got) != 0 {
		t.Errorf("another pod's event: Classify = %+v, want nothing", got)
	}
}

func TestTrimClaimAndClassKeepWhatClassifyReads(t *testing.T) {
	pvc := testClaim("data", ptr("fast"), corev1.ClaimPending)
	pvc.Annotations = map[string]string{annotationSelectedNode: "node-1", "kubectl.kubernetes.io/last-applied-configuration": strings.Repeat("x", 4096)}
	pvc.Labels = map[string]string{"app": "db"}
	pvc.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}
	pvc.Spec.AccessModes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}
	got := trimClaim(pvc)
	if got.Annotations[annotationSelectedNode] != "node-1" || len(got.Annotations) != 1 || got.Labels != nil || got.ManagedFields != nil ||
		*got.Spec.StorageClassName != "fast" || got.Spec.AccessModes != nil || got.Status.Phase != corev1.ClaimPending ||
		got.Spec.Resources.Requests.Storage().String() != "1Gi" {
		t.Errorf("trimClaim = %+v", got)
	}
	sc := testClass("fast", "ebs.csi.aws.com", storagev1.VolumeBindingImmediate, true)
	sc.Parameters = map[string]string{"type": "gp3"}
	if got := trimClass(sc); got.Parameters != nil || got.Provisioner != sc.Provisioner || defaultClass(classes(got)) != "fast" {
		t.Errorf("trimClass = %+v", got)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "db-0"}, Spec: corev1.PodSpec{Volumes: []corev1.Volume{
		{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data-db-0"}}},
		{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "c"}}}},
		{Name: "scratch", VolumeSource: corev1.VolumeSource{Ephemeral: &corev1.EphemeralVolumeSource{}}},
	}}}
	if got := podClaims(&corev1.Pod{Spec: corev1.PodSpec{Volumes: claimVolumes(pod)}}); strings.Join(got, ",") != "data-db-0,db-0-scratch" {
		t.Errorf("claims kept = %v, want the claim and the ephemeral volume's claim", got)
	}
}

func TestDefaultClassIsTheNewest(t *testing.T) {
	old := testClass("old", "a", storagev1.VolumeBindingImmediate, true)
	newer := testClass("newer", "b", storagev1.VolumeBindingImmediate, true)
	newer.CreationTimestamp = metav1.NewTime(storageT0)
	if got := defaultClass(classes(old, newer, testClass("plain", "c", storagev1.VolumeBindingImmediate, false))); got != "newer" {
		t.Errorf("defaultClass = %q, want newer", got)
	}
	if got := defaultClass(classes(testClass("plain", "c", storagev1.VolumeBindingImmediate, false))); got != "" {
		t.Errorf("defaultClass = %q, want none", got)
	}
}

// classifyPod: a pod that waits for a claim whose own state says why is
// PVCPending instead of Pending; while the claim is within its grace the
// Pending waits too; a claim that does not exist leaves the scheduler's
// Pending (missing_pvc) alone.
func TestClassifyPodReplacesPendingWithTheClaimsCause(t *testing.T) {
	cfg, err := (Config{Cluster: "c"}).withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	s := &Service{cfg: cfg, pulls: newPullMemory(), storage: newStorageWatch(fake.NewClientset(), "", 0),
		probes: &probeWatch{failures: newUIDMemory[map[string]ContainerProbes]()}}
	pvc := testClaim("data", ptr("slow"), corev1.ClaimPending)
	if err := s.storage.claims.GetStore().Add(pvc); err != nil {
		t.Fatal(err)
	}
	s.storage.failures.observe(pvc.UID, "shop", "data", ClaimFailure{Reason: eventReasonProvisioningFailed,
		Message: `storageclass.storage.k8s.io "slow" not found`, At: storageT0}, func(_, _ ClaimFailure) bool { return true })
	pod := func(claim, msg string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "db-1", Namespace: "shop", UID: "p1", CreationTimestamp: metav1.NewTime(storageT0)},
			Spec: corev1.PodSpec{Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim}}}}},
			Status: corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse,
				Reason: corev1.PodReasonUnschedulable, Message: msg, LastTransitionTime: metav1.NewTime(storageT0)}}}}
	}
	unbound := "0/3 nodes are available: pod has unbound immediate PersistentVolumeClaims. not found"

	got, _ := s.classifyPod(pod("data", unbound), storageT0.Add(time.Minute))
	if len(got) != 1 || got[0].Type != events.IssuePVCPending || got[0].Reason != reasonStorageClassMissing ||
		!strings.Contains(got[0].Message, `claim data (1Gi) asks for StorageClass "slow"`) {
		t.Errorf("past the grace: %+v, want PVCPending storage_class_missing alone", got)
	}
	got, recheck := s.classifyPod(pod("data", unbound), storageT0.Add(10*time.Second))
	if len(got) != 0 || !recheck.Equal(storageT0.Add(cfg.Classify.PendingGrace)) {
		t.Errorf("within the claim's grace: %+v, recheck %v; want nothing until %v", got, recheck, storageT0.Add(cfg.Classify.PendingGrace))
	}
	got, _ = s.classifyPod(pod("gone", `0/3 nodes are available: persistentvolumeclaim "gone" not found.`), storageT0.Add(time.Minute))
	if len(got) != 1 || got[0].Type != events.IssuePending || got[0].Reason != "missing_pvc" {
		t.Errorf("missing claim: %+v, want the scheduler's Pending missing_pvc", got)
	}
}
