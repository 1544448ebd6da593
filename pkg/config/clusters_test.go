package config

import (
	"strings"
	"testing"
)

func TestAdditionalClusters(t *testing.T) {
	c, err := Load(strings.NewReader(`kubernetes:
  cluster_name: prod-eu
  namespace: shop
  additional_clusters:
    - {cluster_name: prod-us, context: us, namespace: shop}
    - {cluster_name: staging, kubeconfig: /etc/kaar/staging.kubeconfig}
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	cs := c.Clusters()
	if len(cs) != 3 || cs[0].Kubernetes.ClusterName != "prod-eu" || cs[1].Kubernetes.Context != "us" ||
		cs[2].Kubernetes.Kubeconfig != "/etc/kaar/staging.kubeconfig" || cs[2].Kubernetes.Namespace != "" || cs[1].Server != c.Server {
		t.Fatalf("clusters %+v", cs)
	}
	for _, tc := range []struct{ yaml, key string }{
		{"kubernetes: {additional_clusters: [{cluster_name: default}]}", "kubernetes.additional_clusters[0].cluster_name"},
		{"kubernetes: {additional_clusters: [{cluster_name: a}, {cluster_name: a}]}", "kubernetes.additional_clusters[1].cluster_name"},
		{"kubernetes: {additional_clusters: [{cluster_name: Bad.Name}]}", "kubernetes.additional_clusters[0].cluster_name"},
		{"kubernetes: {additional_clusters: [{cluster_name: b, namespace: Not_A_NS}]}", "kubernetes.additional_clusters[0].namespace"},
		{"kubernetes: {additional_clusters: [{cluster_name: b, contxt: x}]}", "kubernetes.additional_clusters"},
	} {
		if _, err := Load(strings.NewReader(tc.yaml), nil); err == nil || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("%s: %v, want an error naming %s", tc.yaml, err, tc.key)
		}
	}
}
