package sandbox

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The conventions beyond the demo, on bare pods: each pod must reach the
// state its spec asks for, and its healthy twin must run.
func TestStageConventionsOnBarePods(t *testing.T) {
	c := ForTest(t)
	cs := c.Clientset()
	ns := NewNamespace(t, cs)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	pod := func(name string, mut func(*corev1.Pod)) *corev1.Pod {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: corev1.PodSpec{Containers: []corev1.Container{
				{Name: "app", Image: "ghcr.io/kaar-dev/demo/app:1.0"},
				{Name: "sidecar", Image: "ghcr.io/kaar-dev/demo/proxy:1.0"},
			}},
		}
		if mut != nil {
			mut(p)
		}
		return p
	}
	private := PrivateRegistry + "/team/app:1.0"
	tests := []struct {
		pod    *corev1.Pod
		status string
		check  func(t *testing.T, p *corev1.Pod)
	}{
		{pod("private-no-secret", func(p *corev1.Pod) { p.Spec.Containers[1].Image = private }), "ImagePullBackOff",
			func(t *testing.T, p *corev1.Pod) {
				if st := p.Status.ContainerStatuses; st[0].State.Running == nil || st[1].State.Waiting == nil {
					t.Errorf("want app running and sidecar waiting: %+v", st)
				}
				evs, _ := cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + p.Name})
				found := false
				for _, e := range evs.Items {
					found = found || (e.Reason == "Failed" && strings.Contains(e.Message, "401 Unauthorized") &&
						strings.HasPrefix(e.Message, fmt.Sprintf("Failed to pull image %q", private)) && e.InvolvedObject.FieldPath == "spec.containers{sidecar}")
				}
				if !found {
					t.Errorf("no Failed event with 401 Unauthorized for the sidecar: %v", evs.Items)
				}
			}},
		{pod("private-with-secret", func(p *corev1.Pod) {
			p.Spec.Containers[0].Image = private
			p.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "regcred"}}
		}), "Running", nil},
		{pod("crash-exit-0", func(p *corev1.Pod) { p.Annotations = map[string]string{AnnotationCrashExitCode: "0"} }), "CrashLoopBackOff",
			func(t *testing.T, p *corev1.Pod) {
				st := p.Status.ContainerStatuses
				if last := st[0].LastTerminationState.Terminated; last == nil || last.Reason != "Completed" || last.ExitCode != 0 {
					t.Errorf("last state %+v, want Completed 0", st[0].LastTerminationState)
				}
				if !st[1].Ready || st[1].State.Running == nil || st[1].RestartCount != 0 {
					t.Errorf("sidecar %+v, want running and ready", st[1])
				}
			}},
		{pod("missing-secret", func(p *corev1.Pod) {
			p.Spec.Containers[1].EnvFrom = []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "missing-creds"}}}}
		}), "CreateContainerConfigError", func(t *testing.T, p *corev1.Pod) {
			if w := p.Status.ContainerStatuses[1].State.Waiting; w == nil || w.Message != `secret "missing-creds" not found` {
				t.Errorf("sidecar waiting %+v", w)
			}
		}},
		{pod("missing-volume", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "tls", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "missing-tls"}}}}
			p.Spec.Containers[0].Image = "nginx:1.27-nonexistent" // the kubelet mounts before it pulls
		}), "ContainerCreating", func(t *testing.T, p *corev1.Pod) {
			for _, cs := range p.Status.ContainerStatuses {
				if w := cs.State.Waiting; w == nil || w.Reason != "ContainerCreating" {
					t.Errorf("container %s: %+v, want waiting ContainerCreating", cs.Name, cs.State)
				}
			}
			evs, _ := cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + p.Name})
			found := false
			for _, e := range evs.Items {
				found = found || e.Type == corev1.EventTypeWarning && e.Reason == "FailedMount" &&
					e.Message == `MountVolume.SetUp failed for volume "tls" : secret "missing-tls" not found`
			}
			if !found {
				t.Errorf("no FailedMount event naming volume tls and secret missing-tls: %v", evs.Items)
			}
		}},
		{pod("missing-volume-optional", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: "missing-cfg"}, Optional: ptrTo(true)}}}}
		}), "Running", nil},
		{pod("init-exit-2", func(p *corev1.Pod) {
			p.Annotations = map[string]string{AnnotationInitExitCode: "2"}
			p.Spec.InitContainers = []corev1.Container{
				{Name: "proxy", Image: "ghcr.io/kaar-dev/demo/proxy:1.0", RestartPolicy: ptrTo(corev1.ContainerRestartPolicyAlways)},
				{Name: "migrate", Image: "ghcr.io/kaar-dev/demo/migrate:1.0"},
				{Name: "seed", Image: "ghcr.io/kaar-dev/demo/seed:1.0"},
			}
		}), "Init:CrashLoopBackOff", func(t *testing.T, p *corev1.Pod) {
			st := p.Status.InitContainerStatuses
			if len(st) != 3 || st[0].State.Running == nil || st[2].State.Waiting == nil || st[2].State.Waiting.Reason != "PodInitializing" {
				t.Errorf("init statuses %+v, want the sidecar running and seed waiting PodInitializing", st)
			}
			m := st[1]
			if w, last := m.State.Waiting, m.LastTerminationState.Terminated; w == nil || w.Reason != "CrashLoopBackOff" || m.RestartCount != 3 ||
				!strings.HasPrefix(w.Message, "back-off 40s restarting failed container=migrate pod=init-exit-2_") ||
				last == nil || last.ExitCode != 2 || last.Reason != "Error" {
				t.Errorf("init container migrate %+v, want CrashLoopBackOff after exit code 2, 3 restarts", m)
			}
			for _, c := range p.Status.ContainerStatuses {
				if w := c.State.Waiting; w == nil || w.Reason != "PodInitializing" {
					t.Errorf("container %s %+v, want waiting PodInitializing", c.Name, c.State)
				}
			}
			if p.Status.Phase != corev1.PodPending || !strings.Contains(fmt.Sprint(p.Status.Conditions), "containers with incomplete status: [migrate]") {
				t.Errorf("phase %s conditions %+v, want Pending, not initialized for migrate", p.Status.Phase, p.Status.Conditions)
			}
			evs, _ := cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + p.Name})
			found := false
			for _, e := range evs.Items {
				found = found || e.Type == corev1.EventTypeWarning && e.Reason == "BackOff" && e.InvolvedObject.FieldPath == "spec.initContainers{migrate}" &&
					strings.HasPrefix(e.Message, "Back-off restarting failed container migrate in pod init-exit-2_")
			}
			if !found {
				t.Errorf("no Warning BackOff event for init container migrate: %v", evs.Items)
			}
		}},
		// Without an init container to fail, the annotation does nothing;
		// a healthy init container completes.
		{pod("init-exit-without-init", func(p *corev1.Pod) { p.Annotations = map[string]string{AnnotationInitExitCode: "1"} }), "Running", nil},
		{pod("init-ok", func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "migrate", Image: "ghcr.io/kaar-dev/demo/migrate:1.0"}}
		}), "Running", nil},
		{pod("usage-without-limit", func(p *corev1.Pod) { p.Annotations = map[string]string{AnnotationMemoryUsage: "10Gi"} }), "Running", nil},
		{pod("unmatched-selector", func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{"disktype": "ssd"} }), "Pending",
			func(t *testing.T, p *corev1.Pod) {
				if p.Spec.NodeName != "" || !strings.Contains(fmt.Sprint(p.Status.Conditions), "didn't match Pod's node affinity/selector") {
					t.Errorf("conditions %+v, want unschedulable for the node selector", p.Status.Conditions)
				}
			}},
	}
	for _, tt := range tests {
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, tt.pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range tests {
		t.Run(tt.pod.Name, func(t *testing.T) {
			var p *corev1.Pod
			err := poll(ctx, time.Minute, "wait for "+tt.status, func(ctx context.Context) (bool, string, error) {
				var err error
				p, err = cs.CoreV1().Pods(ns).Get(ctx, tt.pod.Name, metav1.GetOptions{})
				if err != nil {
					return false, "", err
				}
				ok := PodStatus(p) == tt.status
				if tt.status == "Pending" { // unschedulable, not merely not yet scheduled
					ok = ok && strings.Contains(fmt.Sprint(p.Status.Conditions), "Unschedulable")
				}
				return ok, PodStatus(p), nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if tt.check != nil {
				tt.check(t, p)
			}
		})
	}
}
