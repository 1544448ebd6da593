package sandbox

import (
	"context"
	"fmt"
	"hash/fnv"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// kwokNodeAnnotation marks the nodes kwok manages.
const kwokNodeAnnotation = "kwok.x-k8s.io/node"

// NodeName returns the name of the i-th sandbox node.
func NodeName(i int) string { return fmt.Sprintf("kwok-node-%d", i) }

var zones = []string{"sandbox-a", "sandbox-b", "sandbox-c"}

// kwokNode is the Node object of the i-th sandbox node.
func kwokNode(i int, o Options) *corev1.Node {
	name := NodeName(i)
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse(o.NodeCPU),
		corev1.ResourceMemory: resource.MustParse(o.NodeMemory),
		corev1.ResourcePods:   *resource.NewQuantity(int64(o.NodePods), resource.DecimalSI),
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: name,
			Labels: map[string]string{
				"kubernetes.io/hostname":      name,
				"kubernetes.io/os":            "linux",
				"kubernetes.io/arch":          "amd64",
				"type":                        "kwok",
				"topology.kubernetes.io/zone": zones[i%len(zones)],
				"node.kubernetes.io/exclude-from-external-load-balancers": "true",
			},
			Annotations: map[string]string{
				kwokNodeAnnotation:             "fake",
				"node.alpha.kubernetes.io/ttl": "0",
				// metrics-server finds the node's resource metrics here on
				// kwok's kubelet server.
				MetricsPathAnnotation: metricsPath(name),
			},
		},
		Status: corev1.NodeStatus{
			Addresses: []corev1.NodeAddress{
				// All kwok nodes share one kubelet server, kwok's, on
				// 127.0.0.1; the API server dials InternalDNS first.
				{Type: corev1.NodeInternalDNS, Address: "localhost"},
				{Type: corev1.NodeInternalIP, Address: fmt.Sprintf("10.240.%d.%d", i/250, i%250+1)},
				{Type: corev1.NodeHostName, Address: name},
			},
			Capacity:    capacity,
			Allocatable: capacity.DeepCopy(),
			NodeInfo: corev1.NodeSystemInfo{
				Architecture:    "amd64",
				OperatingSystem: "linux",
				KubeletVersion:  "v" + KubernetesVersion,
				OSImage:         "kwok " + KwokVersion + " (simulated node)",
			},
		},
	}
}

// createNodes creates the kwok nodes that do not exist yet.
func createNodes(ctx context.Context, cs kubernetes.Interface, o Options) error {
	for i := range o.Nodes {
		_, err := cs.CoreV1().Nodes().Create(ctx, kwokNode(i, o), metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create node %s: %w", NodeName(i), err)
		}
	}
	return nil
}

// nodesReady succeeds when at least n kwok nodes are Ready.
func nodesReady(ctx context.Context, cs kubernetes.Interface, n int) error {
	list, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	ready := 0
	for _, node := range list.Items {
		if node.Annotations[kwokNodeAnnotation] == "" {
			continue
		}
		for _, c := range node.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				ready++
			}
		}
	}
	if ready < n {
		return fmt.Errorf("%d of %d nodes Ready", ready, n)
	}
	return nil
}

// defaultServiceAccount succeeds once kube-controller-manager has created
// the default ServiceAccount (pods cannot be created before).
func defaultServiceAccount(ctx context.Context, cs kubernetes.Interface) error {
	_, err := cs.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{})
	return err
}

// TaintExtraNode is the NoSchedule taint of the nodes AddNode creates, so
// that only pods that tolerate it (a test's own) run there.
const TaintExtraNode = "sandbox.kaar.dev/extra-node"

// AddNode creates one more kwok node called name, with the default
// capacity, tainted TaintExtraNode=true:NoSchedule: a node a test may make
// NotReady (AnnotationNodeReady), put under pressure
// (AnnotationNodePressure) or cordon without touching the pods of other
// tests on a shared sandbox. Its pods tolerate the taint and name it
// (spec.nodeName or a nodeSelector on kubernetes.io/hostname). Delete the
// node when done; kwok runs it as it runs the others.
func AddNode(ctx context.Context, cs kubernetes.Interface, name string) (*corev1.Node, error) {
	o, err := Options{StateDir: "unused"}.withDefaults()
	if err != nil {
		return nil, err
	}
	n := kwokNode(0, o)
	n.Name = name
	n.Labels["kubernetes.io/hostname"] = name
	n.Labels[TaintExtraNode] = "true"
	n.Annotations[MetricsPathAnnotation] = metricsPath(name)
	for i, a := range n.Status.Addresses {
		switch a.Type {
		case corev1.NodeHostName:
			n.Status.Addresses[i].Address = name
		case corev1.NodeInternalIP: // 10.241.0.0/16, apart from the default nodes
			h := fnv.New32a()
			h.Write([]byte(name))
			n.Status.Addresses[i].Address = fmt.Sprintf("10.241.%d.%d", h.Sum32()>>8%256, h.Sum32()%250+1)
		}
	}
	n.Spec.Taints = []corev1.Taint{{Key: TaintExtraNode, Value: "true", Effect: corev1.TaintEffectNoSchedule}}
	created, err := cs.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("add node %s: %w", name, err)
	}
	return created, nil
}
