package planner

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/kaar-dev/kaar/pkg/events/scheduling"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

const mebibyte = 1 << 20

// increaseMemory raises the memory limit (and a lower request) of the
// OOMKilled container by the memory factor, capped at the maximum. For a
// MemoryNearLimit warning (planned on request) the same step raises the
// limit before the OOM, by what the forecast needs (forecastLimit in
// warning.go), never more than the memory factor allows.
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
		return nil, b.noContainer()
	}
	limitQ, hasLimit := c.Resources.Limits[corev1.ResourceMemory]
	if !hasLimit {
		return nil, fmt.Sprintf("container %s has no memory limit: the kill came from node memory pressure, not from a limit", c.Name)
	}
	factor, maxBytes, err := b.memoryBounds(st)
	if err != nil {
		return nil, "remediation.max_memory_limit: " + err.Error()
	}
	limit := limitQ.Value()
	if limit >= maxBytes {
		return nil, fmt.Sprintf("the memory limit of container %s (%s) is already at remediation.max_memory_limit (%s): raise it by hand if the workload needs more, or look for a leak or wrong heap settings",
			c.Name, limitQ.String(), formatBytes(maxBytes))
	}
	warning := b.in.Incident.Type == events.IssueMemoryNearLimit
	newLimit := roundUpMiB(float64(limit) * factor)
	var notes []string
	if warning {
		nl, why, fnotes := b.forecastLimit(st, c, limit, factor)
		if why != "" {
			return nil, why
		}
		newLimit, notes = nl, fnotes
	}
	// A limit that a healthy revision ran with is evidence of what the app
	// needs: when the failing rollout lowered it, go back at least that far.
	healthyRev, healthyLimit := b.healthyMemoryLimit(c.Name)
	if healthyLimit > newLimit {
		newLimit = healthyLimit
	}
	newLimit = min(newLimit, maxBytes)
	reqFactor := factor
	if warning {
		reqFactor = float64(newLimit) / float64(limit) // the request grows with the limit
	}
	path := w.containerPath(idx, init) + "/resources"
	nameTest := patchOp{Op: "test", Path: w.containerPath(idx, init) + "/name", Value: c.Name}
	o := ownerStep{
		action:        events.ActionSetMemoryLimit,
		title:         fmt.Sprintf("Raise the memory limit of container %s of %s from %s to %s", c.Name, w.ref(), limitQ.String(), formatBytes(newLimit)),
		risk:          events.RiskLow,
		params:        map[string]string{events.ParamContainer: c.Name, events.ParamMemory: formatBytes(newLimit)},
		ops:           []patchOp{nameTest, {Op: "replace", Path: path + "/limits/memory", Value: formatBytes(newLimit)}},
		undoOps:       []patchOp{nameTest, {Op: "replace", Path: path + "/limits/memory", Value: limitQ.String()}},
		undo:          fmt.Sprintf("restore the memory limit %s (the undo patch)", limitQ.String()),
		preconditions: []string{fmt.Sprintf("container %d of the pod spec is still named %s", idx, c.Name)},
		successCheck:  fmt.Sprintf("%s rolls out and container %s is not OOMKilled again for the verify window", w.ref(), c.Name),
	}
	summary := fmt.Sprintf("%s at its %s memory limit; raise it to %s.", problem(b.in), limitQ.String(), formatBytes(newLimit))
	if warning {
		o.title += " before it is reached"
		o.successCheck = fmt.Sprintf("%s rolls out and container %s runs ready with the new limit for the verify window (the watcher's next forecast is against it)", w.ref(), c.Name)
		summary = fmt.Sprintf("%s: %s; raise the %s limit to %s before the OOM.", problem(b.in), forecastClause(b.in), limitQ.String(), formatBytes(newLimit))
	}
	kubectlArgs := []string{"set", "resources", w.ref(), "-c", c.Name, "--limits=memory=" + formatBytes(newLimit)}
	if reqQ, ok := c.Resources.Requests[corev1.ResourceMemory]; ok && reqQ.Value() > 0 {
		newReq := min(roundUpMiB(float64(reqQ.Value())*reqFactor), newLimit)
		if newReq > reqQ.Value() {
			o.ops = append(o.ops, patchOp{Op: "replace", Path: path + "/requests/memory", Value: formatBytes(newReq)})
			o.undoOps = append(o.undoOps, patchOp{Op: "replace", Path: path + "/requests/memory", Value: reqQ.String()})
			o.params["memory_request"] = formatBytes(newReq)
			kubectlArgs = append(kubectlArgs, "--requests=memory="+formatBytes(newReq))
			o.title += fmt.Sprintf(" (request from %s to %s)", reqQ.String(), formatBytes(newReq))
		}
	}
	o.kubectl = b.kubectl(kubectlArgs...)
	if healthyLimit > limit {
		notes = append(notes, fmt.Sprintf("increase_memory: revision %d ran healthy with a %s limit; the new limit is at least that", healthyRev, formatBytes(healthyLimit)))
	}
	if newLimit == maxBytes {
		notes = append(notes, fmt.Sprintf("increase_memory: the new limit is capped at remediation.max_memory_limit (%s)", formatBytes(maxBytes)))
	}
	return b.propose(o, summary, notes...), ""
}

// memoryBounds are the factor a memory limit is raised by and the most it
// may reach: the configuration's, unless the strategy's params "factor"
// (above 1) and "max" say otherwise.
func (b *builder) memoryBounds(st Strategy) (factor float64, maxBytes int64, err error) {
	factor = b.in.Cfg.MemoryFactor
	if f, err := strconv.ParseFloat(st.Params["factor"], 64); err == nil && f > 1 {
		factor = f
	}
	maxBytes, err = parseBytes(b.in.Cfg.MaxMemoryLimit)
	if p := st.Params["max"]; p != "" {
		if v, perr := parseBytes(p); perr == nil {
			maxBytes, err = v, nil
		}
	}
	return factor, maxBytes, err
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
	var ops, undo []patchOp
	params := map[string]string{}
	var changes []string
	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		ch, ok := b.lowerRequest(st, res, msg, nodes)
		if !ok {
			continue
		}
		ops, undo = append(ops, ch.ops...), append(undo, ch.undo...)
		params[events.ParamContainer] = ch.container
		params[string(res)] = ch.quantity
		changes = append(changes, ch.change)
	}
	if len(ops) == 0 {
		return nil, "no request exceeds what the largest node can allocate; the cluster is short of capacity (add nodes, or free some), which is not a workload patch"
	}
	args := []string{"set", "resources", w.ref(), "-c", params[events.ParamContainer]}
	var reqs []string
	for _, res := range []string{"cpu", "memory"} {
		if v := params[res]; v != "" {
			reqs = append(reqs, res+"="+v)
		}
	}
	return b.propose(ownerStep{
		action:       events.ActionSetResourceRequests,
		title:        "Lower the " + strings.Join(changes, " and the "),
		risk:         events.RiskMedium,
		params:       params,
		ops:          ops,
		undoOps:      undo,
		undo:         "restore the previous requests (the undo patch)",
		kubectl:      b.kubectl(append(args, "--requests="+strings.Join(reqs, ","))...),
		successCheck: "the pods are scheduled and become ready; check that the application copes with the smaller request",
	}, fmt.Sprintf("%s; the request exceeds every node: lower it.", problem(b.in)),
		"lower_requests: the new request is half the largest node's allocatable; confirm it suits the application"), ""
}

// requestChange is one request lowerRequests lowers.
type requestChange struct {
	ops, undo []patchOp
	container string
	quantity  string
	change    string // for the title
}

// lowerRequest lowers the request of res of the incident's container
// (else of the container with the largest one) when the scheduler reports
// too little of res (or says nothing) and the pod's request exceeds every
// node: to half the largest allocatable, or to the strategy's param res
// when that fits a node. false when res needs no change.
func (b *builder) lowerRequest(st Strategy, res corev1.ResourceName, msg string, nodes []corev1.Node) (requestChange, bool) {
	w := b.in.Owner
	if r, _ := scheduling.Parse(msg); msg != "" && !r.Has(scheduling.KindInsufficient, string(res)) {
		return requestChange{}, false
	}
	ci, cc, cinit := w.container(b.in.Incident.Container)
	if cc == nil || cc.Resources.Requests == nil {
		ci, cc, cinit = largestRequest(w, res)
	}
	if cc == nil {
		return requestChange{}, false
	}
	reqQ, ok := cc.Resources.Requests[res]
	if !ok {
		return requestChange{}, false
	}
	largest := largestAllocatable(nodes, res)
	podTotal := podRequest(w.Spec, res)
	if podTotal <= largest {
		return requestChange{}, false // fits an empty node: a capacity problem, not a wrong request
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
		return requestChange{}, false
	}
	q := quantityOf(newReq, res)
	path := w.containerPath(ci, cinit)
	return requestChange{
		ops: []patchOp{{Op: "test", Path: path + "/name", Value: cc.Name},
			{Op: "replace", Path: path + "/resources/requests/" + string(res), Value: q}},
		undo: []patchOp{{Op: "test", Path: path + "/name", Value: cc.Name},
			{Op: "replace", Path: path + "/resources/requests/" + string(res), Value: reqQ.String()}},
		container: cc.Name,
		quantity:  q,
		change: fmt.Sprintf("%s request of container %s from %s to %s (largest node allocatable: %s)",
			res, cc.Name, reqQ.String(), q, quantityOf(largest, res)),
	}, true
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
