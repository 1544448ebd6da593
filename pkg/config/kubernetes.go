package config

import "fmt"

// Kubernetes selects the cluster and the scope kaar watches.
type Kubernetes struct {
	// Kubeconfig is the kubeconfig file; empty means $KUBECONFIG, then
	// ~/.kube/config, then in-cluster configuration.
	Kubeconfig string `yaml:"kubeconfig"`
	Context    string `yaml:"context"`
	// Namespace limits watching to one namespace; empty watches all.
	Namespace string `yaml:"namespace"`
	// ClusterName names the cluster on the bus and in every event. It must
	// be a NATS subject token: lower-case letters, digits, '-' and '_'.
	ClusterName string `yaml:"cluster_name"`
	// AdditionalClusters are more clusters this process watches, plans for
	// and remediates, each with its own kubeconfig/context, namespace and
	// cluster_name (kaar serve, kaar watcher|planner|executor). The MCP
	// gateway and the notifier of the process serve the cluster above;
	// reach the others with `kaar mcp --stdio --cluster-name NAME`.
	AdditionalClusters []Cluster `yaml:"additional_clusters"`
}

// Cluster is one additional cluster of Kubernetes.AdditionalClusters.
type Cluster struct {
	Kubeconfig  string `yaml:"kubeconfig"`
	Context     string `yaml:"context"`
	Namespace   string `yaml:"namespace"`
	ClusterName string `yaml:"cluster_name"`
}

// Clusters returns one configuration per watched cluster: c itself, then
// c with the kubernetes section of each additional cluster.
func (c Config) Clusters() []Config {
	out := []Config{c}
	for _, a := range c.Kubernetes.AdditionalClusters {
		cc := c
		cc.Kubernetes = Kubernetes{Kubeconfig: a.Kubeconfig, Context: a.Context, Namespace: a.Namespace, ClusterName: a.ClusterName}
		out = append(out, cc)
	}
	return out
}

func (k Kubernetes) validate() error {
	var p problems
	p.add(checkClusterName("kubernetes.cluster_name", k.ClusterName))
	p.add(checkNamespace("kubernetes.namespace", k.Namespace))
	seen := map[string]string{k.ClusterName: "kubernetes.cluster_name"}
	for i, a := range k.AdditionalClusters {
		key := fmt.Sprintf("kubernetes.additional_clusters[%d]", i)
		if err := checkClusterName(key+".cluster_name", a.ClusterName); err != nil {
			p.add(err)
		} else if prev := seen[a.ClusterName]; prev != "" {
			p.addf(key+".cluster_name", "%q is already the name of %s: every cluster needs its own", a.ClusterName, prev)
		} else {
			seen[a.ClusterName] = key + ".cluster_name"
		}
		p.add(checkNamespace(key+".namespace", a.Namespace))
	}
	return p.join()
}
