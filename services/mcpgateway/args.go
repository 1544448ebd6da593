package mcpgateway

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"slices"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/kaar-dev/kaar/pkg/events"
)

// An argSpec declares one tool argument. The tool's JSON input schema is
// generated from its specs (what MCP clients see and mcp-go validates) and
// checkArgs enforces the same rules with messages that name the argument,
// so MCP and REST accept exactly the same arguments.
type argSpec struct {
	name     string
	typ      string // "string" or "integer"
	desc     string
	required bool
	enum     []string
	// pattern and rule: the value must match pattern; rule says so in
	// words ("a DNS label: ...").
	pattern *regexp.Regexp
	rule    string
	maxLen  int
	// min and max bound integers.
	min, max int
	// def is the default shown in the schema (the handler applies it).
	def any
}

const (
	typeString  = "string"
	typeInteger = "integer"
)

// Argument rules shared by several tools.
var (
	// namespaceRE is a DNS label, or the namespace of incidents about
	// cluster-scoped objects (Nodes), events.ClusterScopeNamespace.
	namespaceRE    = regexp.MustCompile(`^([a-z0-9]([-a-z0-9]*[a-z0-9])?|` + regexp.QuoteMeta(events.ClusterScopeNamespace) + `)$`)
	dnsSubdomainRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	ownerRE        = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9]*/)?[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`)
	uuidRE         = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	digestRE       = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
)

const (
	ruleNamespace = "a Kubernetes namespace name: a DNS label of 1-63 lower-case letters, digits or '-', starting and ending with a letter or digit; or " +
		events.ClusterScopeNamespace + " for incidents about Nodes"
	ruleName   = "a Kubernetes object name: a DNS subdomain of at most 253 lower-case letters, digits, '-' or '.'"
	ruleOwner  = "a workload name (\"payments-api\") or Kind/name (\"Deployment/payments-api\")"
	rulePlanID = "a plan id: a lower-case UUID such as 01936f8e-7c1a-7b2e-9f3d-4a5b6c7d8e9f"
	ruleDigest = "a plan digest: sha256: followed by 64 lower-case hex characters"
)

func namespaceArg(desc string, required bool) argSpec {
	return argSpec{name: "namespace", typ: typeString, desc: desc, required: required,
		pattern: namespaceRE, rule: ruleNamespace, maxLen: 63}
}

func issueTypeArg(desc string) argSpec {
	return argSpec{name: "issue_type", typ: typeString, desc: desc, enum: issueTypeNames()}
}

func planIDArg(desc string, required bool) argSpec {
	return argSpec{name: "plan_id", typ: typeString, desc: desc, required: required,
		pattern: uuidRE, rule: rulePlanID, maxLen: 36}
}

// requiredDigest marks a digest argument required.
func requiredDigest(a argSpec) argSpec { a.required = true; return a }

func digestArg(desc string) argSpec {
	return argSpec{name: "digest", typ: typeString, desc: desc, pattern: digestRE, rule: ruleDigest, maxLen: 71}
}

func resourceTypeArg(desc string, required bool) argSpec {
	return argSpec{name: "resource_type", typ: typeString, desc: desc, required: required, enum: resourceTypeNames()}
}

func resourceNameArg(desc string, required bool) argSpec {
	return argSpec{name: "resource_name", typ: typeString, desc: desc, required: required,
		pattern: dnsSubdomainRE, rule: ruleName, maxLen: 253}
}

func issueTypeNames() []string { return enumNames(events.IssueTypes()) }

func planStateNames() []string { return enumNames(events.PlanStates()) }

// enumNames lists the values of an enumeration as strings, in order.
func enumNames[T ~string](all []T) []string {
	out := make([]string, len(all))
	for i, v := range all {
		out[i] = string(v)
	}
	return out
}

// workloadKinds maps the accepted resource_type values (the original API's
// lower-case names and the Kubernetes kinds) to the Kubernetes kind: every
// kind an incident sits on (events.OwnerKinds: the workloads, and Services,
// Ingresses, claims, Nodes in namespace events.ClusterScopeNamespace and
// HPAs).
var workloadKinds = func() map[string]string {
	m := map[string]string{}
	for _, k := range events.OwnerKinds() {
		m[strings.ToLower(k)] = k
		m[k] = k
	}
	return m
}()

// resourceTypeNames lists the accepted resource_type values: the lower-case
// names first, then the kinds.
func resourceTypeNames() []string {
	var lower, kinds []string
	for k, v := range workloadKinds {
		if k == v {
			kinds = append(kinds, k)
		} else {
			lower = append(lower, k)
		}
	}
	sort.Strings(lower)
	sort.Strings(kinds)
	return append(lower, kinds...)
}

// inputSchema renders the specs as a JSON Schema object that rejects
// unknown arguments.
func inputSchema(specs []argSpec) json.RawMessage {
	props := map[string]any{}
	required := []string{}
	for _, s := range specs {
		p := map[string]any{"type": s.typ, "description": s.desc}
		if len(s.enum) > 0 {
			p["enum"] = s.enum
		}
		if s.pattern != nil {
			p["pattern"] = s.pattern.String()
		}
		if s.typ == typeString {
			if s.required {
				p["minLength"] = 1
			}
			if s.maxLen > 0 {
				p["maxLength"] = s.maxLen
			}
		}
		if s.typ == typeInteger {
			p["minimum"] = s.min
			p["maximum"] = s.max
		}
		if s.def != nil {
			p["default"] = s.def
		}
		props[s.name] = p
		if s.required {
			required = append(required, s.name)
		}
	}
	b, err := json.Marshal(map[string]any{
		"type":                 "object",
		"properties":           props,
		"required":             required,
		"additionalProperties": false,
	})
	if err != nil { // maps of strings, ints and slices: cannot fail
		panic(fmt.Sprintf("mcpgateway: input schema: %v", err))
	}
	return b
}

// checkArgs validates raw tool arguments (a JSON object, or empty/null for
// none) against specs and returns them re-encoded for decoding into the
// tool's argument struct.
func checkArgs(specs []argSpec, raw json.RawMessage) (json.RawMessage, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		raw = json.RawMessage("{}")
	}
	if len(raw) > MaxBodyBytes {
		return nil, argErr("", fmt.Sprintf("arguments are larger than %d bytes", MaxBodyBytes))
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, argErr("", "arguments are not valid JSON: "+err.Error())
	}
	if dec.More() {
		return nil, argErr("", "arguments must be a single JSON object")
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, argErr("", fmt.Sprintf("arguments must be a JSON object, not %s", jsonKind(v)))
	}
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.name
	}
	var unknown []string
	for k := range m {
		if !slices.Contains(names, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		if len(names) == 0 {
			return nil, argErr(unknown[0], "unknown argument: this tool takes no arguments")
		}
		return nil, argErr(unknown[0], "unknown argument", names...)
	}
	for _, s := range specs {
		val, present := m[s.name]
		if !present {
			if s.required {
				return nil, argErr(s.name, "required", s.enum...)
			}
			continue
		}
		if err := s.check(val); err != nil {
			return nil, err
		}
	}
	return raw, nil
}

func (s argSpec) check(v any) error {
	switch s.typ {
	case typeString:
		return s.checkString(v)
	case typeInteger:
		return s.checkInteger(v)
	}
	return nil
}

// checkString checks a string argument: present if required, one of the
// enum if there is one, else within maxLen and matching the pattern.
func (s argSpec) checkString(v any) error {
	str, ok := v.(string)
	if !ok {
		return argErr(s.name, fmt.Sprintf("must be a string, not %s", jsonKind(v)), s.enum...)
	}
	if str == "" && s.required {
		return argErr(s.name, "required: must not be empty", s.enum...)
	}
	if str == "" {
		if len(s.enum) > 0 || s.pattern != nil {
			return argErr(s.name, "is empty: omit the argument or give a value", s.enum...)
		}
		return nil
	}
	if len(s.enum) > 0 {
		if !slices.Contains(s.enum, str) {
			return argErr(s.name, fmt.Sprintf("unknown value %q", truncate(str, 80)), s.enum...)
		}
		return nil
	}
	if n := utf8.RuneCountInString(str); s.maxLen > 0 && n > s.maxLen {
		return argErr(s.name, fmt.Sprintf("is %d characters long, at most %d allowed", n, s.maxLen))
	}
	if s.pattern != nil && !s.pattern.MatchString(str) {
		return argErr(s.name, fmt.Sprintf("%q is not %s", truncate(str, 80), s.rule))
	}
	return nil
}

// checkInteger checks an integer argument: a whole JSON number between min
// and max.
func (s argSpec) checkInteger(v any) error {
	num, ok := v.(json.Number)
	if !ok {
		return argErr(s.name, fmt.Sprintf("must be an integer between %d and %d, not %s", s.min, s.max, jsonKind(v)))
	}
	f, err := num.Float64()
	if err != nil || f != math.Trunc(f) {
		return argErr(s.name, fmt.Sprintf("must be an integer between %d and %d, not %s", s.min, s.max, num))
	}
	if f < float64(s.min) || f > float64(s.max) {
		return argErr(s.name, fmt.Sprintf("%s is not between %d and %d", num, s.min, s.max))
	}
	return nil
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n]) + "…"
}

// decodeArgs decodes checked arguments into the tool's argument struct.
// Integral floats ("limit": 5.0) are accepted by checkArgs, so numbers are
// normalised first.
func decodeArgs(raw json.RawMessage, into any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return argErr("", "arguments are not a JSON object: "+err.Error())
	}
	for k, v := range m {
		if n, ok := v.(json.Number); ok {
			if f, err := n.Float64(); err == nil && f == math.Trunc(f) && math.Abs(f) < 1<<53 {
				m[k] = int64(f)
			}
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("re-encode arguments: %w", err)
	}
	if err := json.Unmarshal(b, into); err != nil {
		return argErr("", "arguments do not decode: "+err.Error())
	}
	return nil
}
