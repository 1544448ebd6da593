package mcpgateway

import (
	"net/http"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/bus"
)

// The kill switch is an admin's tool: it is stored on the bus naming the
// authenticated user, and an approver cannot flip it.
func TestKillSwitchNeedsAnAdminAndIsStoredOnTheBus(t *testing.T) {
	e := newEnv(t, withTokens)
	if r := e.restAs(approverToken, "POST", "/mcp/v1/invoke/pause_remediation", `{"reason":"freeze"}`); r.Status != http.StatusForbidden {
		t.Fatalf("approver paused remediation: %d %s", r.Status, r.Body)
	}
	if r := e.restAs(adminToken, "POST", "/mcp/v1/invoke/pause_remediation", `{}`); r.Status != http.StatusBadRequest {
		t.Fatalf("pause without a reason: %d %s, want 400 naming reason", r.Status, r.Body)
	}
	out := restResult[PauseOut](t, e.restAs(adminToken, "POST", "/mcp/v1/invoke/pause_remediation", `{"reason":"change freeze"}`))
	if !out.Paused || out.By != "root" || out.Via != "rest" {
		t.Fatalf("pause answer %+v", out)
	}
	got, err := bus.GetPause(e.ctx, e.js, testCluster)
	if err != nil || !got.Paused || got.By != "root" || got.Reason != "change freeze" || time.Since(got.At) > time.Minute {
		t.Fatalf("stored switch %+v (%v)", got, err)
	}
	restResult[PauseOut](t, e.restAs(adminToken, "POST", "/mcp/v1/invoke/resume_remediation", `{}`))
	if got, err := bus.GetPause(e.ctx, e.js, testCluster); err != nil || got.Paused {
		t.Fatalf("after resume: %+v (%v)", got, err)
	}
}
