package sandbox

import (
	"context"
	"encoding/base64"
	"fmt"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
)

// The resource metrics API as the sandbox serves it: metrics-server,
// registered with kube-apiserver's aggregation layer.
const (
	// MetricsAPIService is the APIService of the resource metrics API.
	MetricsAPIService = "v1beta1.metrics.k8s.io"
	// metricsServerService is the Service (kube-system) the APIService
	// names: an ExternalName of 127.0.0.1, which kube-apiserver's
	// aggregator dials on the APIService's port, no kube-proxy needed.
	metricsServerService = "metrics-server"
	// metricResolution is metrics-server's scrape period, the shortest it
	// accepts: a pod's metrics appear one or two periods after it starts
	// (metrics-server needs two CPU samples).
	metricResolution = "10s"
)

var apiServiceGVR = schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"}

// metricsServerArgs are metrics-server's flags: it serves on 127.0.0.1:port
// with a certificate of the sandbox CA, authenticates kube-apiserver's
// proxied requests by the front-proxy certificate (the requestheader
// configuration kube-apiserver publishes in kube-system), and scrapes
// kwok's kubelet server for every node: address localhost
// (InternalDNS), port from the node status, path from the node's
// MetricsPathAnnotation, kwok's self-signed certificate not verified.
func metricsServerArgs(kubeconfig string, pki pkiFiles, port int) []string {
	return []string{
		"--kubeconfig=" + kubeconfig,
		"--authentication-kubeconfig=" + kubeconfig,
		"--authorization-kubeconfig=" + kubeconfig,
		"--bind-address=127.0.0.1", "--secure-port=" + strconv.Itoa(port),
		"--tls-cert-file=" + pki.MetricsServerCert, "--tls-private-key-file=" + pki.MetricsServerKey,
		"--kubelet-preferred-address-types=InternalDNS,InternalIP,Hostname",
		"--kubelet-use-node-status-port",
		"--kubelet-insecure-tls",
		"--metric-resolution=" + metricResolution,
		"--kubelet-request-timeout=5s", // shorter than the resolution, as metrics-server requires
		"--profiling=false",
	}
}

// aggregationArgs are kube-apiserver's flags of the aggregation layer: the
// front-proxy CA and client certificate it proxies metrics.k8s.io with.
func aggregationArgs(pki pkiFiles) []string {
	return []string{
		"--requestheader-client-ca-file=" + pki.FrontProxyCACert,
		"--requestheader-allowed-names=" + proxyClientName,
		"--requestheader-username-headers=X-Remote-User",
		"--requestheader-group-headers=X-Remote-Group",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--proxy-client-cert-file=" + pki.ProxyClientCert,
		"--proxy-client-key-file=" + pki.ProxyClientKey,
	}
}

// installMetricsAPI registers metrics-server (listening on 127.0.0.1:port,
// its certificate signed by the CA in caPEM) as the resource metrics API,
// and lets every user who may view a namespace read its metrics, as
// metrics-server's own manifest does (ClusterRole
// system:aggregated-metrics-reader, aggregated into view, edit and admin).
func installMetricsAPI(ctx context.Context, cs kubernetes.Interface, dyn dynamic.Interface, port int, caPEM []byte) error {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: metricsServerService, Namespace: metav1.NamespaceSystem, Labels: map[string]string{"k8s-app": "metrics-server"}},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "127.0.0.1"},
	}
	if _, err := cs.CoreV1().Services(metav1.NamespaceSystem).Create(ctx, svc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("metrics API: service: %w", err)
	}
	reader := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "system:aggregated-metrics-reader", Labels: map[string]string{
			"k8s-app": "metrics-server",
			"rbac.authorization.k8s.io/aggregate-to-admin": "true",
			"rbac.authorization.k8s.io/aggregate-to-edit":  "true",
			"rbac.authorization.k8s.io/aggregate-to-view":  "true",
		}},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{"metrics.k8s.io"}, Resources: []string{"pods", "nodes"}, Verbs: []string{"get", "list", "watch"}}},
	}
	if _, err := cs.RbacV1().ClusterRoles().Create(ctx, reader, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("metrics API: cluster role: %w", err)
	}
	apiService := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiregistration.k8s.io/v1",
		"kind":       "APIService",
		"metadata":   map[string]any{"name": MetricsAPIService, "labels": map[string]any{"k8s-app": "metrics-server"}},
		"spec": map[string]any{
			"group":                "metrics.k8s.io",
			"version":              "v1beta1",
			"groupPriorityMinimum": int64(100),
			"versionPriority":      int64(100),
			"caBundle":             base64.StdEncoding.EncodeToString(caPEM),
			"service":              map[string]any{"namespace": metav1.NamespaceSystem, "name": metricsServerService, "port": int64(port)},
		},
	}}
	if _, err := dyn.Resource(apiServiceGVR).Create(ctx, apiService, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("metrics API: APIService: %w", err)
	}
	return nil
}

// metricsAPIAvailable succeeds once kube-apiserver reports the metrics
// APIService Available (it reached metrics-server's discovery).
func metricsAPIAvailable(ctx context.Context, dyn dynamic.Interface) error {
	cur, err := dyn.Resource(apiServiceGVR).Get(ctx, MetricsAPIService, metav1.GetOptions{})
	if err != nil {
		return err
	}
	conds, _, _ := unstructured.NestedSlice(cur.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == "Available" {
			if m["status"] == "True" {
				return nil
			}
			return fmt.Errorf("APIService %s not available: %v: %v", MetricsAPIService, m["reason"], m["message"])
		}
	}
	return fmt.Errorf("APIService %s has no Available condition yet", MetricsAPIService)
}
