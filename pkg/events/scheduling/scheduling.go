// Package scheduling reads the kube-scheduler's FailedScheduling message
// ("0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated
// taint {dedicated: gpu}. preemption: ...") into its causes, each with the
// number of nodes that refused the pod for it.
//
// The watcher classes a Pending pod by the dominant cause and carries the
// compact form ([Report.String]) in its incident; the planner explains each
// cause. [Parse] reads both the scheduler's wording (kube-scheduler 1.2x to
// 1.37, whose TaintToleration no longer names the taint) and the compact
// form, so a plan made from an incident alone says the same.
//
// The message is cluster text: taint keys and claim names come from the
// cluster. Parse bounds what it keeps. The package depends on the standard
// library only.
package scheduling

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Kind is a cause's type: which scheduler plugin refused the nodes.
type Kind string

// The kinds of causes, by scheduler plugin.
const (
	// KindInsufficient: NodeResourcesFit, "Insufficient cpu"; [Cause.Resource]
	// names the resource (cpu, memory, ephemeral-storage, nvidia.com/gpu).
	KindInsufficient Kind = "insufficient"
	// KindTooManyPods: NodeResourcesFit, the node's pod limit.
	KindTooManyPods Kind = "too_many_pods"
	// KindNodeAffinity: NodeAffinity, no match for the pod's nodeSelector
	// or required node affinity.
	KindNodeAffinity Kind = "node_affinity"
	// KindNodeName: NodeName, the node the pod names is another.
	KindNodeName Kind = "node_name"
	// KindTaint: TaintToleration; [Cause.Taint] when the scheduler names it
	// (before 1.37).
	KindTaint Kind = "taint"
	// KindCordoned: NodeUnschedulable (spec.unschedulable), or the
	// node.kubernetes.io/unschedulable taint.
	KindCordoned Kind = "cordoned"
	// KindPodAffinity: InterPodAffinity, the pod's required pod affinity.
	KindPodAffinity Kind = "pod_affinity"
	// KindPodAntiAffinity: InterPodAffinity, the pod's own required
	// anti-affinity.
	KindPodAntiAffinity Kind = "pod_anti_affinity"
	// KindExistingAntiAffinity: InterPodAffinity, the anti-affinity of pods
	// already on the node.
	KindExistingAntiAffinity Kind = "existing_anti_affinity"
	// KindTopologySpread: PodTopologySpread.
	KindTopologySpread Kind = "topology_spread"
	// KindHostPort: NodePorts, a hostPort already taken on the node.
	KindHostPort Kind = "host_port"
	// KindVolumeNodeAffinity: VolumeBinding, a bound PersistentVolume's
	// node affinity excludes the node.
	KindVolumeNodeAffinity Kind = "volume_node_affinity"
	// KindUnboundPVC: VolumeBinding, an immediate-binding claim is not
	// bound (a pod-level cause: every node).
	KindUnboundPVC Kind = "unbound_pvc"
	// KindMissingPVC: a claim the pod mounts does not exist; [Cause.Claim].
	KindMissingPVC Kind = "missing_pvc"
	// KindVolume: another volume constraint (no PersistentVolume to bind,
	// not enough storage, volume count or zone, ReadWriteOncePod);
	// [Cause.Text].
	KindVolume Kind = "volume"
	// KindNoNodes: the cluster has no node to try.
	KindNoNodes Kind = "no_nodes"
	// KindOther: anything else, in the scheduler's words ([Cause.Text]).
	KindOther Kind = "other"
)

// Limits on what Parse keeps of a message.
const (
	MaxCauses  = 20
	MaxTextLen = 200
)

// Taint is a taint as the scheduler names it: its effect is not in the
// message.
type Taint struct {
	Key, Value string
}

// String renders the taint as kubectl does without an effect: "key=value",
// or "key" for an empty value.
func (t Taint) String() string {
	if t.Value == "" {
		return t.Key
	}
	return t.Key + "=" + t.Value
}

// Cause is one reason the scheduler gave, with the nodes it applies to.
type Cause struct {
	Kind Kind
	// Nodes is how many nodes refused the pod for this cause. A cause the
	// scheduler found before looking at nodes (PodLevel) counts them all.
	Nodes int
	// PodLevel: the scheduler refused the pod itself (a PreFilter plugin:
	// an unbound or missing claim, conflicting affinity terms).
	PodLevel bool
	Resource string // KindInsufficient
	Taint    *Taint // KindTaint, when named
	Claim    string // KindMissingPVC
	Text     string // KindVolume and KindOther: the scheduler's words
}

// Report is a scheduler message taken apart.
type Report struct {
	// Total is the number of nodes the scheduler considered.
	Total  int
	Causes []Cause
	// Preemption is what the scheduler said of preempting other pods
	// ("preemption: 0/3 nodes are available: 3 Preemption is not helpful
	// for scheduling."), or "".
	Preemption string
}

var (
	headRE  = regexp.MustCompile(`^0/(\d+) nodes(?: are available)?:\s*`)
	countRE = regexp.MustCompile(`^(\d+) `)
	taintRE = regexp.MustCompile(`\{([^:{}]*):\s?([^{}]*)\}`)
	claimRE = regexp.MustCompile(`persistentvolumeclaim "([^"]+)" not found`)
	splitRE = regexp.MustCompile(`, (\d+ )`)
)

// taintUnschedulable is the taint of a cordoned node.
const taintUnschedulable = "node.kubernetes.io/unschedulable"

// Parse takes a scheduler message (or a [Report.String]) apart. ok is
// false when msg is not a message of this kind; the report then has no
// causes.
func Parse(msg string) (r Report, ok bool) {
	msg = strings.TrimSpace(msg)
	if strings.HasPrefix(strings.ToLower(msg), "no nodes available to schedule pods") {
		return Report{Causes: []Cause{{Kind: KindNoNodes}}}, true
	}
	m := headRE.FindStringSubmatch(msg)
	if m == nil {
		return Report{}, false
	}
	total, err := strconv.Atoi(m[1])
	if err != nil {
		return Report{}, false
	}
	r.Total = total
	body := msg[len(m[0]):]
	for _, sep := range []string{". preemption: ", ". pod group preemption: "} {
		if i := strings.Index(body, sep); i >= 0 {
			r.Preemption = truncate(strings.TrimSpace(body[i+2:]))
			body = body[:i]
			break
		}
	}
	body = strings.TrimSuffix(strings.TrimSpace(body), ".")
	if body == "" {
		return r, true
	}
	for _, part := range splitList(body) {
		if len(r.Causes) == MaxCauses {
			break
		}
		c := Cause{Nodes: total, PodLevel: true}
		if cm := countRE.FindStringSubmatch(part); cm != nil {
			if n, err := strconv.Atoi(cm[1]); err == nil {
				c.Nodes, c.PodLevel = n, false
				part = part[len(cm[0]):]
			}
		}
		classify(&c, strings.TrimSpace(part))
		if c.Kind == KindUnboundPVC || c.Kind == KindMissingPVC {
			c.PodLevel = true // the compact form counts them
		}
		r.Causes = append(r.Causes, c)
	}
	return r, true
}

// splitList splits "1 a, 2 b{x, y}, 3 c" at the commas that start a new
// counted reason (an old taint reason has a comma of its own: "had taint
// {k: v}, that the pod didn't tolerate"). A list whose first item has no
// count is one pod-level message.
func splitList(body string) []string {
	if !countRE.MatchString(body) {
		return []string{body}
	}
	var out []string
	for {
		loc := splitRE.FindStringIndex(body)
		if loc == nil {
			return append(out, body)
		}
		out = append(out, body[:loc[0]])
		body = body[loc[0]+2:]
	}
}

// classify sets c's kind and details from the text of one reason.
func classify(c *Cause, text string) {
	l := strings.ToLower(text)
	has := func(subs ...string) bool {
		return slices.ContainsFunc(subs, func(s string) bool { return strings.Contains(l, s) })
	}
	switch {
	case strings.HasPrefix(l, "insufficient "):
		c.Kind, c.Resource = KindInsufficient, truncate(strings.TrimSpace(text[len("insufficient "):]))
	case has("too many pods"):
		c.Kind = KindTooManyPods
	case has("were unschedulable", "cordoned", "taint {"+taintUnschedulable+":"):
		c.Kind = KindCordoned
	case has("taint"):
		c.Kind = KindTaint
		if m := taintRE.FindStringSubmatch(text); m != nil {
			c.Taint = &Taint{Key: truncate(strings.TrimSpace(m[1])), Value: truncate(strings.TrimSpace(m[2]))}
		} else if _, t, ok := strings.Cut(text, "untolerated taint "); ok && !strings.HasPrefix(t, "(") && t != "" {
			k, v, _ := strings.Cut(t, "=") // the compact form
			c.Taint = &Taint{Key: truncate(k), Value: truncate(v)}
		}
		if c.Taint != nil && c.Taint.Key == taintUnschedulable {
			c.Kind, c.Taint = KindCordoned, nil
		}
	case has("didn't match pod's node affinity/selector", "scheduler-enforced node affinity", "node selector/affinity",
		"pod affinity terms conflict", "affinity terms conflict"):
		c.Kind = KindNodeAffinity
	case has("requested node name"):
		c.Kind = KindNodeName
	case has("existing pods anti-affinity", "other pods' anti-affinity"):
		c.Kind = KindExistingAntiAffinity
	case has("anti-affinity"):
		c.Kind = KindPodAntiAffinity
	case has("pod affinity"):
		c.Kind = KindPodAffinity
	case has("topology spread"):
		c.Kind = KindTopologySpread
	case has("free ports", "host port"):
		c.Kind = KindHostPort
	case has("volume node affinity", "persistentvolume's node affinity"):
		c.Kind = KindVolumeNodeAffinity
	case has("unbound immediate persistentvolumeclaims"):
		c.Kind = KindUnboundPVC
	case claimRE.MatchString(text):
		c.Kind, c.Claim = KindMissingPVC, truncate(claimRE.FindStringSubmatch(text)[1])
	case has("persistent volume", "persistentvolume", "storage", "volume", "pvc", "disk"):
		c.Kind, c.Text = KindVolume, truncate(strings.TrimPrefix(text, "node(s) "))
	default:
		c.Kind, c.Text = KindOther, truncate(text)
	}
}

// String is the cause in a few words: "insufficient cpu", "untolerated
// taint dedicated=gpu". Parse reads it back.
func (c Cause) String() string {
	switch c.Kind {
	case KindInsufficient:
		return "insufficient " + c.Resource
	case KindTooManyPods:
		return "too many pods"
	case KindNodeAffinity:
		return "node selector/affinity mismatch"
	case KindNodeName:
		return "not the requested node name"
	case KindTaint:
		if c.Taint == nil {
			return "untolerated taint(s)"
		}
		return "untolerated taint " + c.Taint.String()
	case KindCordoned:
		return "cordoned"
	case KindPodAffinity:
		return "pod affinity unmet"
	case KindPodAntiAffinity:
		return "pod anti-affinity"
	case KindExistingAntiAffinity:
		return "other pods' anti-affinity"
	case KindTopologySpread:
		return "topology spread"
	case KindHostPort:
		return "host port in use"
	case KindVolumeNodeAffinity:
		return "volume node affinity conflict"
	case KindUnboundPVC:
		return "unbound immediate PersistentVolumeClaims"
	case KindMissingPVC:
		return fmt.Sprintf("persistentvolumeclaim %q not found", c.Claim)
	case KindNoNodes:
		return "no nodes available to schedule pods"
	}
	return c.Text
}

// String is the report in one compact line, the causes with the most
// nodes first: "0/3 nodes: 2 untolerated taint dedicated=gpu, 1
// insufficient cpu". Parse reads it back (without the preemption part).
func (r Report) String() string {
	if len(r.Causes) == 1 && r.Causes[0].Kind == KindNoNodes {
		return r.Causes[0].String()
	}
	parts := make([]string, 0, len(r.Causes))
	for _, c := range r.Sorted() {
		parts = append(parts, fmt.Sprintf("%d %s", c.Nodes, c))
	}
	return fmt.Sprintf("0/%d nodes: %s", r.Total, strings.Join(parts, ", "))
}

// Sorted returns the causes with the most nodes first, in the scheduler's
// order among equals.
func (r Report) Sorted() []Cause {
	out := slices.Clone(r.Causes)
	slices.SortStableFunc(out, func(a, b Cause) int { return b.Nodes - a.Nodes })
	return out
}

// Dominant is the cause that refused the most nodes, a typed cause before
// KindOther; among equals, the scheduler's first. false when there is no
// cause.
func (r Report) Dominant() (Cause, bool) {
	best := -1
	for i, c := range r.Causes {
		if best < 0 {
			best = i
			continue
		}
		b := r.Causes[best]
		if (b.Kind == KindOther) != (c.Kind == KindOther) {
			if b.Kind == KindOther {
				best = i
			}
			continue
		}
		if c.Nodes > b.Nodes {
			best = i
		}
	}
	if best < 0 {
		return Cause{}, false
	}
	return r.Causes[best], true
}

// Has reports whether a cause of kind k refused some node (for
// KindInsufficient, of resource res; res is ignored for other kinds).
func (r Report) Has(k Kind, res string) bool {
	return slices.ContainsFunc(r.Causes, func(c Cause) bool {
		return c.Kind == k && (k != KindInsufficient || c.Resource == res)
	})
}

// truncate bounds s to MaxTextLen bytes, at a rune boundary.
func truncate(s string) string {
	if len(s) <= MaxTextLen {
		return s
	}
	n := MaxTextLen
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}
