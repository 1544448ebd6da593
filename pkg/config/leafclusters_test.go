package config

import (
	"strings"
	"testing"
)

func TestLeafClustersAreClusterNames(t *testing.T) {
	c, err := Load(strings.NewReader("nats:\n  leaf_clusters: [prod-eu, edge_2]\n"), nil)
	if err != nil || strings.Join(c.NATS.LeafClusters, ",") != "prod-eu,edge_2" {
		t.Fatalf("Load: %+v %v", c.NATS.LeafClusters, err)
	}
	_, err = Load(strings.NewReader("nats:\n  leaf_clusters: [ok, \"Bad.Name\"]\n"), nil)
	if err == nil || !strings.Contains(err.Error(), "nats.leaf_clusters[1]") {
		t.Errorf("a bad leaf cluster name: %v, want an error naming nats.leaf_clusters[1]", err)
	}
}
