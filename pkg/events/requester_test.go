package events

import (
	"errors"
	"strings"
	"testing"
)

// Who asked for a plan is part of what is sealed: changing it changes the
// digest, so require_distinct_approver cannot be evaded by rewriting it.
func TestRequestedByIsSealedAndValidated(t *testing.T) {
	p := samplePlan()
	p.RequestedBy = "alice"
	p.Seal()
	if err := p.Validate(); err != nil {
		t.Fatalf("plan requested by alice: %v", err)
	}
	q := p
	q.RequestedBy = "bob"
	if err := q.Validate(); err == nil || !strings.Contains(err.Error(), "digest") {
		t.Errorf("requested_by changed after sealing: %v", err)
	}
	q.Seal()
	if q.Digest == p.Digest {
		t.Error("requested_by is not covered by the digest")
	}
	for _, bad := range []string{"eve\nadmin", strings.Repeat("x", MaxIdentityLen+1)} {
		r := samplePlan()
		r.RequestedBy = bad
		r.Seal()
		err := r.Validate()
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "requested_by") {
			t.Errorf("requested_by %q: %v", bad, err)
		}
		req := PlanRequest{Namespace: "shop", Kind: "Deployment", Name: "web", RequestedBy: bad}
		if err := req.Validate(); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "requested_by") {
			t.Errorf("plan request requested_by %q: %v", bad, err)
		}
	}
	if err := (PlanRequest{Namespace: "shop", Kind: "Deployment", Name: "web", RequestedBy: "mcp-client"}).Validate(); err != nil {
		t.Errorf("plan request: %v", err)
	}
}
