package watcher

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/kaar-dev/kaar/pkg/sandbox"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
)

// Capacity warnings on the sandbox: quotas filled by real pods (the
// quota controller computes their usage), LimitRanges against them, a
// node of the test's own filled by pods that tolerate its taint, and
// cert-manager Certificates (the sandbox has no cert-manager: the test
// installs the Certificate CRD and writes the status cert-manager would).

// capacityOn turns on the warnings of types (every other warning type
// off, so that only the family under test runs).
func capacityOn(types ...events.IssueType) func(*Config) {
	return func(c *Config) {
		var off []string
		for _, t := range events.TypesOf(events.ClassWarning) {
			if !slices.Contains(types, t) {
				off = append(off, string(t))
			}
		}
		c.Warnings = WarningOptions{Enabled: true}
		c.Warnings.Config.Disabled = off
		c.certDiscovery = 2 * time.Second
	}
}

// grantCapacity lets the watcher's user read the test namespace's
// ResourceQuotas, LimitRanges and Certificates, as the chart's role
// does, and waits until the authorizer knows it.
func (h *harness) grantCapacity(t *testing.T) {
	t.Helper()
	ctx := ctx30(t)
	read := []string{"get", "list", "watch"}
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "kaar-watcher-capacity"}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"resourcequotas", "limitranges"}, Verbs: read},
		{APIGroups: []string{"cert-manager.io"}, Resources: []string{"certificates"}, Verbs: read},
	}}
	if _, err := h.admin.RbacV1().Roles(h.ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "kaar-watcher-capacity"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "kaar-watcher-capacity"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "kaar-watcher"}}}
	if _, err := h.admin.RbacV1().RoleBindings(h.ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "the watcher's user to list resourcequotas and limitranges", func() (bool, string) {
		_, err := h.watcher.CoreV1().ResourceQuotas(h.ns).List(ctx, metav1.ListOptions{Limit: 1})
		if err == nil {
			_, err = h.watcher.CoreV1().LimitRanges(h.ns).List(ctx, metav1.ListOptions{Limit: 1})
		}
		return err == nil, fmt.Sprint(err)
	})
}

// createQuota creates a ResourceQuota and waits until the quota
// controller has computed its usage.
func (h *harness) createQuota(t *testing.T, name string, hard corev1.ResourceList) {
	t.Helper()
	q := &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.ResourceQuotaSpec{Hard: hard}}
	if _, err := h.admin.CoreV1().ResourceQuotas(h.ns).Create(ctx30(t), q, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "the usage of quota "+name, func() (bool, string) {
		q, err := h.admin.CoreV1().ResourceQuotas(h.ns).Get(ctx30(t), name, metav1.GetOptions{})
		return err == nil && q.Status.Hard != nil, "no status"
	})
}

func (h *harness) createLimitRange(t *testing.T, name string, def, defReq corev1.ResourceList) {
	t.Helper()
	lr := &corev1.LimitRange{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{
		{Type: corev1.LimitTypeContainer, Default: def, DefaultRequest: defReq}}}}
	if _, err := h.admin.CoreV1().LimitRanges(h.ns).Create(ctx30(t), lr, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// requesting is a container requesting rs.
func requesting(rs corev1.ResourceList) corev1.Container {
	return corev1.Container{Name: "app", Image: "nginx:1.27", Resources: corev1.ResourceRequirements{Requests: rs}}
}

func (h *harness) scale(t *testing.T, name string, replicas int) {
	t.Helper()
	patch := fmt.Appendf(nil, `{"spec":{"replicas":%d}}`, replicas)
	if _, err := h.admin.AppsV1().Deployments(h.ns).Patch(ctx30(t), name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// noneOf fails on any announcement of incident id.
func noneOf(t *testing.T, all []received, id string) {
	t.Helper()
	for _, r := range all {
		if r.event.Incident.ID == id {
			t.Errorf("unexpected %s of %s: %s", r.event.Transition, id, r.event.Incident.Message)
		}
	}
}

// The issue's story: a quota filled to 95% is warned about, on the
// ResourceQuota, with its numbers; freeing it resolves the warning. In
// between, usage falling to 87%, under the 90% threshold but within its
// slack (capacityHoldSlack), holds the warning open with the new numbers:
// a namespace hovering at the threshold does not resolve and come back.
func TestQuotaFilledTo95PercentIsWarnedUntilFreed(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.grantCapacity(t)
	h.createQuota(t, "compute", rl("requests.memory", "1Gi", "pods", "10"))
	h.configure = capacityOn(events.IssueQuotaNearLimit)
	h.startWatcher(t)
	h.create(t, testDeployment("cache", 1, nil, requesting(rl("memory", "901Mi"))))
	h.create(t, testDeployment("extra", 1, nil, requesting(rl("memory", "72Mi"))))

	id := h.incidentID(kindQuota, "compute", events.IssueQuotaNearLimit)
	in := h.waitEvent(t, 2*time.Minute, id, events.TransitionDetected).event.Incident
	want := events.Measurement{Name: "requests.memory", Value: 973 << 20, Limit: 1 << 30, Unit: events.UnitBytes}
	if in.Owner.Kind != kindQuota || in.Owner.Name != "compute" || in.Owner.APIVersion != "v1" || in.Namespace != h.ns ||
		in.Reason != "near_limit" || in.Severity != events.SeverityWarning || in.Warning == nil ||
		len(in.Warning.Measurements) != 1 || in.Warning.Measurements[0] != want ||
		!strings.Contains(in.Message, "resourcequota compute is nearly used up: requests.memory 973Mi of 1Gi (95%, 51Mi left)") ||
		strings.Contains(in.Message, "pods 2 of 10") {
		t.Errorf("incident = %+v\nevidence %+v", in, in.Warning)
	}

	// 87%: held, with the numbers of now.
	h.scale(t, "extra", 0)
	waitFor(t, 2*time.Minute, "the quota to count 901Mi", func() (bool, string) {
		q, err := h.admin.CoreV1().ResourceQuotas(h.ns).Get(ctx30(t), "compute", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		used := q.Status.Used[corev1.ResourceRequestsMemory]
		return used.Value() == 901<<20, used.String()
	})
	waitFor(t, time.Minute, "the open warning to show 87%", func() (bool, string) {
		resp, err := h.analyze(events.AnalyzeRequest{Namespace: h.ns, Class: events.ClassWarning})
		if err != nil {
			return false, err.Error()
		}
		for _, w := range resp.Incidents {
			if w.ID == id {
				return strings.Contains(w.Message, "requests.memory 901Mi of 1Gi (87%, 123Mi left)"), w.Message
			}
		}
		return false, fmt.Sprintf("not open: %+v", resp)
	})
	time.Sleep(e2eTiming.ResolveWait + time.Second)
	noneOfTransition(t, h.events(t), id, events.TransitionResolved)

	h.scale(t, "cache", 0)
	h.waitEvent(t, 2*time.Minute, id, events.TransitionResolved)
	detectedOnce(t, h.events(t), id)
}

// noneOfTransition fails on an announcement tr of incident id.
func noneOfTransition(t *testing.T, all []received, id string, tr events.Transition) {
	t.Helper()
	for _, r := range all {
		if r.event.Incident.ID == id && r.event.Transition == tr {
			t.Errorf("unexpected %s of %s: %s", tr, id, r.event.Incident.Message)
		}
	}
}

// A quota at 50% is no warning; beside it, one used up is (the watcher
// does read the namespace's quotas).
func TestQuotaHalfUsedIsNoWarning(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.grantCapacity(t)
	h.createQuota(t, "compute", rl("requests.memory", "1Gi"))
	// Every namespace has its kube-root-ca.crt ConfigMap: 1 of 1.
	h.createQuota(t, "objects", rl("count/configmaps", "1"))
	h.configure = capacityOn(events.IssueQuotaNearLimit)
	h.startWatcher(t)
	h.create(t, testDeployment("cache", 1, nil, requesting(rl("memory", "512Mi"))))
	h.waitRolledOut(t, "cache", 1)

	full := h.incidentID(kindQuota, "objects", events.IssueQuotaNearLimit)
	in := h.waitEvent(t, 2*time.Minute, full, events.TransitionDetected).event.Incident
	if in.Reason != "at_limit" || !strings.Contains(in.Message, "count/configmaps 1 of 1 (100%, none left)") {
		t.Errorf("incident = %+v", in)
	}
	quiet()
	noneOf(t, h.events(t), h.incidentID(kindQuota, "compute", events.IssueQuotaNearLimit))
}

// A watcher that may not read quotas (no grant) still runs: the quota
// warnings are off (it says so once) and a failure is detected as ever.
func TestWatcherThatMayNotReadQuotasStillDetectsFailures(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.createQuota(t, "objects", rl("count/configmaps", "1")) // used up
	h.configure = capacityOn(events.IssueQuotaNearLimit, events.IssueLimitRangeExceedsQuota)
	h.startWatcher(t)
	h.create(t, testDeployment("web", 1, map[string]string{sandbox.AnnotationCrashExitCode: "1"}, corev1.Container{Name: "app", Image: "nginx:1.27"}))
	h.waitEvent(t, 2*time.Minute, events.IncidentID(testCluster, h.ns, "Deployment", "web", "app", events.IssueCrashLoopBackOff), events.TransitionDetected)
	quiet()
	noneOf(t, h.events(t), h.incidentID(kindQuota, "objects", events.IssueQuotaNearLimit))
}

// A LimitRange whose default memory limit is larger than the quota
// allows in all: the next pod relying on it is refused. Lowering the
// default resolves it; a LimitRange whose defaults fit is no warning.
func TestLimitRangeDefaultsTheQuotaCannotFitAreWarned(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.grantCapacity(t)
	h.createQuota(t, "compute", rl("limits.memory", "1Gi", "requests.memory", "1Gi"))
	h.createLimitRange(t, "too-big", rl("memory", "2Gi"), rl("memory", "256Mi"))
	h.configure = capacityOn(events.IssueLimitRangeExceedsQuota)
	h.startWatcher(t)

	id := h.incidentID(kindLimitRange, "too-big", events.IssueLimitRangeExceedsQuota)
	in := h.waitEvent(t, 2*time.Minute, id, events.TransitionDetected).event.Incident
	want := events.Measurement{Name: "default_limit.memory", Value: 2 << 30, Limit: 1 << 30, Unit: events.UnitBytes}
	if in.Owner.Kind != kindLimitRange || in.Owner.Name != "too-big" || in.Reason != "default_exceeds_quota" ||
		in.Warning == nil || len(in.Warning.Measurements) != 1 || in.Warning.Measurements[0] != want ||
		in.Message != "limitrange too-big: the default memory limit 2Gi is more than resourcequota compute allows in all (limits.memory 1Gi); the next pod whose containers rely on these defaults is refused" {
		t.Errorf("incident = %+v\nevidence %+v", in, in.Warning)
	}
	// What the warning says happens: a pod without its own limits is
	// refused.
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "relies-on-defaults"}, Spec: corev1.PodSpec{
		Containers: []corev1.Container{{Name: "app", Image: "nginx:1.27"}}}}
	if _, err := h.admin.CoreV1().Pods(h.ns).Create(ctx30(t), pod, metav1.CreateOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("a pod relying on the defaults: %v, want forbidden by the quota", err)
	}
	patch := []byte(`{"spec":{"limits":[{"type":"Container","default":{"memory":"512Mi"},"defaultRequest":{"memory":"256Mi"}}]}}`)
	if _, err := h.admin.CoreV1().LimitRanges(h.ns).Patch(ctx30(t), "too-big", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	h.waitEvent(t, 2*time.Minute, id, events.TransitionResolved)
}

func TestLimitRangeDefaultsThatFitTheQuotaAreNoWarning(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.grantCapacity(t)
	h.createQuota(t, "compute", rl("limits.memory", "1Gi", "requests.memory", "1Gi"))
	h.createLimitRange(t, "fits", rl("memory", "512Mi"), rl("memory", "256Mi"))
	h.configure = capacityOn(events.IssueLimitRangeExceedsQuota)
	h.startWatcher(t)
	// A pod relying on the defaults is admitted.
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "relies-on-defaults"}, Spec: corev1.PodSpec{
		Containers: []corev1.Container{{Name: "app", Image: "nginx:1.27"}}}}
	if _, err := h.admin.CoreV1().Pods(h.ns).Create(ctx30(t), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	quiet()
	if all := h.events(t); len(all) > 0 {
		t.Errorf("warnings of a LimitRange that fits: %s", summary(all))
	}
}

// A node of the test's own: pods requesting 10 of its 16 cpu are no
// warning; a third replica brings them to 15 (93%): NodeNearlyFull on the
// Node; back to one replica, it resolves.
func TestNodeWhosePodsRequestNearlyAllItsCPUIsWarned(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	node := h.addNode(t)
	d := pinned("batch", 2, node)
	d.Spec.Template.Spec.Containers[0].Resources.Requests = rl("cpu", "5", "memory", "1Gi")
	h.create(t, d)
	h.waitRolledOut(t, "batch", 2)
	h.configure = capacityOn(events.IssueNodeNearlyFull)
	h.startNodeWatcher(t, e2eNodeGrace, time.Hour)

	id := nodeIncidentID(node, events.IssueNodeNearlyFull)
	quiet()
	noneOf(t, h.events(t), id)

	h.scale(t, "batch", 3)
	in := h.waitEvent(t, 2*time.Minute, id, events.TransitionDetected).event.Incident
	if in.Owner.Kind != kindNode || in.Owner.Name != node || in.Namespace != events.ClusterScopeNamespace ||
		in.Reason != "cpu_requested" || in.PodCount != 3 || in.Severity != events.SeverityWarning ||
		in.Message != "node "+node+": pods request 15 of 16 cpu (93%); the next pod requesting more than 1 cpu will not schedule here" {
		t.Errorf("incident = %+v", in)
	}
	if in.Warning == nil || len(in.Warning.Measurements) != 3 ||
		in.Warning.Measurements[0] != (events.Measurement{Name: "cpu_requested", Value: 15, Limit: 16, Unit: events.UnitCores}) {
		t.Errorf("evidence = %+v", in.Warning)
	}
	h.scale(t, "batch", 1)
	h.waitEvent(t, 2*time.Minute, id, events.TransitionResolved)
	detectedOnce(t, h.events(t), id)
}

var (
	crdGVR  = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	certCRD = "certificates.cert-manager.io"
)

// certificateCRD is cert-manager's Certificate CRD reduced to what the
// watcher reads: the real group, version, kind and resource, and a
// status subresource.
func certificateCRD() *unstructured.Unstructured {
	open := map[string]any{"type": "object", "x-kubernetes-preserve-unknown-fields": true}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
		"metadata": map[string]any{"name": certCRD},
		"spec": map[string]any{
			"group": "cert-manager.io", "scope": "Namespaced",
			"names": map[string]any{"plural": "certificates", "singular": "certificate", "kind": "Certificate",
				"listKind": "CertificateList", "shortNames": []any{"cert", "certs"}},
			"versions": []any{map[string]any{"name": "v1", "served": true, "storage": true,
				"subresources": map[string]any{"status": map[string]any{}},
				"schema": map[string]any{"openAPIV3Schema": map[string]any{"type": "object",
					"properties": map[string]any{"spec": open, "status": open}}}}},
		},
	}}
}

// servedCertificates waits until discovery does (or does not) list
// cert-manager's Certificates.
func servedCertificates(t *testing.T, h *harness, want bool) {
	t.Helper()
	waitFor(t, 2*time.Minute, fmt.Sprintf("cert-manager.io/v1 certificates served: %t", want), func() (bool, string) {
		got, err := servesCertificates(h.admin)
		return err == nil && got == want, fmt.Sprint(err)
	})
}

// writeCertificate creates (or updates) Certificate name with the status
// cert-manager would write.
func writeCertificate(t *testing.T, dyn dynamic.Interface, ns, name string, notAfter time.Time, issuing bool) {
	t.Helper()
	res := dyn.Resource(certificatesGVR).Namespace(ns)
	cur, err := res.Get(ctx30(t), name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		cur, err = res.Create(ctx30(t), &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
			"metadata": map[string]any{"name": name},
			"spec": map[string]any{"secretName": name + "-tls", "dnsNames": []any{name + ".example.com"},
				"issuerRef": map[string]any{"name": "letsencrypt", "kind": "ClusterIssuer"}},
		}}, metav1.CreateOptions{})
	}
	if err != nil {
		t.Fatal(err)
	}
	conds := []any{map[string]any{"type": "Ready", "status": "True", "reason": "Ready", "message": "Certificate is up to date and has not expired"}}
	if issuing {
		conds = append(conds, map[string]any{"type": "Issuing", "status": "True", "reason": "Renewing", "message": "Renewing certificate as renewal was scheduled"})
	}
	cur.Object["status"] = map[string]any{"notAfter": notAfter.UTC().Format(time.RFC3339),
		"renewalTime": notAfter.Add(-30 * 24 * time.Hour).UTC().Format(time.RFC3339), "conditions": conds}
	if _, err := res.UpdateStatus(ctx30(t), cur, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// Certificates: the watchers start before the cluster serves them (the
// CRD is installed afterwards, as cert-manager would be). One namespace
// has a certificate expiring in 5 days with no renewal under way: warned,
// kept across a restart of the watcher, and resolved once a renewal is
// under way. The other has one expiring in 60 days and one expiring in 5
// days being renewed: no warning. One test for both, since the CRD is the
// cluster's and the test removes it.
func TestCertificateExpiringIsWarnedOnceCertManagerIsInstalled(t *testing.T) {
	t.Parallel()
	pos, neg := newHarness(t), newHarness(t)
	dyn, err := dynamic.NewForConfig(sandbox.ForTest(t).RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	removeCRD := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := dyn.Resource(crdGVR).Delete(ctx, certCRD, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Error(err)
		}
	}
	removeCRD() // a previous run's
	servedCertificates(t, pos, false)
	stops := map[*harness]func(){}
	for _, h := range []*harness{pos, neg} {
		h.grantCapacity(t)
		h.configure = capacityOn(events.IssueCertificateExpiring)
		stops[h], _ = h.startWatcher(t)
	}
	if _, err := dyn.Resource(crdGVR).Create(ctx30(t), certificateCRD(), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(removeCRD)
	servedCertificates(t, pos, true)

	now := time.Now()
	writeCertificate(t, dyn, pos.ns, "web", now.Add(5*24*time.Hour), false)
	writeCertificate(t, dyn, neg.ns, "api", now.Add(60*24*time.Hour), false)
	writeCertificate(t, dyn, neg.ns, "shop", now.Add(5*24*time.Hour), true)

	id := pos.incidentID(kindCertificate, "web", events.IssueCertificateExpiring)
	in := pos.waitEvent(t, 2*time.Minute, id, events.TransitionDetected).event.Incident
	if in.Owner.Kind != kindCertificate || in.Owner.APIVersion != "cert-manager.io/v1" || in.Owner.Name != "web" ||
		in.Reason != "expires_soon" || in.Severity != events.SeverityWarning ||
		!strings.Contains(in.Message, "certificate web (secret web-tls) expires at ") ||
		!strings.Contains(in.Message, ", in 5d, and no renewal is under way (renewal was due at ") ||
		in.Warning == nil || len(in.Warning.Measurements) != 1 || in.Warning.Measurements[0].Name != "expires_in" {
		t.Errorf("incident = %+v", in)
	}
	// A restarted watcher neither repeats nor resolves it (its
	// Certificates' cache is synced before it evaluates what it restored).
	announced := pos.events(t)
	stops[pos]()
	pos.startWatcher(t)
	quiet()
	if all := pos.events(t); len(all) != len(announced) {
		t.Fatalf("the restarted watcher announced again: %s", summary(all[len(announced):]))
	}
	writeCertificate(t, dyn, pos.ns, "web", now.Add(5*24*time.Hour), true) // cert-manager renews it
	pos.waitEvent(t, 2*time.Minute, id, events.TransitionResolved)
	detectedOnce(t, pos.events(t), id)
	quiet()
	if all := neg.events(t); len(all) > 0 {
		t.Errorf("warnings of certificates far from expiry or being renewed: %s", summary(all))
	}
}
