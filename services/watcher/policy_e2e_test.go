package watcher

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/events"
	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	kptr "k8s.io/utils/ptr"
)

// FailedCreate by admission policy (Pod Security, a LimitRange, an
// admission webhook), on the sandbox's real API server: each test owns its
// namespace, and the one cluster-scoped object (a webhook configuration)
// is named after it, matches only it and is deleted in cleanup.

// waitAdmissionRefuses waits until the API server refuses a pod like d's in
// a dry run with an error containing want: admission plugins read their
// policy from informers, so a new label, LimitRange or webhook takes effect
// a moment after it is written.
func (h *harness) waitAdmissionRefuses(t *testing.T, d *appsv1.Deployment, want string) {
	t.Helper()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "admission-probe", Labels: d.Spec.Template.Labels},
		Spec: *d.Spec.Template.Spec.DeepCopy()}
	waitFor(t, time.Minute, "admission refusing "+want, func() (bool, string) {
		_, err := h.admin.CoreV1().Pods(h.ns).Create(ctx30(t), pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err == nil {
			return false, "dry run accepted"
		}
		return strings.Contains(err.Error(), want), err.Error()
	})
}

// policyFailedCreate waits for the Deployment's FailedCreate incident of
// reason, checks its owner and cause text, and its diagnostic plan: policy
// objects are never changed by kaar.
func (h *harness) policyFailedCreate(t *testing.T, store *bus.PlanStore, name, reason string, pods int, cause ...string) string {
	t.Helper()
	id := h.incidentID("Deployment", name, events.IssueFailedCreate)
	r := h.waitIncident(t, 2*time.Minute, id, reason, func(in events.Incident) bool { return in.Reason == reason })
	in := r.event.Incident
	if in.Owner.Kind != "Deployment" || in.Owner.Name != name || in.PodCount != pods {
		t.Errorf("incident = %+v; want on Deployment %s, %d pods missing", in, name, pods)
	}
	for _, c := range cause {
		if !strings.Contains(in.Message, c) {
			t.Errorf("incident message %q does not contain %q", in.Message, c)
		}
	}
	wantPlan(t, store, id, events.IssueFailedCreate, "Deployment", name, diagnostic)
	return id
}

func TestPodSecurityRestrictedNamespaceIsFailedCreateUntilTheTemplateComplies(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	patch := []byte(`{"metadata":{"labels":{"pod-security.kubernetes.io/enforce":"restricted"}}}`)
	if _, err := h.admin.CoreV1().Namespaces().Patch(ctx30(t), h.ns, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	d := testDeployment("privileged", 2, nil, corev1.Container{Name: "app", Image: "nginx:1.27"})
	h.waitAdmissionRefuses(t, d, "violates PodSecurity")
	h.startWatcher(t)
	store := h.startPlanner(t)
	h.create(t, d)

	id := h.policyFailedCreate(t, store, "privileged", "pod_security", 2, `violates PodSecurity "restricted:latest"`, "allowPrivilegeEscalation")

	// The template made to comply: the new ReplicaSet's pods are admitted,
	// the old one scales to zero, the incident resolves.
	patch = []byte(`{"spec":{"template":{"spec":{"securityContext":{"runAsNonRoot":true,"runAsUser":1000,"seccompProfile":{"type":"RuntimeDefault"}},` +
		`"containers":[{"name":"app","securityContext":{"allowPrivilegeEscalation":false,"capabilities":{"drop":["ALL"]}}}]}}}}`)
	if _, err := h.admin.AppsV1().Deployments(h.ns).Patch(ctx30(t), "privileged", types.StrategicMergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	h.waitEvent(t, 3*time.Minute, id, events.TransitionResolved)
	detectedOnce(t, h.events(t), id)
}

func TestLimitRangeMaximumIsFailedCreateUntilTheLimitIsLowered(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	lr := &corev1.LimitRange{ObjectMeta: metav1.ObjectMeta{Name: "mem"}, Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{{
		Type: corev1.LimitTypeContainer, Max: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
	}}}}
	if _, err := h.admin.CoreV1().LimitRanges(h.ns).Create(ctx30(t), lr, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	mem := corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("512Mi")}
	d := testDeployment("big", 2, nil, corev1.Container{Name: "app", Image: "nginx:1.27",
		Resources: corev1.ResourceRequirements{Requests: mem, Limits: mem}})
	h.waitAdmissionRefuses(t, d, "maximum memory usage per Container is 256Mi")
	h.startWatcher(t)
	store := h.startPlanner(t)
	h.create(t, d)

	id := h.policyFailedCreate(t, store, "big", "limit_range", 2, "maximum memory usage per Container is 256Mi", "512Mi")

	patch := []byte(`{"spec":{"template":{"spec":{"containers":[{"name":"app","resources":{"requests":{"memory":"128Mi"},"limits":{"memory":"128Mi"}}}]}}}}`)
	if _, err := h.admin.AppsV1().Deployments(h.ns).Patch(ctx30(t), "big", types.StrategicMergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	h.waitEvent(t, 3*time.Minute, id, events.TransitionResolved)
	detectedOnce(t, h.events(t), id)
}

// closedPort is a local TCP port nothing listens on (it was free a moment
// ago).
func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return port
}

// scopedWebhook creates a ValidatingWebhookConfiguration named after the
// test's namespace, failing closed, calling cc on pod creation; it is
// scoped twice so it can refuse nothing outside this test (the namespace's
// own name label and a pod label only this test sets) and is deleted in
// cleanup. It returns the pod labels it matches and the deletion.
func (h *harness) scopedWebhook(t *testing.T, cc admissionregistrationv1.WebhookClientConfig) (podLabels map[string]string, remove func()) {
	t.Helper()
	const scopeLabel = "webhook.kaar.dev/test"
	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: h.ns},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name:         "pods.kaar.dev",
			ClientConfig: cc,
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"},
					Scope: kptr.To(admissionregistrationv1.NamespacedScope)},
			}},
			FailurePolicy:           kptr.To(admissionregistrationv1.Fail),
			SideEffects:             kptr.To(admissionregistrationv1.SideEffectClassNone),
			AdmissionReviewVersions: []string{"v1"},
			TimeoutSeconds:          kptr.To[int32](2),
			NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: h.ns}},
			ObjectSelector:          &metav1.LabelSelector{MatchLabels: map[string]string{scopeLabel: h.ns}},
		}},
	}
	if _, err := h.admin.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx30(t), vwc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	remove = func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := h.admin.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(ctx, h.ns, metav1.DeleteOptions{}); err != nil {
				t.Errorf("delete the webhook configuration %s: %v", h.ns, err)
			}
		})
	}
	t.Cleanup(remove)
	return map[string]string{scopeLabel: h.ns}, remove
}

func TestUnreachableAdmissionWebhookIsFailedCreateUntilItIsRemoved(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	url := "https://127.0.0.1:" + strconv.Itoa(closedPort(t)) + "/validate"
	scope, remove := h.scopedWebhook(t, admissionregistrationv1.WebhookClientConfig{URL: &url})
	d := testDeployment("gated", 2, nil, corev1.Container{Name: "app", Image: "nginx:1.27"})
	maps.Copy(d.Spec.Template.Labels, scope)
	h.waitAdmissionRefuses(t, d, "failed calling webhook")
	h.startWatcher(t)
	store := h.startPlanner(t)
	h.create(t, d)

	id := h.policyFailedCreate(t, store, "gated", "webhook_unreachable", 2, `failed calling webhook "pods.kaar.dev"`)

	// Removed: the ReplicaSet controller's next attempt is admitted.
	remove()
	h.waitEvent(t, 3*time.Minute, id, events.TransitionResolved)
	detectedOnce(t, h.events(t), id)
}

// denyingWebhook is an HTTPS admission webhook on 127.0.0.1 (the sandbox's
// API server runs on this machine) that denies every review with message
// until allow is set.
func denyingWebhook(t *testing.T, message string) (cc admissionregistrationv1.WebhookClientConfig, allow *atomic.Bool) {
	t.Helper()
	allow = new(atomic.Bool)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var review admissionv1.AdmissionReview
		if err := json.NewDecoder(r.Body).Decode(&review); err != nil || review.Request == nil {
			http.Error(w, "not an admission review", http.StatusBadRequest)
			return
		}
		resp := &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: allow.Load()}
		if !resp.Allowed {
			resp.Result = &metav1.Status{Code: http.StatusForbidden, Message: message}
		}
		review.Request, review.Response = nil, resp
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(review)
	}))
	t.Cleanup(srv.Close)
	url := srv.URL + "/validate"
	caBundle := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	return admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: caBundle}, allow
}

func TestAdmissionWebhookDenyingPodsIsFailedCreateUntilItAllows(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	cc, allow := denyingWebhook(t, "images must come from registry.internal")
	scope, _ := h.scopedWebhook(t, cc)
	d := testDeployment("vetted", 2, nil, corev1.Container{Name: "app", Image: "nginx:1.27"})
	maps.Copy(d.Spec.Template.Labels, scope)
	h.waitAdmissionRefuses(t, d, "denied the request")
	h.startWatcher(t)
	store := h.startPlanner(t)
	h.create(t, d)

	id := h.policyFailedCreate(t, store, "vetted", "webhook_denied", 2,
		`admission webhook "pods.kaar.dev" denied the request`, "images must come from registry.internal")

	// The webhook's policy now admits the pods: the ReplicaSet controller's
	// next attempt succeeds.
	allow.Store(true)
	h.waitEvent(t, 3*time.Minute, id, events.TransitionResolved)
	detectedOnce(t, h.events(t), id)
}
