package events

import (
	"encoding/json"
	"testing"
	"time"
)

// frozenDigest is ComputeDigest(samplePlan()) (kaar-plan-digest-v2). It
// must never change: a change would invalidate every approval in flight.
// If this test fails, the canonical form changed; restore it instead of
// updating the constant (a new form needs a new digest version).
const frozenDigest = "sha256:4fc16780e1dcf0b727ade4b4e9386b15c4777184c8a6e6121b3aa53551f73daf"

// frozenActionDigest is ActionDigest(samplePlan()) (kaar-plan-digest-v1,
// the digest of what runs, which plans had before v2).
const frozenActionDigest = "sha256:e0bd4e805af5eb9b10fd79a3749b892645620fef4b953c72b9584affd09fb696"

func TestDigestStable(t *testing.T) {
	if got := ComputeDigest(samplePlan()); got != frozenDigest {
		t.Fatalf("ComputeDigest(samplePlan()) = %s, want frozen %s", got, frozenDigest)
	}
	if got := ActionDigest(samplePlan()); got != frozenActionDigest {
		t.Fatalf("ActionDigest(samplePlan()) = %s, want frozen %s", got, frozenActionDigest)
	}
	for i := 0; i < 20; i++ { // map iteration order must not matter
		if got := ComputeDigest(samplePlan()); got != frozenDigest {
			t.Fatalf("run %d: digest %s", i, got)
		}
	}
}

// TestDigestIgnoresOnlyLifecycleFields: what changes over a plan's life
// (state, superseded_by, history, the signature of the digest) leaves the
// digest alone, and so does a JSON re-encoding.
func TestDigestIgnoresOnlyLifecycleFields(t *testing.T) {
	cases := map[string]func(p *Plan){
		"state":         func(p *Plan) { p.State = PlanExecuting },
		"superseded_by": func(p *Plan) { p.SupersededBy = testPlan2 },
		"history":       func(p *Plan) { p.History = append(p.History, "executor: claimed") },
		"signature":     func(p *Plan) { p.Signature = &Signature{Key: "ed25519:x", Sig: "y"} },
		"patch whitespace and key order": func(p *Plan) {
			p.Steps[1].Patch = json.RawMessage(`{ "spec" : { "template" : { "spec" : { "containers" : [ { "resources" : { "limits" : { "memory" : "512Mi" } }, "name" : "app" } ] } } } }`)
		},
		"json round trip": func(p *Plan) {
			b, err := json.Marshal(p)
			if err != nil {
				t.Fatal(err)
			}
			*p = Plan{}
			if err := json.Unmarshal(b, p); err != nil {
				t.Fatal(err)
			}
		},
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

// TestDigestCoversEverythingShownAndRun: every field a person is shown or
// the executor acts on changes the digest (the review of issue 13 changed
// undo_patch, titles, kubectl text, risk and expires_at with the old
// digest still equal).
func TestDigestCoversEverythingShownAndRun(t *testing.T) {
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
		"step undo patch":        func(p *Plan) { p.Steps[1].UndoPatch = json.RawMessage(`[{"op":"remove","path":"/spec"}]`) },
		"step undo text":         func(p *Plan) { p.Steps[1].Undo = "nothing to undo" },
		"step title":             func(p *Plan) { p.Steps[1].Title = "Raise the memory limit (harmless)" },
		"step kubectl":           func(p *Plan) { p.Steps[1].Kubectl = "kubectl delete ns shop" },
		"step risk":              func(p *Plan) { p.Steps[1].Risk = RiskNone },
		"step preconditions":     func(p *Plan) { p.Steps[1].Preconditions = nil },
		"step success check":     func(p *Plan) { p.Steps[1].SuccessCheck = "none" },
		"step dry run":           func(p *Plan) { p.Steps[1].DryRun = nil },
		"plan risk":              func(p *Plan) { p.Risk = RiskNone },
		"expires_at":             func(p *Plan) { p.ExpiresAt = p.ExpiresAt.Add(time.Hour) },
		"created_at":             func(p *Plan) { p.CreatedAt = p.CreatedAt.Add(-time.Hour) },
		"summary":                func(p *Plan) { p.Summary = "other words" },
		"notes":                  func(p *Plan) { p.Notes = append(p.Notes, "n") },
		"evidence":               func(p *Plan) { p.Evidence = nil },
		"managed_by":             func(p *Plan) { p.ManagedBy = "Flux" },
		"diagnostic_only":        func(p *Plan) { p.DiagnosticOnly = true },
		"id":                     func(p *Plan) { p.ID = testPlan2 },
		"cluster":                func(p *Plan) { p.Cluster = "other" },
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

// TestActionDigestIsWhatRuns: the planner's equivalence digest ignores
// words and times, and sees every change to what runs.
func TestActionDigestIsWhatRuns(t *testing.T) {
	p := samplePlan()
	p.Summary, p.Steps[1].Title, p.ExpiresAt = "other", "other", p.ExpiresAt.Add(time.Hour)
	if got := ActionDigest(p); got != frozenActionDigest {
		t.Errorf("words and times changed the action digest: %s", got)
	}
	p.Steps[1].Params[ParamMemory] = "1Gi"
	if got := ActionDigest(p); got == frozenActionDigest {
		t.Error("a param change left the action digest equal")
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
