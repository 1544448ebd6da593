package planner

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/kaar-dev/kaar/pkg/events"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// A previous log the kubelet cannot serve yet (a container that ended a
// moment ago) is read again, at most logAttempts times; a pod that is
// gone is not.
func TestPreviousLogsAreReadAgainAfterAFailure(t *testing.T) {
	for name, tc := range map[string]struct {
		failures, status, wantCalls int
		wantLines                   bool
	}{
		"refused twice, then the log": {2, http.StatusBadRequest, 3, true},
		"unavailable, then the log":   {1, http.StatusServiceUnavailable, 2, true},
		"refused every time":          {9, http.StatusBadRequest, logAttempts, false},
		"not found: once":             {9, http.StatusNotFound, 1, false},
	} {
		t.Run(name, func(t *testing.T) {
			var calls atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if !strings.HasSuffix(r.URL.Path, "/pods/p/log") || r.URL.Query().Get("previous") != "true" {
					http.Error(w, "unexpected", http.StatusTeapot)
					return
				}
				if int(calls.Add(1)) <= tc.failures {
					w.WriteHeader(tc.status)
					return
				}
				_, _ = w.Write([]byte("Error: required environment variable DATABASE_URL is not set\n"))
			}))
			t.Cleanup(srv.Close)
			kube, err := kubernetes.NewForConfig(&rest.Config{Host: srv.URL})
			if err != nil {
				t.Fatal(err)
			}
			r := reader{kube: kube, cfg: Config{LogTailLines: DefaultLogTailLines, LogLimitBytes: DefaultLogLimitBytes}}
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}}}}
			res := r.previousLogs(t.Context(), pod, events.Incident{Container: "app"})
			if got := int(calls.Load()); got != tc.wantCalls {
				t.Errorf("%d reads, want %d", got, tc.wantCalls)
			}
			if tc.wantLines != (res.Err == "" && len(res.Lines) == 1) {
				t.Errorf("result %+v, want lines: %t", res, tc.wantLines)
			}
		})
	}
}
