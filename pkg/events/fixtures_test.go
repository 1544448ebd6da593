package events

import (
	"encoding/json"
	"time"
)

// Fixed values so golden files are stable.
var (
	t0         = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	testPlanID = "01936f8e-7c1a-7b2e-9f3d-4a5b6c7d8e9f"
	testPlan2  = "01936f8e-7c1a-7b2e-9f3d-4a5b6c7d8ea0"
	testAudit  = "01936f8e-7c1a-7b2e-9f3d-4a5b6c7d8ea1"
)

func ptr[T any](v T) *T { return &v }

func sampleIncident() Incident {
	in := Incident{
		Cluster:   "prod-eu",
		Namespace: "shop",
		Owner:     ObjectRef{Kind: "Deployment", Namespace: "shop", Name: "web", UID: "4b6f1c2e-0000-4000-8000-000000000001", APIVersion: "apps/v1"},
		OwnerChain: []ObjectRef{
			{Kind: "ReplicaSet", Namespace: "shop", Name: "web-7d9f8b6c5", APIVersion: "apps/v1"},
			{Kind: "Deployment", Namespace: "shop", Name: "web", APIVersion: "apps/v1"},
		},
		Container:    "app",
		Type:         IssueCrashLoopBackOff,
		Reason:       "exit_code_1",
		Message:      "back-off 5m0s restarting failed container=app",
		ExitCode:     ptr[int32](1),
		RestartCount: 7,
		Pods:         []string{"web-7d9f8b6c5-abcde", "web-7d9f8b6c5-fghij"},
		PodCount:     2,
		FirstSeen:    t0,
		LastSeen:     t0.Add(5 * time.Minute),
		Count:        14,
		Severity:     SeverityHigh,
	}
	in.ID = IncidentID(in.Cluster, in.Namespace, in.Owner.Kind, in.Owner.Name, in.Container, in.Type)
	return in
}

func sampleIncidentEvent() IncidentEvent {
	return IncidentEvent{Transition: TransitionDetected, Incident: sampleIncident(), ObservedAt: t0.Add(5 * time.Minute), Observation: 1}
}

func sampleStep(i int) Step {
	return Step{
		Index:     i,
		Action:    ActionSetMemoryLimit,
		Title:     "Raise the memory limit of container app to 512Mi",
		Params:    map[string]string{ParamContainer: "app", ParamMemory: "512Mi"},
		Target:    ObjectRef{Kind: "Deployment", Namespace: "shop", Name: "web", APIVersion: "apps/v1"},
		PatchType: PatchStrategic,
		Patch:     json.RawMessage(`{"spec":{"template":{"spec":{"containers":[{"name":"app","resources":{"limits":{"memory":"512Mi"}}}]}}}}`),
		Kubectl:   "kubectl -n shop set resources deployment/web -c app --limits=memory=512Mi",
		Risk:      RiskLow,
		Mutating:  true,
		Preconditions: []string{
			"deployment/web resourceVersion is 81234",
		},
		Undo:         "restore the limit to 256Mi",
		UndoPatch:    json.RawMessage(`{"spec":{"template":{"spec":{"containers":[{"name":"app","resources":{"limits":{"memory":"256Mi"}}}]}}}}`),
		SuccessCheck: "rollout complete and no OOMKilled for 5m",
		DryRun:       &DryRunResult{OK: true, Message: "server dry run accepted", At: t0.Add(time.Minute)},
	}
}

func samplePlan() Plan {
	p := Plan{
		ID:                    testPlanID,
		IncidentID:            sampleIncident().ID,
		Cluster:               "prod-eu",
		Namespace:             "shop",
		Target:                ObjectRef{Kind: "Deployment", Namespace: "shop", Name: "web", APIVersion: "apps/v1"},
		TargetResourceVersion: "81234",
		TargetGeneration:      12,
		Type:                  IssueOOMKilled,
		Summary:               "Container app is OOMKilled at its 256Mi limit; raise it to 512Mi.",
		Steps: []Step{
			{Index: 0, Action: ActionCheckLogs, Title: "Read the previous logs of app", Risk: RiskNone,
				Target: ObjectRef{Kind: "Pod", Namespace: "shop", Name: "web-7d9f8b6c5-abcde"}},
			sampleStep(1),
		},
		Evidence: []Evidence{{
			Kind:   EvidenceExitCode,
			Title:  "Last termination: OOMKilled (137)",
			Source: "pod/web-7d9f8b6c5-abcde container app lastState",
			Lines:  []string{"reason: OOMKilled", "exitCode: 137"},
			Data:   map[string]string{"limit": "256Mi"},
		}},
		Risk:      RiskLow,
		State:     PlanProposed,
		CreatedAt: t0,
		ExpiresAt: t0.Add(15 * time.Minute),
		Notes:     []string{"dry run accepted"},
	}
	p.Seal()
	return p
}

func sampleDecision() Decision {
	return Decision{PlanID: testPlanID, Digest: samplePlan().Digest, Decision: DecisionApproved,
		DecidedBy: "alice@example.com", Via: ViaMCP, At: t0.Add(2 * time.Minute), Reason: "looks right"}
}

func sampleStepResult() StepResult {
	return StepResult{PlanID: testPlanID, Digest: samplePlan().Digest, Index: 1, Action: ActionSetMemoryLimit,
		Status: StepSucceeded, Message: "patched", APIResponse: "200 OK: deployment.apps/web patched",
		StartedAt: t0.Add(3 * time.Minute), FinishedAt: t0.Add(3*time.Minute + time.Second)}
}

func sampleVerification() Verification {
	return Verification{PlanID: testPlanID, Digest: samplePlan().Digest, Healthy: true,
		DesiredReplicas: 2, ReadyReplicas: 2, UpdatedReplicas: 2, Message: "rollout complete",
		CheckedAt: t0.Add(5 * time.Minute)}
}

func sampleExecution() Execution {
	return Execution{PlanID: testPlanID, Digest: samplePlan().Digest, State: ExecutionSucceeded,
		Steps: []StepResult{sampleStepResult()}, Verification: ptr(sampleVerification()),
		StartedAt: t0.Add(3 * time.Minute), FinishedAt: t0.Add(5 * time.Minute)}
}

func sampleRefusal() Execution {
	return Execution{PlanID: testPlanID, Digest: samplePlan().Digest, State: ExecutionRefused,
		StartedAt: t0.Add(3 * time.Minute), FinishedAt: t0.Add(3 * time.Minute),
		Error: "target resourceVersion 81240, planned 81234", RefusalReason: RefusalStale}
}

func sampleAudit() AuditRecord {
	d, _ := json.Marshal(sampleDecision())
	return AuditRecord{ID: testAudit, PlanID: testPlanID, Digest: samplePlan().Digest, Kind: AuditApproved,
		Actor: "alice@example.com", Via: ViaMCP, At: t0.Add(2 * time.Minute), Message: "approved via MCP", Data: d}
}

func sampleAnalyzeRequest() AnalyzeRequest {
	return AnalyzeRequest{Namespace: "shop", Type: IssueCrashLoopBackOff, Owner: "Deployment/web", Limit: 50, Cursor: "c2hvcC93ZWI"}
}

func sampleAnalyzeResponse() AnalyzeResponse {
	return AnalyzeResponse{Cluster: "prod-eu", Incidents: []Incident{sampleIncident()}, Total: 3,
		ByType: map[IssueType]int{IssueCrashLoopBackOff: 2, IssuePending: 1}, NextCursor: "bmV4dA", GeneratedAt: t0.Add(6 * time.Minute)}
}

func samplePlanRequest() PlanRequest {
	return PlanRequest{Namespace: "shop", Kind: "Deployment", Name: "web", IssueType: IssueOOMKilled}
}

func sampleStatusResponse() ExecutionStatusResponse {
	return ExecutionStatusResponse{PlanID: testPlanID, PlanState: PlanSucceeded, Execution: ptr(sampleExecution())}
}

func sampleErrorReply() ErrorReply {
	return ErrorReply{Code: CodeInvalidArgument, Message: `events: field "plan_id": required`, Field: "plan_id"}
}

func sampleEnvelope() Envelope {
	data, _ := json.Marshal(sampleIncidentEvent())
	return Envelope{SpecVersion: SpecVersion, ID: "01936f8e-7c1a-7b2e-9f3d-000000000001", Source: SourceWatcher,
		Type: TypeIncidentDetected, Subject: sampleIncident().ID, Time: t0.Add(5 * time.Minute),
		DataContentType: ContentTypeJSON, SchemaVersion: SchemaVersion, Cluster: "prod-eu", Data: data}
}
