package executor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/kaar-dev/kaar/pkg/events"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// generationPath is the path of the test operation that guards every
// planned JSON patch.
const generationPath = "/metadata/generation"

// stepRunner applies the steps of one claimed plan, in order, and keeps
// what later steps and the verification need.
type stepRunner struct {
	s    *Service
	plan events.Plan
	// generations holds the generation each object had after this plan
	// patched it, so a later step's generation test can be moved forward.
	generations map[string]int64
	// patched lists the patch steps this plan applied (or found applied
	// when resuming), in order: what undo reverts.
	patched []events.Step
	// lastPatched holds the generation of the last successful patch of
	// each object (what the step's result records); unlike generations it
	// is not carried over from an interrupted execution.
	lastPatched map[string]int64
	// deleted maps the UID of every pod this plan deleted to its name.
	deleted map[string]string
	// applied is true once a step changed the cluster.
	applied bool
	// stale is true when the last failure was the generation test: the
	// object changed under the plan.
	stale bool
	// resuming is set when the runner continues an execution that an
	// executor crash interrupted: a patch whose generation test fails is
	// then checked for having been applied before the crash.
	resuming bool
}

// restore takes over what a step of an interrupted execution did: the
// generation a patch left its object at guards the next patch of it.
func (r *stepRunner) restore(st events.Step, res events.StepResult) {
	if !st.Mutating {
		return
	}
	r.applied = true
	if len(st.Patch) > 0 && !isDeletion(st) {
		r.patched = append(r.patched, st)
	}
	if res.Generation > 0 {
		ref := st.Target
		if ref.Namespace == "" {
			ref.Namespace = r.plan.Namespace
		}
		r.generations[objectKey(ref)] = res.Generation
	}
}

// generationAfter is the generation the step's patch left its object at
// (0 for other steps, or when the patch failed).
func (r *stepRunner) generationAfter(st events.Step) int64 {
	if !st.Mutating || len(st.Patch) == 0 || isDeletion(st) {
		return 0
	}
	ref := st.Target
	if ref.Namespace == "" {
		ref.Namespace = r.plan.Namespace
	}
	return r.lastPatched[objectKey(ref)]
}

func newStepRunner(s *Service, p events.Plan) *stepRunner {
	return &stepRunner{s: s, plan: p, generations: map[string]int64{}, lastPatched: map[string]int64{}, deleted: map[string]string{}}
}

func objectKey(ref events.ObjectRef) string { return ref.Kind + "/" + ref.Namespace + "/" + ref.Name }

// apply performs one step and returns its status, the summary of the API
// server's answer and the error of a failed step. Non-mutating steps are
// skipped without touching the cluster.
func (r *stepRunner) apply(ctx context.Context, st events.Step) (events.StepStatus, string, error) {
	if !st.Mutating {
		return events.StepSkipped, "", nil
	}
	ref := st.Target
	if ref.Namespace == "" {
		ref.Namespace = r.plan.Namespace
	}
	var summary string
	var err error
	switch {
	case st.Action == events.ActionDeletePod:
		summary, err = r.deletePod(ctx, ref, false)
	case st.Action == events.ActionDeleteEvictedPods && ref.Kind == kindPod:
		summary, err = r.deletePod(ctx, ref, true)
	case st.Action == events.ActionDeleteEvictedPods:
		summary, err = r.deleteEvictedPods(ctx, ref, st)
	case len(st.Patch) > 0:
		summary, err = r.patch(ctx, ref, st)
	default:
		err = fmt.Errorf("step %d (%s) has no patch: %w: the executor applies planned patches and pod deletions only", st.Index, st.Action, ErrUnsupportedStep)
	}
	if err != nil {
		if summary == "" {
			summary = apiSummary(err)
		}
		return events.StepFailed, summary, err
	}
	return events.StepSucceeded, summary, nil
}

// patch applies the step's patch to ref. A JSON patch's generation test
// is moved to the generation an earlier step of this plan produced on the
// same object.
func (r *stepRunner) patch(ctx context.Context, ref events.ObjectRef, st events.Step) (string, error) {
	pt, err := patchType(st.PatchType)
	if err != nil {
		return "", err
	}
	data := []byte(st.Patch)
	if gen, ok := r.generations[objectKey(ref)]; ok && pt == types.JSONPatchType {
		if data, err = rewriteGenerationTest(data, gen); err != nil {
			return "", fmt.Errorf("step %d: %w", st.Index, err)
		}
	}
	if err := requireGuard(data, ref.Kind); err != nil {
		return "", fmt.Errorf("step %d: %w", st.Index, err)
	}
	var obj metav1.Object
	err = r.s.retry(ctx, func(ctx context.Context) error {
		o, err := patchObject(ctx, r.s.kube, ref, pt, data, Actor)
		if err != nil {
			return classify(err)
		}
		obj = o
		return nil
	})
	if err != nil {
		r.stale = isTestFailure(err) || r.generationMoved(ctx, ref, pt, data, err)
		if r.stale && r.resuming {
			if cur, ok := r.alreadyApplied(ctx, ref, pt, data); ok {
				r.stale = false
				r.applied = true
				r.patched = append(r.patched, st)
				r.generations[objectKey(ref)] = cur.GetGeneration()
				r.lastPatched[objectKey(ref)] = cur.GetGeneration()
				return fmt.Sprintf("%s %s already patched before the interruption: generation %d, resourceVersion %s (not applied again)",
					strings.ToLower(ref.Kind), ref.Name, cur.GetGeneration(), cur.GetResourceVersion()), nil
			}
		}
		if r.stale {
			return "", fmt.Errorf("patch %s: %w: %w", ref, ErrStale, err)
		}
		return "", fmt.Errorf("patch %s: %w", ref, err)
	}
	r.applied = true
	r.patched = append(r.patched, st)
	r.generations[objectKey(ref)] = obj.GetGeneration()
	r.lastPatched[objectKey(ref)] = obj.GetGeneration()
	return fmt.Sprintf("%s %s patched: generation %d, resourceVersion %s", strings.ToLower(ref.Kind), ref.Name, obj.GetGeneration(), obj.GetResourceVersion()), nil
}

// alreadyApplied tells whether a patch whose generation test failed took
// effect before an executor crash: the patch without its test, dry-run on
// the server against the current object, changes nothing (the API server
// moves the generation of a workload whenever its spec changes). It
// returns the current object when so. A patch that would still change the
// object means somebody else changed it: stale.
func (r *stepRunner) alreadyApplied(ctx context.Context, ref events.ObjectRef, pt types.PatchType, patch []byte) (metav1.Object, bool) {
	if pt != types.JSONPatchType {
		return nil, false
	}
	untested, err := dropGenerationTest(patch)
	if err != nil {
		return nil, false
	}
	cur, err := getObject(ctx, r.s.kube, ref)
	if err != nil {
		return nil, false
	}
	if ref.Kind == kindService {
		// No generation to compare: the patch took effect when the
		// fields it replaces hold what it wrote (its writes as tests,
		// dry-run).
		tests, err := writesAsTests(patch)
		if err != nil {
			return nil, false
		}
		_, err = patchObjectDryRun(ctx, r.s.kube, ref, pt, tests, Actor)
		return cur, err == nil
	}
	dry, err := patchObjectDryRun(ctx, r.s.kube, ref, pt, untested, Actor)
	if err != nil {
		r.s.log.Debug("resume: dry run of the interrupted patch", slog.String("object", ref.String()), slog.Any("error", err))
		return nil, false
	}
	return cur, dry.GetGeneration() == cur.GetGeneration()
}

// requireGuard refuses, at the moment of the API call, a patch whose
// first operation does not test the object's generation (or, for a pod
// planned without one, its resourceVersion): without it the patch would
// apply to whatever the object has become. validatePlanSteps checked the
// plan before the claim; this keeps the executor from ever sending an
// unguarded patch, whatever path the step took to get here.
func requireGuard(patch []byte, kind string) error {
	ops, err := parseOps(patch)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnsupportedStep, err)
	}
	if kind == kindService {
		if !serviceGuard(ops[0]) {
			return fmt.Errorf("%w: the first operation of the Service patch is %s %s, not the test of %s or of the field an undo puts back", ErrUnsupportedStep, ops[0].Op, ops[0].Path, resourceVersionPath)
		}
		return nil
	}
	if ops[0].Op != "test" || (ops[0].Path != generationPath && ops[0].Path != resourceVersionPath) {
		return fmt.Errorf("%w: the first operation of the patch is %s %s, not the test of %s", ErrUnsupportedStep, ops[0].Op, ops[0].Path, generationPath)
	}
	return nil
}

// dropGenerationTest removes the test operations on /metadata/generation
// from a JSON patch.
func dropGenerationTest(patch []byte) ([]byte, error) {
	var ops []map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(patch))
	dec.UseNumber()
	if err := dec.Decode(&ops); err != nil {
		return nil, fmt.Errorf("json patch is not an array of operations: %w", err)
	}
	kept := ops[:0]
	for _, op := range ops {
		var name, path string
		_ = json.Unmarshal(op["op"], &name)
		_ = json.Unmarshal(op["path"], &path)
		if name != "test" || path != generationPath {
			kept = append(kept, op)
		}
	}
	return json.Marshal(kept)
}

// generationMoved tells whether a JSON patch failed because its
// generation test failed. The API server answers any JSON patch that does
// not apply with the same 422 "the server rejected our request due to an
// error in our request", without the reason, so the object is re-read: a
// generation other than the one tested means the object changed.
func (r *stepRunner) generationMoved(ctx context.Context, ref events.ObjectRef, pt types.PatchType, patch []byte, err error) bool {
	var st apierrors.APIStatus
	if pt != types.JSONPatchType || !errors.As(err, &st) || st.Status().Code != 422 {
		return false
	}
	want, ok := generationTest(patch)
	rv, rvOK := resourceVersionTest(patch)
	if !ok && !rvOK {
		return false
	}
	obj, gerr := getObject(ctx, r.s.kube, ref)
	if gerr != nil {
		return apierrors.IsNotFound(gerr)
	}
	if !ok {
		return obj.GetResourceVersion() != rv
	}
	return obj.GetGeneration() != want
}

// generationTest returns the value of a JSON patch's test of
// /metadata/generation.
func generationTest(patch []byte) (int64, bool) {
	var ops []struct {
		Op    string          `json:"op"`
		Path  string          `json:"path"`
		Value json.RawMessage `json:"value"`
	}
	if json.Unmarshal(patch, &ops) != nil {
		return 0, false
	}
	for _, op := range ops {
		var v int64
		if op.Op == "test" && op.Path == generationPath && json.Unmarshal(op.Value, &v) == nil {
			return v, true
		}
	}
	return 0, false
}

// rewriteGenerationTest sets the value of every test operation on
// /metadata/generation in a JSON patch to gen.
func rewriteGenerationTest(patch []byte, gen int64) ([]byte, error) {
	var ops []map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(patch))
	dec.UseNumber()
	if err := dec.Decode(&ops); err != nil {
		return nil, fmt.Errorf("json patch is not an array of operations: %w", err)
	}
	for _, op := range ops {
		var name, path string
		_ = json.Unmarshal(op["op"], &name)
		_ = json.Unmarshal(op["path"], &path)
		if name == "test" && path == generationPath {
			op["value"] = json.RawMessage(fmt.Sprint(gen))
		}
	}
	return json.Marshal(ops)
}

// deletePod deletes one pod, with its UID as precondition so that a pod
// recreated under the same name is never deleted by mistake. A pod that
// is already gone (or replaced) counts as deleted. With evictedOnly, a
// pod that is not evicted is left alone.
func (r *stepRunner) deletePod(ctx context.Context, ref events.ObjectRef, evictedOnly bool) (string, error) {
	var pod *corev1.Pod
	err := r.s.retry(ctx, func(ctx context.Context) error {
		p, err := r.s.kube.CoreV1().Pods(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return classify(err)
		}
		pod = p
		if apierrors.IsNotFound(err) {
			pod = nil
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("get pod %s/%s: %w", ref.Namespace, ref.Name, err)
	}
	if pod == nil {
		return fmt.Sprintf("pod %s already gone", ref.Name), nil
	}
	if ref.UID != "" && string(pod.UID) != ref.UID {
		return fmt.Sprintf("pod %s (uid %s) already gone; its replacement (uid %s) left alone", ref.Name, ref.UID, pod.UID), nil
	}
	if evictedOnly && !evicted(pod) {
		return fmt.Sprintf("pod %s is not evicted (%s): left alone", ref.Name, pod.Status.Phase), nil
	}
	// checkPodsControlled refused such a plan before its first step; a
	// resumed execution goes on without that check, this one holds.
	cc := newControlChecker(r.s.kube, r.plan)
	if ok, err := cc.controls(ctx, pod); err != nil {
		return "", err
	} else if !ok {
		return "", fmt.Errorf("pod %s is not controlled by the plan's target %s (controller: %s): %w", ref, cc.target, controllerString(pod), ErrInvalidStep)
	}
	return r.deleteWithUID(ctx, pod)
}

func (r *stepRunner) deleteWithUID(ctx context.Context, pod *corev1.Pod) (string, error) {
	uid := pod.UID
	err := r.s.retry(ctx, func(ctx context.Context) error {
		err := r.s.kube.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return classify(err)
		}
		if err != nil {
			return backoff.Permanent(err)
		}
		return nil
	})
	switch {
	case err == nil:
		r.applied = true
		r.deleted[string(uid)] = pod.Name
		return fmt.Sprintf("pod %s (uid %s) deleted", pod.Name, uid), nil
	case apierrors.IsNotFound(err), apierrors.IsConflict(err):
		// Conflict: the UID precondition failed, the pod was replaced.
		return fmt.Sprintf("pod %s (uid %s) already gone", pod.Name, uid), nil
	}
	return "", fmt.Errorf("delete pod %s/%s: %w", pod.Namespace, pod.Name, err)
}

// deleteEvictedPods deletes the evicted pods of a workload (selected by
// its label selector and controlled by it).
//
// Only the pods the plan lists (params "uids", at most
// remediation.max_pods of them) are deleted: a pod evicted after planning
// was not reviewed, and is left for a new plan.
func (r *stepRunner) deleteEvictedPods(ctx context.Context, ref events.ObjectRef, st events.Step) (string, error) {
	planned := map[string]bool{}
	for u := range strings.SplitSeq(st.Params["uids"], ",") {
		if u = strings.TrimSpace(u); u != "" {
			planned[u] = true
		}
	}
	// validatePlanSteps refused such a plan before the claim; without a
	// list, every evicted pod the selector matches would be deleted.
	if len(planned) == 0 || len(planned) > r.s.cfg.MaxPods {
		return "", fmt.Errorf("step %d: params.uids lists %d pods (1 to remediation.max_pods %d): %w", st.Index, len(planned), r.s.cfg.MaxPods, ErrUnsupportedStep)
	}
	var obj metav1.Object
	err := r.s.retry(ctx, func(ctx context.Context) error {
		o, err := getObject(ctx, r.s.kube, ref)
		if err != nil {
			return classify(err)
		}
		obj = o
		return nil
	})
	if err != nil {
		return "", err
	}
	sel, err := podSelector(obj)
	if err != nil {
		return "", fmt.Errorf("selector of %s: %w", ref, err)
	}
	var pods *corev1.PodList
	err = r.s.retry(ctx, func(ctx context.Context) error {
		l, err := r.s.kube.CoreV1().Pods(ref.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			return classify(err)
		}
		pods = l
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("list pods of %s: %w", ref, err)
	}
	var done, unplanned, foreign []string
	cc := newControlChecker(r.s.kube, r.plan)
	for i := range pods.Items {
		p := &pods.Items[i]
		if !evicted(p) {
			continue
		}
		if !planned[string(p.UID)] {
			unplanned = append(unplanned, p.Name)
			continue
		}
		// The selector matches labels, which any workload may carry.
		if ok, err := cc.controls(ctx, p); err != nil {
			return fmt.Sprintf("deleted %d evicted pods (%s) before an error", len(done), strings.Join(done, ", ")), err
		} else if !ok {
			foreign = append(foreign, p.Name)
			continue
		}
		if _, err := r.deleteWithUID(ctx, p); err != nil {
			return fmt.Sprintf("deleted %d evicted pods (%s) before an error", len(done), strings.Join(done, ", ")), err
		}
		done = append(done, p.Name)
	}
	left := ""
	if len(unplanned) > 0 {
		left = fmt.Sprintf("; left %d evicted after planning (not in the plan): %s", len(unplanned), strings.Join(unplanned, ", "))
	}
	if len(foreign) > 0 {
		left += fmt.Sprintf("; left %d not controlled by %s: %s", len(foreign), ref, strings.Join(foreign, ", "))
	}
	if len(done) == 0 {
		return fmt.Sprintf("no planned evicted pod of %s left%s", ref, left), nil
	}
	return fmt.Sprintf("deleted %d evicted pods: %s%s", len(done), strings.Join(done, ", "), left), nil
}

func evicted(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodFailed && p.Status.Reason == "Evicted"
}

// podSelector returns the label selector of a workload's pods.
func podSelector(obj metav1.Object) (string, error) {
	var ls *metav1.LabelSelector
	switch o := obj.(type) {
	case *appsv1.Deployment:
		ls = o.Spec.Selector
	case *appsv1.StatefulSet:
		ls = o.Spec.Selector
	case *appsv1.DaemonSet:
		ls = o.Spec.Selector
	case *appsv1.ReplicaSet:
		ls = o.Spec.Selector
	case *batchv1.Job:
		ls = o.Spec.Selector
	default:
		return "", fmt.Errorf("%w: %T has no pod selector", ErrUnsupportedKind, obj)
	}
	if ls == nil {
		return "", errors.New("no selector")
	}
	sel, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil {
		return "", err
	}
	return sel.String(), nil
}

// classify wraps an API error for retry: transient errors (timeouts,
// throttling, unavailable, internal errors, broken connections) are
// returned as is to be retried, every other error is permanent. A failed
// generation test is permanent: the object changed.
func classify(err error) error {
	if err == nil {
		return nil
	}
	if retryable(err) {
		return err
	}
	return backoff.Permanent(err)
}

func retryable(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var st apierrors.APIStatus
	if !errors.As(err, &st) {
		// No answer at all (connection refused or reset): worth another try.
		return true
	}
	// An answer of the API server is final, unless it says "later".
	code := st.Status().Code
	return code == 429 || code >= 500 || apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err)
}

// isTestFailure reports an answer that says a JSON patch's test
// operation failed (422, "testing value ... failed"). Today's API servers
// drop that text (see generationMoved); the check is kept for servers and
// proxies that pass it on.
func isTestFailure(err error) bool {
	var st apierrors.APIStatus
	if !errors.As(err, &st) {
		return false
	}
	s := st.Status()
	if s.Code != 422 && s.Reason != metav1.StatusReasonInvalid {
		return false
	}
	if strings.Contains(s.Message, "testing value") {
		return true
	}
	if s.Details != nil {
		for _, c := range s.Details.Causes {
			if strings.Contains(c.Message, "testing value") {
				return true
			}
		}
	}
	return false
}

// apiSummary is a short rendering of an API server error: "409
// Conflict: Operation cannot be fulfilled on pods ...".
func apiSummary(err error) string {
	var st apierrors.APIStatus
	if errors.As(err, &st) {
		s := st.Status()
		return fmt.Sprintf("%d %s: %s", s.Code, s.Reason, s.Message)
	}
	return err.Error()
}

// retry runs op with exponential backoff until it succeeds, fails
// permanently (backoff.Permanent) or StepTimeout passes.
func (s *Service) retry(ctx context.Context, op func(ctx context.Context) error) error {
	b := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(200*time.Millisecond),
		backoff.WithMaxInterval(5*time.Second),
		backoff.WithMaxElapsedTime(s.cfg.StepTimeout))
	return backoff.RetryNotify(func() error { return op(ctx) }, backoff.WithContext(b, ctx), func(err error, d time.Duration) {
		s.metrics.retries.Inc()
		s.log.Debug("transient API error, retrying", slog.Any("error", err), slog.Duration("in", d))
	})
}

// permanent stops retry with err.
func permanent(err error) error { return backoff.Permanent(err) }
