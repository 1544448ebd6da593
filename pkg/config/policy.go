package config

import "fmt"

// Policy says where kaar may act.
type Policy struct {
	// ProtectedNamespaces are still analysed but only get diagnostic plans.
	ProtectedNamespaces []string `yaml:"protected_namespaces"`
	// IncludeNamespaces, when set, limits detection to these namespaces.
	IncludeNamespaces []string `yaml:"include_namespaces"`
	// ExcludeNamespaces are never analysed.
	ExcludeNamespaces []string `yaml:"exclude_namespaces"`
	// GitOpsManaged is what plans do for a workload managed by Argo CD,
	// Flux or Helm: "flag" proposes the fix and says it belongs in Git or
	// the chart; "diagnostic_only" proposes no change in the cluster.
	GitOpsManaged string `yaml:"gitops_managed"`
}

// GitOpsModes are the allowed values of policy.gitops_managed.
var GitOpsModes = []string{"flag", "diagnostic_only"}

func (pol Policy) validate() error {
	var p problems
	for _, l := range []struct {
		key string
		nss []string
	}{
		{"policy.protected_namespaces", pol.ProtectedNamespaces},
		{"policy.include_namespaces", pol.IncludeNamespaces},
		{"policy.exclude_namespaces", pol.ExcludeNamespaces},
	} {
		for i, ns := range l.nss {
			if !validDNSLabel(ns) {
				p.addf(fmt.Sprintf("%s[%d]", l.key, i), "%q is not a valid namespace name", ns)
			}
		}
	}
	p.add(oneOf("policy.gitops_managed", pol.GitOpsManaged, GitOpsModes...))
	return p.join()
}
