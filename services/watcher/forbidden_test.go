package watcher

import (
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// A role without PersistentVolumeClaims: the watcher says so once, as a
// warning naming the resource and what is not detected, however often
// the informer retries, and keeps retrying (a role granted later needs
// no restart).
func TestForbiddenReadIsSaidOnceAndRetried(t *testing.T) {
	t.Parallel()
	kube := fake.NewClientset()
	var lists atomic.Int32
	kube.PrependReactor("list", "persistentvolumeclaims", func(k8stesting.Action) (bool, runtime.Object, error) {
		lists.Add(1)
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "persistentvolumeclaims"}, "",
			errString("User \"kaar-watcher\" cannot list resource \"persistentvolumeclaims\""))
	})
	logs := &syncBuffer{}
	svc, err := New(Config{Cluster: "unit"}, Deps{NATS: embeddedBus(t, true), Kube: kube, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	runService(t, svc)
	waitFor(t, 30*time.Second, "the informer to retry the forbidden list", func() (bool, string) {
		return lists.Load() >= 3, logs.String()
	})
	out := logs.String()
	if n := strings.Count(out, "may not list or watch persistentvolumeclaims"); n != 1 {
		t.Errorf("%d warnings about persistentvolumeclaims after %d forbidden lists, want 1:\n%s", n, lists.Load(), out)
	}
	if !strings.Contains(out, "level=WARN") || !strings.Contains(out, "pending claims (PVCPending) are not detected") {
		t.Errorf("the warning does not say what is not detected:\n%s", out)
	}
	select {
	case <-svc.Ready():
	case <-time.After(30 * time.Second):
		t.Fatal("the watcher never got ready without the claims it may not read")
	}
}

type errString string

func (e errString) Error() string { return string(e) }
