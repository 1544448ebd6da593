package watcher

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/kaar-dev/kaar/pkg/sandbox"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// An init container that keeps failing (the sandbox's init-exit-code
// convention: the pods show Init:CrashLoopBackOff and their containers
// never start).

// withInitContainer is a Deployment whose pods run init container
// migrate before app.
func withInitContainer(d *appsv1.Deployment) {
	d.Spec.Template.Spec.InitContainers = []corev1.Container{{Name: "migrate", Image: "registry.example/migrate:2.1"}}
}

func TestFailingInitContainerIsInitContainerFailingUntilFixed(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.startWatcher(t)
	store := h.startPlanner(t)
	d := testDeployment("web", 2, map[string]string{sandbox.AnnotationInitExitCode: "1"}, corev1.Container{Name: "app", Image: "nginx:1.27"})
	withInitContainer(d)
	h.create(t, d)

	id := events.IncidentID(testCluster, h.ns, "Deployment", "web", "migrate", events.IssueInitContainerFailing)
	r := h.waitIncident(t, 2*time.Minute, id, "2 pods", func(in events.Incident) bool { return in.PodCount == 2 })
	in := r.event.Incident
	if in.Owner.Kind != "Deployment" || in.Owner.Name != "web" || in.Container != "migrate" || in.Reason != "exit_code_1" ||
		in.ExitCode == nil || *in.ExitCode != 1 || in.Severity != events.SeverityHigh ||
		!strings.Contains(in.Message, "container migrate exited with code 1 (Error), 3 restarts") {
		t.Errorf("incident = %+v\nwant init container migrate of deployment web, exit code 1", in)
	}
	for _, r := range h.events(t) {
		if typ := r.event.Incident.Type; typ != events.IssueInitContainerFailing {
			t.Errorf("also announced %s %s/%s: the containers wait for the init container", typ, r.event.Incident.Owner.Kind, r.event.Incident.Owner.Name)
		}
	}
	// What the init container waits for or runs is the application's:
	// diagnostic, starting from its logs.
	p := wantPlan(t, store, id, events.IssueInitContainerFailing, "Deployment", "web", diagnostic)
	if titles := stepTitles(p); !strings.Contains(titles, "init container migrate") {
		t.Errorf("plan does not name the init container:\n%s", titles)
	}

	// Fixed: the init container succeeds in the new revision.
	patch := fmt.Appendf(nil, `{"spec":{"template":{"metadata":{"annotations":{%q:null}}}}}`, sandbox.AnnotationInitExitCode)
	if _, err := h.admin.AppsV1().Deployments(h.ns).Patch(ctx30(t), "web", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	h.waitEvent(t, 2*time.Minute, id, events.TransitionResolved)
	detectedOnce(t, h.events(t), id)
}

func TestInitContainerThatCompletesIsNoIncident(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.startWatcher(t)
	d := testDeployment("web", 2, nil, corev1.Container{Name: "app", Image: "nginx:1.27"})
	withInitContainer(d)
	h.create(t, d)
	h.waitRolledOut(t, "web", 2)
	quiet()
	if all := h.events(t); len(all) != 0 {
		t.Errorf("announcements for pods whose init container completed: %s", summary(all))
	}
}
