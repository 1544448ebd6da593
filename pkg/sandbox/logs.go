package sandbox

import (
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"path/filepath"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/kaar-dev/kaar/pkg/sandbox/podlogs"
)

// AnnotationLog (pod annotation, usually in a pod template): the log of
// the pod's first container, one log line per line of text. `kubectl logs`
// (client-go GetLogs) returns it; for a container in a crash loop it is the
// log of the run that ended, returned with and without previous=true, as a
// kubelet does. Other containers, and pods without it, have an empty log.
const AnnotationLog = podlogs.Annotation

// logsCRD is kwok's Logs CRD, installed before kwok starts.
//
//go:embed stages/logs-crd.yaml
var logsCRD []byte

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// renderKwokConfig returns kwok's --config: the stages, a ClusterLogs
// that gives every container an empty log (instead of an error) unless the
// pod log writer made a Logs object for its pod, and the resource usage
// and metrics metrics-server scrapes (renderMetricsConfig) unless metrics
// is false.
func renderKwokConfig(podLogsDir string, metrics bool) ([]byte, error) {
	stages, err := RenderStages()
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.Write(stages)
	fmt.Fprintf(&b, `
---
# Every container has an empty log by default; pods annotated %s get
# their own through a Logs object (pkg/sandbox/podlogs).
apiVersion: kwok.x-k8s.io/v1alpha1
kind: ClusterLogs
metadata:
  name: kaar-sandbox-empty
spec:
  selector: {}
  logs:
  - logsFile: %q
`, AnnotationLog, filepath.Join(podLogsDir, podlogs.EmptyLog))
	if metrics {
		b.WriteString(renderMetricsConfig())
	}
	return b.Bytes(), nil
}

// installLogsCRD creates kwok's Logs CRD and waits until it is served.
func installLogsCRD(ctx context.Context, c *Cluster) error {
	var obj map[string]any
	if err := yaml.Unmarshal(logsCRD, &obj); err != nil {
		return fmt.Errorf("logs CRD: %w", err)
	}
	dyn, err := dynamic.NewForConfig(c.RESTConfig())
	if err != nil {
		return fmt.Errorf("logs CRD: %w", err)
	}
	crds := dyn.Resource(crdGVR)
	if _, err := crds.Create(ctx, &unstructured.Unstructured{Object: obj}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("logs CRD: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		cur, err := crds.Get(ctx, "logs.kwok.x-k8s.io", metav1.GetOptions{})
		if err == nil && crdEstablished(cur) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("logs CRD not established: %w (last error: %v)", ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func crdEstablished(crd *unstructured.Unstructured) bool {
	conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == "Established" && m["status"] == "True" {
			return true
		}
	}
	return false
}
