package watcher

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// pullEvent is the recorded kubelet pull failure of sandbox-image-not-found.
func pullEvent(t *testing.T) corev1.Event {
	t.Helper()
	for _, e := range loadEvents(t, "sandbox-image-not-found") {
		if e.Reason == "Failed" && strings.HasPrefix(e.Message, "Failed to pull image") {
			return e
		}
	}
	t.Fatal("fixture sandbox-image-not-found.events has no pull failure")
	return corev1.Event{}
}

func TestPullCauseOf(t *testing.T) {
	base := pullEvent(t)
	with := func(f func(e *corev1.Event)) *corev1.Event {
		e := base.DeepCopy()
		f(e)
		return e
	}
	cases := []struct {
		name      string
		ev        *corev1.Event
		container string
		reason    string
		image     string
	}{
		{"recorded not found", &base, "web", "image_not_found", "nginx:1.27-nonexistent"},
		{"init container", with(func(e *corev1.Event) { e.InvolvedObject.FieldPath = "spec.initContainers{migrate}" }), "migrate", "image_not_found", "nginx:1.27-nonexistent"},
		{"unknown cause", with(func(e *corev1.Event) {
			e.Message = `Failed to pull image "nginx:1.27": rpc error: code = Unknown desc = something new`
		}), "web", "pull_failed", "nginx:1.27"},
		{"generic failure", with(func(e *corev1.Event) { e.Message = "Error: ErrImagePull" }), "", "", ""},
		{"config error", with(func(e *corev1.Event) { e.Message = `Error: configmap "missing-x" not found` }), "", "", ""},
		{"normal event", with(func(e *corev1.Event) { e.Type = corev1.EventTypeNormal }), "", "", ""},
		{"back-off", with(func(e *corev1.Event) { e.Reason = "BackOff" }), "", "", ""},
		{"not a pod", with(func(e *corev1.Event) { e.InvolvedObject.Kind = "Node" }), "", "", ""},
		{"no container", with(func(e *corev1.Event) { e.InvolvedObject.FieldPath = "" }), "", "", ""},
		{"nil", nil, "", "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, cause, ok := PullCauseOf(tc.ev)
			if ok != (tc.container != "") || c != tc.container || cause.Reason != tc.reason || cause.Image != tc.image {
				t.Fatalf("PullCauseOf = %q %+v %v, want %q reason %q image %q", c, cause, ok, tc.container, tc.reason, tc.image)
			}
			if ok && (cause.Message != tc.ev.Message || cause.At.IsZero()) {
				t.Errorf("cause %+v lost the message or the time", cause)
			}
		})
	}
}

func TestPullReason(t *testing.T) {
	for _, tc := range []struct{ reason, msg, want string }{
		{"ErrImagePull", `rpc error: code = NotFound desc = failed to pull and unpack image "docker.io/library/nginx:9": failed to resolve reference "docker.io/library/nginx:9": docker.io/library/nginx:9: not found`, "image_not_found"},
		{"ErrImagePull", `Error response from daemon: manifest for nginx:9 not found: manifest unknown: manifest unknown`, "image_not_found"},
		{"ErrImagePull", `failed to resolve reference "private.example/a:1": failed to authorize: failed to fetch oauth token: unexpected status: 401 Unauthorized`, "unauthorized"},
		{"ErrImagePull", `pull access denied for acme/app, repository does not exist or may require authorization: server message: insufficient_scope: authorization failed`, "unauthorized"},
		{"ErrImagePull", `failed to fetch anonymous token: unexpected status: 403 Forbidden`, "unauthorized"},
		{"ErrImagePull", `Permission "artifactregistry.repositories.downloadArtifacts" denied on resource`, "unauthorized"},
		{"ErrImagePull", `429 Too Many Requests - Server message: toomanyrequests: You have reached your pull rate limit.`, "rate_limited"},
		{"ErrImagePull", `dial tcp: lookup registry.internal on 10.96.0.10:53: no such host`, "registry_unavailable"},
		{"ErrImagePull", `Get "https://registry.example/v2/": net/http: request canceled (Client.Timeout exceeded while awaiting headers)`, "registry_unavailable"},
		{"ErrImagePull", `tls: failed to verify certificate: x509: certificate signed by unknown authority`, "registry_unavailable"},
		{"ErrImagePull", `something nobody has seen`, "pull_failed"},
		{"ImagePullBackOff", `Back-off pulling image "nginx:1.27-nonexistent"`, "pull_back_off"},
		{"ImagePullBackOff", "", "pull_back_off"},
		{"InvalidImageName", `failed to apply default image tag "Nginx": couldn't parse image name`, "invalid_image_name"},
		{"ErrImageNeverPull", `Container image "app:1" is not present with pull policy of Never`, "never_pull"},
		// The words of an image reference are not a cause.
		{"ImagePullBackOff", `Back-off pulling image "registry.example/notfound-proxy:1"`, "pull_back_off"},
		{"ErrImagePull", `failed to pull image "registry.example/unauthorized-app:1": dial tcp 10.0.0.1:443: connection refused`, "registry_unavailable"},
	} {
		if got := pullReason(tc.reason, tc.msg); got != tc.want {
			t.Errorf("pullReason(%s, %q) = %s, want %s", tc.reason, tc.msg, got, tc.want)
		}
	}
}

func TestEvidenceFrom(t *testing.T) {
	pod := loadPod(t, "sandbox-image-not-found")
	evs := loadEvents(t, "sandbox-image-not-found")
	at := func(e corev1.Event, d time.Duration, msg string) corev1.Event {
		e = *e.DeepCopy()
		e.LastTimestamp = metav1.NewTime(e.LastTimestamp.Add(d))
		e.Message = msg
		return e
	}
	pull := pullEvent(t)
	limited := at(pull, time.Minute, `Failed to pull image "nginx:1.27-nonexistent": 429 Too Many Requests - toomanyrequests`)

	t.Run("the latest report wins, in any order", func(t *testing.T) {
		for _, list := range [][]corev1.Event{{pull, limited}, {limited, pull}} {
			if got := EvidenceFrom(pod.UID, list).PullCauses["web"].Reason; got != "rate_limited" {
				t.Errorf("reason = %s, want rate_limited (the later report)", got)
			}
		}
	})
	t.Run("events of another pod are ignored", func(t *testing.T) {
		other := *pull.DeepCopy()
		other.InvolvedObject.UID = "another-pod"
		if got := EvidenceFrom(pod.UID, []corev1.Event{other}); len(got.PullCauses) != 0 {
			t.Errorf("evidence %+v from another pod's event", got)
		}
	})
	t.Run("a cause about another image is not applied", func(t *testing.T) {
		p := pod.DeepCopy()
		p.Spec.Containers[0].Image = "nginx:1.28-typo"
		p.Status.ContainerStatuses[0].Image = "nginx:1.28-typo"
		p.Status.ContainerStatuses[0].State.Waiting.Message = `Back-off pulling image "nginx:1.28-typo"`
		got := Classify(p, evs, fixtureNow, DefaultClassifyOptions())
		if len(got) != 1 || got[0].Reason != "pull_back_off" {
			t.Errorf("Classify after an image change = %+v, want the generic pull_back_off", got)
		}
	})
	t.Run("the status alone is generic", func(t *testing.T) {
		got := Classify(pod, nil, fixtureNow, DefaultClassifyOptions())
		if len(got) != 1 || got[0].Reason != "pull_back_off" {
			t.Errorf("Classify without events = %+v, want pull_back_off", got)
		}
		with := Classify(pod, evs, fixtureNow, DefaultClassifyOptions())
		if len(with) != 1 || !strings.Contains(with[0].Message, "not found") || !strings.Contains(with[0].Message, "Back-off pulling image") {
			t.Errorf("message with events = %q, want the back-off and the kubelet's cause", with[0].Message)
		}
	})
}

func TestPullMemory(t *testing.T) {
	m := newPullMemory()
	pull := pullEvent(t)
	uid := pull.InvolvedObject.UID
	if _, _, _, changed := m.observe(&pull); !changed {
		t.Fatal("first pull failure: not remembered")
	}
	if _, _, _, changed := m.observe(&pull); changed {
		t.Error("the same event again counts as a change")
	}
	older := *pull.DeepCopy()
	older.LastTimestamp = metav1.NewTime(pull.LastTimestamp.Add(-time.Hour))
	older.Message = `Failed to pull image "nginx:1.27-nonexistent": 401 Unauthorized`
	if _, _, _, changed := m.observe(&older); changed {
		t.Error("an older report replaced a newer one")
	}
	for _, e := range loadEvents(t, "sandbox-image-not-found") {
		m.observe(&e) // back-off and generic failures are not causes
	}
	ev := m.evidence(uid)
	if got := ev.PullCauses["web"].Reason; got != "image_not_found" || len(ev.PullCauses) != 1 {
		t.Fatalf("remembered %+v, want image_not_found for web", ev.PullCauses)
	}
	ev.PullCauses["web"] = PullCause{Reason: "changed"} // a copy: the memory is unaffected
	if got := m.evidence(uid).PullCauses["web"].Reason; got != "image_not_found" {
		t.Errorf("evidence is not a copy: %s", got)
	}

	gone := *pull.DeepCopy()
	gone.InvolvedObject.UID, gone.InvolvedObject.Name = "gone-uid", "gone"
	m.observe(&gone)
	if n := m.prune(func(_, _ string, u types.UID) bool { return u == uid }); n != 1 || m.size() != 1 {
		t.Errorf("prune dropped %d, %d left; want 1 dropped, 1 left", n, m.size())
	}
	m.forget(uid)
	if m.size() != 0 || len(m.evidence(uid).PullCauses) != 0 {
		t.Errorf("forget left %d pods", m.size())
	}
}

func TestTransformTrimsEvents(t *testing.T) {
	e := pullEvent(t)
	e.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubelet"}}
	e.Annotations = map[string]string{"a": "b"}
	e.Message += strings.Repeat("x", 3*maxEventMessage)
	e.Source = corev1.EventSource{Component: "kubelet", Host: "node"}
	out, err := transform(&e)
	if err != nil {
		t.Fatal(err)
	}
	got := out.(*corev1.Event)
	if got.ManagedFields != nil || got.Annotations != nil || got.Source.Host != "" || len(got.Message) != maxEventMessage {
		t.Errorf("trimmed event keeps too much: %+v", got)
	}
	if got.InvolvedObject.UID != e.InvolvedObject.UID || got.InvolvedObject.FieldPath != e.InvolvedObject.FieldPath ||
		got.Reason != e.Reason || got.Type != e.Type || !got.LastTimestamp.Equal(&e.LastTimestamp) {
		t.Errorf("trimmed event lost what the watcher reads: %+v", got)
	}
	again, _ := transform(got)
	if again.(*corev1.Event).Message != got.Message {
		t.Error("transform is not idempotent on events")
	}
}
