package planner

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// auditActor is the planner's name in audit records.
const auditActor = "kaar-planner"

// reannounceWindow: an existing plan younger than this is announced again
// when a redelivery finds it (its announcement may have failed the first
// time); the stream's duplicate window (2 minutes by default) drops the
// copy when the first announcement did go out.
const reannounceWindow = time.Minute

// auditNamespace seeds the deterministic ids of the planner's audit
// records, so that two replicas recording the same fact (a plan expiry)
// publish the same Nats-Msg-Id and the stream keeps one.
var auditNamespace = uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://kaar.dev/planner/audit"))

// auditID is the deterministic audit record id of kind for a plan.
func auditID(planID string, kind events.AuditKind) string {
	return uuid.NewSHA1(auditNamespace, []byte(string(kind)+"/"+planID)).String()
}

// errRevision: a CAS update lost against another writer.
var errRevision = errors.New("plan revision changed")

// proposal is the result of storing a plan.
type proposal struct {
	Plan events.Plan
	// Created is false when an equivalent plan was already proposed.
	Created bool
	// Superseded lists the plans this one replaced.
	Superseded []string
}

// proposedFor lists the proposed plans of the plan's incident (or, for a
// plan without an incident, of its target), newest first.
func (s *Service) proposedFor(ctx context.Context, incidentID string, target events.ObjectRef) ([]bus.StoredPlan, error) {
	all, err := s.store.List(ctx)
	if err != nil && all == nil {
		return nil, err
	}
	if err != nil { // undecodable values are skipped; the rest is usable
		s.log.Warn("listing plans skipped invalid values", slog.Any("error", err))
	}
	var out []bus.StoredPlan
	for _, sp := range all {
		p := sp.Plan
		if p.State != events.PlanProposed || p.Cluster != s.cfg.Cluster {
			continue
		}
		if (incidentID != "" && p.IncidentID == incidentID) || (incidentID == "" && p.IncidentID == "" && p.Target == target) {
			out = append(out, sp)
		}
	}
	// UUIDv7 ids sort by creation time.
	slices.SortFunc(out, func(a, b bus.StoredPlan) int { return cmp.Compare(b.Plan.ID, a.Plan.ID) })
	return out, nil
}

// equivalent reports whether existing already proposes what fresh does:
// an equal digest, or the same steps for the same generation of the
// target when only its resourceVersion moved (status updates move it all
// the time). The patches test the generation, so the existing plan is as
// safe, and approvers are not made to chase plans that changed in name
// only. Staleness is therefore a matter of generation: the executor
// should compare TargetGeneration, not TargetResourceVersion.
func equivalent(existing, fresh events.Plan) bool {
	if events.ActionDigest(existing) == events.ActionDigest(fresh) {
		return true
	}
	if existing.TargetGeneration != fresh.TargetGeneration || existing.TargetGeneration == 0 {
		return false
	}
	f := fresh
	f.TargetResourceVersion = existing.TargetResourceVersion
	return events.ActionDigest(f) == events.ActionDigest(existing)
}

// propose stores p unless an equivalent plan of the same incident is
// already proposed, and supersedes the incident's other proposed plans.
// The caller holds the incident's lock, which serialises one replica;
// replicas converge after the fact: see converge.
func (s *Service) propose(ctx context.Context, p events.Plan) (proposal, error) {
	current, err := s.proposedFor(ctx, p.IncidentID, p.Target)
	if err != nil {
		return proposal{}, fmt.Errorf("propose plan %s: %w", p.ID, err)
	}
	if len(current) > 0 && equivalent(current[0].Plan, p) {
		keep := current[0].Plan
		res := proposal{Plan: keep}
		// Two replicas may each have created a plan: converge on the newest.
		for _, old := range current[1:] {
			if err := s.supersede(ctx, old.Plan.ID, keep.ID, "replaced by plan "+keep.ID); err != nil {
				return res, err
			}
			res.Superseded = append(res.Superseded, old.Plan.ID)
		}
		if s.now().Sub(keep.CreatedAt) < reannounceWindow {
			if err := s.announce(ctx, keep, events.PlanEventProposed, events.AuditPlanProposed, keep.Summary); err != nil {
				return res, err
			}
		}
		return res, nil
	}
	if _, err := s.store.Create(ctx, p, s.cfg.ApprovalWindow); err != nil {
		return proposal{}, fmt.Errorf("propose plan %s: %w", p.ID, err)
	}
	res := proposal{Plan: p, Created: true}
	if err := s.announce(ctx, p, events.PlanEventProposed, events.AuditPlanProposed, p.Summary); err != nil {
		return res, err
	}
	return res, s.converge(ctx, &res)
}

// converge leaves one proposed plan per incident, the newest, after a
// plan was created: it lists the incident's proposed plans again (another
// replica may have created one meanwhile, for another delivery of the
// incident) and supersedes every other by the newest, which may be the
// other replica's plan rather than res.Plan. Whichever replica creates
// last sees every plan, so the replicas agree whatever the interleaving;
// supersede leaves a plan that is no longer proposed alone, so doing it
// twice is harmless.
func (s *Service) converge(ctx context.Context, res *proposal) error {
	current, err := s.proposedFor(ctx, res.Plan.IncidentID, res.Plan.Target)
	if err != nil {
		return fmt.Errorf("propose plan %s: %w", res.Plan.ID, err)
	}
	if len(current) == 0 { // already decided, expired or superseded
		return nil
	}
	keep := current[0].Plan
	for _, old := range current[1:] {
		reason := "replaced by plan " + keep.ID + ": the incident or its workload changed"
		if equivalent(keep, old.Plan) {
			reason = "replaced by plan " + keep.ID + ", an equivalent plan for the same incident"
		}
		if err := s.supersede(ctx, old.Plan.ID, keep.ID, reason); err != nil {
			return err
		}
		res.Superseded = append(res.Superseded, old.Plan.ID)
	}
	if keep.ID != res.Plan.ID {
		res.Plan, res.Created = keep, false
	}
	return nil
}

// supersede moves a proposed plan to superseded (by names its successor;
// empty when the incident resolved). A plan that is no longer proposed
// (claimed, decided, expired) is left alone.
func (s *Service) supersede(ctx context.Context, id, by, reason string) error {
	for range 3 {
		p, rev, err := s.store.Get(ctx, id)
		if errors.Is(err, bus.ErrPlanNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("supersede plan %s: %w", id, err)
		}
		if p.State != events.PlanProposed {
			s.log.Info("plan not superseded: no longer proposed", slog.String("plan", id), slog.String("state", string(p.State)))
			return nil
		}
		p.State, p.SupersededBy = events.PlanSuperseded, by
		p.History = append(p.History, reason)
		// Keep the key's expiry: an Update would clear it and leave the
		// superseded plan in the bucket forever.
		err = s.updateWithTTL(ctx, p, rev, p.ExpiresAt.Sub(s.now()))
		if errors.Is(err, errRevision) {
			continue
		}
		if err != nil {
			return fmt.Errorf("supersede plan %s: %w", id, err)
		}
		s.metrics.plans.WithLabelValues(string(p.Type), outcomeSuperseded).Inc()
		return s.announce(ctx, p, events.PlanEventSuperseded, events.AuditPlanSuperseded, reason)
	}
	return fmt.Errorf("supersede plan %s: %w (3 attempts)", id, errRevision)
}

// updateWithTTL is a compare-and-set update of a plan that keeps a TTL on
// the key. bus.PlanStore.Update clears the TTL (right for the executor's
// claim, wrong for a superseded plan), so this publishes to the bucket's
// subject with a Nats-TTL and an expected last sequence.
func (s *Service) updateWithTTL(ctx context.Context, p events.Plan, rev uint64, ttl time.Duration) error {
	if err := p.Validate(); err != nil {
		return err
	}
	key, err := events.PlanKey(p.ID)
	if err != nil {
		return err
	}
	body, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("encode plan: %w", err)
	}
	msg := nats.NewMsg("$KV." + events.BucketPlans + "." + key)
	msg.Data = body
	_, err = s.js.PublishMsg(ctx, msg, jetstream.WithMsgTTL(bus.TTLSeconds(ttl)), jetstream.WithExpectLastSequencePerSubject(rev))
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
		return fmt.Errorf("update plan %s at revision %d: %w", p.ID, rev, errRevision)
	}
	if err != nil {
		return fmt.Errorf("update plan %s: %w", p.ID, err)
	}
	return nil
}

// announce publishes a plan lifecycle event on PLAN_EVENTS and its audit
// record on AUDIT. Both message ids are deterministic per plan and event,
// so a repeat within the duplicate window is dropped by the streams.
func (s *Service) announce(ctx context.Context, p events.Plan, ev events.PlanEvent, kind events.AuditKind, message string) error {
	subject, err := events.PlanEventSubject(s.cfg.Cluster, ev)
	if err != nil {
		return err
	}
	env, err := events.New(ev.EventType(), events.SourcePlanner, s.cfg.Cluster, p.ID, &p)
	if err != nil {
		return fmt.Errorf("announce plan %s %s: %w", p.ID, ev, err)
	}
	dup, err := bus.Publish(ctx, s.js, subject, env, events.PlanEventMsgID(p.ID, ev))
	if err != nil {
		return fmt.Errorf("announce plan %s %s: %w", p.ID, ev, err)
	}
	data, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("audit plan %s: %w", p.ID, err)
	}
	rec := events.AuditRecord{ID: auditID(p.ID, kind), PlanID: p.ID, Digest: p.Digest, Kind: kind,
		Actor: auditActor, At: s.now().UTC(), Message: oneLine(message), Data: data}
	auditSubject, err := events.AuditSubject(s.cfg.Cluster, kind)
	if err != nil {
		return err
	}
	aenv, err := events.New(kind.EventType(), events.SourcePlanner, s.cfg.Cluster, p.ID, &rec)
	if err != nil {
		return fmt.Errorf("audit plan %s %s: %w", p.ID, kind, err)
	}
	if _, err := bus.Publish(ctx, s.js, auditSubject, aenv, events.AuditMsgID(rec.ID)); err != nil {
		return fmt.Errorf("audit plan %s %s: %w", p.ID, kind, err)
	}
	level := slog.LevelInfo
	if dup {
		level = slog.LevelDebug // announced before (a retry, or another replica)
	}
	s.log.Log(ctx, level, "plan "+string(ev), slog.String("namespace", p.Namespace),
		slog.String("owner", p.Target.Kind+"/"+p.Target.Name), slog.String("incident", p.IncidentID), slog.String("plan", p.ID),
		slog.Bool("duplicate", dup))
	return nil
}

// keyedLocks serialises work per key (an incident), so that two
// transitions of one incident are not planned at the same time.
type keyedLocks struct {
	mu sync.Mutex
	m  map[string]*keyedLock
}

type keyedLock struct {
	mu   sync.Mutex
	refs int
}

// lock locks key and returns its unlock function.
func (k *keyedLocks) lock(key string) func() {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyedLock{}
	}
	l := k.m[key]
	if l == nil {
		l = &keyedLock{}
		k.m[key] = l
	}
	l.refs++
	k.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		k.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}
