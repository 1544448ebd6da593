package watcher

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// The Certificates' informer follows the watch stream, not only its
// lists: the dynamic client decodes cert-manager's kinds, which the
// clientset's own scheme does not know. The API server here lists no
// Certificate and then announces one on the watch (or streams it as
// the list, when the client asks for one); the cache must hold it (a client decoding the watch with the clientset's scheme gets
// "no kind Certificate is registered" and sees it at no relist).
func TestCertificateInformerDecodesTheWatch(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.URL.Path == "/apis/cert-manager.io/v1":
			fmt.Fprint(w, `{"kind":"APIResourceList","apiVersion":"v1","groupVersion":"cert-manager.io/v1","resources":[{"name":"certificates","namespaced":true,"kind":"Certificate","verbs":["list","watch"]}]}`)
		case r.URL.Path == "/apis/cert-manager.io/v1/certificates" && r.URL.Query().Get("watch") == "true":
			fmt.Fprint(w, `{"type":"ADDED","object":{"apiVersion":"cert-manager.io/v1","kind":"Certificate","metadata":{"name":"web","namespace":"shop","resourceVersion":"2"},"spec":{"secretName":"web-tls"},"status":{"notAfter":"2030-01-01T00:00:00Z"}}}`+"\n")
			if r.URL.Query().Get("sendInitialEvents") == "true" { // a streamed list: its end
				fmt.Fprint(w, `{"type":"BOOKMARK","object":{"apiVersion":"cert-manager.io/v1","kind":"Certificate","metadata":{"resourceVersion":"2","annotations":{"k8s.io/initial-events-end":"true"}}}}`+"\n")
			}
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		case r.URL.Path == "/apis/cert-manager.io/v1/certificates":
			fmt.Fprint(w, `{"apiVersion":"cert-manager.io/v1","kind":"CertificateList","metadata":{"resourceVersion":"1"},"items":[]}`)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	cs, err := kubernetes.NewForConfig(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Cluster: "unit", Debounce: time.Millisecond, Warnings: WarningOptions{Enabled: true}},
		Deps{NATS: embeddedBus(t, false), Kube: cs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.queue.ShutDown)
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(func() { cancel(); s.capacity.stopCerts(s) })
	s.capacity.discoverCerts(ctx, s)
	c := s.capacity.certs.Load()
	if c == nil {
		t.Fatal("the Certificates' informer did not start")
	}
	deadline := time.Now().Add(10 * time.Second)
	for get[CertificateSummary](c.inf, "shop", "web") == nil {
		if time.Now().After(deadline) {
			t.Fatal("certificate shop/web, announced on the watch, is not in the cache")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if cert := get[CertificateSummary](c.inf, "shop", "web"); cert.SecretName != "web-tls" || cert.NotAfter.IsZero() {
		t.Errorf("cached %+v", cert)
	}
}
