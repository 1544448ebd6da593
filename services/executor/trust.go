package executor

import (
	"fmt"
	"slices"

	"github.com/kaar-dev/kaar/pkg/events"
)

// trustFor is the executor's trust: the configured keys, with via auto
// trusted only when auto-approval is on, and then only for the executor's
// own key (and other executors' keys configured for auto). With
// auto-approval off no key may sign via auto: a decision that claims it is
// refused whoever signed it.
func trustFor(cfg Config, t events.Trust, signer *events.Signer) (events.Trust, error) {
	if err := t.Validate(); err != nil {
		return t, fmt.Errorf("executor: Deps.Trust: %w", err)
	}
	if len(t.Planners) == 0 {
		return t, fmt.Errorf("executor: Deps.Trust has no planner key: it would refuse every plan (signing.trusted_planners or the planner's key in signing.key_dir): %w", events.ErrInvalid)
	}
	out := events.Trust{Planners: slices.Clone(t.Planners), Channels: map[events.Via][]string{}}
	for via, keys := range t.Channels {
		if via == events.ViaAuto {
			continue
		}
		out.Channels[via] = slices.Clone(keys)
	}
	if cfg.AutoApprove {
		if signer == nil {
			return t, fmt.Errorf("executor: auto-approval (remediation.auto_approve) needs Deps.Signer to sign its decisions: %w", events.ErrInvalid)
		}
		out.Add(append([]string{signer.PublicKey()}, t.Channels[events.ViaAuto]...), events.ViaAuto)
	}
	return out, nil
}

// untrustedDecision refuses a decision its channel's keys did not sign,
// and any via auto when auto-approval is off.
func (s *Service) untrustedDecision(d events.Decision) *refusal {
	if d.Via == events.ViaAuto && !s.cfg.AutoApprove {
		return refuse(events.RefusalUntrusted, "decision on plan %s claims via auto, but auto-approval (remediation.auto_approve) is off on this executor", d.PlanID)
	}
	if err := s.trust.VerifyDecision(d); err != nil {
		return refuse(events.RefusalUntrusted, "%v", err)
	}
	return nil
}

// untrustedPlan refuses a stored plan no trusted planner key signed, or
// whose content changed after signing.
func (s *Service) untrustedPlan(p events.Plan) *refusal {
	if err := s.trust.VerifyPlan(p); err != nil {
		return refuse(events.RefusalUntrusted, "plan %s is not signed by a trusted planner: %v", p.ID, err)
	}
	return nil
}
