package watcher

import (
	"testing"

	"github.com/kaar-dev/kaar/pkg/events"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
)

// Until the LimitRange and PodDisruptionBudget caches are synced (Run
// waits for them a few seconds only), a container is not reported for
// lacking what a LimitRange not yet read may give it, and a budget not
// yet read is not taken for gone: both are looked at again a second
// later. The other risks are reported meanwhile.
func TestConfigRisksWaitForTheirCaches(t *testing.T) {
	cs := fake.NewClientset()
	s, err := New(Config{Cluster: "unit", Warnings: WarningOptions{Enabled: true}}, Deps{NATS: embeddedBus(t, false), Kube: cs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.queue.ShutDown)
	f := informers.NewSharedInformerFactory(cs, 0) // never started: never synced
	s.risks.limits = f.Core().V1().LimitRanges().Informer()
	s.risks.pdbs = f.Policy().V1().PodDisruptionBudgets().Informer()
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"}, Spec: appsv1.DeploymentSpec{Replicas: ptr(int32(1)),
		Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "web:1"}}}}}}
	if err := s.cl.deploys.GetIndexer().Add(d); err != nil {
		t.Fatal(err)
	}
	obs, recheck := s.configRiskObs(ownerKey{Namespace: "shop", Kind: "Deployment", Name: "web"}, t0)
	var types []events.IssueType
	for _, o := range obs {
		for _, iss := range o.Issues {
			types = append(types, iss.Type)
		}
	}
	if len(types) != 1 || types[0] != events.IssueMissingProbes || !recheck.Equal(t0.Add(1e9)) {
		t.Errorf("workload with the LimitRanges not read yet: %v, recheck %v; want MissingProbes alone and a look again a second later", types, recheck)
	}
	if obs, recheck := s.configRiskObs(ownerKey{Namespace: "shop", Kind: kindPDB, Name: "web"}, t0); len(obs) != 0 || !recheck.Equal(t0.Add(1e9)) {
		t.Errorf("budget not read yet: %v, recheck %v; want a look again a second later", obs, recheck)
	}
}
