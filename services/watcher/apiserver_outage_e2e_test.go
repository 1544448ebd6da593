package watcher

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/kaar-dev/kaar/pkg/sandbox"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// TestAPIServerOutageAndExpiredWatchesNeitherLoseNorRepeatIncidents is the
// story of an API server that goes away for 30 s and comes back with a
// watch cache that cannot resume the watcher's watches (410 Gone: etcd's
// revision moved on while it was down). It runs on a private sandbox,
// because it stops the API server.
//
// It is the package's longest test (about 2 minutes), and go test starts
// parallel tests roughly in the order of their files: its file's name
// sorts first among the sandbox tests, so that it does not start last
// and end the package's run a minute after every other test.
//
// While the API server is down the watcher keeps answering analyze from
// memory. Afterwards it re-lists: an incident announced before the outage
// is not announced again (nor resolved), and workloads that start failing
// as soon as the API server is back, while the watcher's watches are still
// broken, are each detected exactly once.
func TestAPIServerOutageAndExpiredWatchesNeitherLoseNorRepeatIncidents(t *testing.T) {
	sandbox.SkipShort(t, "it starts a private sandbox control plane")
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	c, err := sandbox.Up(ctx, sandbox.Options{StateDir: t.TempDir(), Nodes: 2, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		dctx, dcancel := context.WithTimeout(context.Background(), time.Minute)
		defer dcancel()
		if err := c.Down(dctx); err != nil {
			t.Errorf("sandbox down: %v", err)
		}
	})
	h := newHarnessOn(t, c)

	// Count the requests in which the watcher reads the whole state of its
	// pods (a LIST, or a watch that sends its initial events): after the
	// outage there must be one, the proof that the watch could not resume
	// and the watcher re-listed.
	var initialReads atomic.Int64
	podsPath := "/api/v1/namespaces/" + h.ns + "/pods"
	rc := *h.watcherRC
	rc.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(req *http.Request) (*http.Response, error) {
			q := req.URL.Query()
			if req.URL.Path == podsPath && (q.Get("watch") != "true" || q.Get("sendInitialEvents") == "true") {
				initialReads.Add(1)
			}
			return rt.RoundTrip(req)
		})
	})
	if h.watcher, err = kubernetes.NewForConfig(&rc); err != nil {
		t.Fatal(err)
	}
	h.startWatcher(t)

	// Before the outage: one incident, announced and settled; one healthy
	// Deployment.
	h.create(t, testDeployment("before", 2, map[string]string{sandbox.AnnotationCrashExitCode: "1"},
		corev1.Container{Name: "app", Image: "registry.example/before:1.0"}))
	h.create(t, testDeployment("later", 2, nil, corev1.Container{Name: "app", Image: "registry.example/later:1.0"}))
	before := events.IncidentID(testCluster, h.ns, "Deployment", "before", "app", events.IssueCrashLoopBackOff)
	h.waitEvent(t, 2*time.Minute, before, events.TransitionDetected)
	h.waitIncident(t, time.Minute, before, "2 pods", func(in events.Incident) bool { return in.PodCount == 2 })
	h.waitRolledOut(t, "later", 2)
	announcedBefore := len(h.events(t))

	// The outage. While the API server is down, etcd's revision moves on
	// (a write outside the Kubernetes keys), so that the restarted API
	// server's watch cache starts after every resource version the
	// watcher has seen: its watches cannot resume.
	listsBefore := initialReads.Load()
	restarted := make(chan error, 1)
	go func() { restarted <- c.RestartAPIServer(ctx, 30*time.Second) }()
	waitFor(t, time.Minute, "the API server to be down", func() (bool, string) {
		rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
		defer rcancel()
		_, err := h.admin.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(rctx)
		return err != nil, "still ready"
	})
	advanceEtcdRevision(t, c.Ports.EtcdClient)
	resp, err := h.analyze(events.AnalyzeRequest{Namespace: h.ns})
	if err != nil || resp.Total != 1 || resp.Incidents[0].ID != before {
		t.Errorf("analyze during the outage = %+v, %v; want the incident from memory", resp, err)
	}
	if err := <-restarted; err != nil {
		t.Fatal(err)
	}

	// Right after the restart, before the watcher's watches are back (they
	// back off while the API server is down): two workloads start failing.
	ctx2, cancel2 := context.WithTimeout(ctx, 30*time.Second)
	defer cancel2()
	patch := fmt.Appendf(nil, `{"spec":{"template":{"metadata":{"annotations":{%q:"139"}}}}}`, sandbox.AnnotationCrashExitCode)
	if _, err := h.admin.AppsV1().Deployments(h.ns).Patch(ctx2, "later", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	h.create(t, testDeployment("after", 1, nil, corev1.Container{Name: "web", Image: "registry.example/after:1.0-nonexistent"}))
	later := events.IncidentID(testCluster, h.ns, "Deployment", "later", "app", events.IssueCrashLoopBackOff)
	after := events.IncidentID(testCluster, h.ns, "Deployment", "after", "web", events.IssueImagePullBackOff)
	h.waitEvent(t, 3*time.Minute, later, events.TransitionDetected)
	h.waitEvent(t, 3*time.Minute, after, events.TransitionDetected)
	h.waitIncident(t, time.Minute, later, "segfault", func(in events.Incident) bool { return in.Reason == "segfault" })

	settled := len(h.events(t))
	quiet()
	all := h.events(t)
	if len(all) != settled {
		t.Errorf("announcements while nothing changed: %s", summary(all[settled:]))
	}
	for _, id := range []string{before, later, after} {
		detectedOnce(t, all, id)
		if n := count(all, id, events.TransitionResolved); n != 0 {
			t.Errorf("incident %s resolved %d times: %s", id, n, summary(all))
		}
	}
	for _, r := range all[announcedBefore:] {
		if r.event.Incident.ID == before {
			t.Errorf("the incident announced before the outage was announced again: %s", summary(all[announcedBefore:]))
		}
	}
	lastObs := map[string]int64{}
	for _, r := range all {
		id := r.event.Incident.ID
		if r.event.Observation != lastObs[id]+1 {
			t.Errorf("incident %s: observation %d after %d (a gap or a repeat): %s", id, r.event.Observation, lastObs[id], summary(all))
		}
		lastObs[id] = r.event.Observation
	}
	if n := initialReads.Load() - listsBefore; n < 1 {
		t.Errorf("the watcher did not re-list its pods after the outage (%d initial reads): the test did not exercise an expired watch", n)
	}
	resp, err = h.analyze(events.AnalyzeRequest{Namespace: h.ns})
	if err != nil || resp.Total != 3 {
		t.Errorf("analyze after the outage = %+v, %v; want the three incidents", resp, err)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// advanceEtcdRevision writes a key outside the Kubernetes prefix through
// etcd's HTTP gateway: the revision moves on without touching any object.
func advanceEtcdRevision(t *testing.T, port int) {
	t.Helper()
	enc := base64.StdEncoding.EncodeToString
	body, _ := json.Marshal(map[string]string{"key": enc([]byte("/kaar-test/revision")), "value": enc([]byte(time.Now().String()))})
	url := "http://127.0.0.1:" + strconv.Itoa(port) + "/v3/kv/put"
	for range 5 {
		resp, err := http.Post(url, "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatalf("etcd put: %v", err)
		}
		var buf bytes.Buffer
		_, _ = buf.ReadFrom(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(buf.String(), "revision") {
			t.Fatalf("etcd put: %s %s", resp.Status, buf.String())
		}
	}
}
