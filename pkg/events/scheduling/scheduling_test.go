package scheduling

import (
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

const notHelpful = " preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."

// The messages are kube-scheduler's, from its plugins' reasons (1.30 to
// 1.37, k8s.io/kubernetes pkg/scheduler/framework/plugins) and FitError's
// format: "0/<all> nodes are available: <count> <reason>, ... ." with the
// reasons sorted as strings, or a PreFilter reason without a count.
func TestParse(t *testing.T) {
	taint := func(k, v string) *Taint { return &Taint{Key: k, Value: v} }
	for _, tc := range []struct {
		msg        string
		total      int
		causes     []Cause
		preemption string
		compact    string
	}{
		{msg: "0/3 nodes are available: 3 Insufficient cpu." + notHelpful, total: 3,
			causes:     []Cause{{Kind: KindInsufficient, Nodes: 3, Resource: "cpu"}},
			preemption: "preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.",
			compact:    "0/3 nodes: 3 insufficient cpu"},
		{msg: "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {dedicated: gpu}." + notHelpful, total: 3,
			causes:  []Cause{{Kind: KindInsufficient, Nodes: 1, Resource: "cpu"}, {Kind: KindTaint, Nodes: 2, Taint: taint("dedicated", "gpu")}},
			compact: "0/3 nodes: 2 untolerated taint dedicated=gpu, 1 insufficient cpu"},
		{msg: "0/4 nodes are available: 3 Insufficient memory, 1 Insufficient cpu. preemption: 0/4 nodes are available: 4 No preemption victims found for incoming pod.", total: 4,
			causes:  []Cause{{Kind: KindInsufficient, Nodes: 3, Resource: "memory"}, {Kind: KindInsufficient, Nodes: 1, Resource: "cpu"}},
			compact: "0/4 nodes: 3 insufficient memory, 1 insufficient cpu"},
		{msg: "0/2 nodes are available: 2 Insufficient nvidia.com/gpu.", total: 2,
			causes: []Cause{{Kind: KindInsufficient, Nodes: 2, Resource: "nvidia.com/gpu"}}, compact: "0/2 nodes: 2 insufficient nvidia.com/gpu"},
		{msg: "0/3 nodes are available: 3 Insufficient cpu, 3 Insufficient ephemeral-storage, 3 Insufficient memory.", total: 3,
			causes: []Cause{{Kind: KindInsufficient, Nodes: 3, Resource: "cpu"}, {Kind: KindInsufficient, Nodes: 3, Resource: "ephemeral-storage"},
				{Kind: KindInsufficient, Nodes: 3, Resource: "memory"}},
			compact: "0/3 nodes: 3 insufficient cpu, 3 insufficient ephemeral-storage, 3 insufficient memory"},
		{msg: "0/3 nodes are available: 3 Too many pods. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.", total: 3,
			causes: []Cause{{Kind: KindTooManyPods, Nodes: 3}}, compact: "0/3 nodes: 3 too many pods"},
		{msg: "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector." + notHelpful, total: 3,
			causes: []Cause{{Kind: KindNodeAffinity, Nodes: 3}}, compact: "0/3 nodes: 3 node selector/affinity mismatch"},
		{msg: "0/3 nodes are available: 1 node(s) didn't match scheduler-enforced node affinity, 2 node(s) didn't match the requested node name.", total: 3,
			causes:  []Cause{{Kind: KindNodeAffinity, Nodes: 1}, {Kind: KindNodeName, Nodes: 2}},
			compact: "0/3 nodes: 2 not the requested node name, 1 node selector/affinity mismatch"},
		{msg: "0/3 nodes are available: pod affinity terms conflict." + notHelpful, total: 3,
			causes: []Cause{{Kind: KindNodeAffinity, Nodes: 3, PodLevel: true}}, compact: "0/3 nodes: 3 node selector/affinity mismatch"},
		// 1.37's TaintToleration does not name the taint.
		{msg: "0/3 nodes are available: 3 node(s) had untolerated taint(s)." + notHelpful, total: 3,
			causes: []Cause{{Kind: KindTaint, Nodes: 3}}, compact: "0/3 nodes: 3 untolerated taint(s)"},
		{msg: "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: batch}, 2 node(s) had untolerated taint {maintenance: true}.", total: 3,
			causes:  []Cause{{Kind: KindTaint, Nodes: 1, Taint: taint("dedicated", "batch")}, {Kind: KindTaint, Nodes: 2, Taint: taint("maintenance", "true")}},
			compact: "0/3 nodes: 2 untolerated taint maintenance=true, 1 untolerated taint dedicated=batch"},
		{msg: "0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, 2 node(s) had untolerated taint {node.kubernetes.io/not-ready: }.", total: 3,
			causes: []Cause{{Kind: KindTaint, Nodes: 1, Taint: taint("node-role.kubernetes.io/control-plane", "")},
				{Kind: KindTaint, Nodes: 2, Taint: taint("node.kubernetes.io/not-ready", "")}},
			compact: "0/3 nodes: 2 untolerated taint node.kubernetes.io/not-ready, 1 untolerated taint node-role.kubernetes.io/control-plane"},
		// Before 1.2x, with a comma inside the reason.
		{msg: "0/3 nodes are available: 1 node(s) had taint {node-role.kubernetes.io/master: }, that the pod didn't tolerate, 2 Insufficient cpu.", total: 3,
			causes:  []Cause{{Kind: KindTaint, Nodes: 1, Taint: taint("node-role.kubernetes.io/master", "")}, {Kind: KindInsufficient, Nodes: 2, Resource: "cpu"}},
			compact: "0/3 nodes: 2 insufficient cpu, 1 untolerated taint node-role.kubernetes.io/master"},
		// Cordoned: NodeUnschedulable, or the taint when a toleration-aware
		// scheduler reports it.
		{msg: "0/3 nodes are available: 3 node(s) were unschedulable." + notHelpful, total: 3,
			causes: []Cause{{Kind: KindCordoned, Nodes: 3}}, compact: "0/3 nodes: 3 cordoned"},
		{msg: "0/3 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/unschedulable: }, 2 Insufficient memory.", total: 3,
			causes:  []Cause{{Kind: KindCordoned, Nodes: 1}, {Kind: KindInsufficient, Nodes: 2, Resource: "memory"}},
			compact: "0/3 nodes: 2 insufficient memory, 1 cordoned"},
		{msg: "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.", total: 3,
			causes: []Cause{{Kind: KindPodAntiAffinity, Nodes: 3}}, compact: "0/3 nodes: 3 pod anti-affinity"},
		{msg: "0/3 nodes are available: 1 node(s) didn't satisfy existing pods anti-affinity rules, 2 node(s) didn't match pod affinity rules.", total: 3,
			causes:  []Cause{{Kind: KindExistingAntiAffinity, Nodes: 1}, {Kind: KindPodAffinity, Nodes: 2}},
			compact: "0/3 nodes: 2 pod affinity unmet, 1 other pods' anti-affinity"},
		{msg: "0/3 nodes are available: 3 node(s) didn't match pod topology spread constraints (missing required label).", total: 3,
			causes: []Cause{{Kind: KindTopologySpread, Nodes: 3}}, compact: "0/3 nodes: 3 topology spread"},
		{msg: "0/3 nodes are available: 3 node(s) didn't have free ports for the requested pod ports. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.", total: 3,
			causes: []Cause{{Kind: KindHostPort, Nodes: 3}}, compact: "0/3 nodes: 3 host port in use"},
		{msg: "0/3 nodes are available: 1 node(s) had volume node affinity conflict, 2 node(s) didn't match Pod's node affinity/selector.", total: 3,
			causes:  []Cause{{Kind: KindVolumeNodeAffinity, Nodes: 1}, {Kind: KindNodeAffinity, Nodes: 2}},
			compact: "0/3 nodes: 2 node selector/affinity mismatch, 1 volume node affinity conflict"},
		{msg: "0/3 nodes are available: 3 node(s) didn't match PersistentVolume's node affinity." + notHelpful, total: 3,
			causes: []Cause{{Kind: KindVolumeNodeAffinity, Nodes: 3}}, compact: "0/3 nodes: 3 volume node affinity conflict"},
		{msg: "0/3 nodes are available: pod has unbound immediate PersistentVolumeClaims." + notHelpful, total: 3,
			causes: []Cause{{Kind: KindUnboundPVC, Nodes: 3, PodLevel: true}}, compact: "0/3 nodes: 3 unbound immediate PersistentVolumeClaims"},
		{msg: `0/3 nodes are available: persistentvolumeclaim "data" not found.` + notHelpful, total: 3,
			causes: []Cause{{Kind: KindMissingPVC, Nodes: 3, PodLevel: true, Claim: "data"}}, compact: `0/3 nodes: 3 persistentvolumeclaim "data" not found`},
		{msg: "0/3 nodes are available: 1 node(s) exceed max volume count, 2 node(s) didn't find available persistent volumes to bind.", total: 3,
			causes: []Cause{{Kind: KindVolume, Nodes: 1, Text: "exceed max volume count"},
				{Kind: KindVolume, Nodes: 2, Text: "didn't find available persistent volumes to bind"}},
			compact: "0/3 nodes: 2 didn't find available persistent volumes to bind, 1 exceed max volume count"},
		{msg: "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had unknown conditions.", total: 3,
			causes:  []Cause{{Kind: KindInsufficient, Nodes: 1, Resource: "cpu"}, {Kind: KindOther, Nodes: 2, Text: "node(s) had unknown conditions"}},
			compact: "0/3 nodes: 2 node(s) had unknown conditions, 1 insufficient cpu"},
		{msg: "no nodes available to schedule pods", causes: []Cause{{Kind: KindNoNodes}}, compact: "no nodes available to schedule pods"},
	} {
		t.Run(tc.msg, func(t *testing.T) {
			r, ok := Parse(tc.msg)
			if !ok {
				t.Fatalf("Parse: not a scheduler message")
			}
			if r.Total != tc.total || !reflect.DeepEqual(r.Causes, tc.causes) {
				t.Errorf("Parse = total %d causes %+v, want total %d causes %+v", r.Total, r.Causes, tc.total, tc.causes)
			}
			if tc.preemption != "" && r.Preemption != tc.preemption {
				t.Errorf("Preemption = %q, want %q", r.Preemption, tc.preemption)
			}
			if got := r.String(); got != tc.compact {
				t.Errorf("String = %q, want %q", got, tc.compact)
			}
			// The compact form reads back to the same causes.
			back, ok := Parse(r.String())
			if !ok || back.Total != r.Total || !reflect.DeepEqual(clearPodLevel(back.Causes), clearPodLevel(r.Sorted())) {
				t.Errorf("Parse(String) = %+v, want %+v", back.Causes, r.Sorted())
			}
		})
	}
}

func clearPodLevel(cs []Cause) []Cause {
	out := make([]Cause, len(cs))
	for i, c := range cs {
		c.PodLevel = false
		out[i] = c
	}
	return out
}

func TestParseNotAMessage(t *testing.T) {
	for _, msg := range []string{"", "something new", "nodes are available", "0/x nodes are available: 1 Insufficient cpu."} {
		if r, ok := Parse(msg); ok || len(r.Causes) != 0 {
			t.Errorf("Parse(%q) = %+v, %v; want not ok", msg, r, ok)
		}
	}
}

func TestDominant(t *testing.T) {
	for msg, want := range map[string]Kind{
		"0/4 nodes are available: 3 Insufficient memory, 1 Insufficient cpu.":                               KindInsufficient,
		"0/5 nodes are available: 1 Insufficient cpu, 4 node(s) had untolerated taint {dedicated: gpu}.":    KindTaint,
		"0/3 nodes are available: 3 Insufficient cpu, 3 node(s) didn't match Pod's node affinity/selector.": KindInsufficient,
		"0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had unknown conditions.":                    KindInsufficient,
		"0/3 nodes are available: 3 node(s) had unknown conditions.":                                        KindOther,
	} {
		r, _ := Parse(msg)
		if c, ok := r.Dominant(); !ok || c.Kind != want {
			t.Errorf("Dominant(%q) = %+v, %v; want %s", msg, c, ok, want)
		}
	}
	if _, ok := (Report{Total: 3}).Dominant(); ok {
		t.Error("Dominant of no cause: ok")
	}
}

func TestParseBounds(t *testing.T) {
	var b strings.Builder
	b.WriteString("0/500 nodes are available: ")
	for i := range 100 {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("5 node(s) had untolerated taint {k" + strings.Repeat("é", 300) + ": v}")
	}
	r, ok := Parse(b.String() + ".")
	if !ok || len(r.Causes) != MaxCauses {
		t.Fatalf("Parse: ok %v, %d causes, want %d", ok, len(r.Causes), MaxCauses)
	}
	if k := r.Causes[0].Taint.Key; len(k) > MaxTextLen+3 || !strings.HasSuffix(k, "...") || !utf8.ValidString(k) {
		t.Errorf("taint key not bounded: %d bytes", len(k))
	}
}
