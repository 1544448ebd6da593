package planner

import rbacv1 "k8s.io/api/rbac/v1"

// RBACRules are the Kubernetes permissions the planner needs, for a
// ClusterRole bound to its identity. It reads workloads, pods, their logs,
// events and nodes, Services and their EndpointSlices, Ingresses and IngressClasses, the ResourceQuotas, LimitRanges and namespace labels
// that refuse pods, and never Secrets. patch and delete are there only
// for the server-side dry runs: the API server authorizes a dry run like
// the real request. To make sure the planner's identity cannot write for
// real, add an admission policy (a ValidatingAdmissionPolicy with
// `request.dryRun == true` for that user) in production.
func RBACRules() []rbacv1.PolicyRule {
	read := []string{"get", "list"}
	return []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods", "events", "nodes"}, Verbs: read},
		{APIGroups: []string{""}, Resources: []string{"pods/log"}, Verbs: []string{"get"}},
		{APIGroups: []string{"apps"}, Resources: []string{"deployments", "statefulsets", "daemonsets", "replicasets"}, Verbs: read},
		{APIGroups: []string{"batch"}, Resources: []string{"jobs", "cronjobs"}, Verbs: read},
		// FailedCreate evidence: the quota, LimitRanges and Pod Security
		// labels a controller's message names (kaar never changes them).
		{APIGroups: []string{""}, Resources: []string{"resourcequotas", "namespaces"}, Verbs: []string{"get"}},
		{APIGroups: []string{""}, Resources: []string{"limitranges"}, Verbs: []string{"list"}},
		// A Service that routes to no ready pod: the Service and its
		// EndpointSlices.
		{APIGroups: []string{""}, Resources: []string{"services"}, Verbs: []string{"get"}},
		{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"list"}},
		// An Ingress that routes nowhere: the Ingress (its Services
		// above) and the IngressClasses.
		{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"ingresses"}, Verbs: []string{"get"}},
		{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"ingressclasses"}, Verbs: []string{"list"}},
		// An HPA that cannot compute its metric or sits at its maximum
		// (nodes are read above, their pods with the pods).
		{APIGroups: []string{"autoscaling"}, Resources: []string{"horizontalpodautoscalers"}, Verbs: []string{"get"}},
		// Storage: the claims a pod waits for, their PersistentVolumes
		// (node affinity) and the StorageClasses.
		{APIGroups: []string{""}, Resources: []string{"persistentvolumeclaims"}, Verbs: read},
		{APIGroups: []string{""}, Resources: []string{"persistentvolumes"}, Verbs: []string{"get"}},
		{APIGroups: []string{"storage.k8s.io"}, Resources: []string{"storageclasses"}, Verbs: read},
		// Warnings planned on request: the PodDisruptionBudget or the
		// cert-manager Certificate a warning is reported on (quotas and
		// LimitRanges are read above). Read only.
		{APIGroups: []string{"policy"}, Resources: []string{"poddisruptionbudgets"}, Verbs: []string{"get"}},
		{APIGroups: []string{"cert-manager.io"}, Resources: []string{"certificates"}, Verbs: []string{"get"}},
		// Dry runs of the mutating steps.
		{APIGroups: []string{"apps"}, Resources: []string{"deployments", "statefulsets", "daemonsets"}, Verbs: []string{"patch"}},
		{APIGroups: []string{"batch"}, Resources: []string{"cronjobs"}, Verbs: []string{"patch"}},
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"patch", "delete"}},
		{APIGroups: []string{""}, Resources: []string{"services"}, Verbs: []string{"patch"}},
	}
}
