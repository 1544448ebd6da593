package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/nats-io/nats.go/jetstream"
)

// PlanStore errors.
var (
	// ErrPlanNotFound: no such plan, or its key expired (its approval window
	// passed without a claim).
	ErrPlanNotFound = errors.New("plan not found")
	// ErrPlanExists: Create found the key already there.
	ErrPlanExists = errors.New("plan already exists")
	// ErrRevisionMismatch: Update's expected revision is not the current one
	// (someone else changed the plan first).
	ErrRevisionMismatch = errors.New("plan revision mismatch")
)

// PlanStore keeps plans in the kaar_plans bucket, one key per plan id, the
// value the Plan's JSON. A plan is created with a per-key TTL (its approval
// window); any Update, such as the executor's claim, clears that TTL, so a
// claimed plan outlives its window while an unclaimed one disappears and
// Watch reports it as expired.
//
// Because every Update clears the TTL, only the executor's claim
// (proposed -> executing) should update a plan that is still within its
// window; an approval is a message on APPROVALS, not a KV write. Writers
// that move a plan to a terminal state (rejected, superseded) also make it
// permanent. A PlanStore is safe for concurrent use.
type PlanStore struct {
	kv jetstream.KeyValue
}

// OpenPlanStore binds to the kaar_plans bucket, which Provision created.
func OpenPlanStore(ctx context.Context, js jetstream.JetStream) (*PlanStore, error) {
	kv, err := js.KeyValue(ctx, events.BucketPlans)
	if err != nil {
		return nil, fmt.Errorf("open plan store %s: %w", events.BucketPlans, err)
	}
	return &PlanStore{kv: kv}, nil
}

// TTLSeconds is the TTL Create applies for ttl: rounded up to whole
// seconds, at least one second (JetStream's granularity).
func TTLSeconds(ttl time.Duration) time.Duration {
	d := ttl.Truncate(time.Second)
	if d < ttl {
		d += time.Second
	}
	return max(d, time.Second)
}

// Create stores a new plan (validated, so sealed) that expires after ttl
// (see TTLSeconds) unless updated before. It fails with ErrPlanExists if
// the key exists.
func (s *PlanStore) Create(ctx context.Context, p events.Plan, ttl time.Duration) (revision uint64, err error) {
	if ttl <= 0 {
		return 0, fmt.Errorf("create plan %s: ttl %s must be positive: %w", p.ID, ttl, events.ErrInvalid)
	}
	key, val, err := encodePlan(p)
	if err != nil {
		return 0, fmt.Errorf("create plan %s: %w", p.ID, err)
	}
	rev, err := s.kv.Create(ctx, key, val, jetstream.KeyTTL(TTLSeconds(ttl)))
	if errors.Is(err, jetstream.ErrKeyExists) {
		return 0, fmt.Errorf("create plan %s: %w", p.ID, ErrPlanExists)
	}
	if err != nil {
		return 0, fmt.Errorf("create plan %s: %w", p.ID, err)
	}
	return rev, nil
}

// Get returns a plan and its revision (for Update). A stored value that no
// longer validates is returned with an error matching events.ErrInvalid.
func (s *PlanStore) Get(ctx context.Context, id string) (events.Plan, uint64, error) {
	key, err := events.PlanKey(id)
	if err != nil {
		return events.Plan{}, 0, fmt.Errorf("get plan %s: %w", id, err)
	}
	e, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return events.Plan{}, 0, fmt.Errorf("get plan %s: %w", id, ErrPlanNotFound)
	}
	if err != nil {
		return events.Plan{}, 0, fmt.Errorf("get plan %s: %w", id, err)
	}
	p, err := decodePlan(e.Value())
	if err != nil {
		return p, e.Revision(), fmt.Errorf("get plan %s: %w", id, err)
	}
	return p, e.Revision(), nil
}

// Update replaces a plan if its current revision is expectedRevision
// (compare-and-set) and returns the new revision. It clears the key's TTL.
// A stale revision gives ErrRevisionMismatch; a plan that expired or never
// existed gives ErrPlanNotFound.
func (s *PlanStore) Update(ctx context.Context, p events.Plan, expectedRevision uint64) (uint64, error) {
	key, val, err := encodePlan(p)
	if err != nil {
		return 0, fmt.Errorf("update plan %s: %w", p.ID, err)
	}
	rev, err := s.kv.Update(ctx, key, val, expectedRevision)
	if err == nil {
		return rev, nil
	}
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
		if _, gerr := s.kv.Get(ctx, key); errors.Is(gerr, jetstream.ErrKeyNotFound) || errors.Is(gerr, jetstream.ErrKeyDeleted) {
			return 0, fmt.Errorf("update plan %s: %w", p.ID, ErrPlanNotFound)
		}
		return 0, fmt.Errorf("update plan %s at revision %d: %w", p.ID, expectedRevision, ErrRevisionMismatch)
	}
	return 0, fmt.Errorf("update plan %s: %w", p.ID, err)
}

// StoredPlan is a plan with its KV revision.
type StoredPlan struct {
	Plan     events.Plan
	Revision uint64
}

// List returns every plan currently stored (not expired), in key order.
// Values that do not decode are skipped with an error joined to the result.
func (s *PlanStore) List(ctx context.Context) ([]StoredPlan, error) {
	lister, err := s.kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("list plans: %w", err)
	}
	defer func() { _ = lister.Stop() }()
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	var out []StoredPlan
	var errs []error
	for _, k := range keys {
		p, rev, err := s.Get(ctx, k)
		switch {
		case errors.Is(err, ErrPlanNotFound): // expired between list and get
		case err != nil:
			errs = append(errs, err)
		default:
			out = append(out, StoredPlan{Plan: p, Revision: rev})
		}
	}
	if err := ctx.Err(); err != nil {
		return out, fmt.Errorf("list plans: %w", err)
	}
	return out, errors.Join(errs...)
}

// ChangeOp says what happened to a plan key.
type ChangeOp string

// Change operations.
const (
	// PlanPut: created or updated; Plan holds the new value.
	PlanPut ChangeOp = "put"
	// PlanExpired: the key's TTL ran out (a purge marker). PlanStore never
	// purges keys itself, so every purge seen is an expiry.
	PlanExpired ChangeOp = "expired"
	// PlanDeleted: the key was deleted.
	PlanDeleted ChangeOp = "deleted"
)

// PlanChange is one change seen by Watch.
type PlanChange struct {
	Op       ChangeOp
	PlanID   string
	Revision uint64
	At       time.Time
	// Plan is the new value for PlanPut; zero otherwise.
	Plan events.Plan
	// Err is set for a PlanPut whose value does not decode or validate.
	Err error
}

// Watch reports every change to kaar_plans from now on (not the current
// values: use List), including expiries. The channel is closed when ctx is
// done or the watch fails; the goroutine feeding it stops with ctx.
func (s *PlanStore) Watch(ctx context.Context) (<-chan PlanChange, error) {
	w, err := s.kv.WatchAll(ctx, jetstream.UpdatesOnly())
	if err != nil {
		return nil, fmt.Errorf("watch plans: %w", err)
	}
	out := make(chan PlanChange)
	go func() {
		defer close(out)
		defer func() { _ = w.Stop() }()
		for {
			var e jetstream.KeyValueEntry
			var ok bool
			select {
			case <-ctx.Done():
				return
			case e, ok = <-w.Updates():
				if !ok {
					return
				}
			}
			if e == nil {
				continue
			}
			ch := PlanChange{PlanID: e.Key(), Revision: e.Revision(), At: e.Created()}
			switch e.Operation() {
			case jetstream.KeyValuePurge:
				ch.Op = PlanExpired
			case jetstream.KeyValueDelete:
				ch.Op = PlanDeleted
			default:
				ch.Op = PlanPut
				ch.Plan, ch.Err = decodePlan(e.Value())
			}
			select {
			case out <- ch:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

func encodePlan(p events.Plan) (key string, val []byte, err error) {
	if err := p.Validate(); err != nil {
		return "", nil, err
	}
	key, err = events.PlanKey(p.ID)
	if err != nil {
		return "", nil, err
	}
	val, err = json.Marshal(p)
	if err != nil {
		return "", nil, fmt.Errorf("encode: %w", err)
	}
	return key, val, nil
}

func decodePlan(b []byte) (events.Plan, error) {
	var p events.Plan
	if err := json.Unmarshal(b, &p); err != nil {
		return p, fmt.Errorf("decode: %w: %w", events.ErrInvalid, err)
	}
	return p, p.Validate()
}
