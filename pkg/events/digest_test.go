package events

import (
	"encoding/json"
	"testing"
	"time"
)

// frozenDigest is ComputeDigest(samplePlan()). It must never change: a
// change would invalidate every approval in flight. If this test fails, the
// canonical form changed; restore it instead of updating the constant.
const frozenDigest = "sha256:e0bd4e805af5eb9b10fd79a3749b892645620fef4b953c72b9584affd09fb696"

func TestDigestStable(t *testing.T) {
	if got := ComputeDigest(samplePlan()); got != frozenDigest {
		t.Fatalf("ComputeDigest(samplePlan()) = %s, want frozen %s", got, frozenDigest)
	}
	for i := 0; i < 20; i++ { // map iteration order must not matter
		if got := ComputeDigest(samplePlan()); got != frozenDigest {
			t.Fatalf("run %d: digest %s", i, got)
		}
	}
}

func TestDigestIgnoresNonSemanticChanges(t *testing.T) {
	cases := map[string]func(p *Plan){
		"state":         func(p *Plan) { p.State = PlanExecuting },
		"times":         func(p *Plan) { p.CreatedAt = p.CreatedAt.Add(time.Hour); p.ExpiresAt = p.ExpiresAt.Add(time.Hour) },
		"evidence":      func(p *Plan) { p.Evidence = nil },
		"summary":       func(p *Plan) { p.Summary = "other words" },
		"notes":         func(p *Plan) { p.Notes = append(p.Notes, "n") },
		"risk":          func(p *Plan) { p.Risk = RiskHigh },
		"superseded_by": func(p *Plan) { p.SupersededBy = testPlan2 },
		"step title":    func(p *Plan) { p.Steps[1].Title = "other" },
		"step kubectl":  func(p *Plan) { p.Steps[1].Kubectl = "kubectl edit" },
		"step dry run":  func(p *Plan) { p.Steps[1].DryRun = nil },
		"step undo":     func(p *Plan) { p.Steps[1].Undo = ""; p.Steps[1].UndoPatch = nil },
		"patch whitespace and key order": func(p *Plan) {
			p.Steps[1].Patch = json.RawMessage(`{ "spec" : { "template" : { "spec" : { "containers" : [ { "resources" : { "limits" : { "memory" : "512Mi" } }, "name" : "app" } ] } } } }`)
		},
		"nil vs empty params": func(p *Plan) { p.Steps[0].Params = map[string]string{} },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			p := samplePlan()
			mutate(&p)
			if got := ComputeDigest(p); got != frozenDigest {
				t.Fatalf("digest changed to %s", got)
			}
		})
	}
}

func TestDigestSensitiveToWhatRuns(t *testing.T) {
	cases := map[string]func(p *Plan){
		"target name":            func(p *Plan) { p.Target.Name = "api" },
		"target namespace":       func(p *Plan) { p.Target.Namespace = "other" },
		"target kind":            func(p *Plan) { p.Target.Kind = "StatefulSet" },
		"target uid":             func(p *Plan) { p.Target.UID = "u2" },
		"resource version":       func(p *Plan) { p.TargetResourceVersion = "81235" },
		"generation":             func(p *Plan) { p.TargetGeneration++ },
		"step action":            func(p *Plan) { p.Steps[1].Action = ActionSetResourceRequests },
		"step param value":       func(p *Plan) { p.Steps[1].Params[ParamMemory] = "1Gi" },
		"step param added":       func(p *Plan) { p.Steps[1].Params["extra"] = "" },
		"step target":            func(p *Plan) { p.Steps[1].Target.Name = "api" },
		"step patch type":        func(p *Plan) { p.Steps[1].PatchType = PatchMerge },
		"step patch value":       func(p *Plan) { p.Steps[1].Patch = json.RawMessage(`{"spec":{"replicas":0}}`) },
		"step patch number text": func(p *Plan) { p.Steps[1].Patch = json.RawMessage(`{"a":1.0}`) },
		"step removed":           func(p *Plan) { p.Steps = p.Steps[1:] },
		"step order":             func(p *Plan) { p.Steps[0], p.Steps[1] = p.Steps[1], p.Steps[0] },
		"step added":             func(p *Plan) { p.Steps = append(p.Steps, sampleStep(2)) },
	}
	seen := map[string]string{frozenDigest: "original"}
	for name, mutate := range cases {
		p := samplePlan()
		mutate(&p)
		got := ComputeDigest(p)
		if prev, dup := seen[got]; dup {
			t.Errorf("%s: digest %s equals that of %s", name, got, prev)
		}
		seen[got] = name
	}
	// Numbers keep their text: 1 and 1.0 are different patches.
	a, b := samplePlan(), samplePlan()
	a.Steps[1].Patch, b.Steps[1].Patch = json.RawMessage(`{"a":1}`), json.RawMessage(`{"a":1.0}`)
	if ComputeDigest(a) == ComputeDigest(b) {
		t.Error("patches 1 and 1.0 hash alike")
	}
}

func TestSealThenValidate(t *testing.T) {
	p := samplePlan()
	p.Steps[1].Params[ParamMemory] = "768Mi"
	if err := p.Validate(); err == nil {
		t.Fatal("changed plan still validates with its old digest")
	}
	p.Seal()
	if err := p.Validate(); err != nil {
		t.Fatalf("resealed plan: %v", err)
	}
}

func TestCanTransition(t *testing.T) {
	allowed := map[[2]PlanState]bool{
		{PlanProposed, PlanApproved}: true, {PlanProposed, PlanExecuting}: true, {PlanProposed, PlanRejected}: true,
		{PlanProposed, PlanExpired}: true, {PlanProposed, PlanSuperseded}: true, {PlanProposed, PlanFailed}: true,
		{PlanApproved, PlanExecuting}: true, {PlanApproved, PlanExpired}: true, {PlanApproved, PlanSuperseded}: true,
		{PlanApproved, PlanFailed}:     true,
		{PlanExecuting, PlanSucceeded}: true, {PlanExecuting, PlanFailed}: true,
	}
	for _, from := range PlanStates() {
		for _, to := range PlanStates() {
			if got := CanTransition(from, to); got != allowed[[2]PlanState{from, to}] {
				t.Errorf("CanTransition(%s, %s) = %t", from, to, got)
			}
		}
	}
	for _, s := range []PlanState{PlanSucceeded, PlanFailed, PlanRejected, PlanExpired, PlanSuperseded} {
		if !s.Terminal() {
			t.Errorf("%s must be terminal", s)
		}
	}
	if PlanProposed.Terminal() || PlanState("bogus").Terminal() || CanTransition("bogus", PlanApproved) {
		t.Error("non-terminal or unknown states misreported")
	}
}
