package planner

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
)

// planInput is everything the pure part of planning looks at: the
// incident and what gather read from the cluster.
type planInput struct {
	Cfg      Config
	Incident events.Incident
	Owner    *workload
	// Pod is a failing pod of the incident (nil when none exists any more).
	Pod *corev1.Pod
	// Pods are the incident's pods that still exist (Pod is one of them).
	Pods []corev1.Pod
	// ReplicaSets of the Deployment (empty for other kinds).
	ReplicaSets []appsv1.ReplicaSet
	// Events of the pod, its ReplicaSet and the owner.
	Events []corev1.Event
	// Logs of the failing container's previous run (crash types only).
	Logs *logsResult
	// Nodes, read for Pending incidents only.
	Nodes []corev1.Node
	// EvictedPods of the owner, read for Evicted incidents only.
	EvictedPods []corev1.Pod
	// Jobs are a CronJob's newest runs, newest first (JobFailed only).
	Jobs []batchv1.Job
	// Policy is what was read of the policy object that refused the pods
	// (FailedCreate only).
	Policy *policyRead
	// Traffic is what was read of a Service and what it routes to
	// (ServiceUnavailable only).
	Traffic *trafficRead
	// Storage is what was read of the claims, volumes and StorageClasses
	// (PVCPending, FailedMount, a Pending pod with claims).
	Storage *storageRead
	// Ingress is what was read of an Ingress's Services and the
	// IngressClasses (IngressUnavailable only).
	Ingress *ingressRead
	// Node is what was read of a node and the pods on it (node types).
	Node *nodeRead
	// HPA is what was read of an HPA's target (HPA types).
	HPA *hpaRead
	Now time.Time
}

// candidate is what a mutating strategy proposes, not yet dry-run: one
// step for a catalogue step (or one per pod for pod deletions), the steps
// of every mutating entry for a custom strategy. It is proposed whole or
// not at all.
type candidate struct {
	Strategy string
	Steps    []events.Step
	// Summary is the plan's one-line summary if this step is chosen.
	Summary string
	// Notes are added to the plan if this step is chosen.
	Notes []string
}

// slot is what one configured strategy contributed: diagnostic steps, a
// mutating candidate, or the reason it does not apply (Skip).
type slot struct {
	Strategy string
	Diag     []events.Step
	Cand     *candidate
	Skip     string
}

// draft is the pure result of walking the strategies: every applicable
// step in configuration order, before the dry runs pick the mutating one.
type draft struct {
	Slots []slot
	// Human steps are added when no mutating step is chosen, unless a
	// "diagnostic" strategy already added them.
	Human []events.Step
	// Notes are always added to the plan.
	Notes []string
	// Blocked says why no mutating step may be proposed at all (protected
	// namespace), or is empty.
	Blocked string
	// Problem is the one-line description of the incident for summaries.
	Problem string
	// Target is the workload, as kubectl names it ("deployment/web").
	Target string
	// Managed is the GitOps or Helm manager of the target, if any.
	Managed gitops
}

// draftPlan walks the issue type's strategies in configuration order. A
// strategy that does not apply adds a note saying why.
func draftPlan(in planInput) draft {
	b := &builder{in: in}
	d := draft{Problem: problem(in), Target: in.Owner.ref(), Managed: managedBy(in.Owner.Labels, in.Owner.Annotations)}
	if m := d.Managed; m.Tool != "" {
		d.Notes = append(d.Notes, fmt.Sprintf("%s is managed by %s (%s): %s", in.Owner.ref(), m.Tool, m.Evidence, m.advice()))
	}
	switch {
	case in.Cfg.protected(in.Incident.Namespace):
		d.Blocked = fmt.Sprintf("namespace %s is protected by policy (policy.protected_namespaces): diagnostic steps only", in.Incident.Namespace)
	case in.Incident.Protected:
		d.Blocked = fmt.Sprintf("the watcher marked %s as protected by policy: diagnostic steps only", in.Owner.ref())
	case designedDiagnostic(in.Incident.Type) != "":
		d.Blocked = designedDiagnostic(in.Incident.Type)
	case d.Managed.Tool != "" && in.Cfg.GitOpsManaged == GitOpsDiagnosticOnly:
		d.Blocked = fmt.Sprintf("%s is managed by %s and policy.gitops_managed is %s: the change belongs in %s, diagnostic steps only",
			in.Owner.ref(), d.Managed.Tool, GitOpsDiagnosticOnly, d.Managed.source())
	}
	if d.Blocked != "" {
		d.Notes = append(d.Notes, d.Blocked)
	}
	strategies := in.Cfg.Strategies[in.Incident.Type]
	if len(strategies) == 0 && designedDiagnostic(in.Incident.Type) == "" {
		d.Notes = append(d.Notes, fmt.Sprintf("no remediation strategy is configured for %s (remediation.strategies): diagnostic steps only", in.Incident.Type))
	}
	humanAdded := false
	for _, st := range strategies {
		sl := slot{Strategy: st.Name}
		entries, custom := in.Cfg.CustomStrategies[st.Name]
		if !custom {
			entries = []Strategy{st}
		}
		var cands []*candidate
		for i, e := range entries {
			if diag, ok := b.diagnostic(e.Name); ok {
				sl.Diag = append(sl.Diag, diag...)
				humanAdded = humanAdded || e.Name == "diagnostic"
				continue
			}
			if d.Blocked != "" || sl.Skip != "" {
				continue
			}
			cand, why := b.mutating(e)
			switch {
			case cand == nil && custom:
				sl.Skip = fmt.Sprintf("its step %d (%s) does not apply: %s", i, e.Name, why)
			case cand == nil:
				sl.Skip = why
			default:
				cands = append(cands, cand)
			}
		}
		if sl.Skip == "" && len(cands) > 0 {
			sl.Cand = merge(st.Name, cands)
		}
		if sl.Diag == nil && sl.Cand == nil && sl.Skip == "" {
			continue // a mutating strategy, blocked by policy
		}
		d.Slots = append(d.Slots, sl)
	}
	if !humanAdded {
		d.Human = humanSteps(in)
	}
	return d
}

// merge joins the candidates of a custom strategy's entries into one.
func merge(strategy string, cands []*candidate) *candidate {
	if len(cands) == 1 {
		cands[0].Strategy = strategy
		return cands[0]
	}
	out := &candidate{Strategy: strategy}
	var summaries []string
	for _, c := range cands {
		out.Steps = append(out.Steps, c.Steps...)
		out.Notes = append(out.Notes, c.Notes...)
		summaries = append(summaries, strings.TrimSuffix(c.Summary, "."))
	}
	// Every summary starts with the same problem clause; keep it once.
	out.Summary = summaries[0]
	for _, s := range summaries[1:] {
		if i := strings.Index(s, "; "); i >= 0 {
			s = s[i+2:]
		}
		out.Summary += "; then " + s
	}
	out.Summary += fmt.Sprintf(" (custom strategy %s).", strategy)
	return out
}

// diagnostic returns the steps of a non-mutating catalogue step, or false
// for a mutating one.
func (b *builder) diagnostic(name string) ([]events.Step, bool) {
	switch name {
	case "check_logs":
		return b.checkLogs(), true
	case "check_image":
		return b.checkImage(), true
	case "diagnostic":
		return humanSteps(b.in), true
	}
	return nil, false
}

// mutating builds the candidate step of a mutating strategy, or says why
// it does not apply.
func (b *builder) mutating(st Strategy) (*candidate, string) {
	switch st.Name {
	case "rollback":
		return b.rollback(st)
	case "update_image", "set_image":
		return b.setImage(st)
	case "increase_memory", "set_memory_limit":
		return b.increaseMemory(st)
	case "restart_pod", "rollout_restart":
		return b.restart(st)
	case "delete_pod":
		return b.deletePods(st)
	case "delete_evicted_pods":
		return b.deleteEvicted(st)
	case "set_node_selector":
		return b.setNodeSelector(st)
	case "lower_requests", "set_resource_requests":
		return b.lowerRequests(st)
	case "add_toleration":
		return b.addToleration(st)
	case "set_service_selector":
		return b.setServiceSelector(st)
	case "set_service_target_port":
		return b.setServiceTargetPort(st)
	}
	return nil, fmt.Sprintf("unknown strategy %q", st.Name)
}

// outcome is the final shape of a plan once the dry runs are done.
type outcome struct {
	Steps          []events.Step
	Summary        string
	Notes          []string
	Risk           events.RiskLevel
	DiagnosticOnly bool
	// ManagedBy is the GitOps or Helm tool managing the target, or "".
	ManagedBy string
	// Chosen is the strategy of the mutating step, or "".
	Chosen string
	// DryRunFailures counts candidates the API server rejected.
	DryRunFailures []string
}

// finalize dry-runs the candidates in order and keeps the first one the
// API server accepts; the other candidates are dropped (with a note when
// rejected). The strategies that did not apply are noted when they came
// before the chosen one (they explain the choice). dryRun is the
// server-side dry run (a fake in unit tests).
func finalize(d draft, dryRun func(events.Step) events.DryRunResult) outcome {
	out := outcome{Notes: slices.Clone(d.Notes)}
	chosen := -1
	for i := range d.Slots {
		c := d.Slots[i].Cand
		if c == nil || chosen >= 0 {
			continue
		}
		ok := true
		for j := range c.Steps {
			st := &c.Steps[j]
			res := dryRun(*st)
			st.DryRun = &res
			if res.OK {
				continue
			}
			ok = false
			out.DryRunFailures = append(out.DryRunFailures, string(st.Action))
			which := ""
			if len(c.Steps) > 1 {
				which = fmt.Sprintf(" of step %d (%s)", j, st.Action)
			}
			out.Notes = append(out.Notes, fmt.Sprintf("strategy %s was not proposed: the API server rejected the dry run%s: %s", c.Strategy, which, res.Message))
			break
		}
		if ok {
			chosen = i
		}
	}
	for i, sl := range d.Slots {
		if sl.Skip != "" && (chosen < 0 || i < chosen) {
			out.Notes = append(out.Notes, fmt.Sprintf("strategy %s does not apply: %s", sl.Strategy, sl.Skip))
		}
		out.Steps = append(out.Steps, sl.Diag...)
		if i == chosen {
			out.Steps = append(out.Steps, sl.Cand.Steps...)
			out.Notes = append(out.Notes, sl.Cand.Notes...)
			out.Summary = sl.Cand.Summary
			out.Chosen = sl.Strategy
		}
	}
	if chosen < 0 {
		out.DiagnosticOnly = true
		out.Steps = append(out.Steps, d.Human...)
		why := "no configured strategy applies"
		if d.Blocked != "" {
			why = "diagnostic only: " + d.Blocked
		} else if len(out.DryRunFailures) > 0 {
			why = "the API server rejected every applicable fix in a dry run"
		}
		out.Summary = fmt.Sprintf("%s; %s: follow the diagnostic steps.", d.Problem, why)
	}
	if m := d.Managed; m.Tool != "" {
		out.Summary += fmt.Sprintf(" %s is managed by %s: the lasting fix belongs in %s.", d.Target, m.Tool, m.source())
		out.ManagedBy = m.Tool
	}
	if len(out.Steps) == 0 { // defensive: a plan needs a step
		out.Steps = append(out.Steps, events.Step{Action: events.ActionDiagnostic, Title: "Inspect the workload: " + d.Problem, Risk: events.RiskNone})
	}
	out.Risk = events.RiskNone
	for i := range out.Steps {
		out.Steps[i].Index = i
		out.Risk = maxRisk(out.Risk, out.Steps[i].Risk)
	}
	out.Summary = oneLine(out.Summary)
	return out
}

// maxRisk returns the more dangerous of two risk levels.
func maxRisk(a, b events.RiskLevel) events.RiskLevel {
	levels := events.RiskLevels()
	if slices.Index(levels, b) > slices.Index(levels, a) {
		return b
	}
	return a
}

// oneLine folds whitespace so a summary is one line.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// problem describes the incident in one clause: "CrashLoopBackOff of
// container app in deployment/web (exit code 1, 2 pods)".
func problem(in planInput) string {
	inc := in.Incident
	var b strings.Builder
	b.WriteString(string(inc.Type))
	if inc.Container != "" {
		fmt.Fprintf(&b, " of container %s", inc.Container)
	}
	fmt.Fprintf(&b, " in %s", in.Owner.ref())
	var details []string
	if inc.ExitCode != nil {
		details = append(details, fmt.Sprintf("exit code %d", *inc.ExitCode))
	}
	if inc.Reason != "" && !strings.HasPrefix(inc.Reason, "exit_code") {
		details = append(details, strings.ReplaceAll(inc.Reason, "_", " "))
	}
	if inc.PodCount > 0 {
		details = append(details, plural(inc.PodCount, "pod"))
	}
	if c := logCauseClause(in); c != "" {
		details = append(details, c) // the crashed container's own words (logcause.go)
	}
	if len(details) > 0 {
		fmt.Fprintf(&b, " (%s)", strings.Join(details, ", "))
	}
	return b.String()
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
