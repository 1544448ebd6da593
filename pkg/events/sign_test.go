package events

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func mustSigner(t *testing.T) *Signer {
	t.Helper()
	s, err := GenerateSigner()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSignedPlanVerifiesAfterAJSONRoundTrip(t *testing.T) {
	planner := mustSigner(t)
	p := samplePlan()
	planner.SignPlan(&p)
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var got Plan
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if err := VerifyPlan(got, []string{planner.PublicKey()}); err != nil {
		t.Fatalf("signed plan after a round trip: %v", err)
	}
	if err := got.Validate(); err != nil {
		t.Fatalf("signed plan does not validate: %v", err)
	}
	// The lifecycle fields change without re-signing.
	got.State, got.History = PlanExecuting, []string{"executor: claimed by decision x"}
	if err := VerifyPlan(got, []string{planner.PublicKey()}); err != nil {
		t.Fatalf("claimed plan: %v", err)
	}
}

// TestTamperedPlanIsRefused is the attack of issue 13: change what runs or
// what people are shown, recompute the (public) digest, keep the
// planner's signature. Every change must fail verification.
func TestTamperedPlanIsRefused(t *testing.T) {
	planner := mustSigner(t)
	trusted := []string{planner.PublicKey()}
	tamper := map[string]func(p *Plan){
		"patch": func(p *Plan) {
			p.Steps[1].Patch = json.RawMessage(`[{"op":"add","path":"/spec/template/spec/hostPID","value":true}]`)
		},
		"undo patch": func(p *Plan) { p.Steps[1].UndoPatch = json.RawMessage(`[{"op":"remove","path":"/spec/template"}]`) },
		"title":      func(p *Plan) { p.Steps[1].Title = "Harmless" },
		"kubectl":    func(p *Plan) { p.Steps[1].Kubectl = "kubectl get pods" },
		"risk":       func(p *Plan) { p.Risk, p.Steps[1].Risk = RiskNone, RiskNone },
		"expires_at": func(p *Plan) { p.ExpiresAt = p.ExpiresAt.Add(24 * time.Hour) },
		"target":     func(p *Plan) { p.Target.Name = "payments"; p.Steps[1].Target.Name = "payments" },
	}
	for name, mutate := range tamper {
		t.Run(name, func(t *testing.T) {
			p := samplePlan()
			planner.SignPlan(&p)
			mutate(&p)
			if err := VerifyPlan(p, trusted); err == nil || !errors.Is(err, ErrInvalid) {
				t.Fatalf("tampered plan with its old digest: err %v, want a digest mismatch", err)
			}
			p.Seal() // the attacker recomputes the digest
			err := VerifyPlan(p, trusted)
			if !errors.Is(err, ErrBadSignature) {
				t.Fatalf("tampered, resealed plan: err %v, want ErrBadSignature", err)
			}
		})
	}
}

func TestPlanSignedByAnUntrustedKeyIsRefused(t *testing.T) {
	planner, attacker := mustSigner(t), mustSigner(t)
	p := samplePlan()
	attacker.SignPlan(&p)
	if err := VerifyPlan(p, []string{planner.PublicKey()}); !errors.Is(err, ErrUntrustedKey) {
		t.Fatalf("err %v, want ErrUntrustedKey", err)
	}
	// Claiming the trusted key without its private half fails too.
	p.Signature.Key = planner.PublicKey()
	if err := VerifyPlan(p, []string{planner.PublicKey()}); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("err %v, want ErrBadSignature", err)
	}
	p.Signature = nil
	if err := VerifyPlan(p, []string{planner.PublicKey()}); !errors.Is(err, ErrUnsigned) {
		t.Fatalf("err %v, want ErrUnsigned", err)
	}
	if !errors.Is(ErrUnsigned, ErrSignature) || !errors.Is(ErrUntrustedKey, ErrSignature) || !errors.Is(ErrBadSignature, ErrSignature) {
		t.Error("signature errors must match ErrSignature")
	}
}

// TestKeyRotation: while both keys are trusted, plans of either verify;
// once the old key is dropped from the trust list, its plans are refused.
func TestKeyRotation(t *testing.T) {
	oldKey, newKey := mustSigner(t), mustSigner(t)
	byOld, byNew := samplePlan(), samplePlan()
	oldKey.SignPlan(&byOld)
	newKey.SignPlan(&byNew)
	both := Trust{Planners: []string{oldKey.PublicKey(), newKey.PublicKey()}}
	if err := both.VerifyPlan(byOld); err != nil {
		t.Errorf("old key during rotation: %v", err)
	}
	if err := both.VerifyPlan(byNew); err != nil {
		t.Errorf("new key during rotation: %v", err)
	}
	after := Trust{Planners: []string{newKey.PublicKey()}}
	if err := after.VerifyPlan(byOld); !errors.Is(err, ErrUntrustedKey) {
		t.Errorf("old key after rotation: %v, want ErrUntrustedKey", err)
	}
	if err := after.VerifyPlan(byNew); err != nil {
		t.Errorf("new key after rotation: %v", err)
	}
}

func TestDecisionSignaturePerChannel(t *testing.T) {
	gateway, slack, planner := mustSigner(t), mustSigner(t), mustSigner(t)
	var trust Trust
	trust.Add([]string{gateway.PublicKey()}, ViaMCP, ViaMCPElicitation, ViaREST)
	trust.Add([]string{slack.PublicKey()}, ViaSlack)
	trust.Planners = []string{planner.PublicKey()}
	if err := trust.Validate(); err != nil {
		t.Fatal(err)
	}

	d := sampleDecision()
	gateway.SignDecision(&d)
	b, _ := json.Marshal(d)
	var got Decision
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if err := trust.VerifyDecision(got); err != nil {
		t.Fatalf("gateway decision via mcp after a round trip: %v", err)
	}

	for name, mutate := range map[string]func(d *Decision){
		"decided_by": func(d *Decision) { d.DecidedBy = "mallory" },
		"digest":     func(d *Decision) { d.Digest = DigestPrefix + strings.Repeat("0", 64) },
		"plan":       func(d *Decision) { d.PlanID = testPlan2 },
		"decision":   func(d *Decision) { d.Decision = DecisionRejected },
		"at":         func(d *Decision) { d.At = d.At.Add(time.Hour) },
		"reason":     func(d *Decision) { d.Reason = "other" },
	} {
		c := got
		mutate(&c)
		if err := trust.VerifyDecision(c); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s changed after signing: err %v, want ErrBadSignature", name, err)
		}
	}

	// The gateway's key is not trusted for Slack: a decision it signs
	// claiming to come from Slack is refused, and so is one via auto.
	for _, via := range []Via{ViaSlack, ViaAuto, ViaCLI, ViaWebhook} {
		c := sampleDecision()
		c.Via = via
		gateway.SignDecision(&c)
		if err := trust.VerifyDecision(c); !errors.Is(err, ErrUntrustedKey) {
			t.Errorf("gateway key via %s: err %v, want ErrUntrustedKey", via, err)
		}
	}
	// A planner signature is no decision signature, even from a key
	// trusted for the channel (domain separation).
	p := samplePlan()
	gateway.SignPlan(&p)
	c := sampleDecision()
	c.Signature = p.Signature
	if err := trust.VerifyDecision(c); !errors.Is(err, ErrBadSignature) {
		t.Errorf("plan signature as a decision signature: err %v", err)
	}
	c.Signature = nil
	if err := trust.VerifyDecision(c); !errors.Is(err, ErrUnsigned) {
		t.Errorf("unsigned decision: err %v", err)
	}
}

func TestSignerPEMAndPublicKeyParsing(t *testing.T) {
	s := mustSigner(t)
	again, err := ParseSignerPEM(s.MarshalPEM())
	if err != nil {
		t.Fatal(err)
	}
	if again.PublicKey() != s.PublicKey() {
		t.Fatalf("PEM round trip changed the key: %s != %s", again.PublicKey(), s.PublicKey())
	}
	if _, err := ParsePublicKey(s.PublicKey()); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "ed25519:", "ed25519:!!!", "rsa:AAAA", "ed25519:AAAA"} {
		if _, err := ParsePublicKey(bad); err == nil {
			t.Errorf("ParsePublicKey(%q) accepted", bad)
		}
	}
	if _, err := ParseSignerPEM([]byte("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")); err == nil {
		t.Error("a public key PEM parsed as a signer")
	}
	bad := Trust{Planners: []string{"ed25519:short"}}
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "planners[0]") {
		t.Errorf("bad trust key: %v", err)
	}
}

// TestSignedDecisionMsgIDSeparatesSigners: one channel's repeated decision
// is one message; another key's decision on the same plan and digest is
// another message, so a forged decision published first does not make the
// genuine one a duplicate.
func TestSignedDecisionMsgIDSeparatesSigners(t *testing.T) {
	a, b := mustSigner(t), mustSigner(t)
	d1, d2, d3 := sampleDecision(), sampleDecision(), sampleDecision()
	d2.At = d2.At.Add(time.Second) // a second click of the same person
	a.SignDecision(&d1)
	a.SignDecision(&d2)
	b.SignDecision(&d3)
	if SignedDecisionMsgID(d1) != SignedDecisionMsgID(d2) {
		t.Error("a repeated decision of one channel has two message ids")
	}
	if SignedDecisionMsgID(d1) == SignedDecisionMsgID(d3) {
		t.Error("decisions of two keys share a message id")
	}
	if !strings.HasPrefix(SignedDecisionMsgID(d1), DecisionMsgID(d1.PlanID, d1.Digest, d1.Decision)) {
		t.Error("the signed message id does not extend DecisionMsgID")
	}
}
