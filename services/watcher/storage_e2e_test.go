package watcher

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/kaar-dev/kaar/pkg/events/scheduling"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Storage on the sandbox's real PV controller and scheduler (claims that
// cannot be bound, volumes on nodes nobody can reach) and its kwok
// FailedMount convention (volumes naming missing-* ConfigMaps and
// Secrets). The sandbox has no StorageClass at all, hence no default
// one; StorageClasses and PersistentVolumes are cluster-scoped, so each
// test names its own after its namespace and deletes them.

// allowStorage grants the watcher what the chart's ClusterRole grants
// for storage: claims in the test's namespace, and StorageClasses (a
// Role cannot grant them: one ClusterRole shared by the tests).
func (h *harness) allowStorage(t *testing.T) {
	t.Helper()
	ctx := ctx30(t)
	read := []string{"get", "list", "watch"}
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "kaar-watcher-storage"}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"persistentvolumeclaims"}, Verbs: read}}}
	if _, err := h.admin.RbacV1().Roles(h.ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	subjects := []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "kaar-watcher"}}
	if _, err := h.admin.RbacV1().RoleBindings(h.ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "kaar-watcher-storage"},
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "kaar-watcher-storage"}, Subjects: subjects}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	const shared = "kaar-watcher-e2e-storageclasses"
	cr := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: shared}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{"storage.k8s.io"}, Resources: []string{"storageclasses"}, Verbs: read}}}
	if _, err := h.admin.RbacV1().ClusterRoles().Create(ctx, cr, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	crb := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: shared},
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: shared}, Subjects: subjects}
	if _, err := h.admin.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

func (h *harness) startStorageWatcher(t *testing.T) {
	t.Helper()
	h.allowStorage(t)
	h.startWatcher(t)
}

func testPVC(name string, class *string) *corev1.PersistentVolumeClaim {
	return &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.PersistentVolumeClaimSpec{
		StorageClassName: class, AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
		Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}}}
}

func (h *harness) createPVC(t *testing.T, pvc *corev1.PersistentVolumeClaim) {
	t.Helper()
	if _, err := h.admin.CoreV1().PersistentVolumeClaims(h.ns).Create(ctx30(t), pvc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// createPV creates a hostPath PersistentVolume reserved for claim (in
// the test's namespace) of class, pinned to a node named node when not
// empty; it is deleted at cleanup.
func (h *harness) createPV(t *testing.T, name, claim, class, node string) {
	t.Helper()
	pv := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.PersistentVolumeSpec{
		Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
		AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
		PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
		StorageClassName:              class,
		PersistentVolumeSource:        corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/tmp/" + name}},
		ClaimRef:                      &corev1.ObjectReference{Namespace: h.ns, Name: claim},
	}}
	if node != "" {
		pv.Spec.NodeAffinity = &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
			MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "kubernetes.io/hostname", Operator: corev1.NodeSelectorOpIn, Values: []string{node}}}}}}}
	}
	if _, err := h.admin.CoreV1().PersistentVolumes().Create(ctx30(t), pv, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = h.admin.CoreV1().PersistentVolumes().Delete(ctx, name, metav1.DeleteOptions{})
	})
}

func (h *harness) createStorageClass(t *testing.T, name, provisioner string, mode storagev1.VolumeBindingMode) {
	t.Helper()
	sc := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Provisioner: provisioner, VolumeBindingMode: &mode}
	if _, err := h.admin.StorageV1().StorageClasses().Create(ctx30(t), sc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = h.admin.StorageV1().StorageClasses().Delete(ctx, name, metav1.DeleteOptions{})
	})
}

// withVolume adds a volume to a Deployment's pod template.
func withVolume(d *appsv1.Deployment, v corev1.Volume) *appsv1.Deployment {
	d.Spec.Template.Spec.Volumes = append(d.Spec.Template.Spec.Volumes, v)
	return d
}

func claimVolume(claim string) corev1.Volume {
	return corev1.Volume{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim}}}
}

// neverAnnounced fails if incident id was ever announced.
func (h *harness) neverAnnounced(t *testing.T, id, what string) {
	t.Helper()
	for _, r := range h.events(t) {
		if r.event.Incident.ID == id {
			t.Errorf("%s was announced (%s %+v): the storage incident says it once", what, r.event.Transition, r.event.Incident)
		}
	}
}

func TestClaimOfAMissingStorageClassIsPVCPendingOnTheDeploymentUntilAVolumeBindsIt(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.startStorageWatcher(t)
	store := h.startPlanner(t)
	class := "fast-" + h.ns // exists nowhere
	h.createPVC(t, testPVC("data", &class))
	h.create(t, withVolume(testDeployment("db", 1, nil, corev1.Container{Name: "app", Image: "nginx:1.27"}), claimVolume("data")))

	id := h.incidentID("Deployment", "db", events.IssuePVCPending)
	in := h.waitIncident(t, 3*time.Minute, id, "storage_class_missing", func(in events.Incident) bool {
		return in.Reason == "storage_class_missing"
	}).event.Incident
	if in.Owner.Kind != "Deployment" || in.Owner.Name != "db" || in.PodCount != 1 || in.Severity != events.SeverityHigh ||
		!strings.Contains(in.Message, fmt.Sprintf(`claim data (1Gi) asks for StorageClass %q, which does not exist`, class)) {
		t.Errorf("incident = %+v", in)
	}
	h.neverAnnounced(t, h.incidentID("Deployment", "db", events.IssuePending), "the pods' Pending (unbound immediate PersistentVolumeClaims)")
	// A StorageClass or a volume is a person's to create: diagnostic by design.
	wantPlan(t, store, id, events.IssuePVCPending, "Deployment", "db", diagnostic)

	// A volume of that class name reserved for the claim: the PV
	// controller binds it (no class object needed), the pod runs.
	h.createPV(t, "pv-"+h.ns, "data", class, "")
	h.waitEvent(t, 3*time.Minute, id, events.TransitionResolved)
	detectedOnce(t, h.events(t), id)
}

func TestStatefulSetClaimTemplateOfAMissingClassIsPVCPendingOnTheStatefulSet(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.startStorageWatcher(t)
	store := h.startPlanner(t)
	class := "gone-" + h.ns
	labels := map[string]string{"app": "db"}
	sts := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "db"}, Spec: appsv1.StatefulSetSpec{
		Replicas: ptr(int32(1)), Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "db", Image: "postgres:17", VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/var/lib/postgresql"}}}}}},
		VolumeClaimTemplates: []corev1.PersistentVolumeClaim{*testPVC("data", &class)},
	}}
	if _, err := h.admin.AppsV1().StatefulSets(h.ns).Create(ctx30(t), sts, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	id := h.incidentID("StatefulSet", "db", events.IssuePVCPending)
	in := h.waitIncident(t, 3*time.Minute, id, "storage_class_missing", func(in events.Incident) bool {
		return in.Reason == "storage_class_missing"
	}).event.Incident
	if in.Owner.Kind != "StatefulSet" || in.PodCount != 1 || !slices.Equal(in.Pods, []string{"db-0"}) ||
		!strings.Contains(in.Message, fmt.Sprintf(`claim data-db-0 (1Gi) asks for StorageClass %q`, class)) {
		t.Errorf("incident = %+v", in)
	}
	h.neverAnnounced(t, h.incidentID("StatefulSet", "db", events.IssuePending), "the pod's Pending")
	wantPlan(t, store, id, events.IssuePVCPending, "StatefulSet", "db", diagnostic)
}

func TestClaimWithoutClassNorDefaultAndNoPodIsPVCPendingOnTheClaimUntilBound(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.startStorageWatcher(t)
	store := h.startPlanner(t)
	h.createPVC(t, testPVC("scratch", nil))

	id := h.incidentID("PersistentVolumeClaim", "scratch", events.IssuePVCPending)
	in := h.waitEvent(t, 3*time.Minute, id, events.TransitionDetected).event.Incident
	if in.Reason != "no_storage_class" || in.Owner.Kind != "PersistentVolumeClaim" || in.Owner.Name != "scratch" || in.Owner.UID == "" ||
		!strings.Contains(in.Message, "names no StorageClass and the cluster has no default StorageClass") ||
		!strings.Contains(in.Message, "no persistent volumes available for this claim and no storage class is set") {
		t.Errorf("incident = %+v", in)
	}
	resp, err := h.analyze(events.AnalyzeRequest{Type: events.IssuePVCPending})
	if err != nil || len(resp.Incidents) != 1 || resp.Incidents[0].ID != id {
		t.Errorf("analyze = %+v, %v; want the claim's incident", resp, err)
	}
	wantPlan(t, store, id, events.IssuePVCPending, "PersistentVolumeClaim", "scratch", diagnostic)
	h.createPV(t, "pv-"+h.ns, "scratch", "", "")
	h.waitEvent(t, 2*time.Minute, id, events.TransitionResolved)
}

func TestVolumesNamingMissingConfigMapAndSecretAreFailedMountUntilFixed(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.startStorageWatcher(t)
	store := h.startPlanner(t)
	cm := corev1.Volume{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
		LocalObjectReference: corev1.LocalObjectReference{Name: "missing-web-config"}}}}
	sec := corev1.Volume{Name: "tls", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "missing-api-tls"}}}
	h.create(t, withVolume(testDeployment("web", 2, nil, corev1.Container{Name: "app", Image: "nginx:1.27"}), cm))
	h.create(t, withVolume(testDeployment("api", 1, nil, corev1.Container{Name: "app", Image: "nginx:1.27"}), sec))

	for _, c := range []struct{ name, reason, msg string }{
		{"web", "missing_configmap", "volume cfg needs ConfigMap missing-web-config, which does not exist"},
		{"api", "missing_secret", "volume tls needs Secret missing-api-tls, which does not exist"},
	} {
		id := h.incidentID("Deployment", c.name, events.IssueFailedMount)
		in := h.waitIncident(t, 3*time.Minute, id, c.reason, func(in events.Incident) bool { return in.Reason == c.reason }).event.Incident
		if in.Owner.Kind != "Deployment" || in.Owner.Name != c.name || in.Container != "" || in.Severity != events.SeverityHigh ||
			!strings.Contains(in.Message, c.msg) || !strings.Contains(in.Message, "MountVolume.SetUp failed for volume") {
			t.Errorf("%s: incident = %+v", c.name, in)
		}
		// Creating configuration or credentials is a person's: diagnostic by design.
		wantPlan(t, store, id, events.IssueFailedMount, "Deployment", c.name, diagnostic)
	}
	// The web Deployment now mounts a ConfigMap that exists (the
	// convention reads the name only): its new pods run.
	if _, err := h.admin.AppsV1().Deployments(h.ns).Patch(ctx30(t), "web", types.StrategicMergePatchType,
		[]byte(`{"spec":{"template":{"spec":{"volumes":[{"name":"cfg","configMap":{"name":"web-config"}}]}}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	id := h.incidentID("Deployment", "web", events.IssueFailedMount)
	h.waitEvent(t, 3*time.Minute, id, events.TransitionResolved)
	detectedOnce(t, h.events(t), id)
}

func TestPodOfAMissingClaimIsPendingMissingPVCOnly(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.startStorageWatcher(t)
	store := h.startPlanner(t)
	h.create(t, withVolume(testDeployment("reports", 1, nil, corev1.Container{Name: "app", Image: "nginx:1.27"}), claimVolume("reports-data")))

	in := h.waitIncident(t, 3*time.Minute, h.incidentID("Deployment", "reports", events.IssuePending), "missing_pvc",
		func(in events.Incident) bool { return in.Reason == "missing_pvc" }).event.Incident
	if !strings.Contains(in.Message, `persistentvolumeclaim "reports-data" not found`) || in.PodCount != 1 {
		t.Errorf("incident = %+v", in)
	}
	h.neverAnnounced(t, h.incidentID("Deployment", "reports", events.IssuePVCPending), "a PVCPending for a claim that does not exist")
	wantPlan(t, store, in.ID, events.IssuePending, "Deployment", "reports", diagnostic)
}

func TestClaimBoundToAVolumeOnNoNodeIsPendingVolumeNodeAffinity(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.startStorageWatcher(t)
	store := h.startPlanner(t)
	empty := ""
	h.createPV(t, "pv-"+h.ns, "pinned", "", "node-gone-"+h.ns)
	h.createPVC(t, testPVC("pinned", &empty))
	h.create(t, withVolume(testDeployment("cache", 1, nil, corev1.Container{Name: "app", Image: "redis:7"}), claimVolume("pinned")))

	in, rep := h.waitPending(t, "cache", "volume_node_affinity")
	if n := nodesFor(rep, scheduling.KindVolumeNodeAffinity); n < 3 || !strings.Contains(in.Message, "node affinity") {
		t.Errorf("incident message %q: %d nodes refused for the volume's node affinity, want the 3 default nodes at least", in.Message, n)
	}
	h.neverAnnounced(t, h.incidentID("Deployment", "cache", events.IssuePVCPending), "a PVCPending for a bound claim")
	wantPlan(t, store, in.ID, events.IssuePending, "Deployment", "cache", diagnostic)
}

// No false alarms: a WaitForFirstConsumer claim nobody uses yet, a bound
// claim whose pod runs, and an optional ConfigMap volume that is missing.
func TestStorageThatIsFineIsNoIncident(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.startStorageWatcher(t)
	wffc := "local-" + h.ns
	h.createStorageClass(t, wffc, "kubernetes.io/no-provisioner", storagev1.VolumeBindingWaitForFirstConsumer)
	h.createPVC(t, testPVC("later", &wffc))
	empty := ""
	h.createPV(t, "pv-"+h.ns, "bound", "", "")
	h.createPVC(t, testPVC("bound", &empty))
	h.create(t, withVolume(testDeployment("db", 1, nil, corev1.Container{Name: "app", Image: "nginx:1.27"}), claimVolume("bound")))
	optional := true
	h.create(t, withVolume(testDeployment("web", 1, nil, corev1.Container{Name: "app", Image: "nginx:1.27"}),
		corev1.Volume{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: "missing-optional"}, Optional: &optional}}}))
	h.waitRolledOut(t, "db", 1)
	h.waitRolledOut(t, "web", 1)
	waitFor(t, time.Minute, "the WaitForFirstConsumer claim's event", func() (bool, string) {
		l, err := h.admin.CoreV1().Events(h.ns).List(ctx30(t), metav1.ListOptions{FieldSelector: "involvedObject.name=later"})
		return err == nil && len(l.Items) > 0 && l.Items[0].Reason == "WaitForFirstConsumer", fmt.Sprint(l, err)
	})
	// Past the pending grace (30 s, from the claims' creation), and some
	// evaluations later.
	time.Sleep(DefaultClassifyOptions().PendingGrace + 5*time.Second)
	if all := h.events(t); len(all) != 0 {
		t.Errorf("announcements for healthy storage: %s", summary(all))
	}
	if resp, err := h.analyze(events.AnalyzeRequest{}); err != nil || len(resp.Incidents) != 0 {
		t.Errorf("analyze = %+v, %v; want no incident", resp, err)
	}
}

// An external provisioner that fails says so in a Warning
// ProvisioningFailed event on the claim (the sandbox runs none: the test
// posts the event as one would).
func TestClaimWhoseProvisionerFailsIsPVCPendingWithItsMessage(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.startStorageWatcher(t)
	store := h.startPlanner(t)
	class := "broken-" + h.ns
	h.createStorageClass(t, class, "example.com/broken", storagev1.VolumeBindingImmediate)
	h.createPVC(t, testPVC("data", &class))
	h.create(t, withVolume(testDeployment("db", 1, nil, corev1.Container{Name: "app", Image: "postgres:17"}), claimVolume("data")))
	pvc, err := h.admin.CoreV1().PersistentVolumeClaims(h.ns).Get(ctx30(t), "data", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	msg := fmt.Sprintf(`failed to provision volume with StorageClass %q: rpc error: code = ResourceExhausted desc = volume quota exceeded`, class)
	now := metav1.NewTime(time.Now())
	ev := &corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: "data.provisioning-failed"},
		InvolvedObject: corev1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1", Namespace: h.ns, Name: "data", UID: pvc.UID},
		Type:           corev1.EventTypeWarning, Reason: "ProvisioningFailed", Message: msg,
		Source: corev1.EventSource{Component: "example.com/broken_csi-provisioner-0"}, FirstTimestamp: now, LastTimestamp: now, Count: 1}
	if _, err := h.admin.CoreV1().Events(h.ns).Create(ctx30(t), ev, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	id := h.incidentID("Deployment", "db", events.IssuePVCPending)
	in := h.waitIncident(t, 3*time.Minute, id, "provisioning_failed", func(in events.Incident) bool {
		return in.Reason == "provisioning_failed"
	}).event.Incident
	if in.Owner.Kind != "Deployment" || in.PodCount != 1 ||
		!strings.Contains(in.Message, fmt.Sprintf(`claim data (1Gi) of StorageClass %q: provisioner example.com/broken failed: `, class)+msg) {
		t.Errorf("incident = %+v", in)
	}
	h.neverAnnounced(t, h.incidentID("Deployment", "db", events.IssuePending), "the pods' Pending")
	wantPlan(t, store, id, events.IssuePVCPending, "Deployment", "db", diagnostic)
}

// A WaitForFirstConsumer claim is no incident alone (see
// TestStorageThatIsFineIsNoIncident); once a pod waits for it and no
// volume can ever be provisioned for it (a class without provisioner, no
// PersistentVolume), it is.
func TestWaitForFirstConsumerClaimIsPVCPendingOnceAPodWaits(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.startStorageWatcher(t)
	store := h.startPlanner(t)
	class := "local-" + h.ns
	h.createStorageClass(t, class, "kubernetes.io/no-provisioner", storagev1.VolumeBindingWaitForFirstConsumer)
	h.createPVC(t, testPVC("data", &class))
	h.create(t, withVolume(testDeployment("db", 1, nil, corev1.Container{Name: "app", Image: "postgres:17"}), claimVolume("data")))

	id := h.incidentID("Deployment", "db", events.IssuePVCPending)
	in := h.waitIncident(t, 3*time.Minute, id, "no_matching_volume", func(in events.Incident) bool {
		return in.Reason == "no_matching_volume"
	}).event.Incident
	if in.Owner.Kind != "Deployment" || in.PodCount != 1 ||
		!strings.Contains(in.Message, fmt.Sprintf(`claim data (1Gi) of StorageClass %q (kubernetes.io/no-provisioner: volumes are created by hand) matches no available PersistentVolume`, class)) {
		t.Errorf("incident = %+v", in)
	}
	h.neverAnnounced(t, h.incidentID("Deployment", "db", events.IssuePending), "the pod's Pending (didn't find available persistent volumes to bind)")
	h.neverAnnounced(t, h.incidentID("PersistentVolumeClaim", "data", events.IssuePVCPending), "the claim's own incident")
	wantPlan(t, store, id, events.IssuePVCPending, "Deployment", "db", diagnostic)
}
