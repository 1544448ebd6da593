package planner

import (
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/kaar-dev/kaar/pkg/events"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestPendingSteps: one step per cause (taints together, resources
// together), the causes with the most nodes first, each saying how many
// nodes refused the pod for it.
func TestPendingSteps(t *testing.T) {
	node := func(name string, taints ...corev1.Taint) corev1.Node {
		return corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{Taints: taints},
			Status: corev1.NodeStatus{Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("16"), corev1.ResourceMemory: resource.MustParse("64Gi")}}}
	}
	gpu := corev1.Taint{Key: "dedicated", Value: "gpu", Effect: corev1.TaintEffectNoSchedule}
	nodes := []corev1.Node{node("n0", gpu), node("n1", gpu), node("n2")}
	spec := &corev1.PodSpec{
		NodeSelector: map[string]string{"disk": "ssd"},
		Containers: []corev1.Container{{Name: "app",
			Ports:     []corev1.ContainerPort{{ContainerPort: 80, HostPort: 8080}},
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("20"), corev1.ResourceMemory: resource.MustParse("1Gi")}}}},
	}
	const preempt = " preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
	for _, tc := range []struct {
		name, msg string
		want      []string // each step's title contains its string, in order
	}{
		{"taint and cpu", "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {dedicated: gpu}." + preempt, []string{
			"2 of 3 nodes carry taint dedicated=gpu:NoSchedule that deployment/web does not tolerate",
			"1 of 3 nodes has not enough free cpu for a pod's request of 20, more than any node can allocate (largest 16): lower the requests of deployment/web",
		}},
		{"unnamed taints (1.37)", "0/3 nodes are available: 2 node(s) had untolerated taint(s), 1 node(s) didn't match Pod's node affinity/selector." + preempt, []string{
			"2 of 3 nodes carry taints (dedicated=gpu:NoSchedule on 2 nodes) that deployment/web does not tolerate",
			"1 of 3 nodes does not match the node selector or affinity of deployment/web (nodeSelector disk=ssd)",
		}},
		{"host port", "0/3 nodes are available: 3 node(s) didn't have free ports for the requested pod ports." + preempt, []string{
			"3 of 3 nodes have host port 8080/TCP in use already: remove hostPort from deployment/web",
		}},
		{"cordoned and anti-affinity", "0/3 nodes are available: 1 node(s) were unschedulable, 2 node(s) didn't match pod anti-affinity rules.", []string{
			"2 of 3 nodes run a pod that the anti-affinity rules of deployment/web exclude",
			"1 of 3 nodes is cordoned",
		}},
		{"condition taint", "0/3 nodes are available: 3 node(s) had untolerated taint {node.kubernetes.io/not-ready: }.", []string{
			"3 of 3 nodes carry taint node.kubernetes.io/not-ready that deployment/web does not tolerate",
		}},
		{"missing claim", `0/3 nodes are available: persistentvolumeclaim "data" not found.` + preempt, []string{
			"PersistentVolumeClaim data does not exist",
		}},
		{"volume node affinity", "0/3 nodes are available: 3 node(s) had volume node affinity conflict.", []string{
			"3 of 3 nodes are outside the node affinity of the PersistentVolumes",
		}},
		{"the incident's compact form", "0/3 nodes: 2 untolerated taint dedicated=gpu, 1 insufficient memory", []string{
			"2 of 3 nodes carry taint dedicated=gpu:NoSchedule",
			"1 of 3 nodes has not enough free memory for a pod's request of 1Gi: lower",
		}},
		{"unknown", "something else", []string{"Read why the scheduler cannot place the pod"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := planInput{
				Incident: events.Incident{Type: events.IssuePending, Namespace: "shop", Message: tc.msg},
				Owner:    &workload{Ref: events.ObjectRef{Kind: "Deployment", Namespace: "shop", Name: "web"}, Spec: spec},
				Nodes:    nodes,
			}
			steps := humanSteps(in)
			if len(steps) != len(tc.want) {
				t.Fatalf("%d steps, want %d: %+v", len(steps), len(tc.want), titles(steps))
			}
			for i, w := range tc.want {
				if !strings.Contains(steps[i].Title, w) {
					t.Errorf("step %d = %q, want it to contain %q", i, steps[i].Title, w)
				}
			}
			if tc.name == "condition taint" && !strings.Contains(steps[0].Title, "fix the node") {
				t.Errorf("a node condition taint's step does not say to fix the node: %q", steps[0].Title)
			}
		})
	}
}

func titles(steps []events.Step) []string {
	out := make([]string, len(steps))
	for i, s := range steps {
		out[i] = s.Title
	}
	return out
}

// countedStep finds the diagnostic step whose title is "<n> of <total>
// nodes <rest>..." and returns n and total; it fails the test when none is.
func countedStep(t *testing.T, steps []events.Step, rest string) (n, total int) {
	t.Helper()
	re := regexp.MustCompile(`^(\d+) of (\d+) nodes? ` + regexp.QuoteMeta(rest))
	for _, s := range steps {
		if m := re.FindStringSubmatch(s.Title); m != nil {
			n, _ = strconv.Atoi(m[1])
			total, _ = strconv.Atoi(m[2])
			return n, total
		}
	}
	t.Fatalf("no step titled \"<n> of <total> nodes %s...\": %q", rest, titles(steps))
	return 0, 0
}
