// Package kubeclient loads kaar's Kubernetes client configuration: the
// kubeconfig file and context of config.Kubernetes, $KUBECONFIG,
// ~/.kube/config, or the in-cluster service account. Only the services
// that talk to the cluster (watcher, planner, executor) import it; the
// gateway and the notifier never link a Kubernetes client.
package kubeclient

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kaar-dev/kaar/pkg/config"
)

// ErrNoCluster means no kubeconfig or in-cluster configuration was found.
var ErrNoCluster = errors.New("no Kubernetes configuration found (no --kubeconfig, $KUBECONFIG, ~/.kube/config or in-cluster service account)")

// KubeconfigPath returns the kubeconfig file to use, or "" for in-cluster
// configuration, or ErrNoCluster.
func KubeconfigPath(c config.Kubernetes) (string, error) {
	if c.Kubeconfig != "" {
		return c.Kubeconfig, nil
	}
	if env := os.Getenv("KUBECONFIG"); env != "" {
		return env, nil
	}
	if home, err := os.UserHomeDir(); err == nil {
		p := filepath.Join(home, ".kube", "config")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if os.Getenv("KUBERNETES_SERVICE_HOST") != "" {
		return "", nil
	}
	return "", ErrNoCluster
}

// RestConfig loads the client configuration for the configured kubeconfig
// and context.
func RestConfig(c config.Kubernetes) (*rest.Config, error) {
	path, err := KubeconfigPath(c)
	if err != nil {
		return nil, err
	}
	var rc *rest.Config
	if path == "" {
		rc, err = rest.InClusterConfig()
	} else {
		rules := &clientcmd.ClientConfigLoadingRules{ExplicitPath: path}
		if c.Kubeconfig == "" {
			rules = clientcmd.NewDefaultClientConfigLoadingRules()
			rules.ExplicitPath = ""
			if os.Getenv("KUBECONFIG") == "" {
				rules.ExplicitPath = path
			}
		}
		overrides := &clientcmd.ConfigOverrides{CurrentContext: c.Context}
		rc, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides).ClientConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("kubernetes client configuration (kubeconfig %q, context %q): %w", path, c.Context, err)
	}
	rc.UserAgent = "kaar"
	rc.QPS, rc.Burst = 50, 100
	return rc, nil
}

// Clientset is the typed client of the configured cluster.
func Clientset(c config.Kubernetes) (kubernetes.Interface, error) {
	rc, err := RestConfig(c)
	if err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return cs, nil
}
