package config

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	"go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Remediation is how plans are made and executed.
type Remediation struct {
	AutoApprove bool `yaml:"auto_approve"`
	// AutoApproveMaxRisk is the highest step risk auto_approve may approve.
	AutoApproveMaxRisk string `yaml:"auto_approve_max_risk"`
	// MaxPods is how many pods one plan may touch.
	MaxPods int `yaml:"max_pods"`
	// Strategies maps an issue type to the remediation steps tried, in order.
	// An entry names a catalogue step (StrategyNames) or a custom strategy.
	Strategies map[string][]Strategy `yaml:"strategies"`
	// CustomStrategies are named sequences of catalogue steps with their
	// parameters, usable in Strategies like a catalogue step: a plan gets
	// all of a custom strategy's steps, or none of them.
	CustomStrategies map[string][]Strategy `yaml:"custom_strategies"`
	// ApprovalWindow is how long a proposed plan can be approved and started.
	ApprovalWindow Duration `yaml:"approval_window"`
	// VerifyTimeout bounds the wait for the workload to become healthy.
	VerifyTimeout Duration `yaml:"verify_timeout"`
	// MaxMemoryLimit caps what a raise-memory step may set.
	MaxMemoryLimit string `yaml:"max_memory_limit"`
	// MemoryFactor is how much a raise-memory step multiplies the limit by.
	MemoryFactor float64 `yaml:"memory_factor"`
	// Paused is the global kill switch: no plan is executed while it is set.
	Paused bool `yaml:"paused"`
	// UndoOnFailure applies the undo patches of an executed plan, newest
	// step first, when its verification fails.
	UndoOnFailure bool `yaml:"undo_on_failure"`
	// MaxConcurrent is how many plans one executor runs at once;
	// MaxConcurrentPerNamespace how many of them may be in one namespace.
	MaxConcurrent             int `yaml:"max_concurrent"`
	MaxConcurrentPerNamespace int `yaml:"max_concurrent_per_namespace"`
	// RequireDistinctApprover refuses the approval of a plan by the
	// identity that asked for it (Plan.RequestedBy; plans made from
	// incidents on the planner's own initiative have none): separation
	// of duties, enforced by the executor and checked early by the
	// gateway.
	RequireDistinctApprover bool `yaml:"require_distinct_approver"`
}

// Strategy is one entry of a strategy list: a catalogue step name, written
// either as a plain string ("check_logs") or as a mapping with parameters
// ({action: increase_memory, params: {factor: "2"}}).
type Strategy struct {
	Action string            `yaml:"action"`
	Params map[string]string `yaml:"params,omitempty"`
}

// UnmarshalYAML accepts both the string and the mapping form.
func (s *Strategy) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		s.Action = n.Value
		return nil
	}
	type plain Strategy
	var p plain
	if err := n.Decode(&p); err != nil {
		return err
	}
	*s = Strategy(p)
	return nil
}

// StrategyNames are the catalogue steps a strategy may name. The first four
// are the original server's names and keep their meaning.
var StrategyNames = []string{
	"check_logs", "restart_pod", "check_image", "update_image",
	"rollback", "set_image", "increase_memory", "rollout_restart", "delete_pod",
	"delete_evicted_pods", "add_toleration", "set_node_selector", "lower_requests", "diagnostic",
	// A Service's selector or targetPort corrected to the one workload or
	// port it evidently targets (ServiceUnavailable).
	"set_service_selector", "set_service_target_port",
	// The action names of plans, accepted as aliases so every step an
	// approver sees in a plan can be named in the configuration.
	"set_memory_limit", "set_resource_requests",
}

// Bounds of the remediation section.
const (
	minApprovalWindow = time.Second
	// maxApprovalWindow keeps an unapproved plan from outliving the
	// cluster state it was made for by more than a day.
	maxApprovalWindow  = 24 * time.Hour
	minVerifyTimeout   = time.Second
	maxVerifyTimeout   = time.Hour
	maxMemoryFactor    = 8.0
	maxConcurrentPlans = 64
)

func (r Remediation) validate() error {
	var p problems
	p.add(oneOf("remediation.auto_approve_max_risk", r.AutoApproveMaxRisk, enumStrings(events.RiskLevels())...))
	if r.MaxPods < 1 {
		p.addf("remediation.max_pods", "%d must be at least 1", r.MaxPods)
	}
	if w := r.ApprovalWindow.Duration; w < minApprovalWindow || w > maxApprovalWindow || w%time.Second != 0 {
		p.addf("remediation.approval_window", "%s must be whole seconds between %s and %s", w, minApprovalWindow, maxApprovalWindow)
	}
	if v := r.VerifyTimeout.Duration; v < minVerifyTimeout || v > maxVerifyTimeout {
		p.addf("remediation.verify_timeout", "%s must be between %s and %s", v, minVerifyTimeout, maxVerifyTimeout)
	}
	if f := r.MemoryFactor; f <= 1 || f > maxMemoryFactor {
		p.addf("remediation.memory_factor", "%g must be greater than 1 and at most %g", f, maxMemoryFactor)
	}
	if _, err := ParseQuantityBytes(r.MaxMemoryLimit); err != nil {
		p.add(fieldErr("remediation.max_memory_limit", err.Error()))
	}
	if n := r.MaxConcurrent; n < 1 || n > maxConcurrentPlans {
		p.addf("remediation.max_concurrent", "%d must be between 1 and %d", n, maxConcurrentPlans)
	}
	if n := r.MaxConcurrentPerNamespace; n < 1 || n > r.MaxConcurrent {
		p.addf("remediation.max_concurrent_per_namespace", "%d must be between 1 and remediation.max_concurrent (%d)", n, r.MaxConcurrent)
	}
	r.validateStrategies(&p)
	return p.join()
}

// validateStrategies checks strategies and custom_strategies: issue
// types, step names and each step's params.
func (r Remediation) validateStrategies(p *problems) {
	customNames := slices.Sorted(maps.Keys(r.CustomStrategies))
	issueTypes := enumStrings(events.IssueTypes())
	allowed := append(slices.Clone(StrategyNames), customNames...)
	for _, typ := range slices.Sorted(maps.Keys(r.Strategies)) {
		key := "remediation.strategies." + typ
		if !slices.Contains(issueTypes, typ) {
			p.add(fieldErr(key, "unknown issue type", issueTypes...))
			continue
		}
		for i, s := range r.Strategies[typ] {
			if !slices.Contains(allowed, s.Action) {
				p.add(fieldErr(fmt.Sprintf("%s[%d]", key, i), fmt.Sprintf("unknown strategy %q", s.Action), allowed...))
				continue
			}
			if _, custom := r.CustomStrategies[s.Action]; custom && len(s.Params) > 0 {
				p.add(fieldErr(fmt.Sprintf("%s[%d].params", key, i), fmt.Sprintf("%s is a custom strategy: its steps carry the params", s.Action)))
				continue
			}
			validateParams(p, fmt.Sprintf("%s[%d]", key, i), s)
		}
	}
	for _, name := range customNames {
		key := "remediation.custom_strategies." + name
		steps := r.CustomStrategies[name]
		switch {
		case slices.Contains(StrategyNames, name):
			p.addf(key, "%q is a catalogue step: give the custom strategy another name", name)
		case !validToken(name):
			p.addf(key, "%q is not a valid name: use lower-case letters, digits, '-' or '_'", name)
		case len(steps) == 0:
			p.add(fieldErr(key, "must list at least one catalogue step"))
		}
		for i, s := range steps {
			if !slices.Contains(StrategyNames, s.Action) {
				p.add(fieldErr(fmt.Sprintf("%s[%d]", key, i), fmt.Sprintf("unknown catalogue step %q (a custom strategy cannot name another)", s.Action), StrategyNames...))
				continue
			}
			validateParams(p, fmt.Sprintf("%s[%d]", key, i), s)
		}
	}
}

// ParseQuantityBytes parses a memory quantity such as 512Mi, 1.5Gi or 4G
// into bytes with the API server's own parser
// (k8s.io/apimachinery/pkg/api/resource), rounding a fraction of a byte
// up; it must be more than zero. The planner reads
// remediation.max_memory_limit and step parameters with it too, so a value
// Validate accepts is one the planner accepts.
func ParseQuantityBytes(s string) (int64, error) {
	q, err := resource.ParseQuantity(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a Kubernetes quantity such as 512Mi, 1.5Gi or 4G", s)
	}
	if q.Sign() <= 0 {
		return 0, fmt.Errorf("%q must be more than zero", s)
	}
	return q.Value(), nil
}
