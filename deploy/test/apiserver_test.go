package deploytest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/sandbox"
	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
)

// clusterClients is the sandbox's admin access, typed and dynamic.
type clusterClients struct {
	cfg    *rest.Config
	cs     kubernetes.Interface
	dyn    dynamic.Interface
	mapper meta.RESTMapper
}

func clients(t *testing.T) clusterClients {
	t.Helper()
	c := sandbox.ForTest(t)
	cfg := c.RESTConfig()
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	disc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return clusterClients{cfg: cfg, cs: c.Clientset(), dyn: dyn,
		mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disc))}
}

// resource is the dynamic client for obj's kind, or an error when the API
// server does not serve it (a CRD that is not installed).
func (c clusterClients) resource(obj *unstructured.Unstructured) (dynamic.ResourceInterface, error) {
	gvk := obj.GroupVersionKind()
	m, err := c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return nil, err
	}
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		return c.dyn.Resource(m.Resource).Namespace(obj.GetNamespace()), nil
	}
	return c.dyn.Resource(m.Resource), nil
}

// uniqueRelease is a release name of its own for one test, so cluster-scoped
// objects (ClusterRoles, policies) of parallel runs never collide.
func uniqueRelease(t *testing.T) string {
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "kaar-t" + hex.EncodeToString(b)
}

// restrictedNamespace is a fresh namespace that enforces the restricted Pod
// Security Standard.
func restrictedNamespace(t *testing.T, c clusterClients) string {
	t.Helper()
	ns := sandbox.NewNamespace(t, c.cs)
	patch := []byte(`{"metadata":{"labels":{"pod-security.kubernetes.io/enforce":"restricted","pod-security.kubernetes.io/enforce-version":"latest"}}}`)
	if _, err := c.cs.CoreV1().Namespaces().Patch(context.Background(), ns, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	return ns
}

// TestChartObjectsAcceptedByAPIServer creates every rendered object with a
// server-side dry run (strict field validation) on the sandbox's real
// kube-apiserver, then dry-runs a Pod from every pod template in a
// namespace that enforces the restricted Pod Security Standard. Objects of
// a kind the cluster does not serve (ServiceMonitor without the
// prometheus-operator CRD) are only accepted when the values enabled them.
func TestChartObjectsAcceptedByAPIServer(t *testing.T) {
	t.Parallel()
	c := clients(t)
	for _, tc := range chartCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			ns := restrictedNamespace(t, c)
			dryRunObjects(t, c, ns, render(t, uniqueRelease(t), ns, tc.args...), tc.monitor)
		})
	}
}

// TestRenderedManifestsAcceptedByAPIServer dry-runs the committed
// deploy/manifests/kaar.yaml (moved into a namespace of the test's own;
// its Namespace object is checked for the restricted label by
// TestRenderedManifestsAreUpToDate) as TestChartObjectsAcceptedByAPIServer
// does, and checks it needs exactly the three Secrets its header tells to
// create (the gateway's tokens, the NATS passwords, the signing keys).
func TestRenderedManifestsAcceptedByAPIServer(t *testing.T) {
	t.Parallel()
	c := clients(t)
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "manifests", "kaar.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	ns := restrictedNamespace(t, c)
	var objs []*unstructured.Unstructured
	secrets := map[string]bool{}
	for _, o := range decodeObjects(t, string(b)) {
		if o.GetKind() == "Namespace" {
			continue
		}
		if o.GetNamespace() != "" {
			o.SetNamespace(ns)
		}
		objs = append(objs, o)
		if o.GetKind() == "Deployment" || o.GetKind() == "StatefulSet" {
			for _, name := range secretNames(t, o) {
				secrets[name] = true
			}
		}
	}
	for _, want := range []string{"kaar-mcp-tokens", "kaar-nats-users", "kaar-signing-keys"} {
		if !secrets[want] {
			t.Errorf("the manifests do not use Secret %s", want)
		}
		if !strings.Contains(string(b), "create secret generic "+want) {
			t.Errorf("the manifests' header does not say how to create Secret %s", want)
		}
		delete(secrets, want)
	}
	if len(secrets) > 0 {
		t.Errorf("the manifests use Secrets %v that the header does not mention", secrets)
	}
	dryRunObjects(t, c, ns, objs, false)
}

// secretNames are the Secrets a workload's pod template refers to
// (volumes and secretKeyRefs).
func secretNames(t *testing.T, workload *unstructured.Unstructured) []string {
	t.Helper()
	pod := podFromTemplate(t, workload)
	var out []string
	for _, v := range pod.Spec.Volumes {
		if v.Secret != nil {
			out = append(out, v.Secret.SecretName)
		}
	}
	for _, ctr := range pod.Spec.Containers {
		for _, e := range ctr.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				out = append(out, e.ValueFrom.SecretKeyRef.Name)
			}
		}
	}
	return out
}

// dryRunObjects creates objs' ServiceAccounts in ns for real, then every
// other object with a server-side dry run (strict field validation), then
// a Pod from every pod template; ns enforces the restricted Pod Security
// Standard. A ServiceMonitor of a cluster without its CRD is skipped only
// when monitor says one was asked for.
func dryRunObjects(t *testing.T, c clusterClients, ns string, objs []*unstructured.Unstructured, monitor bool) {
	t.Helper()
	ctx := context.Background()
	dryRun := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldValidation: "Strict"}
	// ServiceAccounts for real (the namespace goes at cleanup): pod
	// admission looks them up.
	for _, o := range ofKind(objs, "ServiceAccount") {
		r, err := c.resource(o)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.Create(ctx, o, metav1.CreateOptions{FieldValidation: "Strict"}); err != nil {
			t.Fatalf("create ServiceAccount %s: %v", o.GetName(), err)
		}
	}
	checked := 0
	for _, o := range objs {
		if o.GetKind() == "ServiceAccount" {
			continue
		}
		r, err := c.resource(o)
		if meta.IsNoMatchError(err) && monitor && o.GetKind() == "ServiceMonitor" {
			t.Logf("%s %s not checked: the cluster has no %s CRD", o.GetKind(), o.GetName(), o.GroupVersionKind().GroupKind())
			continue
		}
		if err != nil {
			t.Fatalf("%s %s: %v", o.GetKind(), o.GetName(), err)
		}
		if _, err := r.Create(ctx, o, dryRun); err != nil {
			t.Errorf("API server refuses %s %s: %v", o.GetKind(), o.GetName(), err)
		}
		checked++
	}
	pods := 0
	for _, o := range objs {
		if o.GetKind() != "Deployment" && o.GetKind() != "StatefulSet" {
			continue
		}
		pod := podFromTemplate(t, o)
		if _, err := c.cs.CoreV1().Pods(ns).Create(ctx, pod, dryRun); err != nil {
			t.Errorf("restricted namespace refuses the pod of %s %s: %v", o.GetKind(), o.GetName(), err)
		}
		pods++
	}
	if pods < 4 || checked < 10 {
		t.Fatalf("checked only %d objects and %d pods", checked, pods)
	}
}

// podFromTemplate is a Pod made from a workload's pod template, with its
// volumeClaimTemplates replaced by emptyDirs (the StatefulSet controller
// would create the claims).
func podFromTemplate(t *testing.T, workload *unstructured.Unstructured) *corev1.Pod {
	t.Helper()
	tmpl, _, _ := unstructured.NestedMap(workload.Object, "spec", "template")
	pod := &corev1.Pod{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(tmpl, pod); err != nil {
		t.Fatal(err)
	}
	pod.Name = workload.GetName() + "-dry-run"
	pod.Namespace = workload.GetNamespace()
	claims, _, _ := unstructured.NestedSlice(workload.Object, "spec", "volumeClaimTemplates")
	for _, cl := range claims {
		name, _, _ := unstructured.NestedString(cl.(map[string]any), "metadata", "name")
		pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
	}
	return pod
}

// applyRBAC creates the rendered ServiceAccounts, ClusterRoles and
// ClusterRoleBindings (and the planner's admission policy when withPolicy)
// for real, removing the cluster-scoped ones at cleanup.
func applyRBAC(t *testing.T, c clusterClients, objs []*unstructured.Unstructured, withPolicy bool) {
	t.Helper()
	ctx := context.Background()
	kinds := map[string]bool{"ServiceAccount": true, "ClusterRole": true, "ClusterRoleBinding": true,
		"ValidatingAdmissionPolicy": withPolicy, "ValidatingAdmissionPolicyBinding": withPolicy}
	for _, o := range objs {
		if !kinds[o.GetKind()] {
			continue
		}
		r, err := c.resource(o)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.Create(ctx, o, metav1.CreateOptions{FieldValidation: "Strict"}); err != nil {
			t.Fatalf("create %s %s: %v", o.GetKind(), o.GetName(), err)
		}
		if o.GetNamespace() == "" {
			t.Cleanup(func() {
				if err := r.Delete(context.Background(), o.GetName(), metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
					t.Errorf("delete %s %s: %v", o.GetKind(), o.GetName(), err)
				}
			})
		}
	}
}

// saUser is the user name and groups the API server gives a ServiceAccount.
func saUser(ns, name string) (string, []string) {
	return fmt.Sprintf("system:serviceaccount:%s:%s", ns, name),
		[]string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"}
}

// access is one row of the RBAC matrix.
type access struct {
	verb, group, resource, subresource string
	namespaced                         bool
}

func (a access) String() string {
	r := a.resource
	if a.subresource != "" {
		r += "/" + a.subresource
	}
	if a.group != "" {
		r += "." + a.group
	}
	return a.verb + " " + r
}

func res(verb, group, resource string) access {
	return access{verb: verb, group: group, resource: resource, namespaced: true}
}
func sub(verb, resource, subresource string) access {
	return access{verb: verb, resource: resource, subresource: subresource, namespaced: true}
}
func cluster(verb, group, resource string) access {
	return access{verb: verb, group: group, resource: resource}
}

func (c clusterClients) allowed(t *testing.T, ns, sa, workNS string, a access) bool {
	t.Helper()
	user, groups := saUser(ns, sa)
	attrs := &authzv1.ResourceAttributes{Verb: a.verb, Group: a.group, Resource: a.resource, Subresource: a.subresource}
	if a.namespaced {
		attrs.Namespace = workNS
	}
	sar := &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{User: user, Groups: groups, ResourceAttributes: attrs}}
	got, err := c.cs.AuthorizationV1().SubjectAccessReviews().Create(context.Background(), sar, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("SubjectAccessReview %s for %s: %v", a, sa, err)
	}
	return got.Status.Allowed
}

// reads are what the watcher, planner and executor all read.
var reads = func() []access {
	var out []access
	for _, v := range []string{"get", "list", "watch"} {
		out = append(out, res(v, "", "pods"), res(v, "", "events"), res(v, "apps", "replicasets"), res(v, "apps", "deployments"),
			res(v, "apps", "statefulsets"), res(v, "apps", "daemonsets"), res(v, "batch", "jobs"))
	}
	return out
}()

// deniedToAll no kaar service may do.
var deniedToAll = []access{
	res("get", "", "secrets"), res("list", "", "secrets"), res("watch", "", "secrets"), res("create", "", "secrets"),
	res("get", "", "configmaps"), res("list", "", "configmaps"),
	res("create", "", "pods"), sub("create", "pods", "exec"), sub("create", "pods", "attach"), sub("create", "pods", "portforward"),
	sub("create", "pods", "eviction"), res("update", "", "pods"), sub("patch", "pods", "status"),
	res("create", "apps", "deployments"), res("update", "apps", "deployments"), res("delete", "apps", "deployments"),
	res("delete", "apps", "statefulsets"), res("delete", "apps", "replicasets"), res("delete", "batch", "jobs"),
	res("patch", "apps", "replicasets"), res("patch", "batch", "jobs"), res("deletecollection", "", "pods"),
	res("create", "", "serviceaccounts"), sub("create", "serviceaccounts", "token"),
	res("create", "rbac.authorization.k8s.io", "rolebindings"), cluster("create", "rbac.authorization.k8s.io", "clusterroles"),
	cluster("escalate", "rbac.authorization.k8s.io", "clusterroles"), cluster("bind", "rbac.authorization.k8s.io", "clusterroles"),
	cluster("patch", "", "nodes"), cluster("delete", "", "nodes"), sub("get", "nodes", "proxy"),
	cluster("impersonate", "", "users"), cluster("impersonate", "", "serviceaccounts"),
	cluster("create", "admissionregistration.k8s.io", "validatingadmissionpolicies"),
	cluster("delete", "admissionregistration.k8s.io", "validatingadmissionpolicybindings"),
	res("create", "", "events"), cluster("list", "", "namespaces"),
}

// TestRBACLeastPrivilegeMatrix applies the chart's ServiceAccounts,
// ClusterRoles and bindings to the sandbox and asks the API server, with a
// SubjectAccessReview per cell, what each service's identity may do.
func TestRBACLeastPrivilegeMatrix(t *testing.T) {
	t.Parallel()
	c := clients(t)
	ns := sandbox.NewNamespace(t, c.cs)
	release := uniqueRelease(t)
	objs := render(t, release, ns, "--set", withSecrets+notifierArgs)
	applyRBAC(t, c, objs, false)
	const workNS = "shop"

	plannerOnly := []access{sub("get", "pods", "log"),
		res("get", "", "resourcequotas"), res("list", "", "limitranges"), cluster("get", "", "namespaces")}
	// Nodes: the planner reads them (Pending pods, node incidents), the
	// watcher watches them too (node incidents).
	nodeReads := []access{cluster("get", "", "nodes"), cluster("list", "", "nodes")}
	nodeWatch := []access{cluster("watch", "", "nodes")}
	hpaReads := []access{res("list", "autoscaling", "horizontalpodautoscalers"), res("watch", "autoscaling", "horizontalpodautoscalers")}
	hpaGet := []access{res("get", "autoscaling", "horizontalpodautoscalers")}
	patchWorkloads := []access{res("patch", "apps", "deployments"), res("patch", "apps", "statefulsets"), res("patch", "apps", "daemonsets"),
		res("patch", "batch", "cronjobs"), res("patch", "", "pods"), res("delete", "", "pods")}
	cronReads := []access{res("get", "batch", "cronjobs"), res("list", "batch", "cronjobs"), res("watch", "batch", "cronjobs")}
	revisions := []access{res("get", "apps", "controllerrevisions"), res("list", "apps", "controllerrevisions"), res("watch", "apps", "controllerrevisions")}
	serviceReads := []access{res("get", "", "services"), res("list", "", "services"), res("watch", "", "services"),
		res("get", "discovery.k8s.io", "endpointslices"), res("list", "discovery.k8s.io", "endpointslices"),
		res("watch", "discovery.k8s.io", "endpointslices")}
	plannerServiceReads := []access{res("get", "", "services"), res("list", "discovery.k8s.io", "endpointslices")}
	// Services: the planner dry-runs and the executor applies a selector
	// or targetPort fix, and the executor watches the Service's
	// EndpointSlices to verify it; nobody lists Services but the watcher.
	patchServices := []access{res("patch", "", "services")}
	executorServiceReads := []access{res("get", "", "services"), res("watch", "", "services"),
		res("list", "discovery.k8s.io", "endpointslices"), res("watch", "discovery.k8s.io", "endpointslices")}
	serviceWrites := []access{res("create", "", "services"), res("update", "", "services"), res("delete", "", "services"),
		res("list", "", "services"), res("get", "discovery.k8s.io", "endpointslices"), res("patch", "discovery.k8s.io", "endpointslices")}
	// Storage: the watcher watches claims and StorageClasses, the planner
	// reads them and the PersistentVolumes; nobody else touches them.
	storageWatch := []access{res("list", "", "persistentvolumeclaims"), res("watch", "", "persistentvolumeclaims"),
		cluster("list", "storage.k8s.io", "storageclasses"), cluster("watch", "storage.k8s.io", "storageclasses")}
	storageReads := []access{res("get", "", "persistentvolumeclaims"), res("list", "", "persistentvolumeclaims"),
		cluster("get", "", "persistentvolumes"), cluster("get", "storage.k8s.io", "storageclasses"), cluster("list", "storage.k8s.io", "storageclasses")}
	// Ingresses and CronJobs: the watcher watches them (and the
	// IngressClasses), the planner reads them; the executor reads and
	// patches CronJobs only.
	ingressWatch := []access{res("get", "networking.k8s.io", "ingresses"), res("list", "networking.k8s.io", "ingresses"),
		res("watch", "networking.k8s.io", "ingresses"), cluster("list", "networking.k8s.io", "ingressclasses"),
		cluster("watch", "networking.k8s.io", "ingressclasses")}
	ingressReads := []access{res("get", "networking.k8s.io", "ingresses"), cluster("list", "networking.k8s.io", "ingressclasses")}
	// Capacity warnings: the watcher lists and watches quotas,
	// LimitRanges and cert-manager Certificates; the planner gets a quota
	// and lists LimitRanges (FailedCreate evidence).
	capacityWatch := []access{res("list", "", "resourcequotas"), res("watch", "", "resourcequotas"),
		res("list", "", "limitranges"), res("watch", "", "limitranges"),
		res("list", "cert-manager.io", "certificates"), res("watch", "cert-manager.io", "certificates")}
	plannerOnlyReads := []access{sub("get", "pods", "log"), cluster("get", "", "namespaces")}
	// Configuration risk warnings: only the watcher reads
	// PodDisruptionBudgets.
	pdbWatch := []access{res("get", "policy", "poddisruptionbudgets"), res("list", "policy", "poddisruptionbudgets"),
		res("watch", "policy", "poddisruptionbudgets")}
	// Trend warnings: only the watcher reads the resource metrics API
	// (container working sets for MemoryNearLimit).
	metricsReads := []access{res("get", "metrics.k8s.io", "pods"), res("list", "metrics.k8s.io", "pods")}
	concat := func(lists ...[]access) []access {
		var out []access
		for _, l := range lists {
			out = append(out, l...)
		}
		return out
	}
	matrix := map[string]struct{ allow, deny []access }{
		"watcher":    {allow: concat(reads, serviceReads, nodeReads, nodeWatch, hpaReads, hpaGet, storageWatch, cronReads, ingressWatch, capacityWatch, pdbWatch, metricsReads), deny: concat(deniedToAll, plannerOnlyReads, patchWorkloads, patchServices, revisions, []access{res("get", "", "persistentvolumeclaims"), cluster("get", "", "persistentvolumes")})},
		"planner":    {allow: concat(reads, plannerOnly, patchWorkloads, patchServices, cronReads, plannerServiceReads, nodeReads, hpaGet, storageReads, ingressReads), deny: concat(deniedToAll, serviceWrites, revisions, metricsReads, nodeWatch, hpaReads, []access{res("watch", "", "persistentvolumeclaims"), res("list", "networking.k8s.io", "ingresses"), cluster("watch", "networking.k8s.io", "ingressclasses")})},
		"executor":   {allow: concat(reads, patchWorkloads, patchServices, executorServiceReads, cronReads, revisions), deny: concat(deniedToAll, plannerOnly, serviceWrites, nodeReads, nodeWatch, hpaReads, hpaGet, storageWatch, storageReads, ingressWatch, capacityWatch, pdbWatch, metricsReads)},
		"mcpgateway": {deny: concat(deniedToAll, reads, plannerOnly, patchWorkloads, patchServices, cronReads, revisions, serviceReads, nodeReads, nodeWatch, hpaReads, hpaGet, storageWatch, storageReads, ingressWatch, capacityWatch, pdbWatch, metricsReads)},
		"notifier":   {deny: concat(deniedToAll, reads, plannerOnly, patchWorkloads, patchServices, cronReads, revisions, serviceReads, nodeReads, nodeWatch, hpaReads, hpaGet, storageWatch, storageReads, ingressWatch, capacityWatch, pdbWatch, metricsReads)},
	}
	// The RBAC authorizer sees new bindings through its informers: wait
	// (not a timing assertion) until each binding is in force.
	for _, svc := range []string{"watcher", "planner", "executor"} {
		sa := release + "-" + svc
		err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
			return c.allowed(t, ns, sa, workNS, res("list", "", "pods")), nil
		})
		if err != nil {
			t.Fatalf("the binding of %s never took effect: %v", sa, err)
		}
	}
	cells := 0
	for _, svc := range append(slices.Clone(services), "notifier") {
		find(t, objs, "ServiceAccount", release+"-"+svc) // the identity asked about is the chart's
		sa := release + "-" + svc
		want := matrix[svc]
		for _, a := range want.allow {
			if !c.allowed(t, ns, sa, workNS, a) {
				t.Errorf("%s: %s denied, want allowed", svc, a)
			}
			cells++
		}
		for _, a := range want.deny {
			if c.allowed(t, ns, sa, workNS, a) {
				t.Errorf("%s: %s ALLOWED, want denied", svc, a)
			}
			cells++
		}
	}
	t.Logf("%d access checks", cells)
}

// TestPlannerCanOnlyDryRunWrites: the planner holds patch and delete for
// server-side dry runs; the chart's ValidatingAdmissionPolicy makes a real
// write by its identity fail, while the executor's real patch goes through.
func TestPlannerCanOnlyDryRunWrites(t *testing.T) {
	t.Parallel()
	c := clients(t)
	ctx := context.Background()
	ns := sandbox.NewNamespace(t, c.cs)
	release := uniqueRelease(t)
	applyRBAC(t, c, render(t, release, ns, "--set", withSecrets), true)
	dep := demoDeployment(ns)
	if _, err := c.cs.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	as := func(svc string) kubernetes.Interface {
		cfg := rest.CopyConfig(c.cfg)
		user, groups := saUser(ns, release+"-"+svc)
		cfg.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: groups}
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return cs
	}
	planner, executor := as("planner"), as("executor")
	patch := func(cs kubernetes.Interface, value string, dryRun bool) error {
		opts := metav1.PatchOptions{}
		if dryRun {
			opts.DryRun = []string{metav1.DryRunAll}
		}
		body := []byte(fmt.Sprintf(`{"metadata":{"annotations":{"kaar.dev/test":%q}}}`, value))
		_, err := cs.AppsV1().Deployments(ns).Patch(ctx, dep.Name, types.MergePatchType, body, opts)
		return err
	}
	// Wait until RBAC and the policy are both in force: the planner's real
	// patch is refused by the policy (not by RBAC).
	var last error
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(context.Context) (bool, error) {
		last = patch(planner, "real", false)
		return last != nil && strings.Contains(last.Error(), "may only dry-run"), nil
	})
	if err != nil {
		t.Fatalf("a real patch by the planner was never refused by the dry-run-only policy; last result: %v", last)
	}
	if err := patch(planner, "dry-run", true); err != nil {
		t.Errorf("planner dry-run patch refused: %v", err)
	}
	if err := planner.CoreV1().Pods(ns).Delete(ctx, "any", metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}}); !apierrors.IsNotFound(err) {
		t.Errorf("planner dry-run delete of a missing pod: %v, want NotFound (allowed, nothing there)", err)
	}
	if err := patch(executor, "executed", false); err != nil {
		t.Fatalf("executor real patch refused: %v", err)
	}
	got, err := c.cs.AppsV1().Deployments(ns).Get(ctx, dep.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if v := got.Annotations["kaar.dev/test"]; v != "executed" {
		t.Errorf("annotation after the executor's patch = %q, want executed (the planner's writes must not land)", v)
	}
	if _, err := executor.AppsV1().Deployments(ns).Create(ctx, demoDeployment(ns), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); !apierrors.IsForbidden(err) {
		t.Errorf("executor create deployment: %v, want Forbidden", err)
	}
}
