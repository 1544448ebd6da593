package planner

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/kaar-dev/kaar/pkg/sandbox"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Storage plans on the sandbox's real PV controller, scheduler and kwok
// FailedMount convention, read by the planner with its own least
// privilege (RBACRules): diagnostic plans that name the claim, the class
// it asks for and the missing ConfigMap, and evidence the planner could
// read.
func TestStoragePlansWithLeastPrivilege(t *testing.T) {
	h := newHarness(t, true)
	h.asLeastPrivilegedPlanner(t)
	h.startPlanner(nil)

	noForbidden := func(t *testing.T, p events.Plan) {
		t.Helper()
		for _, e := range p.Evidence {
			for _, l := range e.Lines {
				if strings.Contains(strings.ToLower(l), "forbidden") {
					t.Errorf("evidence %s: %s", e.Kind, l)
				}
			}
		}
	}
	storageIncident := func(dep *appsv1.Deployment, typ events.IssueType, reason string, pods []corev1.Pod) events.Incident {
		inc := h.incident(dep, typ, reason, pods)
		inc.Container, inc.ExitCode, inc.RestartCount = "", nil, 0
		inc.ID = events.IncidentID(testCluster, h.ns, KindDeployment, dep.Name, "", typ)
		return inc
	}

	t.Run("claim of a missing class", func(t *testing.T) {
		class := "fast-" + h.ns
		pvc := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "data"}, Spec: corev1.PersistentVolumeClaimSpec{
			StorageClassName: &class, AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}}}
		if _, err := h.kube.CoreV1().PersistentVolumeClaims(h.ns).Create(h.ctx(10*time.Second), pvc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		h.deployment("db", "postgres:17", 1, nil, "", func(d *appsv1.Deployment) {
			d.Spec.Template.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}}}
		})
		pending := h.waitPods("db", "Pending", func(p *corev1.Pod) bool { return len(p.Status.Conditions) > 0 })
		// The PV controller's event is what the plan quotes.
		eventually(t, time.Minute, "the claim's ProvisioningFailed event", func() (bool, string) {
			l, err := h.kube.CoreV1().Events(h.ns).List(h.ctx(10*time.Second), metav1.ListOptions{FieldSelector: "involvedObject.name=data"})
			return err == nil && len(l.Items) > 0 && l.Items[0].Reason == "ProvisioningFailed", fmt.Sprint(l, err)
		})
		inc := storageIncident(h.getDeployment("db"), events.IssuePVCPending, storageClassMissing, pending)
		inc.Message = fmt.Sprintf("claim data (1Gi) asks for StorageClass %q, which does not exist: nothing can provision it", class)
		h.waitHandled(h.publishIssue(events.TransitionDetected, inc, 1, ""))
		p := h.proposed(inc.ID)
		if !p.DiagnosticOnly || len(p.Steps) != 3 ||
			!strings.Contains(p.Steps[0].Title, fmt.Sprintf("Claim data (volume data of deployment/db) asks for StorageClass %s, which does not exist", class)) ||
			p.Steps[0].Target.Kind != KindPersistentVolumeClaim || p.Steps[0].Kubectl != "kubectl get storageclass" {
			t.Errorf("plan %s", mustJSON(p))
		}
		found := false
		for _, e := range p.Evidence {
			for _, l := range e.Lines {
				found = found || e.Kind == events.EvidenceStorage && strings.Contains(l, `ProvisioningFailed: storageclass.storage.k8s.io "`+class+`" not found`)
			}
		}
		if !found {
			t.Errorf("no storage evidence quoting the PV controller's event: %s", mustJSON(p.Evidence))
		}
		noForbidden(t, p)
	})

	t.Run("volume on no node", func(t *testing.T) {
		pvName := "pv-" + h.ns
		pv := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: pvName}, Spec: corev1.PersistentVolumeSpec{
			Capacity:               corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
			AccessModes:            []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeSource: corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/tmp/" + pvName}},
			ClaimRef:               &corev1.ObjectReference{Namespace: h.ns, Name: "pinned"},
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "kubernetes.io/hostname", Operator: corev1.NodeSelectorOpIn, Values: []string{"node-gone"}}}}}}}}}
		if _, err := h.kube.CoreV1().PersistentVolumes().Create(h.ctx(10*time.Second), pv, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_ = h.kube.CoreV1().PersistentVolumes().Delete(ctx, pvName, metav1.DeleteOptions{})
		})
		empty := ""
		pvc := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "pinned"}, Spec: corev1.PersistentVolumeClaimSpec{
			StorageClassName: &empty, AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}}}
		if _, err := h.kube.CoreV1().PersistentVolumeClaims(h.ns).Create(h.ctx(10*time.Second), pvc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		h.deployment("cache", "redis:7", 1, nil, "", func(d *appsv1.Deployment) {
			d.Spec.Template.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "pinned"}}}}
		})
		pending := h.waitPods("cache", "Pending", func(p *corev1.Pod) bool {
			return strings.Contains(fmt.Sprint(p.Status.Conditions), "PersistentVolume's node affinity")
		})
		inc := storageIncident(h.getDeployment("cache"), events.IssuePending, "volume_node_affinity", pending)
		h.waitHandled(h.publishIssue(events.TransitionDetected, inc, 1, ""))
		p := h.proposed(inc.ID)
		want := fmt.Sprintf("PersistentVolume %s of claim pinned may only be used on nodes where kubernetes.io/hostname in (node-gone)", pvName)
		if !p.DiagnosticOnly || len(p.Steps) == 0 || !strings.Contains(p.Steps[0].Title, want) || !strings.Contains(p.Steps[0].Title, "none matches") {
			t.Errorf("plan %s", mustJSON(p))
		}
		noForbidden(t, p)
	})

	t.Run("volume of a missing configmap", func(t *testing.T) {
		h.deployment("web", "nginx:1.27", 1, nil, "", func(d *appsv1.Deployment) {
			d.Spec.Template.Spec.Volumes = []corev1.Volume{{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: sandbox.MissingRefPrefix + "web-config"}}}}}
		})
		creating := h.waitPods("web", "ContainerCreating", nil)
		msg := `MountVolume.SetUp failed for volume "cfg" : configmap "missing-web-config" not found`
		inc := storageIncident(h.getDeployment("web"), events.IssueFailedMount, mountMissingConfigMap, creating)
		inc.Message = "volume cfg needs ConfigMap missing-web-config, which does not exist: the containers are not created (" + msg + ")"
		h.waitHandled(h.publishIssue(events.TransitionDetected, inc, 1, ""))
		p := h.proposed(inc.ID)
		if !p.DiagnosticOnly || len(p.Steps) != 3 ||
			!strings.Contains(p.Steps[0].Title, "ConfigMap missing-web-config, which volume cfg of deployment/web needs, does not exist") ||
			p.Steps[0].Kubectl != "kubectl -n "+h.ns+" get configmap missing-web-config" {
			t.Errorf("plan %s", mustJSON(p))
		}
		noForbidden(t, p)
	})
}
