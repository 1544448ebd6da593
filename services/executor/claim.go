package executor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/nats-io/nats.go/jetstream"
)

// claimNotePrefix starts the note the executor adds to a plan when it
// claims it. The note names the decision envelope, so a redelivery of the
// same decision recognises its own claim (and is a no-op) while another
// decision for the same plan is refused as already executed. The note is
// written by the claim's compare-and-set itself: there is no moment when
// the plan is claimed and the claimant unknown.
const claimNotePrefix = "executor: claimed by decision "

func claimNote(envID string, d events.Decision) string {
	return fmt.Sprintf("%s%s (%s by %s via %s)", claimNotePrefix, envID, d.Decision, d.DecidedBy, d.Via)
}

// claimedBy reports whether p was claimed by the decision envelope envID.
func claimedBy(p events.Plan, envID string) bool {
	return slices.ContainsFunc(p.History, func(n string) bool {
		return strings.HasPrefix(n, claimNotePrefix+envID+" ")
	})
}

// precheck decides whether an approval may start p now. It returns nil
// or the refusal, checked in this order: already executed, expired,
// digest mismatch, not approvable (state, cluster, diagnostic-only,
// a step outside the action catalogue or in a protected namespace:
// validatePlanSteps), paused.
func (s *Service) precheck(p events.Plan, d events.Decision) *refusal {
	now := s.now()
	switch p.State {
	case events.PlanExecuting, events.PlanSucceeded, events.PlanFailed:
		return refuse(events.RefusalAlreadyExecuted, "plan %s is %s", p.ID, p.State)
	}
	if p.State == events.PlanExpired || !now.Before(p.ExpiresAt) {
		return refuse(events.RefusalExpired, "plan %s expired at %s (now %s)", p.ID, p.ExpiresAt.UTC().Format("2006-01-02T15:04:05Z"), now.UTC().Format("2006-01-02T15:04:05Z"))
	}
	if d.Digest != p.Digest {
		return refuse(events.RefusalDigestMismatch, "approval names digest %s, plan %s has %s", d.Digest, p.ID, p.Digest)
	}
	if p.Cluster != s.cfg.Cluster {
		return refuse(events.RefusalNotApproved, "plan %s is for cluster %q, this executor serves %q", p.ID, p.Cluster, s.cfg.Cluster)
	}
	// approved is accepted as well as proposed: the state machine allows
	// approved -> executing and nothing else would take the plan further.
	if p.State != events.PlanProposed && p.State != events.PlanApproved {
		return refuse(events.RefusalNotApproved, "plan %s is %s, not proposed", p.ID, p.State)
	}
	if p.DiagnosticOnly || !p.Mutating() {
		return refuse(events.RefusalNotApproved, "plan %s is diagnostic only: nothing to execute", p.ID)
	}
	// Every step against the action catalogue (protected namespaces,
	// right object, guarded JSON patch, allowed paths, max_pods),
	// whatever the plan says about itself.
	if r := validatePlanSteps(p, s.cfg.catalogue()); r != nil {
		return r
	}
	if r := s.distinctApprover(p, d); r != nil {
		return r
	}
	if s.cfg.Paused {
		return refuse(events.RefusalPaused, "remediation is paused (remediation.paused): plan %s not executed", p.ID)
	}
	if ps := s.pause.Load(); ps != nil && ps.Paused {
		why := ""
		if ps.Reason != "" {
			why = ": " + ps.Reason
		}
		return refuse(events.RefusalPaused, "remediation is paused by %s via %s since %s%s: plan %s not executed",
			ps.By, ps.Via, ps.At.UTC().Format(time.RFC3339), why, p.ID)
	}
	return nil
}

// approve runs an approval: load, check, claim, execute, verify, record.
// Each step of decideOnce either finishes the approval or reads the plan
// again and decides on what is there now.
func (s *Service) approve(ctx context.Context, log *slog.Logger, env events.Envelope, d events.Decision) error {
	if r := s.untrustedDecision(d); r != nil {
		s.refuseDecision(ctx, log, env.ID, nil, d, r)
		return nil
	}
	a := &approval{log: log, envID: env.ID, d: d}
	defer func() {
		if a.release != nil {
			a.release()
		}
	}()
	n, err := s.loadApproved(ctx, a)
	for n != stop {
		n, err = s.decideOnce(ctx, a)
	}
	return err
}

// approval is one approval being decided: the decision, and the plan as
// last read with its revision.
type approval struct {
	log   *slog.Logger
	envID string
	d     events.Decision
	p     events.Plan
	rev   uint64
	// release frees the execution slot once one is taken.
	release func()
}

// next says how an approval goes on after one of its steps.
type next int

const (
	proceed next = iota // on to the next step
	again               // the plan was read again: decide anew
	stop                // the approval is finished (approve returns)
)

// refuseApproval refuses the approval; p is nil when the plan could not
// be loaded.
func (s *Service) refuseApproval(ctx context.Context, a *approval, p *events.Plan, r *refusal) (next, error) {
	s.refuseDecision(ctx, a.log, a.envID, p, a.d, r)
	return stop, nil
}

// loadApproved reads the plan the decision approves; a plan that is gone
// or invalid is refused.
func (s *Service) loadApproved(ctx context.Context, a *approval) (next, error) {
	p, rev, err := s.plans.Get(ctx, a.d.PlanID)
	switch {
	case errors.Is(err, bus.ErrPlanNotFound):
		return s.refuseApproval(ctx, a, nil, refuse(events.RefusalExpired, "plan %s not found: its approval window passed or it never existed", a.d.PlanID))
	case errors.Is(err, events.ErrInvalid):
		return s.refuseApproval(ctx, a, nil, refuse(events.RefusalNotApproved, "stored plan %s is invalid: %v", a.d.PlanID, err))
	case err != nil:
		return stop, transient(fmt.Errorf("load plan %s: %w", a.d.PlanID, err))
	}
	a.p, a.rev = p, rev
	return proceed, nil
}

// reread reads the plan again after it may have changed; a plan that is
// gone by now expired "when".
func (s *Service) reread(ctx context.Context, a *approval, when string) (next, error) {
	p, rev, err := s.plans.Get(ctx, a.d.PlanID)
	switch {
	case errors.Is(err, bus.ErrPlanNotFound):
		return s.refuseApproval(ctx, a, nil, refuse(events.RefusalExpired, "plan %s expired %s", a.d.PlanID, when))
	case err != nil:
		return stop, transient(fmt.Errorf("re-read plan %s: %w", a.d.PlanID, err))
	}
	a.p, a.rev = p, rev
	return again, nil
}

// decideOnce decides on the plan as last read: refuse it, handle a claim
// this decision already made, take an execution slot, claim and run it.
func (s *Service) decideOnce(ctx context.Context, a *approval) (next, error) {
	// Every read of the plan is checked: the bus may hold a forged or
	// altered plan at any time, also between a claim and a resume.
	if r := s.untrustedPlan(a.p); r != nil {
		return s.refuseApproval(ctx, a, &a.p, r)
	}
	if claimedBy(a.p, a.envID) {
		return stop, s.claimedAlready(ctx, a)
	}
	if r := s.precheck(a.p, a.d); r != nil {
		return s.refuseApproval(ctx, a, &a.p, r)
	}
	if a.release == nil {
		if n, err := s.takeSlot(ctx, a); n != proceed {
			return n, err
		}
	}
	return s.claimAndRun(ctx, a)
}

// claimedAlready handles a decision whose claim note the plan carries: a
// redelivery. It resumes an execution whose executor stopped, waits for
// one this process runs, and otherwise does nothing.
func (s *Service) claimedAlready(ctx context.Context, a *approval) error {
	p, log := a.p, a.log
	// A claim note and the state are outside the signed digest: the
	// decision that claims the plan must still name this plan's digest
	// and cluster before anything resumes.
	if a.d.Digest != p.Digest || p.Cluster != s.cfg.Cluster {
		s.refuseDecision(ctx, log, a.envID, &p, a.d, refuse(events.RefusalDigestMismatch,
			"decision %s names digest %s of cluster %s; claimed plan %s has %s of cluster %s", a.envID, a.d.Digest, s.cfg.Cluster, p.ID, p.Digest, p.Cluster))
		return nil
	}
	if p.State != events.PlanExecuting {
		log.Info("plan already claimed by this decision: duplicate delivery, nothing to do", slog.String("state", string(p.State)))
		return nil
	}
	// Redelivered while the plan is still executing: the executor that
	// claimed it stopped signalling progress (it crashed) unless its
	// execution record is final.
	if done := s.runningHere(p.ID); done != nil {
		// This process runs it: the bus was out for longer than the ack
		// wait. Hold the redelivery until the execution ends.
		log.Info("decision redelivered while this executor runs the plan: waiting for the execution")
		select {
		case <-done:
		case <-ctx.Done():
		}
		return nil
	}
	exec, err := s.getExecution(ctx, p.ID)
	if err != nil {
		return transient(fmt.Errorf("read execution of plan %s: %w", p.ID, err))
	}
	return s.resume(ctx, log, p, a.rev, exec)
}

// takeSlot waits for an execution slot: at most MaxPerNamespace
// executions at once in a namespace. After a wait the plan is read again,
// to decide on it as it is now (its window may have passed meanwhile).
func (s *Service) takeSlot(ctx context.Context, a *approval) (next, error) {
	release, waited := s.slots.acquire(ctx, a.p.Namespace)
	if release == nil {
		return stop, transient(fmt.Errorf("wait for an execution slot in namespace %s: %w", a.p.Namespace, ctx.Err()))
	}
	a.release = release
	if !waited {
		return proceed, nil
	}
	a.log.Info("waited for an execution slot in the namespace", slog.String("namespace", a.p.Namespace), slog.Int("max_per_namespace", s.cfg.MaxPerNamespace))
	return s.reread(ctx, a, "while waiting for an execution slot")
}

// claimAndRun claims the plan (compare-and-set of its state and claim
// note) and runs it. When someone else changed the plan first (another
// executor claimed it, or the planner superseded it), it reads the plan
// again to decide on what is there now.
func (s *Service) claimAndRun(ctx context.Context, a *approval) (next, error) {
	claimed := a.p
	claimed.State = events.PlanExecuting
	claimed.History = append(slices.Clone(a.p.History), claimNote(a.envID, a.d))
	newRev, err := s.plans.Update(ctx, claimed, a.rev)
	switch {
	case err == nil:
		s.runClaimed(ctx, a, claimed, newRev)
		return stop, nil
	case errors.Is(err, bus.ErrRevisionMismatch):
		a.log.Info("plan changed during the claim: re-reading", slog.Uint64("revision", a.rev))
		return s.reread(ctx, a, "during the claim")
	case errors.Is(err, bus.ErrPlanNotFound):
		return s.refuseApproval(ctx, a, &a.p, refuse(events.RefusalExpired, "plan %s expired before it could be claimed", a.d.PlanID))
	default:
		return stop, transient(fmt.Errorf("claim plan %s: %w", a.d.PlanID, err))
	}
}

// runClaimed records the approval and the claim, then executes the
// claimed plan (revision rev), tracked as running in this process.
func (s *Service) runClaimed(ctx context.Context, a *approval, claimed events.Plan, rev uint64) {
	p, d := a.p, a.d
	s.metrics.claims.Inc()
	a.log.Info("plan claimed", slog.Uint64("revision", rev))
	s.audit(ctx, auditEntry{Kind: events.AuditApproved, PlanID: p.ID, Digest: p.Digest, Actor: d.DecidedBy, Via: d.Via,
		Message: fmt.Sprintf("approved by %s via %s", d.DecidedBy, d.Via), Data: d, DecisionID: a.envID})
	s.audit(ctx, auditEntry{Kind: events.AuditClaimed, PlanID: p.ID, Digest: p.Digest,
		Message: fmt.Sprintf("claimed plan %s (%s) for execution", p.ID, p.Summary), Data: claimed, DecisionID: a.envID})
	done := s.track(p.ID)
	defer done()
	s.failpoint("claimed")
	s.execute(ctx, a.log, claimed, rev)
}

// refuseDecision records a refusal: a refused audit record, an execution
// record in state refused (unless the plan has a real execution record,
// which is never overwritten) and the metrics. p is nil when the plan
// could not be loaded.
func (s *Service) refuseDecision(ctx context.Context, log *slog.Logger, envID string, p *events.Plan, d events.Decision, r *refusal) {
	log.Warn("approval refused", slog.String("reason", string(r.Reason)), slog.String("detail", r.Message))
	digest := d.Digest
	if p != nil {
		digest = p.Digest
	}
	now := s.now().UTC()
	exec := &events.Execution{PlanID: d.PlanID, Digest: digest, State: events.ExecutionRefused,
		StartedAt: now, FinishedAt: now, Error: r.Message, RefusalReason: r.Reason}
	// An untrusted decision or plan leaves no execution record: it must
	// not mark a real plan refused on a forger's word (the audit record
	// says what happened).
	if r.Reason != events.RefusalAlreadyExecuted && r.Reason != events.RefusalUntrusted {
		s.storeRefusal(ctx, exec)
	}
	dup := s.audit(ctx, auditEntry{Kind: events.AuditRefused, PlanID: d.PlanID, Digest: digest, Actor: Actor, Via: d.Via,
		Message: fmt.Sprintf("refused %s by %s: %s: %s", d.Decision, d.DecidedBy, r.Reason, r.Message), Data: exec, DecisionID: envID})
	if !dup { // a redelivered decision refused again is counted once
		s.metrics.refusals.WithLabelValues(string(r.Reason)).Inc()
		s.metrics.executions.WithLabelValues(outcomeRefused).Inc()
	}
}

// reject marks a proposed plan rejected (compare-and-set). A rejection of
// a plan that is gone, already decided or executing changes nothing.
func (s *Service) reject(ctx context.Context, log *slog.Logger, d events.Decision) error {
	if r := s.untrustedDecision(d); r != nil {
		log.Warn("rejection refused", slog.String("reason", string(r.Reason)), slog.String("detail", r.Message))
		s.metrics.refusals.WithLabelValues(string(r.Reason)).Inc()
		s.audit(ctx, auditEntry{Kind: events.AuditRefused, PlanID: d.PlanID, Digest: d.Digest, Actor: Actor, Via: d.Via,
			Message: fmt.Sprintf("refused the rejection by %s: %s: %s", d.DecidedBy, r.Reason, r.Message), Data: d})
		return nil
	}
	for range 5 {
		p, rev, err := s.plans.Get(ctx, d.PlanID)
		switch {
		case errors.Is(err, bus.ErrPlanNotFound):
			log.Info("rejection of a plan that no longer exists: nothing to do")
			return nil
		case errors.Is(err, events.ErrInvalid):
			log.Warn("rejection of an invalid stored plan: nothing to do", slog.Any("error", err))
			return nil
		case err != nil:
			return transient(fmt.Errorf("load plan %s: %w", d.PlanID, err))
		}
		if p.State != events.PlanProposed && p.State != events.PlanApproved {
			log.Info("rejection of a plan that is no longer proposed: nothing to do", slog.String("state", string(p.State)))
			return nil
		}
		if d.Digest != p.Digest {
			log.Warn("rejection names another digest: ignored", slog.String("digest", d.Digest), slog.String("plan_digest", p.Digest))
			s.metrics.refusals.WithLabelValues(string(events.RefusalDigestMismatch)).Inc()
			s.audit(ctx, auditEntry{Kind: events.AuditRefused, PlanID: p.ID, Digest: p.Digest, Via: d.Via,
				Message: fmt.Sprintf("rejection by %s ignored: it names digest %s, plan has %s", d.DecidedBy, d.Digest, p.Digest), Data: d})
			return nil
		}
		rejected := p
		rejected.State = events.PlanRejected
		_, err = s.plans.Update(ctx, rejected, rev)
		switch {
		case err == nil:
			log.Info("plan rejected")
			s.metrics.executions.WithLabelValues(outcomeRejected).Inc()
			msg := fmt.Sprintf("rejected by %s via %s", d.DecidedBy, d.Via)
			if d.Reason != "" {
				msg += ": " + d.Reason
			}
			s.audit(ctx, auditEntry{Kind: events.AuditRejected, PlanID: p.ID, Digest: p.Digest, Actor: d.DecidedBy, Via: d.Via, Message: msg, Data: d})
			return nil
		case errors.Is(err, bus.ErrRevisionMismatch), errors.Is(err, bus.ErrPlanNotFound):
			continue // decide again on the current value
		default:
			return transient(fmt.Errorf("reject plan %s: %w", d.PlanID, err))
		}
	}
	return transient(fmt.Errorf("reject plan %s: the plan kept changing", d.PlanID))
}

// watchPause follows the cluster's kill switch in kaar_control until the
// returned stop is called; it returns once the current value is known.
func (s *Service) watchPause(ctx context.Context) (stop func(), err error) {
	kv, err := s.js.KeyValue(ctx, events.BucketControl)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", events.BucketControl, err)
	}
	key, err := events.PauseKey(s.cfg.Cluster)
	if err != nil {
		return nil, err
	}
	w, err := kv.Watch(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", key, err)
	}
	initial := make(chan struct{})
	go func() {
		var once sync.Once
		defer once.Do(func() { close(initial) })
		for e := range w.Updates() {
			if e == nil { // the current value has been delivered
				once.Do(func() { close(initial) })
				continue
			}
			if e.Operation() != jetstream.KeyValuePut {
				s.pause.Store(nil)
				continue
			}
			p, err := bus.DecodePause(e.Value())
			if err != nil {
				s.log.Warn("invalid kill switch in kaar_control: ignored", slog.String("key", key), slog.Any("error", err))
				continue
			}
			s.pause.Store(&p)
			s.log.Info("kill switch changed", slog.Bool("paused", p.Paused), slog.String("by", p.By), slog.String("via", string(p.Via)), slog.String("reason", p.Reason))
		}
	}()
	select {
	case <-initial:
	case <-ctx.Done():
	}
	return func() { _ = w.Stop() }, nil
}

// distinctApprover refuses, with remediation.require_distinct_approver,
// an approval by the identity that requested the plan: separation of
// duties, enforced here because the executor is the authority.
func (s *Service) distinctApprover(p events.Plan, d events.Decision) *refusal {
	if !s.cfg.RequireDistinctApprover || p.RequestedBy == "" || d.DecidedBy != p.RequestedBy {
		return nil
	}
	return refuse(events.RefusalNotApproved, "plan %s was requested by %q, who cannot also approve it (remediation.require_distinct_approver): another person must approve it",
		p.ID, p.RequestedBy)
}
