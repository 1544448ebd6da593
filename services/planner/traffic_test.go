package planner

import (
	"context"
	"slices"
	"testing"

	"github.com/kaar-dev/kaar/pkg/events"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// A ServiceUnavailable incident: gather reads the Service, the pods its
// selector matches (not the others), its EndpointSlices (not another
// Service's) and the workloads whose pod labels share a selector key; an
// EndpointSlice list RBAC forbids is evidence, not an error.
func TestGatherServiceReadsWhatItRoutesTo(t *testing.T) {
	cfg := testConfig(t)
	in0 := trafficInput(t, cfg, trafficNoReadyEndpoints, "")
	svc := in0.Traffic.Service.DeepCopy()
	other := in0.Traffic.Slices[0].DeepCopy()
	other.Name, other.Labels = "api-x1", map[string]string{"kubernetes.io/service-name": "api"}
	stranger := in0.Traffic.Pods[0].DeepCopy()
	stranger.Name, stranger.Labels = "api-1", map[string]string{"app": "api"}
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "apps"}, Spec: appsv1.DeploymentSpec{Replicas: new(int32(2)),
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web-v2"}}}}}
	unrelated := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "apps"},
		Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"tier": "db"}}}}}
	objs := []runtime.Object{svc, in0.Traffic.Slices[0].DeepCopy(), other, in0.Traffic.Pods[0].DeepCopy(), in0.Traffic.Pods[1].DeepCopy(), stranger, dep, unrelated}
	r := reader{kube: fake.NewClientset(objs...), cfg: cfg}
	in, err := r.gather(context.Background(), in0.Incident)
	if err != nil {
		t.Fatal(err)
	}
	tr := in.Traffic
	if in.Owner.Ref.Kind != KindService || tr == nil || tr.Service == nil || len(tr.Errs) != 0 {
		t.Fatalf("owner %+v, traffic %+v", in.Owner.Ref, tr)
	}
	if len(tr.Pods) != 2 || tr.Pods[0].Name != "web-5d4f-a" || len(tr.Slices) != 1 || tr.Slices[0].Name != "web-x1" {
		t.Errorf("pods %d, slices %d: want the Service's 2 pods and 1 slice", len(tr.Pods), len(tr.Slices))
	}
	if len(tr.Near) != 1 || tr.Near[0].Ref != "deployment/web" || !slices.Equal(tr.Near[0].Differs, []string{"app"}) {
		t.Errorf("near %+v, want deployment/web differing on app", tr.Near)
	}
	ev := collectEvidence(in)
	if e := ev[len(ev)-1]; e.Kind != events.EvidenceTraffic || e.Data["ready_endpoints"] != "0" || e.Data["selected_pods"] != "2" {
		t.Errorf("traffic evidence %+v", e)
	}

	cs := fake.NewClientset(objs...)
	cs.PrependReactor("list", "endpointslices", func(a k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, forbiddenErr("endpointslices", "")
	})
	r = reader{kube: cs, cfg: cfg}
	in, err = r.gather(context.Background(), in0.Incident)
	if err != nil {
		t.Fatal(err)
	}
	if len(in.Traffic.Errs) != 1 || len(in.Traffic.Slices) != 0 {
		t.Errorf("errs %v: want the forbidden EndpointSlices said", in.Traffic.Errs)
	}
}
