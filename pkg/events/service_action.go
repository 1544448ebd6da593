package events

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// The two Service actions. Each changes one field of one Service, so
// that the executor can re-derive exactly which paths a step may write
// (DESIGN.md invariant 8) and an approver sees which field changes: a
// selector fix and a port fix have different risks of routing traffic
// to the wrong pods, and a single patch_service with a free-form patch
// would leave the allowed paths to the plan.
const (
	// ActionSetServiceSelector replaces a Service's selector with one of
	// the same keys whose values match the one workload it evidently
	// targets (params selector and from).
	ActionSetServiceSelector ActionType = "set_service_selector"
	// ActionSetServiceTargetPort replaces the targetPort of one port of a
	// Service with the one container port its pods declare (params port,
	// target_port and from).
	ActionSetServiceTargetPort ActionType = "set_service_target_port"
)

// Params of the Service actions.
const (
	// ParamSelector is the selector a step sets, "key=value,..." sorted.
	ParamSelector = "selector"
	// ParamFrom is what the step replaces (a selector or a targetPort).
	ParamFrom = "from"
	// ParamPort is the Service port whose targetPort a step sets.
	ParamPort = "port"
	// ParamTargetPort is the targetPort a step sets: a port number or an
	// IANA service name (a container port's name).
	ParamTargetPort = "target_port"
)

var (
	labelName  = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$`)
	dnsPrefix  = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	portName   = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	portLetter = regexp.MustCompile(`[a-z]`)
)

// validateServiceParams checks the params of a Service action, with or
// without a patch: they are what the approver reads, and the executor
// compares them with the patch.
func (s Step) validateServiceParams() error {
	if s.Target.Kind != "Service" {
		return fieldErr("target.kind", fmt.Sprintf("must be Service for action %q, not %q", s.Action, s.Target.Kind), "Service")
	}
	switch s.Action {
	case ActionSetServiceSelector:
		for _, p := range []string{ParamSelector, ParamFrom} {
			if _, err := ParseSelector(s.Params[p]); err != nil {
				return fieldErr("params."+p, fmt.Sprintf("for action %q: %v", s.Action, err))
			}
		}
	case ActionSetServiceTargetPort:
		if _, err := parsePortNumber(s.Params[ParamPort]); err != nil {
			return fieldErr("params."+ParamPort, fmt.Sprintf("for action %q: %v", s.Action, err))
		}
		for _, p := range []string{ParamTargetPort, ParamFrom} {
			if err := ValidateTargetPort(s.Params[p]); err != nil {
				return fieldErr("params."+p, fmt.Sprintf("for action %q: %v", s.Action, err))
			}
		}
	}
	return nil
}

// ParseSelector parses an equality selector "key=value,key2=value2"
// (what a Service's spec.selector is: keys and values are label names
// and values). It refuses an empty selector, a repeated key, and
// anything but "=" between a key and its value.
func ParseSelector(s string) (map[string]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("required: an equality selector key=value[,key=value]")
	}
	out := map[string]string{}
	for term := range strings.SplitSeq(s, ",") {
		k, v, ok := strings.Cut(term, "=")
		if !ok || strings.ContainsAny(v, "=!") {
			return nil, fmt.Errorf("term %q is not key=value", term)
		}
		if err := validateLabelKey(k); err != nil {
			return nil, fmt.Errorf("term %q: %w", term, err)
		}
		if v != "" && !labelName.MatchString(v) {
			return nil, fmt.Errorf("term %q: value is not a label value (at most 63 of A-Z a-z 0-9 - _ ., alphanumeric at both ends)", term)
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("key %q repeated", k)
		}
		out[k] = v
	}
	return out, nil
}

func validateLabelKey(k string) error {
	name := k
	if prefix, n, ok := strings.Cut(k, "/"); ok {
		if len(prefix) == 0 || len(prefix) > 253 || !dnsPrefix.MatchString(prefix) {
			return fmt.Errorf("key prefix %q is not a DNS subdomain", prefix)
		}
		name = n
	}
	if !labelName.MatchString(name) {
		return fmt.Errorf("key name %q is not a label name (1 to 63 of A-Z a-z 0-9 - _ ., alphanumeric at both ends)", name)
	}
	return nil
}

func parsePortNumber(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != s {
		return 0, fmt.Errorf("%q is not a port number (1 to 65535)", s)
	}
	return n, nil
}

// ValidateTargetPort accepts what a Service's targetPort may be: a port
// number (1 to 65535) or a port name (an IANA service name: at most 15
// of a-z 0-9 -, with a letter, no "--", alphanumeric at both ends).
func ValidateTargetPort(s string) error {
	if s != "" && s[0] >= '0' && s[0] <= '9' {
		_, err := parsePortNumber(s)
		return err
	}
	if len(s) == 0 || len(s) > 15 || !portName.MatchString(s) || !portLetter.MatchString(s) || strings.Contains(s, "--") {
		return fmt.Errorf("%q is neither a port number (1 to 65535) nor a port name (at most 15 of a-z 0-9 -, with a letter)", s)
	}
	return nil
}
