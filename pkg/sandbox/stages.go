package sandbox

import (
	"bytes"
	_ "embed"
	"fmt"
	"strings"
	"text/template"

	"github.com/kaar-dev/kaar/pkg/sandbox/podlogs"
)

// Pod conventions read by the sandbox's kwok stages. Each failure is a
// function of the pod spec, so changing the spec heals the pod. README.md
// documents them with examples.
const (
	// AnnotationCrashExitCode (pod annotation, usually set in a pod
	// template): the first container exits with this code (an integer)
	// and the pod shows CrashLoopBackOff.
	AnnotationCrashExitCode = podlogs.AnnotationCrashExitCode
	// AnnotationInitExitCode (pod annotation, usually set in a pod
	// template; an integer from 1 to 999): the pod's first init container
	// that is not a sidecar exits with this code and is restarted with
	// back-off: the pod shows Init:CrashLoopBackOff and its containers
	// never start. A pod without such an init container runs.
	AnnotationInitExitCode = "sandbox.kaar.dev/init-exit-code"
	// AnnotationMemoryUsage (pod annotation): the memory the first
	// container uses, e.g. "200Mi". Above that container's
	// resources.limits.memory the pod shows OOMKilled; at or under it (or
	// without a limit) the pod runs.
	AnnotationMemoryUsage = podlogs.AnnotationMemoryUsage
	// AnnotationEvict (pod annotation, value "memory"): set on a Running
	// pod, the kubelet evicts it for node memory pressure.
	AnnotationEvict = "sandbox.kaar.dev/evict"
	// AnnotationReadiness (pod annotation, value "fail"): the first
	// container's readiness probe fails: the pod runs but is never Ready,
	// with Warning Unhealthy events.
	AnnotationReadiness = "sandbox.kaar.dev/readiness"
	// AnnotationLiveness (pod annotation, value "fail"): the first
	// container's liveness probe fails: the kubelet has killed and
	// restarted it three times (exit code 137, reason Error), with Warning
	// Unhealthy and Killing events.
	AnnotationLiveness = podlogs.AnnotationLiveness
	// AnnotationNodeReady (node annotation, "False" or "Unknown"): the
	// kwok node's Ready condition, held until the annotation is removed.
	// Unknown sets every condition but NetworkUnavailable to Unknown, as
	// the node lifecycle controller does for a node that stopped posting.
	AnnotationNodeReady = "sandbox.kaar.dev/node-ready"
	// AnnotationNodePressure (node annotation, a comma-separated subset of
	// memory, disk, pid): the node reports MemoryPressure, DiskPressure,
	// PIDPressure True until the annotation is removed.
	AnnotationNodePressure = "sandbox.kaar.dev/node-pressure"
	// NonexistentTag: an image whose tag contains it cannot be pulled
	// (ErrImagePull, then ImagePullBackOff).
	NonexistentTag = "nonexistent"
	// PrivateRegistry: images from this host fail to pull with 401
	// Unauthorized unless the pod has imagePullSecrets.
	PrivateRegistry = "private.registry.example"
	// MissingRefPrefix: an env or envFrom reference to a ConfigMap or
	// Secret whose name starts with it (and is not optional) fails with
	// CreateContainerConfigError; a configMap, secret or projected volume
	// naming one (not optional) cannot be mounted: the pod stays
	// ContainerCreating with the kubelet's FailedMount events.
	MissingRefPrefix = "missing-"
)

// notFoundRE matches an image reference whose tag contains NonexistentTag.
// The jq predicate and kwok's Go template use the same expression.
const notFoundRE = `:[^:/@]*` + NonexistentTag + `[^:/@]*(@.*)?$`

// jqBytes is a jq function that converts a Kubernetes quantity string
// (plain, k/K/M/G/T or Ki/Mi/Gi/Ti suffix) to a number of bytes; anything
// else is an error, which kwok treats as "no value".
const jqBytes = `def kaarbytes: capture("^(?<n>[0-9]+([.][0-9]+)?)(?<u>[A-Za-z]*)$") | (.n | tonumber) as $n | .u as $u | ` +
	`{"": 1, "k": 1000, "K": 1000, "M": 1000000, "G": 1000000000, "T": 1000000000000, ` +
	`"Ki": 1024, "Mi": 1048576, "Gi": 1073741824, "Ti": 1099511627776}[$u] as $m | $n * $m; `

// predicate is a jq expression over a pod that yields true when the pod
// is meant to fail in one way.
type predicate struct {
	Name string
	Expr string
}

// missingVolumeRef is a jq filter over a volume (or a projected volume's
// source) that yields the name of the ConfigMap or Secret it needs when
// that name starts with MissingRefPrefix and the reference is not
// optional.
const missingVolumeRef = `((.configMap // empty | select(.optional != true) | .name), ` +
	`(.secret // empty | select(.optional != true) | (.secretName // .name))) | ` +
	`select(type == "string" and startswith("` + MissingRefPrefix + `"))`

// predicates, in precedence order: a pod whose volumes cannot be mounted
// never runs its init containers (the kubelet mounts first); one whose
// init container fails never gets to pull its containers' images; one
// whose image cannot be pulled never gets to resolve its env; one whose
// env cannot be resolved never runs, so cannot crash; an explicit crash
// wins over an OOM.
var predicates = []predicate{
	{"volume-missing", `[(.spec.volumes // [])[] | (` + missingVolumeRef + `), ` +
		`(((.projected // {}).sources // [])[] | ` + missingVolumeRef + `)] | length > 0`},
	{"init-crash", `((.metadata.annotations["` + AnnotationInitExitCode + `"] // "") | test("^[1-9][0-9]{0,2}$")) and ` +
		`([(.spec.initContainers // [])[] | select(.restartPolicy != "Always")] | length > 0)`},
	{"image-pull", `([.spec.containers[].image | test("` + notFoundRE + `")] | any) or ` +
		`(((.spec.imagePullSecrets // []) | length == 0) and ([.spec.containers[].image | startswith("` + PrivateRegistry + `/")] | any))`},
	{"config-missing", `[.spec.containers[] | ((.env // [])[] | (.valueFrom // {}) | (.configMapKeyRef // .secretKeyRef // empty)), ` +
		`((.envFrom // [])[] | (.configMapRef // .secretRef // empty)) | select(.optional != true) | .name | ` +
		`select(type == "string" and startswith("` + MissingRefPrefix + `"))] | length > 0`},
	{"crash", `(.metadata.annotations["` + AnnotationCrashExitCode + `"] // "") | test("^[0-9]{1,3}$")`},
	{"oom", jqBytes + `(.metadata.annotations["` + AnnotationMemoryUsage + `"] | kaarbytes) > (.spec.containers[0].resources.limits.memory | kaarbytes)`},
	{"liveness", `.metadata.annotations["` + AnnotationLiveness + `"] == "fail"`},
	{"readiness", `.metadata.annotations["` + AnnotationReadiness + `"] == "fail"`},
	{"evict", `.metadata.annotations["` + AnnotationEvict + `"] == "memory"`},
}

// nodePredicates are jq expressions over a node. "node-condition": the
// sandbox's node-conditions stage owns the node, so kwok's stock node
// stages must leave it alone: its conditions are held by annotations, or
// the annotations are gone from a Ready node still showing a pressure
// (the stage clears it; were a stock stage also to match, kwok would pick
// one of the two at random, and the heartbeat's ten-minute delay would
// leave the pressure in place). "node-conditions-wanted": its conditions
// are already what the annotations (or their absence) ask for.
var nodePredicates = []predicate{
	{"node-condition", `((.metadata.annotations["` + AnnotationNodeReady + `"] // "") | test("^(False|Unknown)$")) or ` +
		`((.metadata.annotations["` + AnnotationNodePressure + `"] // "") | test("^(memory|disk|pid)(,(memory|disk|pid))*$")) or ` +
		`(([(.status.conditions // [])[] | select(.type == "Ready") | .status] == ["True"]) and ` +
		`([(.status.conditions // [])[] | select(.type | test("Pressure$")) | .status != "False"] | any))`},
	{"node-conditions-wanted", `((.metadata.annotations["` + AnnotationNodeReady + `"] // "") | if test("^(False|Unknown)$") then . else "True" end) as $r | ` +
		`((.metadata.annotations["` + AnnotationNodePressure + `"] // "") | split(",")) as $p | ` +
		`(if $r == "Unknown" then {"Ready": "Unknown", "MemoryPressure": "Unknown", "DiskPressure": "Unknown", "PIDPressure": "Unknown"} ` +
		`else {"Ready": $r, "MemoryPressure": (if ($p | index("memory")) != null then "True" else "False" end), ` +
		`"DiskPressure": (if ($p | index("disk")) != null then "True" else "False" end), ` +
		`"PIDPressure": (if ($p | index("pid")) != null then "True" else "False" end)} end) as $w | ` +
		`([(.status.conditions // [])[] | select($w[.type] != null) | {key: .type, value: .status}] | from_entries) == $w`},
}

func predicateExpr(name string) (string, error) {
	for _, p := range append(append([]predicate(nil), predicates...), nodePredicates...) {
		if p.Name == name {
			return p.Expr, nil
		}
	}
	return "", fmt.Errorf("stages: unknown predicate %q", name)
}

//go:embed stages/stages.yaml.tmpl
var stagesTemplate string

// stageData is the data of stages.yaml.tmpl.
type stageData struct {
	NotFoundRE             string
	PrivatePrefix          string
	MissingPrefix          string
	CrashAnnotation        string
	InitCrashAnnotation    string
	MemoryUsageAnnotation  string
	NodeReadyAnnotation    string
	NodePressureAnnotation string
	// FailurePredicates keep the stock stages off the pods meant to fail.
	FailurePredicates []predicate
}

// Precede returns the predicates that take precedence over name.
func (stageData) Precede(name string) ([]predicate, error) {
	for i, p := range predicates {
		if p.Name == name {
			return predicates[:i], nil
		}
	}
	return nil, fmt.Errorf("stages: unknown predicate %q", name)
}

// eventStep is the data of the "event" template: one kubelet-style Event
// created by a kwok apply step.
type eventStep struct {
	Root                                     stageData
	Suffix, Type, Reason, Container, Message string
	Preamble                                 string // template defining the variables Message uses
	// Init: Container is an init container (fieldPath
	// spec.initContainers{name}).
	Init bool
}

// RenderStages returns the kwok configuration (stages) the sandbox runs
// with: kwok's stock node and pod stages, narrowed, plus the failure
// stages described in README.md.
func RenderStages() ([]byte, error) {
	var tmpl *template.Template
	funcs := template.FuncMap{
		"jq": func(name string) (string, error) {
			e, err := predicateExpr(name)
			return fmt.Sprintf("%q", e), err
		},
		"event": func(root stageData, suffix, typ, reason, container, message, preamble string) eventStep {
			return eventStep{Root: root, Suffix: suffix, Type: typ, Reason: reason, Container: container, Message: message, Preamble: preamble}
		},
		"initEvent": func(root stageData, suffix, typ, reason, container, message, preamble string) eventStep {
			return eventStep{Root: root, Suffix: suffix, Type: typ, Reason: reason, Container: container, Message: message, Preamble: preamble, Init: true}
		},
		"include": func(name string, data any) (string, error) {
			var b bytes.Buffer
			err := tmpl.ExecuteTemplate(&b, name, data)
			return strings.Trim(b.String(), "\n"), err
		},
		"indent": func(n int, s string) string {
			pad := strings.Repeat(" ", n)
			lines := strings.Split(s, "\n")
			for i, l := range lines {
				if l != "" {
					lines[i] = pad + l
				}
			}
			return strings.Join(lines, "\n")
		},
	}
	tmpl, err := template.New("stages").Delims("[[", "]]").Funcs(funcs).Option("missingkey=error").Parse(stagesTemplate)
	if err != nil {
		return nil, fmt.Errorf("stages: parse: %w", err)
	}
	failing := append([]predicate(nil), predicates...)
	data := stageData{
		NotFoundRE:             notFoundRE,
		PrivatePrefix:          PrivateRegistry + "/",
		MissingPrefix:          MissingRefPrefix,
		CrashAnnotation:        AnnotationCrashExitCode,
		InitCrashAnnotation:    AnnotationInitExitCode,
		MemoryUsageAnnotation:  AnnotationMemoryUsage,
		NodeReadyAnnotation:    AnnotationNodeReady,
		NodePressureAnnotation: AnnotationNodePressure,
		FailurePredicates:      failing,
	}
	var out bytes.Buffer
	if err := tmpl.Execute(&out, data); err != nil {
		return nil, fmt.Errorf("stages: render: %w", err)
	}
	return out.Bytes(), nil
}
