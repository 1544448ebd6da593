package executor

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/kaar-dev/kaar/pkg/config"
	"github.com/kaar-dev/kaar/pkg/events"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func TestRewriteGenerationTest(t *testing.T) {
	in := `[{"op":"test","path":"/metadata/generation","value":2},` +
		`{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"nginx:1.27"},` +
		`{"op":"test","path":"/spec/replicas","value":2}]`
	out, err := rewriteGenerationTest([]byte(in), 3)
	if err != nil {
		t.Fatal(err)
	}
	var ops []map[string]any
	if err := json.Unmarshal(out, &ops); err != nil {
		t.Fatal(err)
	}
	if len(ops) != 3 {
		t.Fatalf("ops %v", ops)
	}
	if ops[0]["value"] != float64(3) {
		t.Errorf("generation test value %v, want 3", ops[0]["value"])
	}
	if ops[1]["value"] != "nginx:1.27" || ops[1]["op"] != "replace" {
		t.Errorf("other op changed: %v", ops[1])
	}
	if ops[2]["value"] != float64(2) {
		t.Errorf("test of another path changed: %v", ops[2])
	}
	if _, err := rewriteGenerationTest([]byte(`{"spec":{}}`), 3); err == nil {
		t.Error("a merge patch was accepted as a JSON patch")
	}
}

func TestClassifyAPIErrors(t *testing.T) {
	gr := schema.GroupResource{Group: "apps", Resource: "deployments"}
	testFailed := apierrors.NewGenericServerResponse(422, "", schema.GroupResource{}, "",
		"testing value /metadata/generation failed: test failed", 0, true)
	tests := []struct {
		name      string
		err       error
		retryable bool
		testFail  bool
	}{
		{"generation test failed", testFailed, false, true},
		{"conflict", apierrors.NewConflict(gr, "web", errors.New("the object has been modified")), false, false},
		{"forbidden", apierrors.NewForbidden(gr, "web", errors.New("RBAC")), false, false},
		{"not found", apierrors.NewNotFound(gr, "web"), false, false},
		{"invalid spec", apierrors.NewInvalid(schema.GroupKind{Group: "apps", Kind: "Deployment"}, "web", nil), false, false},
		{"throttled", apierrors.NewTooManyRequests("slow down", 1), true, false},
		{"server timeout", apierrors.NewServerTimeout(gr, "patch", 1), true, false},
		{"unavailable", apierrors.NewServiceUnavailable("etcd"), true, false},
		{"internal", apierrors.NewInternalError(errors.New("boom")), true, false},
		{"connection refused", fmt.Errorf("patch: %w", &net.OpError{Op: "dial", Err: errors.New("connection refused")}), true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := retryable(tt.err); got != tt.retryable {
				t.Errorf("retryable = %t, want %t", got, tt.retryable)
			}
			var perm *backoff.PermanentError
			if got := errors.As(classify(tt.err), &perm); got == tt.retryable {
				t.Errorf("classify permanent = %t, want %t", got, !tt.retryable)
			}
			if got := isTestFailure(tt.err); got != tt.testFail {
				t.Errorf("isTestFailure = %t, want %t", got, tt.testFail)
			}
		})
	}
	if s := apiSummary(apierrors.NewInvalid(schema.GroupKind{Group: "apps", Kind: "Deployment"}, "web", nil)); s != `422 Invalid: Deployment.apps "web" is invalid` {
		t.Errorf("apiSummary: %q", s)
	}
}

func TestClaimNoteIdentifiesTheDecision(t *testing.T) {
	d := events.Decision{Decision: events.DecisionApproved, DecidedBy: "alice", Via: events.ViaCLI}
	p := events.Plan{History: []string{"planner: rollback to revision 1", claimNote("0192-aaaa", d)}}
	if !claimedBy(p, "0192-aaaa") {
		t.Error("claimedBy does not find the claiming decision")
	}
	if claimedBy(p, "0192-aaa") {
		t.Error("claimedBy matched a prefix of the decision id")
	}
	if claimedBy(events.Plan{}, "0192-aaaa") {
		t.Error("claimedBy on a plan without notes")
	}
}

func TestConfigFromDefaults(t *testing.T) {
	c := Config{Cluster: "prod", VerifyTimeout: 2 * time.Second}.withDefaults()
	if c.VerifyStable >= c.VerifyTimeout {
		t.Errorf("VerifyStable %s not below VerifyTimeout %s", c.VerifyStable, c.VerifyTimeout)
	}
	if c.Workers != DefaultWorkers || c.StepTimeout != DefaultStepTimeout {
		t.Errorf("defaults not applied: %+v", c)
	}
	full := config.Default()
	full.Remediation.Paused = true
	full.Kubernetes.ClusterName = "prod"
	got := ConfigFrom(full)
	if got.Cluster != "prod" || !got.Paused || got.VerifyTimeout != 3*time.Minute ||
		!slices.Equal(got.ProtectedNamespaces, full.Policy.ProtectedNamespaces) || got.Validate() != nil {
		t.Errorf("ConfigFrom(default config) = %+v", got)
	}
	full.Remediation.MaxPods = 3
	if got := ConfigFrom(full); got.MaxPods != 3 {
		t.Errorf("ConfigFrom: MaxPods %d, want remediation.max_pods 3", got.MaxPods)
	}
	if want := config.Default().Remediation.MaxPods; c.MaxPods != want {
		t.Errorf("MaxPods default %d, want remediation.max_pods's default %d", c.MaxPods, want)
	}
	if err := (Config{Cluster: "Bad.Name"}).withDefaults().Validate(); !errors.Is(err, events.ErrInvalid) {
		t.Errorf("bad cluster: %v", err)
	}
}
