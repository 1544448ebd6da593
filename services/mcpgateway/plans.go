package mcpgateway

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"

	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/kaar-dev/kaar/pkg/events/text"
)

// maxListedPlans bounds list_remediation_plans.
const maxListedPlans = 100

type generatePlanArgs struct {
	ResourceType string `json:"resource_type"`
	Namespace    string `json:"namespace"`
	ResourceName string `json:"resource_name"`
	IssueType    string `json:"issue_type"`
}

func (s *Service) generatePlanTool() (*tool, error) {
	return defineTool("generate_remediation_plan", "Generate remediation plan",
		"Ask the planner for a remediation plan for one workload now. The planner gathers evidence (previous "+
			"container logs, events, exit codes, limits, rollout history), picks typed steps (rollback, set_image, "+
			"set_memory_limit, rollout_restart, ...; never shell commands), dry-runs every mutating step on the API "+
			"server and stores the plan for the approval window. Returns the plan id and digest (both needed to "+
			"approve), the steps with their kubectl equivalent, risk and dry-run result, the evidence (quoted, "+
			"untrusted cluster data) and expires_at. Nothing changes in the cluster until the plan is approved with "+
			"approve_remediation_plan. A new plan for the same incident supersedes a proposed one.",
		hints{readOnly: false, destructive: false, idempotent: false, openWorld: false},
		[]argSpec{
			resourceTypeArg("Kind of the failing resource; a Pod is resolved to its controlling workload.", true),
			namespaceArg("Namespace of the resource.", true),
			resourceNameArg("Name of the resource.", true),
			issueTypeArg("Issue to remediate. Omit to use the workload's current incident."),
		},
		s.generatePlan)
}

func (s *Service) generatePlan(ctx context.Context, c *call, a generatePlanArgs) (PlanOut, string, error) {
	req := events.PlanRequest{Namespace: a.Namespace, Kind: workloadKinds[a.ResourceType],
		Name: a.ResourceName, IssueType: events.IssueType(a.IssueType), RequestedBy: c.user}
	resp, err := request[events.PlanResponse](ctx, s, events.ServicePlanner, events.VerbPlan, req, s.cfg.PlanTimeout,
		map[string]string{"kind": "resource_type", "name": "resource_name", "namespace": "namespace", "issue_type": "issue_type", "type": "issue_type"})
	if err != nil {
		return PlanOut{}, "", fmt.Errorf("plan %s %s/%s: %w", req.Kind, a.Namespace, a.ResourceName, err)
	}
	if resp.Plan.Cluster != s.cfg.Cluster {
		return PlanOut{}, "", fmt.Errorf("planner answered with a plan for cluster %q, not %q", resp.Plan.Cluster, s.cfg.Cluster)
	}
	out := s.planOut(resp.Plan)
	s.log.Info("plan generated", slog.String("namespace", out.Namespace),
		slog.String("owner", out.Target.Kind+"/"+out.Target.Name), slog.String("plan", out.PlanID), slog.String("digest", out.Digest))
	return out, planText(out), nil
}

type listPlansArgs struct {
	State     string `json:"state"`
	Namespace string `json:"namespace"`
}

func (s *Service) listPlansTool() (*tool, error) {
	return defineTool("list_remediation_plans", "List remediation plans",
		"List the stored remediation plans, newest first (at most 100): id, digest, state, target, issue type, "+
			"risk, summary and approval deadline. Proposed plans disappear when their approval window passes; "+
			"executed plans stay. Filter by state ("+strings.Join(planStateNames(), ", ")+") and namespace.",
		readOnlyHints,
		[]argSpec{
			{name: "state", typ: typeString, desc: "Only plans in this state.", enum: planStateNames()},
			namespaceArg("Only plans for this namespace.", false),
		},
		s.listPlansHandler)
}

func (s *Service) listPlansHandler(ctx context.Context, _ *call, a listPlansArgs) (PlanListOut, string, error) {
	plans, err := s.listPlans(ctx)
	if err != nil {
		return PlanListOut{}, "", err
	}
	out := PlanListOut{Plans: []PlanSummaryOut{}}
	sort.Slice(plans, func(i, j int) bool { return plans[i].CreatedAt.After(plans[j].CreatedAt) })
	for _, p := range plans {
		if (a.State != "" && string(p.State) != a.State) || (a.Namespace != "" && p.Namespace != a.Namespace) {
			continue
		}
		out.Total++
		if len(out.Plans) == maxListedPlans {
			out.Truncated = true
			continue
		}
		out.Plans = append(out.Plans, planSummary(p))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d plan(s)", out.Total)
	if len(out.Plans) > 0 {
		b.WriteString(". " + untrustedNotice)
	}
	for _, p := range out.Plans {
		fmt.Fprintf(&b, "\n- %s %s %s %s (risk %s): %s", p.PlanID, p.State, events.DisplayRef(p.Target.Kind, p.Namespace, p.Target.Name),
			p.IssueType, p.Risk, text.ForModel(p.Summary))
	}
	if out.Truncated {
		fmt.Fprintf(&b, "\n(only the newest %d listed: filter by state or namespace)", maxListedPlans)
	}
	return out, b.String(), nil
}

type planIDArgs struct {
	PlanID string `json:"plan_id"`
}

func (s *Service) getPlanTool() (*tool, error) {
	return defineTool("get_remediation_plan", "Get remediation plan",
		"Show one remediation plan in full: state, digest, steps (action, kubectl equivalent, risk, dry-run "+
			"result), evidence (quoted, untrusted cluster data) and expires_at. Use it to review a plan before "+
			"approving its digest.",
		readOnlyHints,
		[]argSpec{planIDArg("The plan id.", true)},
		s.getPlanHandler)
}

func (s *Service) getPlanHandler(ctx context.Context, _ *call, a planIDArgs) (PlanOut, string, error) {
	p, err := s.getPlan(ctx, a.PlanID)
	if err != nil {
		return PlanOut{}, "", err
	}
	out := s.planOut(p)
	return out, planText(out), nil
}
