package planner

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// fieldManager names the planner in the API server's dry-run requests.
const fieldManager = "kaar-planner"

// dryRunner validates mutating steps with server-side dry runs: the API
// server runs admission, validation and defaulting and stores nothing.
type dryRunner struct {
	kube kubernetes.Interface
	now  func() time.Time
}

// run dry-runs one step and reports the outcome (never an error: a
// rejection is a result).
func (d dryRunner) run(ctx context.Context, s events.Step) events.DryRunResult {
	res := events.DryRunResult{At: d.now().UTC()}
	msg, err := d.apply(ctx, s)
	if err != nil {
		res.Message = dryRunError(err)
		return res
	}
	res.OK, res.Message = true, msg
	return res
}

func (d dryRunner) apply(ctx context.Context, s events.Step) (string, error) {
	t := s.Target
	dry := []string{metav1.DryRunAll}
	switch s.Action {
	case events.ActionDeletePod:
		uid := types.UID(s.Params["uid"])
		if err := d.kube.CoreV1().Pods(t.Namespace).Delete(ctx, t.Name, metav1.DeleteOptions{DryRun: dry, Preconditions: uidPrecondition(uid)}); err != nil {
			return "", err
		}
		return fmt.Sprintf("server dry run accepted: delete pod %s", t.Name), nil
	case events.ActionDeleteEvictedPods:
		names := strings.Split(s.Params["pods"], ",")
		uids := strings.Split(s.Params["uids"], ",")
		for i, name := range names {
			var uid types.UID
			if i < len(uids) {
				uid = types.UID(uids[i])
			}
			if err := d.kube.CoreV1().Pods(t.Namespace).Delete(ctx, name, metav1.DeleteOptions{DryRun: dry, Preconditions: uidPrecondition(uid)}); err != nil {
				return "", fmt.Errorf("pod %s: %w", name, err)
			}
		}
		return fmt.Sprintf("server dry run accepted: delete %s", plural(len(names), "pod")), nil
	}
	if s.PatchType != events.PatchJSON || len(s.Patch) == 0 {
		return "", fmt.Errorf("step %q has no JSON patch to dry-run", s.Action)
	}
	opts := metav1.PatchOptions{DryRun: dry, FieldManager: fieldManager}
	pt := types.JSONPatchType
	var gen int64
	var err error
	switch t.Kind {
	case KindDeployment:
		o, e := d.kube.AppsV1().Deployments(t.Namespace).Patch(ctx, t.Name, pt, s.Patch, opts)
		if err = e; e == nil {
			gen = o.Generation
		}
	case KindStatefulSet:
		o, e := d.kube.AppsV1().StatefulSets(t.Namespace).Patch(ctx, t.Name, pt, s.Patch, opts)
		if err = e; e == nil {
			gen = o.Generation
		}
	case KindDaemonSet:
		o, e := d.kube.AppsV1().DaemonSets(t.Namespace).Patch(ctx, t.Name, pt, s.Patch, opts)
		if err = e; e == nil {
			gen = o.Generation
		}
	case KindCronJob:
		o, e := d.kube.BatchV1().CronJobs(t.Namespace).Patch(ctx, t.Name, pt, s.Patch, opts)
		if err = e; e == nil {
			gen = o.Generation
		}
	case KindPod:
		o, e := d.kube.CoreV1().Pods(t.Namespace).Patch(ctx, t.Name, pt, s.Patch, opts)
		if err = e; e == nil {
			gen = o.Generation
		}
	case KindService:
		// A Service has no generation: the answer is its resourceVersion
		// check and what the patch leaves.
		o, e := d.kube.CoreV1().Services(t.Namespace).Patch(ctx, t.Name, pt, s.Patch, opts)
		if e != nil {
			return "", e
		}
		return fmt.Sprintf("server dry run accepted: service/%s would have selector %s and ports %s", t.Name,
			quote(labelsString(o.Spec.Selector)), quote(strings.Join(servicePortStrings(o.Spec.Ports), ", "))), nil
	default:
		return "", fmt.Errorf("no dry run for a patch of a %s", t.Kind)
	}
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("server dry run accepted: %s/%s would be at generation %d", strings.ToLower(t.Kind), t.Name, gen), nil
}

func uidPrecondition(uid types.UID) *metav1.Preconditions {
	if uid == "" {
		return nil
	}
	return &metav1.Preconditions{UID: &uid}
}

// dryRunError renders an API error for people: the server's message, with
// the status reason when it says more.
func dryRunError(err error) string {
	var st apierrors.APIStatus
	if errors.As(err, &st) {
		s := st.Status()
		msg := s.Message
		if msg == "" {
			msg = err.Error()
		}
		if s.Reason != "" && !strings.Contains(msg, string(s.Reason)) {
			msg = string(s.Reason) + ": " + msg
		}
		return msg
	}
	return err.Error()
}
