package planner

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// gather reads what a storage plan quotes: the claims the pods use (a
// StatefulSet's named after its pod), their volumes and events, the
// StorageClasses; for a claim no pod uses, the claim itself.
func TestGatherReadsStorage(t *testing.T) {
	ctx := context.Background()
	fast := "fast"
	claim := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "data-db-0", Namespace: "apps", UID: "pvc-uid"},
		Spec: corev1.PersistentVolumeClaimSpec{StorageClassName: &fast,
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}},
		Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimPending}}
	lone := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "scratch", Namespace: "apps", UID: "lone-uid"},
		Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimPending}}
	labels := map[string]string{"app": "db"}
	sts := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "apps", UID: "sts-uid"},
		Spec: appsv1.StatefulSetSpec{Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template:             corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "db", Image: "db:1"}}}},
			VolumeClaimTemplates: []corev1.PersistentVolumeClaim{{ObjectMeta: metav1.ObjectMeta{Name: "data"}}}}}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "db-0", Namespace: "apps", UID: "pod-uid", Labels: labels,
		OwnerReferences: []metav1.OwnerReference{{Kind: KindStatefulSet, Name: "db", UID: "sts-uid", Controller: new(true)}}},
		Spec: corev1.PodSpec{Containers: sts.Spec.Template.Spec.Containers, Volumes: []corev1.Volume{{Name: "data",
			VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data-db-0"}}}}},
		Status: corev1.PodStatus{Phase: corev1.PodPending}}
	ev := &corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: "data-db-0.1", Namespace: "apps"}, Type: corev1.EventTypeWarning, Reason: "ProvisioningFailed",
		Message: `storageclass.storage.k8s.io "fast" not found`, InvolvedObject: corev1.ObjectReference{Kind: KindPersistentVolumeClaim, Name: "data-db-0", Namespace: "apps"},
		LastTimestamp: metav1.NewTime(time.Now())}
	std := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "standard", Annotations: map[string]string{annotationDefaultStorageClass: "true"}}, Provisioner: "x"}
	r := reader{kube: fake.NewClientset(claim, lone, sts, pod, ev, std), cfg: testConfig(t)}

	inc := events.Incident{ID: "0123456789abcdef", Cluster: testCluster, Namespace: "apps", Owner: events.ObjectRef{Kind: KindStatefulSet, Namespace: "apps", Name: "db"},
		Type: events.IssuePVCPending, Reason: storageClassMissing, Pods: []string{"db-0"}, PodCount: 1, LastSeen: time.Now()}
	in, err := r.gather(ctx, inc)
	if err != nil {
		t.Fatal(err)
	}
	s := in.Storage
	if s == nil || len(s.Claims) != 1 || s.Claims[0].Claim == nil || s.Claims[0].Claim.UID != "pvc-uid" || s.Claims[0].Where != "volume data" ||
		len(s.Claims[0].Events) != 1 || len(s.Classes) != 1 || s.defaultClassName() != "standard" || len(s.Errs) != 0 {
		t.Fatalf("storage read = %+v", s)
	}
	p := draftPlan(in)
	if len(p.Human) == 0 || !strings.Contains(p.Human[0].Title, `asks for StorageClass fast, which does not exist; the cluster's classes: standard (default)`) ||
		!strings.Contains(p.Human[1].Title, "nor a StatefulSet's volumeClaimTemplates") {
		t.Errorf("steps = %+v", p.Human)
	}

	inc.Owner, inc.Pods, inc.PodCount, inc.Reason = events.ObjectRef{Kind: KindPersistentVolumeClaim, Namespace: "apps", Name: "scratch"}, nil, 0, storageNoClass
	in, err = r.gather(ctx, inc)
	if err != nil {
		t.Fatal(err)
	}
	if in.Owner.Ref.Kind != KindPersistentVolumeClaim || in.Storage == nil || len(in.Storage.Claims) != 1 || in.Storage.Claims[0].Claim.UID != "lone-uid" {
		t.Fatalf("owner %+v, storage read = %+v", in.Owner.Ref, in.Storage)
	}
}

// Without a StatefulSet's pod, its claims are named after the template and
// its first replica.
func TestTemplateClaimsOfAStatefulSetWithoutPods(t *testing.T) {
	sts := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "apps"},
		Spec: appsv1.StatefulSetSpec{VolumeClaimTemplates: []corev1.PersistentVolumeClaim{{ObjectMeta: metav1.ObjectMeta{Name: "data"}}}}}
	w, err := workloadOf(sts)
	if err != nil {
		t.Fatal(err)
	}
	got := templateClaims(planInput{Owner: w})
	if len(got) != 1 || got[0].Name != "data-db-0" || got[0].Where != "the volumeClaimTemplate data" {
		t.Errorf("templateClaims = %+v", got)
	}
}

func TestNodeMatches(t *testing.T) {
	node := corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{"topology.kubernetes.io/zone": "a"}}}
	sel := func(terms ...corev1.NodeSelectorTerm) *corev1.NodeSelector {
		return &corev1.NodeSelector{NodeSelectorTerms: terms}
	}
	expr := func(key string, op corev1.NodeSelectorOperator, v ...string) corev1.NodeSelectorTerm {
		return corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: key, Operator: op, Values: v}}}
	}
	for _, c := range []struct {
		sel  *corev1.NodeSelector
		want bool
	}{
		{sel(expr("topology.kubernetes.io/zone", corev1.NodeSelectorOpIn, "a", "b")), true},
		{sel(expr("topology.kubernetes.io/zone", corev1.NodeSelectorOpIn, "b")), false},
		{sel(expr("topology.kubernetes.io/zone", corev1.NodeSelectorOpIn, "b"), expr("topology.kubernetes.io/zone", corev1.NodeSelectorOpExists)), true},
		{sel(corev1.NodeSelectorTerm{MatchFields: []corev1.NodeSelectorRequirement{{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{"n1"}}}}), true},
		{sel(corev1.NodeSelectorTerm{}), false},
	} {
		if got := nodeMatches(&node, c.sel); got != c.want {
			t.Errorf("nodeMatches(%s) = %v, want %v", nodeSelectorString(c.sel), got, c.want)
		}
	}
}
