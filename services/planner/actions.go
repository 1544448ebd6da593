package planner

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/kaar-dev/kaar/pkg/events/text"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// builder builds the steps of one plan from a planInput. Each mutating
// builder returns a candidate, or nil and the reason it does not apply.
type builder struct{ in planInput }

const mebibyte = 1 << 20

// kubectl renders an equivalent command for people (never executed by
// kaar, but people and assistants run it): every argument shell-quoted, so
// an image or name from the cluster runs as shown.
func (b *builder) kubectl(args ...string) string {
	return text.ShellQuote(append([]string{"kubectl", "-n", b.in.Incident.Namespace}, args...)...)
}

// containerName is the incident's container, else the first one.
func (b *builder) containerName() string {
	if b.in.Incident.Container != "" {
		return b.in.Incident.Container
	}
	if _, c, _ := b.in.Owner.container(""); c != nil {
		return c.Name
	}
	return ""
}

// podRef is the pod the diagnostic steps point at.
func (b *builder) podRef() (events.ObjectRef, string) {
	if b.in.Pod != nil {
		return kindRef(KindPod, "v1", b.in.Pod.ObjectMeta), b.in.Pod.Name
	}
	if len(b.in.Incident.Pods) > 0 {
		name := b.in.Incident.Pods[0]
		return events.ObjectRef{Kind: KindPod, Namespace: b.in.Incident.Namespace, Name: name, APIVersion: "v1"}, name
	}
	return events.ObjectRef{}, ""
}

// mutatingStep fills the fields every mutating step shares.
func (b *builder) mutatingStep(action events.ActionType, title string, risk events.RiskLevel) events.Step {
	return events.Step{Action: action, Title: title, Target: b.in.Owner.Ref, Risk: risk, Mutating: true}
}

// generationPrecondition is the human form of the guard operation.
func (b *builder) generationPrecondition() string {
	w := b.in.Owner
	if w.Generation > 0 {
		return fmt.Sprintf("%s is still at generation %d (the patch's first operation tests it)", w.ref(), w.Generation)
	}
	return fmt.Sprintf("%s is still at resourceVersion %s (the patch's first operation tests it)", w.ref(), w.ResourceVersion)
}

// checkLogs is the non-mutating "read the previous logs" step.
func (b *builder) checkLogs() []events.Step {
	ref, pod := b.podRef()
	c := b.containerName()
	st := events.Step{Action: events.ActionCheckLogs, Risk: events.RiskNone, Target: ref,
		Title: fmt.Sprintf("Read the previous logs of container %s (quoted in the evidence when available)", c)}
	if c != "" {
		st.Params = map[string]string{events.ParamContainer: c}
	}
	if pod != "" {
		st.Kubectl = b.kubectl("logs", pod, "-c", c, "--previous", "--tail="+strconv.FormatInt(b.in.Cfg.LogTailLines, 10))
	}
	return []events.Step{st}
}

// checkImage is the non-mutating "is the image right" step.
func (b *builder) checkImage() []events.Step {
	_, c, _ := b.in.Owner.container(b.in.Incident.Container)
	ref, pod := b.podRef()
	st := events.Step{Action: events.ActionDiagnostic, Risk: events.RiskNone, Target: ref}
	if c != nil {
		st.Title = fmt.Sprintf("Check that image %s of container %s exists and that the registry lets the cluster pull it", c.Image, c.Name)
		st.Params = map[string]string{events.ParamContainer: c.Name, events.ParamImage: c.Image}
	} else {
		st.Title = "Check that the failing container's image exists and that the registry lets the cluster pull it"
	}
	if pod != "" {
		st.Kubectl = b.kubectl("describe", "pod", pod)
	}
	return []events.Step{st}
}

// rollback rolls a Deployment back to its last healthy revision.
func (b *builder) rollback(_ Strategy) (*candidate, string) {
	w := b.in.Owner
	if w.Deployment == nil {
		return nil, fmt.Sprintf("rollback is planned for Deployments only, not for %s", w.ref())
	}
	revs, current := rolloutHistory(w.Deployment, b.in.ReplicaSets)
	target, healthy, ok := rollbackTarget(revs, current)
	if !ok {
		return nil, fmt.Sprintf("%s has no revision older than %d in its rollout history", w.ref(), current)
	}
	tmpl := templateOf(target.RS)
	if sameTemplate(tmpl, *w.Template) {
		return nil, fmt.Sprintf("revision %d has the same pod template as the current one", target.Number)
	}
	c := b.containerName()
	img := imageOf(tmpl, c)
	title := fmt.Sprintf("Roll back %s to revision %d", w.ref(), target.Number)
	if img != "" && img != imageOf(*w.Template, c) {
		title += fmt.Sprintf(" (image %s)", img)
	}
	st := b.mutatingStep(events.ActionRollback, title, events.RiskMedium)
	st.Params = map[string]string{events.ParamRevision: strconv.FormatInt(target.Number, 10)}
	st.PatchType = events.PatchJSON
	st.Patch = encodePatch(guardOp(w, 0), patchOp{Op: "replace", Path: w.TemplatePath, Value: tmpl})
	st.UndoPatch = encodePatch(guardOp(w, 1), patchOp{Op: "replace", Path: w.TemplatePath, Value: w.Template})
	st.Undo = fmt.Sprintf("roll forward to revision %d's template again (the undo patch), or: %s", current,
		b.kubectl("rollout", "undo", w.ref(), fmt.Sprintf("--to-revision=%d", current)))
	st.Kubectl = b.kubectl("rollout", "undo", w.ref(), fmt.Sprintf("--to-revision=%d", target.Number))
	st.Preconditions = []string{
		b.generationPrecondition(),
		fmt.Sprintf("replicaset/%s (revision %d) still exists", target.RS.Name, target.Number),
	}
	st.SuccessCheck = fmt.Sprintf("%s rolls out (observedGeneration caught up, updated = ready = desired replicas) and none of its pods fails for the verify window", w.ref())
	why := fmt.Sprintf("revision %d is the newest older revision with ready replicas (%d ready)", target.Number, target.RS.Status.ReadyReplicas)
	if !healthy {
		why = fmt.Sprintf("no older revision has ready replicas; revision %d is the previous one", target.Number)
	}
	cand := &candidate{Steps: []events.Step{st},
		Summary: fmt.Sprintf("%s since revision %d; roll back to revision %d.", problem(b.in), current, target.Number),
		Notes:   []string{"rollback: " + why}}
	if cur := currentRS(revs, current); cur != nil && cur.Status.ReadyReplicas > 0 {
		cand.Notes = append(cand.Notes, fmt.Sprintf("rollback: %d pods of the current revision %d are ready, so the failure may not come from the rollout", cur.Status.ReadyReplicas, current))
	}
	return cand, ""
}

// lastGoodImage returns the image the container ran with in the last
// healthy (else previous) revision, and that revision.
func (b *builder) lastGoodImage(container string) (string, int64) {
	w := b.in.Owner
	if w.Deployment == nil {
		return "", 0
	}
	revs, current := rolloutHistory(w.Deployment, b.in.ReplicaSets)
	target, _, ok := rollbackTarget(revs, current)
	if !ok {
		return "", 0
	}
	return imageOf(target.RS.Spec.Template, container), target.Number
}

// setImage sets the failing container's image to the "image" parameter or
// to the last image that ran.
func (b *builder) setImage(st Strategy) (*candidate, string) {
	w := b.in.Owner
	if !w.TemplateMutable && !w.BarePod {
		return nil, fmt.Sprintf("the pod template of %s cannot be changed in place", w.ref())
	}
	idx, c, init := w.container(b.in.Incident.Container)
	if c == nil {
		return nil, fmt.Sprintf("%s has no container %q", w.ref(), b.in.Incident.Container)
	}
	img, from := st.Params[events.ParamImage], "the strategy's image parameter"
	if img == "" {
		var rev int64
		img, rev = b.lastGoodImage(c.Name)
		from = fmt.Sprintf("the image of revision %d, the last that ran", rev)
	}
	if img == "" {
		return nil, "no image parameter and no older revision to take the last image that ran from"
	}
	if img == c.Image {
		return nil, fmt.Sprintf("container %s already uses %s", c.Name, img)
	}
	path := w.containerPath(idx, init)
	step := b.mutatingStep(events.ActionSetImage, fmt.Sprintf("Set the image of container %s of %s to %s", c.Name, w.ref(), img), events.RiskMedium)
	step.Params = map[string]string{events.ParamContainer: c.Name, events.ParamImage: img}
	step.PatchType = events.PatchJSON
	nameTest := patchOp{Op: "test", Path: path + "/name", Value: c.Name}
	step.Patch = encodePatch(guardOp(w, 0), nameTest, patchOp{Op: "replace", Path: path + "/image", Value: img})
	if undoable(w) {
		step.UndoPatch = encodePatch(guardOp(w, 1), nameTest, patchOp{Op: "replace", Path: path + "/image", Value: c.Image})
	}
	step.Undo = fmt.Sprintf("set the image back to %s: %s", c.Image, b.kubectl("set", "image", w.ref(), c.Name+"="+c.Image))
	step.Kubectl = b.kubectl("set", "image", w.ref(), c.Name+"="+img)
	step.Preconditions = []string{b.generationPrecondition(), fmt.Sprintf("container %d of the pod spec is still named %s", idx, c.Name)}
	step.SuccessCheck = fmt.Sprintf("the new pods pull %s and run; %s becomes ready", img, w.ref())
	return &candidate{Steps: []events.Step{step},
		Summary: fmt.Sprintf("%s; set the image of container %s back to %s.", problem(b.in), c.Name, img),
		Notes:   []string{"set_image: " + img + " is " + from}}, ""
}

// increaseMemory raises the memory limit (and a lower request) of the
// OOMKilled container by the memory factor, capped at the maximum.
func (b *builder) increaseMemory(st Strategy) (*candidate, string) {
	w := b.in.Owner
	if w.BarePod {
		return nil, "the resources of a bare pod cannot be patched; recreate it with a higher memory limit"
	}
	if !w.TemplateMutable {
		return nil, fmt.Sprintf("the pod template of %s cannot be changed in place", w.ref())
	}
	idx, c, init := w.container(b.in.Incident.Container)
	if c == nil {
		return nil, fmt.Sprintf("%s has no container %q", w.ref(), b.in.Incident.Container)
	}
	limitQ, hasLimit := c.Resources.Limits[corev1.ResourceMemory]
	if !hasLimit {
		return nil, fmt.Sprintf("container %s has no memory limit: the kill came from node memory pressure, not from a limit", c.Name)
	}
	factor := b.in.Cfg.MemoryFactor
	if f, err := strconv.ParseFloat(st.Params["factor"], 64); err == nil && f > 1 {
		factor = f
	}
	maxBytes, err := parseBytes(b.in.Cfg.MaxMemoryLimit)
	if p := st.Params["max"]; p != "" {
		if v, perr := parseBytes(p); perr == nil {
			maxBytes, err = v, nil
		}
	}
	if err != nil {
		return nil, "remediation.max_memory_limit: " + err.Error()
	}
	limit := limitQ.Value()
	if limit >= maxBytes {
		return nil, fmt.Sprintf("the memory limit of container %s (%s) is already at remediation.max_memory_limit (%s): raise it by hand if the workload needs more, or look for a leak or wrong heap settings",
			c.Name, limitQ.String(), formatBytes(maxBytes))
	}
	newLimit := roundUpMiB(float64(limit) * factor)
	// A limit that a healthy revision ran with is evidence of what the app
	// needs: when the failing rollout lowered it, go back at least that far.
	healthyRev, healthyLimit := b.healthyMemoryLimit(c.Name)
	if healthyLimit > newLimit {
		newLimit = healthyLimit
	}
	newLimit = min(newLimit, maxBytes)
	path := w.containerPath(idx, init) + "/resources"
	nameTest := patchOp{Op: "test", Path: w.containerPath(idx, init) + "/name", Value: c.Name}
	ops := []patchOp{guardOp(w, 0), nameTest, {Op: "replace", Path: path + "/limits/memory", Value: formatBytes(newLimit)}}
	undo := []patchOp{guardOp(w, 1), nameTest, {Op: "replace", Path: path + "/limits/memory", Value: limitQ.String()}}
	params := map[string]string{events.ParamContainer: c.Name, events.ParamMemory: formatBytes(newLimit)}
	kubectlArgs := []string{"set", "resources", w.ref(), "-c", c.Name, "--limits=memory=" + formatBytes(newLimit)}
	title := fmt.Sprintf("Raise the memory limit of container %s of %s from %s to %s", c.Name, w.ref(), limitQ.String(), formatBytes(newLimit))
	if reqQ, ok := c.Resources.Requests[corev1.ResourceMemory]; ok && reqQ.Value() > 0 {
		newReq := min(roundUpMiB(float64(reqQ.Value())*factor), newLimit)
		if newReq > reqQ.Value() {
			ops = append(ops, patchOp{Op: "replace", Path: path + "/requests/memory", Value: formatBytes(newReq)})
			undo = append(undo, patchOp{Op: "replace", Path: path + "/requests/memory", Value: reqQ.String()})
			params["memory_request"] = formatBytes(newReq)
			kubectlArgs = append(kubectlArgs, "--requests=memory="+formatBytes(newReq))
			title += fmt.Sprintf(" (request from %s to %s)", reqQ.String(), formatBytes(newReq))
		}
	}
	step := b.mutatingStep(events.ActionSetMemoryLimit, title, events.RiskLow)
	step.Params = params
	step.PatchType = events.PatchJSON
	step.Patch = encodePatch(ops...)
	step.UndoPatch = encodePatch(undo...)
	step.Undo = fmt.Sprintf("restore the memory limit %s (the undo patch)", limitQ.String())
	step.Kubectl = b.kubectl(kubectlArgs...)
	step.Preconditions = []string{b.generationPrecondition(), fmt.Sprintf("container %d of the pod spec is still named %s", idx, c.Name)}
	step.SuccessCheck = fmt.Sprintf("%s rolls out and container %s is not OOMKilled again for the verify window", w.ref(), c.Name)
	cand := &candidate{Steps: []events.Step{step},
		Summary: fmt.Sprintf("%s at its %s memory limit; raise it to %s.", problem(b.in), limitQ.String(), formatBytes(newLimit))}
	if healthyLimit > limit {
		cand.Notes = append(cand.Notes, fmt.Sprintf("increase_memory: revision %d ran healthy with a %s limit; the new limit is at least that", healthyRev, formatBytes(healthyLimit)))
	}
	if newLimit == maxBytes {
		cand.Notes = append(cand.Notes, fmt.Sprintf("increase_memory: the new limit is capped at remediation.max_memory_limit (%s)", formatBytes(maxBytes)))
	}
	return cand, ""
}

// healthyMemoryLimit returns the last healthy revision and the memory
// limit of container name in it; zero when there is none, or it set no
// limit.
func (b *builder) healthyMemoryLimit(name string) (rev, limit int64) {
	r, ok := b.lastHealthy()
	if !ok {
		return 0, 0
	}
	for _, c := range append(slices.Clone(r.RS.Spec.Template.Spec.Containers), r.RS.Spec.Template.Spec.InitContainers...) {
		if q, has := c.Resources.Limits[corev1.ResourceMemory]; has && c.Name == name {
			return r.Number, q.Value()
		}
	}
	return 0, 0
}

// restart is a rollout restart of the controller; for a controller
// without one (a ReplicaSet of its own, a Job), the deletion of its
// failing pods, which it recreates. A pod without a controller is never
// deleted to restart it: nothing would bring it back.
func (b *builder) restart(st Strategy) (*candidate, string) {
	w := b.in.Owner
	if w.BarePod {
		return nil, fmt.Sprintf("pod %s has no controller: deleting it would not restart it but remove it; recreate it from its manifest", w.Ref.Name)
	}
	if !w.Restartable {
		cand, why := b.deletePods(st)
		if cand == nil {
			return nil, fmt.Sprintf("%s has no rollout restart, and its pods cannot be deleted instead: %s", w.ref(), why)
		}
		return cand, ""
	}
	// The timestamp is the incident's last observation, not the planning
	// time, so that planning the same observation twice gives the same
	// patch (and digest).
	at := b.in.Incident.LastSeen
	if at.IsZero() {
		at = b.in.Now
	}
	stamp := at.UTC().Format(time.RFC3339)
	var op patchOp
	if w.Template.Annotations == nil {
		op = patchOp{Op: "add", Path: w.TemplatePath + "/metadata/annotations", Value: map[string]string{annotationRestartedAt: stamp}}
	} else {
		op = patchOp{Op: "add", Path: w.TemplatePath + "/metadata/annotations/" + pointerEscape(annotationRestartedAt), Value: stamp}
	}
	step := b.mutatingStep(events.ActionRolloutRestart, fmt.Sprintf("Restart the pods of %s (rollout restart)", w.ref()), events.RiskLow)
	step.PatchType = events.PatchJSON
	step.Patch = encodePatch(guardOp(w, 0), op)
	step.Undo = "nothing to undo: the pods are replaced by identical ones"
	step.Kubectl = b.kubectl("rollout", "restart", w.ref())
	step.Preconditions = []string{b.generationPrecondition()}
	step.SuccessCheck = fmt.Sprintf("%s rolls out new pods and they stay ready for the verify window", w.ref())
	return &candidate{Steps: []events.Step{step}, Summary: fmt.Sprintf("%s; restart its pods.", problem(b.in)),
		Notes: []string{"restart: a restart only helps a transient failure; if the pods fail again, look at the diagnostic steps"}}, ""
}

// deletePods deletes the incident's failing pods so that their
// controller replaces them: one step per pod, each with a UID
// precondition, at most remediation.max_pods. A pod without a controller
// is never deleted (it would not come back).
func (b *builder) deletePods(_ Strategy) (*candidate, string) {
	w := b.in.Owner
	if w.BarePod {
		return nil, fmt.Sprintf("pod %s has no controller: deleting it would remove the workload; recreate it from its manifest instead", w.Ref.Name)
	}
	var pods []corev1.Pod
	for _, p := range b.in.Pods {
		if b.controlledByOwner(&p) && p.DeletionTimestamp == nil {
			pods = append(pods, p)
		}
	}
	if len(pods) == 0 {
		return nil, fmt.Sprintf("no failing pod of %s is left to delete", w.ref())
	}
	if n := max(len(pods), b.in.Incident.PodCount); n > b.in.Cfg.MaxPods {
		return nil, fmt.Sprintf("refused: %s has %d failing pods, more than remediation.max_pods (%d)", w.ref(), n, b.in.Cfg.MaxPods)
	}
	var steps []events.Step
	for _, p := range pods {
		st := events.Step{Action: events.ActionDeletePod, Title: fmt.Sprintf("Delete pod %s so that %s replaces it", p.Name, w.ref()),
			Target: kindRef(KindPod, "v1", p.ObjectMeta), Risk: events.RiskLow, Mutating: true,
			Params: map[string]string{"uid": string(p.UID)}}
		st.Kubectl = b.kubectl("delete", "pod", p.Name)
		st.Undo = "nothing to undo: the controller creates a replacement pod from the same template"
		st.Preconditions = []string{fmt.Sprintf("pod %s still has uid %s (a delete precondition) and is controlled by %s", p.Name, p.UID, w.ref())}
		st.SuccessCheck = fmt.Sprintf("pod %s is gone and a replacement pod of %s becomes ready", p.Name, w.ref())
		steps = append(steps, st)
	}
	return &candidate{Steps: steps,
		Summary: fmt.Sprintf("%s; delete the %s so that %s recreates them.", problem(b.in), plural(len(pods), "failing pod"), w.ref()),
		Notes:   []string{"delete_pod: a new pod only helps a transient failure; if it fails again, look at the diagnostic steps"}}, ""
}

// controlledByOwner reports whether the owner (or, for a Deployment, one
// of its ReplicaSets) is the pod's controller.
func (b *builder) controlledByOwner(p *corev1.Pod) bool {
	c := metav1.GetControllerOf(p)
	if c == nil {
		return false
	}
	if string(c.UID) == b.in.Owner.Ref.UID {
		return true
	}
	return slices.ContainsFunc(b.in.ReplicaSets, func(rs appsv1.ReplicaSet) bool { return rs.UID == c.UID })
}

// lastHealthy is the newest Deployment revision older than the current
// one whose pods ran (ready replicas); false for other kinds or when none
// did.
func (b *builder) lastHealthy() (revision, bool) {
	w := b.in.Owner
	if w.Deployment == nil {
		return revision{}, false
	}
	revs, current := rolloutHistory(w.Deployment, b.in.ReplicaSets)
	for _, r := range revs {
		if r.Number < current && r.RS.Status.ReadyReplicas > 0 {
			return r, true
		}
	}
	return revision{}, false
}

// deleteEvicted deletes the owner's Failed/Evicted pods, at most MaxPods.
func (b *builder) deleteEvicted(st Strategy) (*candidate, string) {
	pods := b.in.EvictedPods
	if len(pods) == 0 {
		return nil, "no evicted pod of " + b.in.Owner.ref() + " is left"
	}
	maxPods := b.in.Cfg.MaxPods
	if len(pods) > maxPods {
		return nil, fmt.Sprintf("refused: %s has %d evicted pods, more than remediation.max_pods (%d); delete them by hand: %s",
			b.in.Owner.ref(), len(pods), maxPods, b.kubectl("delete", "pods", "--field-selector=status.phase=Failed", "-l", selectorString(b.in.Owner)))
	}
	names := make([]string, len(pods))
	uids := make([]string, len(pods))
	for i, p := range pods {
		names[i], uids[i] = p.Name, string(p.UID)
	}
	step := b.mutatingStep(events.ActionDeleteEvictedPods, fmt.Sprintf("Delete the %s of %s", plural(len(pods), "evicted pod"), b.in.Owner.ref()), events.RiskLow)
	step.Params = map[string]string{"pods": strings.Join(names, ","), "uids": strings.Join(uids, ",")}
	step.Kubectl = b.kubectl(append([]string{"delete", "pod"}, names...)...)
	step.Undo = "nothing to undo: evicted pods do not run and their controller has replaced them"
	step.Preconditions = []string{"each pod still has its uid (a delete precondition) and is still Failed with reason Evicted"}
	step.SuccessCheck = "the evicted pods are gone and " + b.in.Owner.ref() + " has its replicas ready"
	return &candidate{Steps: []events.Step{step},
		Summary: fmt.Sprintf("%s; delete the %s (cleanup: the controller already replaced them).", problem(b.in), plural(len(pods), "evicted pod")),
		Notes:   []string{"eviction is a node problem (memory or disk pressure): the evidence says which; set memory requests near real usage so the pods are not the first evicted"}}, ""
}

// selectorString renders the owner's selector for kubectl -l.
func selectorString(w *workload) string {
	if w.Selector == nil {
		return ""
	}
	if s, err := metaSelector(w); err == nil {
		return s.String()
	}
	return ""
}

// schedulingMessage is the reason the scheduler gave for the pod.
func (b *builder) schedulingMessage() string {
	if p := b.in.Pod; p != nil {
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Message != "" {
				return c.Message
			}
		}
	}
	for _, e := range b.in.Events {
		if e.Reason == "FailedScheduling" {
			return e.Message
		}
	}
	return b.in.Incident.Message
}

// schedulableNodes are the Ready nodes that accept pods.
func (b *builder) schedulableNodes() []corev1.Node {
	var out []corev1.Node
	for _, n := range b.in.Nodes {
		if n.Spec.Unschedulable {
			continue
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				out = append(out, n)
				break
			}
		}
	}
	return out
}

// setNodeSelector fixes a node selector no node matches: to the
// strategy's params (label=value) when given, else to the selector of the
// last healthy revision, and only when a Ready, schedulable node matches
// it and has no taint the pods do not tolerate. It never guesses labels.
func (b *builder) setNodeSelector(st Strategy) (*candidate, string) {
	w := b.in.Owner
	if w.BarePod || !w.TemplateMutable {
		return nil, fmt.Sprintf("the node selector of %s cannot be changed in place", w.ref())
	}
	msg := b.schedulingMessage()
	if !strings.Contains(msg, "node affinity/selector") && !strings.Contains(msg, "node(s) didn't match") {
		return nil, "the scheduler does not report a node selector mismatch"
	}
	want, from := maps.Clone(st.Params), "the strategy's params"
	if len(want) == 0 {
		r, ok := b.lastHealthy()
		if !ok {
			return nil, "no selector is configured (the strategy's params) and no older revision ran healthy to take one from; guessing node labels is not safe"
		}
		want, from = maps.Clone(r.RS.Spec.Template.Spec.NodeSelector), fmt.Sprintf("the selector of revision %d, the last that ran", r.Number)
	}
	if maps.Equal(want, w.Spec.NodeSelector) {
		return nil, fmt.Sprintf("the node selector is already %s", from)
	}
	sel := labels.SelectorFromSet(want)
	var match []string
	for _, n := range b.schedulableNodes() {
		if sel.Matches(labels.Set(n.Labels)) && untolerated(n.Spec.Taints, w.Spec.Tolerations) == nil {
			match = append(match, n.Name)
		}
	}
	if len(match) == 0 {
		return nil, fmt.Sprintf("no Ready, schedulable node without untolerated taints has the labels %q (%s)", sel.String(), from)
	}
	var op, undo patchOp
	switch {
	case len(want) == 0:
		op = patchOp{Op: "remove", Path: w.SpecPath + "/nodeSelector"}
		undo = patchOp{Op: "add", Path: w.SpecPath + "/nodeSelector", Value: w.Spec.NodeSelector}
	case w.Spec.NodeSelector == nil:
		op = patchOp{Op: "add", Path: w.SpecPath + "/nodeSelector", Value: want}
		undo = patchOp{Op: "remove", Path: w.SpecPath + "/nodeSelector"}
	default:
		op = patchOp{Op: "replace", Path: w.SpecPath + "/nodeSelector", Value: want}
		undo = patchOp{Op: "replace", Path: w.SpecPath + "/nodeSelector", Value: w.Spec.NodeSelector}
	}
	shown := sel.String()
	if shown == "" {
		shown = "none (any node)"
	}
	step := b.mutatingStep(events.ActionSetNodeSelector, fmt.Sprintf("Set the node selector of %s to %s (matches %s)", w.ref(), shown, strings.Join(match, ", ")), events.RiskMedium)
	step.Params = want
	if len(want) == 0 {
		step.Params = nil
	}
	step.PatchType = events.PatchJSON
	step.Patch = encodePatch(guardOp(w, 0), op)
	step.UndoPatch = encodePatch(guardOp(w, 1), undo)
	step.Undo = fmt.Sprintf("restore the node selector %s (the undo patch)", labels.SelectorFromSet(w.Spec.NodeSelector).String())
	step.Kubectl = b.kubectl("patch", w.ref(), "--type=json", "-p", string(encodePatch(op)))
	step.Preconditions = []string{b.generationPrecondition(), fmt.Sprintf("a Ready, schedulable node carries the labels %q and no taint the pods do not tolerate (now: %s)", sel.String(), strings.Join(match, ", "))}
	step.SuccessCheck = fmt.Sprintf("the pods of %s are scheduled and become ready", w.ref())
	return &candidate{Steps: []events.Step{step}, Summary: fmt.Sprintf("%s; set its node selector to %s.", problem(b.in), shown),
		Notes: []string{"set_node_selector: the selector is " + from}}, ""
}

// untolerated returns the first NoSchedule or NoExecute taint that no
// toleration tolerates, or nil.
func untolerated(taints []corev1.Taint, tols []corev1.Toleration) *corev1.Taint {
	for i := range taints {
		t := &taints[i]
		if t.Effect == corev1.TaintEffectPreferNoSchedule {
			continue
		}
		if !slices.ContainsFunc(tols, func(tol corev1.Toleration) bool { return tolerates(tol, t) }) {
			return t
		}
	}
	return nil
}

// tolerates reports whether a toleration tolerates a taint (the Equal and
// Exists operators; an empty key with Exists tolerates everything).
func tolerates(tol corev1.Toleration, t *corev1.Taint) bool {
	if tol.Effect != "" && tol.Effect != t.Effect {
		return false
	}
	if tol.Key == "" {
		return tol.Operator == corev1.TolerationOpExists
	}
	if tol.Key != t.Key {
		return false
	}
	switch tol.Operator {
	case corev1.TolerationOpExists:
		return true
	case corev1.TolerationOpEqual, "":
		return tol.Value == t.Value
	}
	return false
}

// addToleration adds a toleration the pods lack, when the scheduler
// reports an untolerated taint: the toleration given as the strategy's
// params (key, and value, operator, effect), else one the last healthy
// revision had. It is proposed only when a Ready, schedulable node that
// matches the node selector carries the taint and would then accept the
// pods. A toleration is never derived from the taint alone: taints
// reserve nodes for someone, so the permission has to come from the
// configuration or from the workload's own history.
func (b *builder) addToleration(st Strategy) (*candidate, string) {
	w := b.in.Owner
	if !w.BarePod && !w.TemplateMutable {
		return nil, fmt.Sprintf("the tolerations of %s cannot be changed in place", w.ref())
	}
	if !strings.Contains(b.schedulingMessage(), "untolerated taint") {
		return nil, "the scheduler does not report an untolerated taint"
	}
	var add []corev1.Toleration
	from := "the strategy's params"
	if key := st.Params[events.ParamKey]; key != "" {
		tol := corev1.Toleration{Key: key, Value: st.Params[events.ParamValue],
			Operator: corev1.TolerationOperator(st.Params[events.ParamOperator]), Effect: corev1.TaintEffect(st.Params[events.ParamEffect])}
		if tol.Operator == "" {
			tol.Operator = corev1.TolerationOpEqual
			if tol.Value == "" {
				tol.Operator = corev1.TolerationOpExists
			}
		}
		add = append(add, tol)
	} else if r, ok := b.lastHealthy(); ok {
		from = fmt.Sprintf("the tolerations of revision %d, the last that ran", r.Number)
		for _, tol := range r.RS.Spec.Template.Spec.Tolerations {
			if !slices.ContainsFunc(w.Spec.Tolerations, func(t corev1.Toleration) bool { return apiequality.Semantic.DeepEqual(t, tol) }) {
				add = append(add, tol)
			}
		}
		if len(add) == 0 {
			return nil, fmt.Sprintf("revision %d, the last that ran, had no toleration the current template lacks", r.Number)
		}
	} else {
		return nil, "the toleration to add is not configured (the strategy's params key, value, effect) and no older revision ran healthy to take it from; a taint reserves nodes, so kaar does not guess"
	}
	if slices.ContainsFunc(add, func(t corev1.Toleration) bool { return t.Key == "" && t.Operator == corev1.TolerationOpExists }) {
		return nil, "refused: a toleration without a key tolerates every taint"
	}
	all := append(slices.Clone(w.Spec.Tolerations), add...)
	sel := labels.SelectorFromSet(w.Spec.NodeSelector)
	var match []string
	for _, n := range b.schedulableNodes() {
		newlyTolerated := untolerated(n.Spec.Taints, w.Spec.Tolerations) != nil
		if newlyTolerated && untolerated(n.Spec.Taints, all) == nil && sel.Matches(labels.Set(n.Labels)) {
			match = append(match, n.Name)
		}
	}
	if len(match) == 0 {
		return nil, fmt.Sprintf("no Ready, schedulable node matching the node selector would accept the pods with the toleration from %s", from)
	}
	path := w.SpecPath + "/tolerations"
	var ops []patchOp
	var undo patchOp
	if w.Spec.Tolerations == nil {
		ops = []patchOp{{Op: "add", Path: path, Value: add}}
		undo = patchOp{Op: "remove", Path: path}
	} else {
		for _, t := range add {
			ops = append(ops, patchOp{Op: "add", Path: path + "/-", Value: t})
		}
		undo = patchOp{Op: "replace", Path: path, Value: w.Spec.Tolerations}
	}
	desc := make([]string, len(add))
	for i, t := range add {
		desc[i] = tolerationString(t)
	}
	step := b.mutatingStep(events.ActionAddToleration, fmt.Sprintf("Let the pods of %s tolerate %s (nodes %s)", w.ref(), strings.Join(desc, ", "), strings.Join(match, ", ")), events.RiskMedium)
	step.Params = map[string]string{events.ParamKey: add[0].Key, events.ParamOperator: string(add[0].Operator)}
	if add[0].Value != "" {
		step.Params[events.ParamValue] = add[0].Value
	}
	if add[0].Effect != "" {
		step.Params[events.ParamEffect] = string(add[0].Effect)
	}
	step.PatchType = events.PatchJSON
	step.Patch = encodePatch(append([]patchOp{guardOp(w, 0)}, ops...)...)
	if undoable(w) {
		step.UndoPatch = encodePatch(guardOp(w, 1), undo)
	}
	step.Undo = "remove the added toleration (the undo patch); pods already placed on the tainted nodes stay there until replaced"
	step.Kubectl = b.kubectl("patch", w.ref(), "--type=json", "-p", string(encodePatch(ops...)))
	step.Preconditions = []string{b.generationPrecondition(), "a Ready, schedulable node matching the node selector carries the taint and no other untolerated one (now: " + strings.Join(match, ", ") + ")"}
	step.SuccessCheck = fmt.Sprintf("the pods of %s are scheduled (on %s) and become ready", w.ref(), strings.Join(match, ", "))
	return &candidate{Steps: []events.Step{step}, Summary: fmt.Sprintf("%s; let it tolerate %s.", problem(b.in), strings.Join(desc, ", ")),
		Notes: []string{"add_toleration: the toleration is " + from + "; it lets the pods onto nodes reserved by that taint"}}, ""
}

// tolerationString renders a toleration as "key=value:Effect" or
// "key:Effect (exists)".
func tolerationString(t corev1.Toleration) string {
	s := t.Key
	if t.Operator == corev1.TolerationOpExists {
		s += " (any value)"
	} else {
		s += "=" + t.Value
	}
	if t.Effect != "" {
		s += ":" + string(t.Effect)
	}
	return s
}

// lowerRequests lowers a CPU or memory request that no node can satisfy
// (larger than the largest node's allocatable: a request that can never be
// scheduled) to half the largest allocatable. A request that fits an empty
// node is a capacity problem and is left to people.
func (b *builder) lowerRequests(st Strategy) (*candidate, string) {
	w := b.in.Owner
	if w.BarePod || !w.TemplateMutable {
		return nil, fmt.Sprintf("the requests of %s cannot be changed in place", w.ref())
	}
	msg := b.schedulingMessage()
	nodes := b.schedulableNodes()
	if len(nodes) == 0 {
		return nil, "no Ready, schedulable node to size the requests against"
	}
	idx, c, init := w.container(b.in.Incident.Container)
	var ops, undo []patchOp
	params := map[string]string{}
	var changes []string
	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if !strings.Contains(msg, "Insufficient "+string(res)) && msg != "" {
			continue
		}
		ci, cc, cinit := idx, c, init
		if cc == nil || cc.Resources.Requests == nil {
			ci, cc, cinit = largestRequest(w, res)
		}
		if cc == nil {
			continue
		}
		reqQ, ok := cc.Resources.Requests[res]
		if !ok {
			continue
		}
		largest := largestAllocatable(nodes, res)
		podTotal := podRequest(w.Spec, res)
		if podTotal <= largest {
			continue // fits an empty node: a capacity problem, not a wrong request
		}
		target := largest / 2
		if p := st.Params[string(res)]; p != "" {
			if q, err := resource.ParseQuantity(p); err == nil && milliOrBytes(q, res) <= largest {
				target = milliOrBytes(q, res)
			}
		}
		newReq := target - (podTotal - milliOrBytes(reqQ, res))
		if res == corev1.ResourceCPU {
			newReq = newReq / 100 * 100
		} else {
			newReq = newReq / mebibyte * mebibyte
		}
		if newReq <= 0 {
			continue
		}
		q := quantityOf(newReq, res)
		path := w.containerPath(ci, cinit)
		ops = append(ops, patchOp{Op: "test", Path: path + "/name", Value: cc.Name},
			patchOp{Op: "replace", Path: path + "/resources/requests/" + string(res), Value: q})
		undo = append(undo, patchOp{Op: "test", Path: path + "/name", Value: cc.Name},
			patchOp{Op: "replace", Path: path + "/resources/requests/" + string(res), Value: reqQ.String()})
		params[events.ParamContainer] = cc.Name
		params[string(res)] = q
		changes = append(changes, fmt.Sprintf("%s request of container %s from %s to %s (largest node allocatable: %s)", res, cc.Name, reqQ.String(), q, quantityOf(largest, res)))
	}
	if len(ops) == 0 {
		return nil, "no request exceeds what the largest node can allocate; the cluster is short of capacity (add nodes, or free some), which is not a workload patch"
	}
	step := b.mutatingStep(events.ActionSetResourceRequests, "Lower the "+strings.Join(changes, " and the "), events.RiskMedium)
	step.Params = params
	step.PatchType = events.PatchJSON
	step.Patch = encodePatch(append([]patchOp{guardOp(w, 0)}, ops...)...)
	step.UndoPatch = encodePatch(append([]patchOp{guardOp(w, 1)}, undo...)...)
	step.Undo = "restore the previous requests (the undo patch)"
	args := []string{"set", "resources", w.ref(), "-c", params[events.ParamContainer]}
	var reqs []string
	for _, res := range []string{"cpu", "memory"} {
		if v := params[res]; v != "" {
			reqs = append(reqs, res+"="+v)
		}
	}
	step.Kubectl = b.kubectl(append(args, "--requests="+strings.Join(reqs, ","))...)
	step.Preconditions = []string{b.generationPrecondition()}
	step.SuccessCheck = "the pods are scheduled and become ready; check that the application copes with the smaller request"
	return &candidate{Steps: []events.Step{step}, Summary: fmt.Sprintf("%s; the request exceeds every node: lower it.", problem(b.in)),
		Notes: []string{"lower_requests: the new request is half the largest node's allocatable; confirm it suits the application"}}, ""
}

// largestRequest finds the container with the largest request of res.
func largestRequest(w *workload, res corev1.ResourceName) (int, *corev1.Container, bool) {
	best, bestIdx := int64(-1), -1
	for i, c := range w.Spec.Containers {
		if q, ok := c.Resources.Requests[res]; ok && milliOrBytes(q, res) > best {
			best, bestIdx = milliOrBytes(q, res), i
		}
	}
	if bestIdx < 0 {
		return -1, nil, false
	}
	return bestIdx, &w.Spec.Containers[bestIdx], false
}

// podRequest is the pod's effective request of res: the sum over
// containers, or the largest init container request if that is larger.
func podRequest(spec *corev1.PodSpec, res corev1.ResourceName) int64 {
	var sum, initMax int64
	for _, c := range spec.Containers {
		if q, ok := c.Resources.Requests[res]; ok {
			sum += milliOrBytes(q, res)
		}
	}
	for _, c := range spec.InitContainers {
		if q, ok := c.Resources.Requests[res]; ok {
			initMax = max(initMax, milliOrBytes(q, res))
		}
	}
	return max(sum, initMax)
}

// largestAllocatable is the largest allocatable amount of res of a node.
func largestAllocatable(nodes []corev1.Node, res corev1.ResourceName) int64 {
	var best int64
	for _, n := range nodes {
		if q, ok := n.Status.Allocatable[res]; ok {
			best = max(best, milliOrBytes(q, res))
		}
	}
	return best
}

// milliOrBytes measures CPU in millicores and memory in bytes.
func milliOrBytes(q resource.Quantity, res corev1.ResourceName) int64 {
	if res == corev1.ResourceCPU {
		return q.MilliValue()
	}
	return q.Value()
}

// quantityOf renders millicores or bytes as a quantity string.
func quantityOf(v int64, res corev1.ResourceName) string {
	if res == corev1.ResourceCPU {
		return resource.NewMilliQuantity(v, resource.DecimalSI).String()
	}
	return formatBytes(v)
}

// roundUpMiB rounds a byte count up to a whole mebibyte.
func roundUpMiB(b float64) int64 {
	return int64(math.Ceil(b/mebibyte)) * mebibyte
}

// formatBytes renders bytes as a binary quantity ("128Mi", "4Gi").
func formatBytes(b int64) string {
	return resource.NewQuantity(b, resource.BinarySI).String()
}
