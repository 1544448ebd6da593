package sandbox

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
)

// PodStatus returns the STATUS column `kubectl get pods` shows for pod: a
// port of the pod printer of kubectl 1.37 (k8s.io/kubernetes
// pkg/printers/internalversion, printPod), so that tests can assert on
// what a user would see. The end-to-end test checks it against the real
// kubectl.
func PodStatus(pod *corev1.Pod) string {
	reason := string(pod.Status.Phase)
	if pod.Status.Reason != "" {
		reason = pod.Status.Reason
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Reason == corev1.PodReasonSchedulingGated {
			reason = corev1.PodReasonSchedulingGated
		}
	}
	reason, initializing := initStatus(pod, reason)
	if !initializing || conditionTrue(pod, corev1.PodInitialized) {
		reason = containersStatus(pod, reason)
	}
	terminal := pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed
	switch {
	case pod.DeletionTimestamp != nil && pod.Status.Reason == "NodeLost":
		reason = "Unknown"
	case pod.DeletionTimestamp != nil && !terminal:
		reason = "Terminating"
	}
	return reason
}

// initStatus is the status the first init container that has not finished
// (nor started, for a sidecar) gives the pod, and initializing true; or
// reason unchanged and false when every one has.
func initStatus(pod *corev1.Pod, reason string) (string, bool) {
	initContainers := make(map[string]*corev1.Container, len(pod.Spec.InitContainers))
	for i := range pod.Spec.InitContainers {
		initContainers[pod.Spec.InitContainers[i].Name] = &pod.Spec.InitContainers[i]
	}
	for i, cs := range pod.Status.InitContainerStatuses {
		switch {
		case cs.State.Terminated != nil && cs.State.Terminated.ExitCode == 0:
			continue
		case restartable(initContainers[cs.Name]) && cs.Started != nil && *cs.Started:
			continue
		case cs.State.Terminated != nil:
			return terminatedStatus("Init:", cs.State.Terminated), true
		case cs.State.Waiting != nil && cs.State.Waiting.Reason != "" && cs.State.Waiting.Reason != "PodInitializing":
			return "Init:" + cs.State.Waiting.Reason, true
		default:
			return fmt.Sprintf("Init:%d/%d", i, len(pod.Spec.InitContainers)), true
		}
	}
	return reason, false
}

// containersStatus is the status the containers give the pod, the first
// one's winning; a "Completed" pod with containers still running is
// Running, NotReady or the error of one that failed.
func containersStatus(pod *corev1.Pod, reason string) string {
	hasRunning := false
	errorReason := ""
	for i := len(pod.Status.ContainerStatuses) - 1; i >= 0; i-- {
		cs := pod.Status.ContainerStatuses[i]
		switch {
		case cs.State.Waiting != nil && cs.State.Waiting.Reason != "":
			reason = cs.State.Waiting.Reason
		case cs.State.Terminated != nil:
			reason = terminatedStatus("", cs.State.Terminated)
			if cs.State.Terminated.ExitCode != 0 {
				errorReason = reason
			}
		case cs.Ready && cs.State.Running != nil:
			hasRunning = true
		}
	}
	if reason == "Completed" {
		switch {
		case hasRunning && conditionTrue(pod, corev1.PodReady):
			reason = "Running"
		case errorReason != "":
			reason = errorReason
		case hasRunning:
			reason = "NotReady"
		}
	}
	return reason
}

// terminatedStatus is a terminated container's status: its reason, else
// the signal or the exit code that ended it.
func terminatedStatus(prefix string, t *corev1.ContainerStateTerminated) string {
	switch {
	case t.Reason != "":
		return prefix + t.Reason
	case t.Signal != 0:
		return fmt.Sprintf("%sSignal:%d", prefix, t.Signal)
	default:
		return fmt.Sprintf("%sExitCode:%d", prefix, t.ExitCode)
	}
}

func restartable(c *corev1.Container) bool {
	return c != nil && c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
}

func conditionTrue(pod *corev1.Pod, t corev1.PodConditionType) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == t {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
