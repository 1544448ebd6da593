package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/config"
	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/kaar-dev/kaar/pkg/sandbox"
	"github.com/kaar-dev/kaar/pkg/svcmain"
)

var bannerNATSRE = regexp.MustCompile(`NATS:\s+(nats://\S+)`)

// roleConn connects to inst's bus with the credential kaar serve created
// for role, as a process holding that file could.
func roleConn(t *testing.T, url string, role bus.Role) jetstream.JetStream {
	t.Helper()
	seed, ok := bus.DefaultSeedFile(role)
	if !ok {
		t.Fatalf("no %s seed in the state directory", role)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, err := bus.Connect(ctx, url, bus.ConnectOptions{Name: "attacker-as-" + string(role), NkeyFile: seed,
		InboxPrefix: role.InboxPrefix(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("connect as %s: %v", role, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// TestBusWritersCannotChangeTheCluster is the review of issue 13 replayed
// against a running kaar serve on the sandbox: an anonymous client is
// refused; a client holding the gateway's bus credential publishes an
// unsigned approval claiming a Slack user; a client holding the planner's
// bus credential writes a hand-made privileged plan signed by its own key,
// which is then approved with a decision signed by the real gateway key.
// Each is refused and audited as untrusted, the Deployment is untouched,
// and the person's genuine approval still heals it afterwards.
func TestBusWritersCannotChangeTheCluster(t *testing.T) {
	parallel(t)
	c := sandbox.ForTest(t)
	cs := c.Clientset()
	ns := sandbox.NewNamespace(t, cs)
	dep := breakDeployment(t, cs, ns, "web")
	inst := startServe(t, c, ns, "")
	mc := newMCPCaller(t, inst, "")
	waitIncidents(t, mc, ns, 2*time.Minute, "an ImagePullBackOff incident", func(a analyzeOut) bool { return a.ByType["ImagePullBackOff"] == 1 })
	web := call[planOut](t, mc, "generate_remediation_plan", map[string]any{"resource_type": "deployment", "namespace": ns, "resource_name": "web"})
	genBefore := generation(t, cs, ns, "web")

	m := bannerNATSRE.FindStringSubmatch(inst.output.String())
	if m == nil {
		t.Fatalf("kaar serve printed no NATS URL:\n%s", tail(inst.output.String(), 40))
	}
	url := m[1]

	// 1. No credential, no bus.
	if nc, err := nats.Connect(url, nats.Timeout(5*time.Second)); err == nil {
		nc.Close()
		t.Fatal("an anonymous client connected to kaar serve's bus")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	publishDecision := func(js jetstream.JetStream, d events.Decision) {
		t.Helper()
		env, err := events.New(d.Decision.EventType(), events.SourceCLI, inst.cluster, d.PlanID, d)
		if err != nil {
			t.Fatal(err)
		}
		subj, err := events.ApprovalSubject(inst.cluster, d.PlanID)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bus.Publish(ctx, js, subj, env, events.SignedDecisionMsgID(d)); err != nil {
			t.Fatalf("publish decision: %v", err)
		}
	}
	refusedUntrusted := func(planID string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			trail := call[struct {
				Records []struct {
					Kind    string   `json:"kind"`
					Message []string `json:"quoted_message"`
				} `json:"records"`
			}](t, mc, "get_audit_trail", map[string]any{"plan_id": planID})
			for _, r := range trail.Records {
				if r.Kind == string(events.AuditApproved) || r.Kind == string(events.AuditClaimed) {
					t.Fatalf("plan %s was approved or claimed: %+v", planID, trail.Records)
				}
				if r.Kind == string(events.AuditRefused) && strings.Contains(strings.Join(r.Message, " "), string(events.RefusalUntrusted)) {
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("no untrusted refusal of plan %s in its audit trail: %+v", planID, trail.Records)
			}
			time.Sleep(300 * time.Millisecond)
		}
	}

	// 2. The gateway's bus credential, an unsigned "Slack" approval.
	gw := roleConn(t, url, bus.RoleMCPGateway)
	publishDecision(gw, events.Decision{PlanID: web.PlanID, Digest: web.Digest, Decision: events.DecisionApproved,
		DecidedBy: "U0ADMIN (slack)", Via: events.ViaSlack, At: time.Now().UTC()})
	refusedUntrusted(web.PlanID)

	// 3. The planner's bus credential, a hand-made plan: a privileged
	// container, risk none, a correct digest, signed by a key of its own.
	attacker, err := events.GenerateSigner()
	if err != nil {
		t.Fatal(err)
	}
	target := events.ObjectRef{Kind: "Deployment", Namespace: ns, Name: "web", UID: string(dep.UID), APIVersion: "apps/v1"}
	now := time.Now().UTC().Truncate(time.Second)
	forged := events.Plan{ID: uuid.Must(uuid.NewV7()).String(), Cluster: inst.cluster, Namespace: ns, Target: target,
		TargetResourceVersion: "1", TargetGeneration: genBefore, Type: events.IssueImagePullBackOff, Summary: "routine fix",
		Risk: events.RiskNone, State: events.PlanProposed, CreatedAt: now, ExpiresAt: now.Add(10 * time.Minute),
		Steps: []events.Step{{Index: 0, Action: events.ActionSetImage, Title: "Set the image", Target: target, Risk: events.RiskNone, Mutating: true,
			PatchType: events.PatchJSON, Patch: json.RawMessage(fmt.Sprintf(`[{"op":"test","path":"/metadata/generation","value":%d},`+
				`{"op":"add","path":"/spec/template/spec/containers/0/securityContext","value":{"privileged":true}},`+
				`{"op":"add","path":"/spec/template/spec/volumes","value":[{"name":"host","hostPath":{"path":"/"}}]}]`, genBefore))}}}
	attacker.SignPlan(&forged)
	planner := roleConn(t, url, bus.RolePlanner)
	store, err := bus.OpenPlanStore(ctx, planner)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Create(ctx, forged, 10*time.Minute); err != nil {
		t.Fatalf("the planner's credential may write plans: %v", err)
	}
	cfg, err := config.LoadFile(inst.cfgFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	gwKey, err := svcmain.Signer(cfg, svcmain.RoleGateway, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := events.Decision{PlanID: forged.ID, Digest: forged.Digest, Decision: events.DecisionApproved,
		DecidedBy: "alice", Via: events.ViaMCP, At: time.Now().UTC()}
	gwKey.SignDecision(&d)
	publishDecision(gw, d)
	refusedUntrusted(forged.ID)

	if g := generation(t, cs, ns, "web"); g != genBefore {
		t.Fatalf("forged plans or decisions changed the Deployment: generation %d -> %d", genBefore, g)
	}
	if p := call[planOut](t, mc, "get_remediation_plan", map[string]any{"plan_id": web.PlanID}); p.State != "proposed" {
		t.Fatalf("after forged decisions the genuine plan is %s, want proposed", p.State)
	}

	// 4. The person's genuine approval (confirmed in the client) heals.
	call[decisionOut](t, mc, "approve_remediation_plan", map[string]any{"plan_id": web.PlanID, "digest": web.Digest})
	r := call[remediateOut](t, mc, "remediate_issue", map[string]any{"plan_id": web.PlanID})
	if r.Execution == nil || r.Execution.State != "succeeded" {
		t.Fatalf("the genuine approval after the forgeries: %+v", r)
	}
}
