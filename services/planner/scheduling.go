package planner

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/kaar-dev/kaar/pkg/events/scheduling"
	corev1 "k8s.io/api/core/v1"
)

// maxCauseSteps bounds the diagnostic steps of a Pending plan: a
// scheduler message lists at most a few causes that matter.
const maxCauseSteps = 6

// schedulingReport is the scheduler's message taken apart (the pod's, or
// the incident's compact form when the pod is gone).
func (b *builder) schedulingReport() scheduling.Report {
	r, _ := scheduling.Parse(b.schedulingMessage())
	return r
}

// pendingSteps explain a scheduling failure cause by cause, the causes
// with the most nodes first, each with how many nodes refused the pod for
// it. The taints share one step, as do the resources: one fix each.
func pendingSteps(b *builder, step stepFunc, describe []string) []events.Step {
	r := b.schedulingReport()
	var out []events.Step
	done := map[scheduling.Kind]bool{}
	for _, c := range r.Sorted() {
		if len(out) == maxCauseSteps {
			break
		}
		switch c.Kind {
		case scheduling.KindTaint, scheduling.KindInsufficient:
			if done[c.Kind] {
				continue
			}
			done[c.Kind] = true
			if c.Kind == scheduling.KindTaint {
				out = append(out, b.taintStep(r, step))
			} else {
				out = append(out, b.capacityStep(r, step))
			}
		case scheduling.KindUnboundPVC, scheduling.KindMissingPVC:
			if !done[c.Kind] {
				done[c.Kind] = true
				out = append(out, b.claimStep(c, step))
			}
		default:
			out = append(out, b.causeStep(r, c, step, describe))
		}
	}
	if len(out) == 0 {
		out = append(out, step("Read why the scheduler cannot place the pod (FailedScheduling events)", describe...))
	}
	return out
}

// ofNodes says "2 of 3 nodes" with the verb agreeing: ofNodes(c, r,
// "carries", "carry").
func ofNodes(c scheduling.Cause, r scheduling.Report, one, many string) string {
	verb := many
	if c.Nodes == 1 {
		verb = one
	}
	if r.Total == 0 {
		return fmt.Sprintf("%s %s", plural(c.Nodes, "node"), verb)
	}
	return fmt.Sprintf("%d of %s %s", c.Nodes, plural(r.Total, "node"), verb)
}

// taintStep names the taints the pods do not tolerate with the nodes
// carrying each. The scheduler names the taint up to 1.36 (without its
// effect, read from the nodes); from 1.37 it does not, and the node list
// says which taints of which nodes the pod template does not tolerate.
func (b *builder) taintStep(r scheduling.Report, step stepFunc) events.Step {
	w := b.in.Owner
	var parts, keys []string
	unnamed := 0
	for _, c := range r.Sorted() {
		if c.Kind != scheduling.KindTaint {
			continue
		}
		if c.Taint == nil {
			unnamed += c.Nodes
			continue
		}
		parts = append(parts, fmt.Sprintf("%s taint %s", ofNodes(c, r, "carries", "carry"), b.taintWithEffect(*c.Taint)))
		keys = append(keys, c.Taint.Key)
	}
	if unnamed > 0 {
		c := scheduling.Cause{Nodes: unnamed}
		what := "taints"
		if seen := b.untoleratedTaints(); len(seen) > 0 {
			what += " (" + strings.Join(seen, ", ") + ")"
			for _, s := range seen {
				keys = append(keys, strings.FieldsFunc(s, func(r rune) bool { return r == '=' || r == ':' })[0])
			}
		}
		parts = append(parts, ofNodes(c, r, "carries", "carry")+" "+what)
	}
	text := fmt.Sprintf("%s that %s does not tolerate: add a toleration to its pod template only if it belongs on those nodes (or configure the add_toleration strategy with its key, value and effect), else target another node pool",
		strings.Join(parts, " and "), w.ref())
	if slices.ContainsFunc(keys, func(k string) bool { return strings.HasPrefix(k, "node.kubernetes.io/") }) {
		text += "; a node.kubernetes.io/ taint marks a node condition (not ready, unreachable, under pressure): fix the node, a toleration only hides it"
	}
	return step(capitalize(text), "get", "nodes", "-o", "custom-columns=NAME:.metadata.name,TAINTS:.spec.taints")
}

// taintWithEffect adds to a taint the scheduler named the effect the
// nodes give it ("dedicated=gpu:NoSchedule"), when a node carries it.
func (b *builder) taintWithEffect(t scheduling.Taint) string {
	for _, n := range b.in.Nodes {
		for _, nt := range n.Spec.Taints {
			if nt.Key == t.Key && nt.Value == t.Value && nt.Effect != corev1.TaintEffectPreferNoSchedule {
				return t.String() + ":" + string(nt.Effect)
			}
		}
	}
	return t.String()
}

// untoleratedTaints are the distinct taints of the nodes that the pod
// template does not tolerate, with the number of nodes carrying each
// ("dedicated=gpu:NoSchedule on 2 nodes"), at most five.
func (b *builder) untoleratedTaints() []string {
	var tols []corev1.Toleration
	if s := b.in.Owner.Spec; s != nil {
		tols = s.Tolerations
	}
	count := map[string]int{}
	var order []string
	for _, n := range b.in.Nodes {
		if t := untolerated(n.Spec.Taints, tols); t != nil {
			s := t.ToString()
			if count[s] == 0 {
				order = append(order, s)
			}
			count[s]++
		}
	}
	slices.SortStableFunc(order, func(a, b string) int { return count[b] - count[a] })
	var out []string
	for i, s := range order {
		if i == 5 {
			out = append(out, fmt.Sprintf("%d more", len(order)-i))
			break
		}
		out = append(out, fmt.Sprintf("%s on %s", s, plural(count[s], "node")))
	}
	return out
}

// capacityStep says which resources which nodes lack, with what the pod
// requests and, when no node could ever hold it, the largest allocatable.
func (b *builder) capacityStep(r scheduling.Report, step stepFunc) events.Step {
	w := b.in.Owner
	var parts []string
	for _, c := range r.Sorted() {
		if c.Kind != scheduling.KindInsufficient {
			continue
		}
		part := fmt.Sprintf("%s not enough free %s", ofNodes(c, r, "has", "have"), c.Resource)
		res := corev1.ResourceName(c.Resource)
		if w.Spec != nil && (res == corev1.ResourceCPU || res == corev1.ResourceMemory) {
			if req := podRequest(w.Spec, res); req > 0 {
				part += fmt.Sprintf(" for a pod's request of %s", quantityOf(req, res))
				if largest := largestAllocatable(b.in.Nodes, res); largest > 0 && req > largest {
					part += fmt.Sprintf(", more than any node can allocate (largest %s)", quantityOf(largest, res))
				}
			}
		}
		parts = append(parts, part)
	}
	return step(capitalize(fmt.Sprintf("%s: lower the requests of %s or add capacity (a cluster autoscaler may be adding a node)", strings.Join(parts, "; "), w.ref())),
		"describe", "nodes")
}

// claimStep explains a claim the pod waits for: missing, or not bound.
// The scheduler refuses the pod before trying a node.
func (b *builder) claimStep(c scheduling.Cause, step stepFunc) events.Step {
	w := b.in.Owner
	if c.Kind == scheduling.KindMissingPVC {
		return step(fmt.Sprintf("PersistentVolumeClaim %s does not exist: create it (with a StorageClass that can provision it) or fix the claim name in the pod template of %s%s",
			c.Claim, w.ref(), volumeRefs(w, "persistentvolumeclaim", c.Claim)), "get", "pvc", c.Claim)
	}
	if s := b.in.Storage; s != nil {
		if fc := s.failing(); fc != nil && fc.Claim != nil && fc.Claim.Status.Phase != corev1.ClaimBound {
			why := "its events say why"
			if w := fc.warning(); w != "" {
				why = "the last warning: " + quote(w)
			}
			return step(fmt.Sprintf("PersistentVolumeClaim %s (class %s) is not bound: %s; the cluster's StorageClasses: %s", fc.Name, quote(orNone(nonEmpty(claimClass(fc.Claim)))), why, s.classNames()),
				"describe", "pvc", fc.Name)
		}
	}
	claims := claimNames(w.Spec)
	what := "A PersistentVolumeClaim of the pod"
	args := []string{"get", "pvc"}
	if len(claims) > 0 {
		what = "PersistentVolumeClaim " + strings.Join(claims, ", ")
		args = append(args, claims...)
	}
	return step(what+" is not bound: check its StorageClass exists and can provision (kubectl describe pvc shows the provisioner's events), or that a matching PersistentVolume is Available", args...)
}

// causeStep explains one cause other than taints, resources and claims.
func (b *builder) causeStep(r scheduling.Report, c scheduling.Cause, step stepFunc, describe []string) events.Step {
	ref := b.in.Owner.ref()
	switch c.Kind {
	case scheduling.KindTooManyPods:
		return step(capitalize(ofNodes(c, r, "has", "have")+" reached the pod limit: add nodes or remove pods"), "describe", "nodes")
	case scheduling.KindNodeAffinity:
		if c.PodLevel {
			return step(fmt.Sprintf("The node selector or required node affinity of %s contradicts itself or the scheduler's: no node can match it", ref), describe...)
		}
		return step(capitalize(fmt.Sprintf("%s not match the node selector or affinity of %s%s: fix the selector or label the right nodes",
			ofNodes(c, r, "does", "do"), ref, b.selectorShown())), "get", "nodes", "--show-labels")
	case scheduling.KindNodeName:
		return step(capitalize(fmt.Sprintf("%s not the node the pod names (spec.nodeName): fix or remove the node name in %s", ofNodes(c, r, "is", "are"), ref)), "get", "nodes")
	case scheduling.KindCordoned:
		return step(capitalize(ofNodes(c, r, "is", "are")+" cordoned: uncordon them once their maintenance is done"), "get", "nodes")
	case scheduling.KindPodAntiAffinity:
		return step(capitalize(fmt.Sprintf("%s a pod that the anti-affinity rules of %s exclude (e.g. more replicas than nodes): relax the rules (preferred instead of required) or add nodes",
			ofNodes(c, r, "runs", "run"), ref)), describe...)
	case scheduling.KindExistingAntiAffinity:
		return step(capitalize(fmt.Sprintf("%s pods whose own anti-affinity rules keep the pods of %s away: add nodes, or relax those pods' rules",
			ofNodes(c, r, "runs", "run"), ref)), describe...)
	case scheduling.KindPodAffinity:
		return step(capitalize(fmt.Sprintf("%s no pod that the pod affinity rules of %s require: check that those pods run, or relax the rules",
			ofNodes(c, r, "runs", "run"), ref)), describe...)
	case scheduling.KindTopologySpread:
		return step(capitalize(fmt.Sprintf("%s break the topology spread constraints of %s (or lack their topology label): add nodes where the spread is short, label the nodes, or set whenUnsatisfiable: ScheduleAnyway",
			ofNodes(c, r, "would", "would"), ref)), describe...)
	case scheduling.KindHostPort:
		return step(capitalize(fmt.Sprintf("%s host port%s in use already: remove hostPort from %s (a Service reaches the pods without it), or run no more replicas than nodes",
			ofNodes(c, r, "has", "have"), b.hostPortsShown(), ref)), describe...)
	case scheduling.KindVolumeNodeAffinity:
		return b.volumeAffinityStep(r, c, step)
	case scheduling.KindVolume:
		return step(capitalize(fmt.Sprintf("%s the pod's volumes (the scheduler: %q): check its claims and their StorageClass", ofNodes(c, r, "refuses", "refuse"), c.Text)), "get", "pvc")
	case scheduling.KindNoNodes:
		return step("The cluster has no node the scheduler can use: add nodes, or check why they are not registered", "get", "nodes")
	}
	return step(capitalize(fmt.Sprintf("%s the pod (the scheduler: %q)", ofNodes(c, r, "refuses", "refuse"), c.String())), describe...)
}

// selectorShown is " (nodeSelector disk=ssd)" when the template has one.
func (b *builder) selectorShown() string {
	s := b.in.Owner.Spec
	if s == nil || len(s.NodeSelector) == 0 {
		return ""
	}
	return " (nodeSelector " + labelsString(s.NodeSelector) + ")"
}

// hostPortsShown is " 8080/TCP" (the template's host ports), or "".
func (b *builder) hostPortsShown() string {
	s := b.in.Owner.Spec
	if s == nil {
		return ""
	}
	var ports []string
	for _, c := range s.Containers {
		for _, p := range c.Ports {
			if p.HostPort != 0 {
				ports = append(ports, strconv.Itoa(int(p.HostPort))+"/"+string(cmp.Or(p.Protocol, corev1.ProtocolTCP)))
			}
		}
	}
	if len(ports) == 0 {
		return ""
	}
	return " " + strings.Join(ports, ", ")
}

// capitalize upper-cases the first letter of a step title ("2 of 3 nodes"
// stays as is).
func capitalize(s string) string {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
