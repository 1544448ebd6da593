package events

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// vcase mutates a valid sample and names the field the error must blame.
type vcase struct {
	name  string
	value Validatable
	field string
}

func checkCases(t *testing.T, cases []vcase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.value.Validate()
			if err == nil {
				t.Fatalf("Validate() = nil, want an error on field %q", tc.field)
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("error %v (%T) is not a *ValidationError", err, err)
			}
			if ve.Field != tc.field {
				t.Fatalf("error blames field %q, want %q (error: %v)", ve.Field, tc.field, err)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not match ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), `"`+tc.field+`"`) {
				t.Fatalf("message %q does not quote the field", err.Error())
			}
		})
	}
}

func incWith(f func(*Incident)) Incident {
	in := sampleIncident()
	f(&in)
	return in
}

// incRehash mutates identity fields and recomputes the id.
func incRehash(f func(*Incident)) Incident {
	in := incWith(f)
	in.ID = IncidentID(in.Cluster, in.Namespace, in.Owner.Kind, in.Owner.Name, in.Container, in.Type)
	return in
}

func TestIncidentValidation(t *testing.T) {
	checkCases(t, []vcase{
		{"no id", incWith(func(i *Incident) { i.ID = "" }), "id"},
		{"bad id", incWith(func(i *Incident) { i.ID = "XYZ" }), "id"},
		{"id of another incident", incWith(func(i *Incident) { i.ID = "0123456789abcdef" }), "id"},
		{"no cluster", incWith(func(i *Incident) { i.Cluster = "" }), "cluster"},
		{"bad cluster", incWith(func(i *Incident) { i.Cluster = "Prod.EU" }), "cluster"},
		{"no namespace", incWith(func(i *Incident) { i.Namespace = "" }), "namespace"},
		{"namespace with dot", incWith(func(i *Incident) { i.Namespace = "a.b" }), "namespace"},
		{"no owner kind", incWith(func(i *Incident) { i.Owner.Kind = "" }), "owner.kind"},
		{"no owner name", incWith(func(i *Incident) { i.Owner.Name = "" }), "owner.name"},
		{"owner chain item", incWith(func(i *Incident) { i.OwnerChain[1].Name = "" }), "owner_chain[1].name"},
		{"no type", incWith(func(i *Incident) { i.Type = "" }), "type"},
		{"unknown type", incWith(func(i *Incident) { i.Type = "Broken" }), "type"},
		{"no reason", incRehash(func(i *Incident) { i.Reason = "" }), "reason"},
		{"reason not snake", incRehash(func(i *Incident) { i.Reason = "Exit Code" }), "reason"},
		{"negative restarts", incWith(func(i *Incident) { i.RestartCount = -1 }), "restart_count"},
		{"too many pods", incWith(func(i *Incident) {
			i.Pods = make([]string, MaxIncidentPods+1)
			i.PodCount = 100
		}), "pods"},
		{"pod count below list", incWith(func(i *Incident) { i.PodCount = 1 }), "pod_count"},
		{"no first seen", incWith(func(i *Incident) { i.FirstSeen = time.Time{} }), "first_seen"},
		{"no last seen", incWith(func(i *Incident) { i.LastSeen = time.Time{} }), "last_seen"},
		{"last before first", incWith(func(i *Incident) { i.LastSeen = i.FirstSeen.Add(-time.Second) }), "last_seen"},
		{"negative count", incWith(func(i *Incident) { i.Count = -1 }), "count"},
		{"no severity", incWith(func(i *Incident) { i.Severity = "" }), "severity"},
		{"bad severity", incWith(func(i *Incident) { i.Severity = "urgent" }), "severity"},
	})
}

func TestIncidentEventValidation(t *testing.T) {
	with := func(f func(*IncidentEvent)) IncidentEvent { e := sampleIncidentEvent(); f(&e); return e }
	checkCases(t, []vcase{
		{"no transition", with(func(e *IncidentEvent) { e.Transition = "" }), "transition"},
		{"bad transition", with(func(e *IncidentEvent) { e.Transition = "gone" }), "transition"},
		{"nested incident", with(func(e *IncidentEvent) { e.Incident.Owner.Name = "" }), "incident.owner.name"},
		{"no observed_at", with(func(e *IncidentEvent) { e.ObservedAt = time.Time{} }), "observed_at"},
		{"observation zero", with(func(e *IncidentEvent) { e.Observation = 0 }), "observation"},
	})
}

func planWith(f func(*Plan)) Plan {
	p := samplePlan()
	f(&p)
	return p
}

// planResealed mutates and re-seals, so the digest is not what fails.
func planResealed(f func(*Plan)) Plan {
	p := planWith(f)
	p.Seal()
	return p
}

func TestPlanValidation(t *testing.T) {
	checkCases(t, []vcase{
		{"no id", planWith(func(p *Plan) { p.ID = "" }), "id"},
		{"id not uuid", planWith(func(p *Plan) { p.ID = "plan-1" }), "id"},
		{"id upper case", planWith(func(p *Plan) { p.ID = strings.ToUpper(testPlanID) }), "id"},
		{"bad incident id", planWith(func(p *Plan) { p.IncidentID = "nope" }), "incident_id"},
		{"no cluster", planWith(func(p *Plan) { p.Cluster = "" }), "cluster"},
		{"no namespace", planWith(func(p *Plan) { p.Namespace = "" }), "namespace"},
		{"no target kind", planResealed(func(p *Plan) { p.Target.Kind = "" }), "target.kind"},
		{"no target name", planResealed(func(p *Plan) { p.Target.Name = "" }), "target.name"},
		{"no resource version", planResealed(func(p *Plan) { p.TargetResourceVersion = "" }), "target_resource_version"},
		{"negative generation", planResealed(func(p *Plan) { p.TargetGeneration = -1 }), "target_generation"},
		{"no type", planWith(func(p *Plan) { p.Type = "" }), "type"},
		{"no summary", planWith(func(p *Plan) { p.Summary = "" }), "summary"},
		{"no steps", planResealed(func(p *Plan) { p.Steps = nil }), "steps"},
		{"step index out of order", planResealed(func(p *Plan) { p.Steps[1].Index = 5 }), "steps[1].index"},
		{"step without title", planWith(func(p *Plan) { p.Steps[1].Title = "" }), "steps[1].title"},
		{"step unknown action", planResealed(func(p *Plan) { p.Steps[1].Action = "scale" }), "steps[1].action"},
		{"step no risk", planWith(func(p *Plan) { p.Steps[1].Risk = "" }), "steps[1].risk"},
		{"step mutating flag wrong", planWith(func(p *Plan) { p.Steps[0].Mutating = true }), "steps[0].mutating"},
		{"step non-mutating flag wrong", planWith(func(p *Plan) { p.Steps[1].Mutating = false }), "steps[1].mutating"},
		{"mutating step without target", planResealed(func(p *Plan) { p.Steps[1].Target = ObjectRef{} }), "steps[1].target"},
		{"mutating step target no name", planResealed(func(p *Plan) { p.Steps[1].Target.Name = "" }), "steps[1].target.name"},
		{"mutating step target no namespace", planResealed(func(p *Plan) { p.Steps[1].Target.Namespace = "" }), "steps[1].target.namespace"},
		{"patch without type", planResealed(func(p *Plan) { p.Steps[1].PatchType = "" }), "steps[1].patch_type"},
		{"bad patch type", planResealed(func(p *Plan) { p.Steps[1].PatchType = "yaml" }), "steps[1].patch_type"},
		{"patch type without patch", planResealed(func(p *Plan) { p.Steps[1].Patch = nil; p.Steps[1].UndoPatch = nil }), "steps[1].patch"},
		{"invalid patch JSON", planResealed(func(p *Plan) { p.Steps[1].Patch = json.RawMessage(`{"spec":`) }), "steps[1].patch"},
		{"invalid undo patch JSON", planWith(func(p *Plan) { p.Steps[1].UndoPatch = json.RawMessage(`[`) }), "steps[1].undo_patch"},
		{"no patch and no params", planResealed(func(p *Plan) {
			p.Steps[1].Patch, p.Steps[1].UndoPatch, p.Steps[1].PatchType = nil, nil, ""
			delete(p.Steps[1].Params, ParamMemory)
		}), "steps[1].params.memory"},
		{"set_image without image", planResealed(func(p *Plan) {
			s := &p.Steps[1]
			s.Action, s.Patch, s.UndoPatch, s.PatchType = ActionSetImage, nil, nil, ""
			s.Params = map[string]string{ParamContainer: "app"}
		}), "steps[1].params.image"},
		{"set_resource_requests without cpu or memory", planResealed(func(p *Plan) {
			s := &p.Steps[1]
			s.Action, s.Patch, s.UndoPatch, s.PatchType = ActionSetResourceRequests, nil, nil, ""
			s.Params = map[string]string{ParamContainer: "app"}
		}), "steps[1].params.cpu"},
		{"set_node_selector without anything", planResealed(func(p *Plan) {
			s := &p.Steps[1]
			s.Action, s.Patch, s.UndoPatch, s.PatchType, s.Params = ActionSetNodeSelector, nil, nil, "", nil
		}), "steps[1].patch"},
		{"delete_pod on a deployment", planResealed(func(p *Plan) {
			s := &p.Steps[1]
			s.Action, s.Patch, s.UndoPatch, s.PatchType, s.Params = ActionDeletePod, nil, nil, "", nil
		}), "steps[1].target.kind"},
		{"dry run without time", planWith(func(p *Plan) { p.Steps[1].DryRun.At = time.Time{} }), "steps[1].dry_run.at"},
		{"diagnostic only with mutating step", planWith(func(p *Plan) { p.DiagnosticOnly = true }), "diagnostic_only"},
		{"no mutating step", planResealed(func(p *Plan) { p.Steps = p.Steps[:1] }), "steps"},
		{"evidence kind", planWith(func(p *Plan) { p.Evidence[0].Kind = "gossip" }), "evidence[0].kind"},
		{"evidence title", planWith(func(p *Plan) { p.Evidence[0].Title = "" }), "evidence[0].title"},
		{"evidence source", planWith(func(p *Plan) { p.Evidence[0].Source = "" }), "evidence[0].source"},
		{"evidence too long", planWith(func(p *Plan) { p.Evidence[0].Lines = make([]string, MaxEvidenceLines+1) }), "evidence[0].lines"},
		{"no risk", planWith(func(p *Plan) { p.Risk = "" }), "risk"},
		{"no state", planWith(func(p *Plan) { p.State = "" }), "state"},
		{"bad state", planWith(func(p *Plan) { p.State = "done" }), "state"},
		{"not sealed", planWith(func(p *Plan) { p.Digest = "" }), "digest"},
		{"changed after sealing", planWith(func(p *Plan) { p.Steps[1].Params[ParamMemory] = "1Gi" }), "digest"},
		{"no created_at", planWith(func(p *Plan) { p.CreatedAt = time.Time{} }), "created_at"},
		{"no expires_at", planWith(func(p *Plan) { p.ExpiresAt = time.Time{} }), "expires_at"},
		{"expires before created", planWith(func(p *Plan) { p.ExpiresAt = p.CreatedAt }), "expires_at"},
		{"bad superseded_by", planWith(func(p *Plan) { p.SupersededBy = "newer" }), "superseded_by"},
	})
}

func TestPlanValidationAcceptsKnownActionShapes(t *testing.T) {
	target := ObjectRef{Kind: "Deployment", Namespace: "shop", Name: "web"}
	steps := []Step{
		{Action: ActionRollback, Target: target},
		{Action: ActionRolloutRestart, Target: target},
		{Action: ActionSetImage, Target: target, Params: map[string]string{ParamContainer: "app", ParamImage: "web:1.2"}},
		{Action: ActionSetMemoryLimit, Target: target, Params: map[string]string{ParamContainer: "app", ParamMemory: "1Gi"}},
		{Action: ActionSetResourceRequests, Target: target, Params: map[string]string{ParamContainer: "app", ParamCPU: "100m"}},
		{Action: ActionAddToleration, Target: target, Params: map[string]string{ParamKey: "dedicated", ParamEffect: "NoSchedule"}},
		{Action: ActionSetNodeSelector, Target: target, Params: map[string]string{"kubernetes.io/arch": "amd64"}},
		{Action: ActionDeletePod, Target: ObjectRef{Kind: "Pod", Namespace: "shop", Name: "web-1"}},
		{Action: ActionDeleteEvictedPods, Target: target},
	}
	for _, s := range steps {
		t.Run(string(s.Action), func(t *testing.T) {
			s.Title, s.Risk, s.Mutating = "do it", RiskLow, true
			p := samplePlan()
			p.Steps = []Step{s}
			p.Seal()
			if err := p.Validate(); err != nil {
				t.Fatalf("Validate() = %v", err)
			}
		})
	}
	t.Run("diagnostic only", func(t *testing.T) {
		p := samplePlan()
		p.Steps = []Step{{Action: ActionDiagnostic, Title: "check the registry credentials", Risk: RiskNone}}
		p.DiagnosticOnly = true
		p.Seal()
		if err := p.Validate(); err != nil {
			t.Fatalf("Validate() = %v", err)
		}
	})
}

func TestDecisionValidation(t *testing.T) {
	with := func(f func(*Decision)) Decision { d := sampleDecision(); f(&d); return d }
	checkCases(t, []vcase{
		{"no plan", with(func(d *Decision) { d.PlanID = "" }), "plan_id"},
		{"no digest", with(func(d *Decision) { d.Digest = "" }), "digest"},
		{"bad digest", with(func(d *Decision) { d.Digest = "sha256:xyz" }), "digest"},
		{"upper-case digest", with(func(d *Decision) { d.Digest = strings.ToUpper(d.Digest) }), "digest"},
		{"no decision", with(func(d *Decision) { d.Decision = "" }), "decision"},
		{"bad decision", with(func(d *Decision) { d.Decision = "maybe" }), "decision"},
		{"no decided_by", with(func(d *Decision) { d.DecidedBy = "" }), "decided_by"},
		{"no via", with(func(d *Decision) { d.Via = "" }), "via"},
		{"bad via", with(func(d *Decision) { d.Via = "email" }), "via"},
		{"no at", with(func(d *Decision) { d.At = time.Time{} }), "at"},
	})
}

func TestExecutionValidation(t *testing.T) {
	sr := func(f func(*StepResult)) StepResult { r := sampleStepResult(); f(&r); return r }
	vf := func(f func(*Verification)) Verification { v := sampleVerification(); f(&v); return v }
	ex := func(f func(*Execution)) Execution { e := sampleExecution(); f(&e); return e }
	checkCases(t, []vcase{
		{"step result plan", sr(func(r *StepResult) { r.PlanID = "" }), "plan_id"},
		{"step result digest", sr(func(r *StepResult) { r.Digest = "" }), "digest"},
		{"step result index", sr(func(r *StepResult) { r.Index = -1 }), "index"},
		{"step result action", sr(func(r *StepResult) { r.Action = "" }), "action"},
		{"step result status", sr(func(r *StepResult) { r.Status = "ok" }), "status"},
		{"step result started", sr(func(r *StepResult) { r.StartedAt = time.Time{} }), "started_at"},
		{"step result finished before start", sr(func(r *StepResult) { r.FinishedAt = r.StartedAt.Add(-time.Second) }), "finished_at"},
		{"verification plan", vf(func(v *Verification) { v.PlanID = "x" }), "plan_id"},
		{"verification digest", vf(func(v *Verification) { v.Digest = "" }), "digest"},
		{"verification desired", vf(func(v *Verification) { v.DesiredReplicas = -1 }), "desired_replicas"},
		{"verification ready", vf(func(v *Verification) { v.ReadyReplicas = -1 }), "ready_replicas"},
		{"verification updated", vf(func(v *Verification) { v.UpdatedReplicas = -1 }), "updated_replicas"},
		{"verification checked", vf(func(v *Verification) { v.CheckedAt = time.Time{} }), "checked_at"},
		{"execution plan", ex(func(e *Execution) { e.PlanID = "" }), "plan_id"},
		{"execution digest", ex(func(e *Execution) { e.Digest = "" }), "digest"},
		{"execution state", ex(func(e *Execution) { e.State = "" }), "state"},
		{"execution nested step", ex(func(e *Execution) { e.Steps[0].Status = "" }), "steps[0].status"},
		{"execution nested verification", ex(func(e *Execution) { e.Verification.CheckedAt = time.Time{} }), "verification.checked_at"},
		{"execution started", ex(func(e *Execution) { e.StartedAt = time.Time{} }), "started_at"},
		{"execution finished before start", ex(func(e *Execution) { e.FinishedAt = e.StartedAt.Add(-time.Second) }), "finished_at"},
		{"refused without reason", ex(func(e *Execution) { e.State = ExecutionRefused }), "refusal_reason"},
		{"refused with bad reason", ex(func(e *Execution) { e.State, e.RefusalReason = ExecutionRefused, "tired" }), "refusal_reason"},
		{"reason without refusal", ex(func(e *Execution) { e.RefusalReason = RefusalStale }), "refusal_reason"},
	})
	// Every listed reason is valid on a refused execution, the
	// executor's catalogue refusal among them.
	if !slices.Contains(RefusalReasons(), RefusalInvalidStep) {
		t.Errorf("RefusalReasons() %v lacks %s", RefusalReasons(), RefusalInvalidStep)
	}
	for _, r := range RefusalReasons() {
		if err := ex(func(e *Execution) { e.State, e.RefusalReason = ExecutionRefused, r }).Validate(); err != nil {
			t.Errorf("refused with reason %s: %v", r, err)
		}
	}
}

func TestAuditValidation(t *testing.T) {
	with := func(f func(*AuditRecord)) AuditRecord { a := sampleAudit(); f(&a); return a }
	checkCases(t, []vcase{
		{"no id", with(func(a *AuditRecord) { a.ID = "" }), "id"},
		{"no plan", with(func(a *AuditRecord) { a.PlanID = "" }), "plan_id"},
		{"bad digest", with(func(a *AuditRecord) { a.Digest = "md5:1" }), "digest"},
		{"no kind", with(func(a *AuditRecord) { a.Kind = "" }), "kind"},
		{"bad kind", with(func(a *AuditRecord) { a.Kind = "poked" }), "kind"},
		{"no actor", with(func(a *AuditRecord) { a.Actor = "" }), "actor"},
		{"bad via", with(func(a *AuditRecord) { a.Via = "pigeon" }), "via"},
		{"no at", with(func(a *AuditRecord) { a.At = time.Time{} }), "at"},
		{"bad data", with(func(a *AuditRecord) { a.Data = json.RawMessage(`{`) }), "data"},
	})
}

func TestServiceBodyValidation(t *testing.T) {
	ar := func(f func(*AnalyzeRequest)) AnalyzeRequest { r := sampleAnalyzeRequest(); f(&r); return r }
	resp := func(f func(*AnalyzeResponse)) AnalyzeResponse { r := sampleAnalyzeResponse(); f(&r); return r }
	pr := func(f func(*PlanRequest)) PlanRequest { r := samplePlanRequest(); f(&r); return r }
	checkCases(t, []vcase{
		{"analyze namespace", ar(func(r *AnalyzeRequest) { r.Namespace = "a b" }), "namespace"},
		{"analyze type", ar(func(r *AnalyzeRequest) { r.Type = "Sad" }), "type"},
		{"analyze negative limit", ar(func(r *AnalyzeRequest) { r.Limit = -1 }), "limit"},
		{"analyze limit too big", ar(func(r *AnalyzeRequest) { r.Limit = MaxAnalyzeLimit + 1 }), "limit"},
		{"analyze response cluster", resp(func(r *AnalyzeResponse) { r.Cluster = "" }), "cluster"},
		{"analyze response incident", resp(func(r *AnalyzeResponse) { r.Incidents[0].Reason = "" }), "incidents[0].reason"},
		{"analyze response total", resp(func(r *AnalyzeResponse) { r.Total = 0 }), "total"},
		{"analyze response by_type", resp(func(r *AnalyzeResponse) { r.ByType["Sad"] = 1 }), "by_type.type"},
		{"analyze response by_severity", resp(func(r *AnalyzeResponse) { r.BySeverity = map[Severity]int{"dire": 1} }), "by_severity.severity"},
		{"analyze response time", resp(func(r *AnalyzeResponse) { r.GeneratedAt = time.Time{} }), "generated_at"},
		{"plan request namespace", pr(func(r *PlanRequest) { r.Namespace = "" }), "namespace"},
		{"plan request kind", pr(func(r *PlanRequest) { r.Kind = "" }), "kind"},
		{"plan request name", pr(func(r *PlanRequest) { r.Name = "" }), "name"},
		{"plan request issue type", pr(func(r *PlanRequest) { r.IssueType = "Sad" }), "issue_type"},
		{"plan response", PlanResponse{Plan: planWith(func(p *Plan) { p.Summary = "" })}, "plan.summary"},
		{"status request", ExecutionStatusRequest{}, "plan_id"},
		{"status response plan", ExecutionStatusResponse{}, "plan_id"},
		{"status response state", ExecutionStatusResponse{PlanID: testPlanID, PlanState: "gone"}, "plan_state"},
		{"status response execution", ExecutionStatusResponse{PlanID: testPlanID, Execution: &Execution{}}, "execution.plan_id"},
		{"error reply code", ErrorReply{Code: "oops", Message: "x"}, "code"},
		{"error reply message", ErrorReply{Code: CodeInternal}, "message"},
	})
	if err := (AnalyzeRequest{}).Validate(); err != nil {
		t.Errorf("empty AnalyzeRequest must be valid (no filters): %v", err)
	}
}

func TestValidationErrorListsAllowedValues(t *testing.T) {
	err := IssueType("Sad").Validate()
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("not a ValidationError: %v", err)
	}
	if len(ve.Allowed) != len(IssueTypes()) || !strings.Contains(err.Error(), "CrashLoopBackOff") {
		t.Fatalf("allowed values missing: %v", err)
	}
	want := `events: field "data.plan_id": required`
	if got := under("data", required("plan_id")).Error(); got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}
