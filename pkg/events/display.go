package events

// Spelling objects for people. ClusterScopeNamespace is a token for
// subjects, incident ids and plans (they need a namespace); a person
// reads "Node worker-3", not "Node _cluster/worker-3". JSON fields keep
// the token: programs filter on it.

// DisplayPath is "namespace/name", or "name" when the object is
// cluster-scoped (namespace empty or ClusterScopeNamespace).
func DisplayPath(namespace, name string) string {
	if namespace == "" || namespace == ClusterScopeNamespace {
		return name
	}
	return namespace + "/" + name
}

// DisplayObject is "Kind namespace/name", or "Kind name" when the object
// is cluster-scoped ("Node worker-3").
func DisplayObject(kind, namespace, name string) string {
	return kind + " " + DisplayPath(namespace, name)
}

// DisplayRef is "Kind/namespace/name", or "Kind/name" when the object is
// cluster-scoped ("Node/worker-3"), as kubectl spells a resource.
func DisplayRef(kind, namespace, name string) string {
	return kind + "/" + DisplayPath(namespace, name)
}
