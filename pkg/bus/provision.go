package bus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/nats-io/nats.go/jetstream"
)

// Defaults of Config.
const (
	DefaultAuditRetention     = 30 * 24 * time.Hour
	DefaultIssueRetention     = 7 * 24 * time.Hour
	DefaultPlanEventRetention = 7 * 24 * time.Hour
	DefaultApprovalWindowMax  = 24 * time.Hour
	DefaultDuplicateWindow    = 2 * time.Minute
	// PlanMarkerTTL is how long the purge marker of an expired plan key
	// stays in kaar_plans (LimitMarkerTTL): long enough for watchers that
	// reconnect to see it, short enough not to pile up.
	PlanMarkerTTL = 15 * time.Minute
)

// Consumer settings provisioned for the durable consumers. Handlers that
// run longer than the ack wait must call Msg.InProgress.
const (
	PlannerAckWait        = 2 * time.Minute
	PlannerMaxDeliver     = 10
	PlannerMaxAckPending  = 256
	ExecutorAckWait       = 2 * time.Minute
	ExecutorMaxDeliver    = 5
	ExecutorMaxAckPending = 16
	AutoApproveAckWait    = 30 * time.Second
	AutoApproveMaxDeliver = 5
)

// Config says how to declare kaar's streams, buckets and consumers.
type Config struct {
	// Clusters are the cluster names served by this NATS deployment; one
	// planner and one executor durable consumer is declared per cluster.
	// At least one.
	Clusters []string
	// Replicas of every stream and bucket, 1 to 5; default 1. More than
	// one needs a NATS cluster with at least that many JetStream servers.
	Replicas int
	// Storage of ISSUES, PLAN_EVENTS, APPROVALS and the buckets; the zero
	// value is file storage. AUDIT always uses file storage.
	Storage jetstream.StorageType
	// AuditRetention is AUDIT's max age; default 30 days.
	AuditRetention time.Duration
	// IssueRetention is ISSUES' max age; default 7 days.
	IssueRetention time.Duration
	// PlanEventRetention is PLAN_EVENTS' max age; default 7 days.
	PlanEventRetention time.Duration
	// ApprovalWindowMax is APPROVALS' max age and duplicate window: it must
	// be at least the longest approval window. Default 24h.
	ApprovalWindowMax time.Duration
	// DuplicateWindow is the Nats-Msg-Id window of ISSUES, PLAN_EVENTS and
	// AUDIT; default 2 minutes.
	DuplicateWindow time.Duration
	// ExecutorAckWait is the ack wait of the executor's consumer: how
	// long an executor may go without signalling progress before its
	// decision is redelivered and another executor resumes the plan (the
	// executor signals at a quarter of it). Default ExecutorAckWait.
	ExecutorAckWait time.Duration
}

func (c Config) withDefaults() (Config, error) {
	if len(c.Clusters) == 0 {
		return c, fmt.Errorf("provision: field \"clusters\": at least one cluster required: %w", events.ErrInvalid)
	}
	for _, cl := range c.Clusters {
		if err := events.ValidateClusterName(cl); err != nil {
			return c, fmt.Errorf("provision: %w", err)
		}
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if c.Replicas < 0 || c.Replicas > 5 {
		return c, fmt.Errorf("provision: field \"replicas\": %d is not between 1 and 5: %w", c.Replicas, events.ErrInvalid)
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	def(&c.AuditRetention, DefaultAuditRetention)
	def(&c.IssueRetention, DefaultIssueRetention)
	def(&c.PlanEventRetention, DefaultPlanEventRetention)
	def(&c.ApprovalWindowMax, DefaultApprovalWindowMax)
	def(&c.DuplicateWindow, DefaultDuplicateWindow)
	def(&c.ExecutorAckWait, ExecutorAckWait)
	return c, nil
}

// Change is one declaration Provision created or updated.
type Change struct {
	// Kind is "stream", "kv" or "consumer".
	Kind string
	// Name is the stream, bucket or "STREAM/consumer".
	Name string
	// Action is "created" or "updated".
	Action string
	// Fields lists what differed, for updates.
	Fields []string
}

// String renders "updated stream ISSUES (max_age)".
func (c Change) String() string {
	s := c.Action + " " + c.Kind + " " + c.Name
	if len(c.Fields) > 0 {
		s += " (" + strings.Join(c.Fields, ", ") + ")"
	}
	return s
}

// Summary lists what Provision changed; empty when everything was already
// as declared.
type Summary struct {
	Changes []Change
}

// Changed reports whether anything was created or updated.
func (s Summary) Changed() bool { return len(s.Changes) > 0 }

// String is one line for logs.
func (s Summary) String() string {
	if !s.Changed() {
		return "jetstream: no changes"
	}
	parts := make([]string, len(s.Changes))
	for i, c := range s.Changes {
		parts[i] = c.String()
	}
	return "jetstream: " + strings.Join(parts, "; ")
}

// Streams returns the stream declarations for cfg (defaults applied).
func Streams(cfg Config) ([]jetstream.StreamConfig, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	dup := func(window, maxAge time.Duration) time.Duration { return min(window, maxAge) }
	return []jetstream.StreamConfig{
		{
			Name:        events.StreamIssues,
			Description: "kaar incident transitions",
			Subjects:    []string{events.IssueSubjectsAll},
			Retention:   jetstream.LimitsPolicy,
			Discard:     jetstream.DiscardOld,
			MaxAge:      cfg.IssueRetention,
			Duplicates:  dup(cfg.DuplicateWindow, cfg.IssueRetention),
			Storage:     cfg.Storage,
			Replicas:    cfg.Replicas,
		},
		{
			Name:        events.StreamPlanEvents,
			Description: "kaar plan lifecycle notifications",
			Subjects:    []string{events.PlanEventSubjectsAll},
			Retention:   jetstream.LimitsPolicy,
			Discard:     jetstream.DiscardOld,
			MaxAge:      cfg.PlanEventRetention,
			Duplicates:  dup(cfg.DuplicateWindow, cfg.PlanEventRetention),
			Storage:     cfg.Storage,
			Replicas:    cfg.Replicas,
		},
		{
			Name:        events.StreamApprovals,
			Description: "kaar approval decisions (work queue)",
			Subjects:    []string{events.ApprovalSubjectsAll},
			Retention:   jetstream.WorkQueuePolicy,
			Discard:     jetstream.DiscardOld,
			MaxAge:      cfg.ApprovalWindowMax,
			Duplicates:  cfg.ApprovalWindowMax,
			Storage:     cfg.Storage,
			Replicas:    cfg.Replicas,
		},
		{
			Name:        events.StreamAudit,
			Description: "kaar audit trail",
			Subjects:    []string{events.AuditSubjectsAll},
			Retention:   jetstream.LimitsPolicy,
			Discard:     jetstream.DiscardOld,
			MaxAge:      cfg.AuditRetention,
			Duplicates:  dup(cfg.DuplicateWindow, cfg.AuditRetention),
			Storage:     jetstream.FileStorage,
			Replicas:    cfg.Replicas,
		},
	}, nil
}

// Buckets returns the key-value bucket declarations for cfg.
func Buckets(cfg Config) ([]jetstream.KeyValueConfig, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return []jetstream.KeyValueConfig{
		{
			Bucket:         events.BucketPlans,
			Description:    "kaar plans; per-key TTL = approval window",
			History:        1,
			LimitMarkerTTL: PlanMarkerTTL,
			Storage:        cfg.Storage,
			Replicas:       cfg.Replicas,
		},
		{
			Bucket:      events.BucketIncidents,
			Description: "kaar watcher announced-incident state",
			History:     1,
			Storage:     cfg.Storage,
			Replicas:    cfg.Replicas,
		},
		{
			Bucket:      events.BucketExecutions,
			Description: "kaar execution records",
			History:     1,
			Storage:     cfg.Storage,
			Replicas:    cfg.Replicas,
		},
		{
			Bucket:      events.BucketControl,
			Description: "kaar operator switches (the remediation kill switch per cluster)",
			History:     5,
			Storage:     cfg.Storage,
			Replicas:    cfg.Replicas,
		},
	}, nil
}

// ConsumerDecl is a durable consumer on a stream.
type ConsumerDecl struct {
	Stream string
	Config jetstream.ConsumerConfig
}

// Consumers returns the durable consumer declarations for cfg: per
// cluster, the planner's on ISSUES and the executor's on APPROVALS.
func Consumers(cfg Config) ([]ConsumerDecl, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	var out []ConsumerDecl
	for _, cl := range cfg.Clusters {
		pname, _ := events.PlannerConsumer(cl)
		pfilter, _ := events.IssueFilter(cl)
		ename, _ := events.ExecutorConsumer(cl)
		efilter, _ := events.ApprovalFilter(cl)
		aname, _ := events.AutoApproveConsumer(cl)
		afilter, _ := events.PlanEventSubject(cl, events.PlanEventProposed)
		out = append(out,
			ConsumerDecl{Stream: events.StreamIssues, Config: jetstream.ConsumerConfig{
				Durable:       pname,
				Description:   "kaar planner for cluster " + cl,
				DeliverPolicy: jetstream.DeliverAllPolicy,
				AckPolicy:     jetstream.AckExplicitPolicy,
				AckWait:       PlannerAckWait,
				MaxDeliver:    PlannerMaxDeliver,
				MaxAckPending: PlannerMaxAckPending,
				FilterSubject: pfilter,
			}},
			ConsumerDecl{Stream: events.StreamApprovals, Config: jetstream.ConsumerConfig{
				Durable:       ename,
				Description:   "kaar executor for cluster " + cl,
				DeliverPolicy: jetstream.DeliverAllPolicy,
				AckPolicy:     jetstream.AckExplicitPolicy,
				AckWait:       cfg.ExecutorAckWait,
				MaxDeliver:    ExecutorMaxDeliver,
				MaxAckPending: ExecutorMaxAckPending,
				FilterSubject: efilter,
			}},
			ConsumerDecl{Stream: events.StreamPlanEvents, Config: jetstream.ConsumerConfig{
				Durable:       aname,
				Description:   "kaar executor auto-approver (remediation.auto_approve) for cluster " + cl,
				DeliverPolicy: jetstream.DeliverAllPolicy,
				AckPolicy:     jetstream.AckExplicitPolicy,
				AckWait:       AutoApproveAckWait,
				MaxDeliver:    AutoApproveMaxDeliver,
				MaxAckPending: 64,
				FilterSubject: afilter,
			}},
		)
	}
	return out, nil
}

// Provision declares every stream, bucket and durable consumer of kaar,
// creating what is missing and updating what differs from the declaration
// (only the fields kaar declares are compared). It is idempotent: a second
// call with the same Config changes nothing and returns an empty Summary.
// Fields the server cannot change (such as a stream's storage) make it
// fail with the server's error.
func Provision(ctx context.Context, js jetstream.JetStream, cfg Config) (Summary, error) {
	var sum Summary
	streams, err := Streams(cfg)
	if err != nil {
		return sum, err
	}
	buckets, _ := Buckets(cfg)
	consumers, _ := Consumers(cfg)

	for _, want := range streams {
		ch, err := ensureStream(ctx, js, want)
		if err != nil {
			return sum, fmt.Errorf("provision stream %s: %w", want.Name, err)
		}
		sum.add(ch)
	}
	for _, want := range buckets {
		ch, err := ensureBucket(ctx, js, want)
		if err != nil {
			return sum, fmt.Errorf("provision kv %s: %w", want.Bucket, err)
		}
		sum.add(ch)
	}
	for _, want := range consumers {
		ch, err := ensureConsumer(ctx, js, want)
		if err != nil {
			return sum, fmt.Errorf("provision consumer %s/%s: %w", want.Stream, want.Config.Durable, err)
		}
		sum.add(ch)
	}
	return sum, nil
}

func (s *Summary) add(c *Change) {
	if c != nil {
		s.Changes = append(s.Changes, *c)
	}
}

// diff collects the names of differing fields.
type diff []string

func (d *diff) check(name string, differs bool) {
	if differs {
		*d = append(*d, name)
	}
}

func ensureStream(ctx context.Context, js jetstream.JetStream, want jetstream.StreamConfig) (*Change, error) {
	st, err := js.Stream(ctx, want.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		if _, err := js.CreateStream(ctx, want); err != nil {
			return nil, err
		}
		return &Change{Kind: "stream", Name: want.Name, Action: "created"}, nil
	}
	if err != nil {
		return nil, err
	}
	have := st.CachedInfo().Config
	var d diff
	d.check("description", have.Description != want.Description)
	d.check("subjects", !slices.Equal(have.Subjects, want.Subjects))
	d.check("retention", have.Retention != want.Retention)
	d.check("discard", have.Discard != want.Discard)
	d.check("max_age", have.MaxAge != want.MaxAge)
	d.check("duplicate_window", have.Duplicates != want.Duplicates)
	d.check("storage", have.Storage != want.Storage)
	d.check("num_replicas", have.Replicas != want.Replicas)
	if len(d) == 0 {
		return nil, nil
	}
	// Keep server-side settings kaar does not declare.
	upd := have
	upd.Description, upd.Subjects, upd.Retention, upd.Discard = want.Description, want.Subjects, want.Retention, want.Discard
	upd.MaxAge, upd.Duplicates, upd.Storage, upd.Replicas = want.MaxAge, want.Duplicates, want.Storage, want.Replicas
	if _, err := js.UpdateStream(ctx, upd); err != nil {
		return nil, fmt.Errorf("update %v: %w", []string(d), err)
	}
	return &Change{Kind: "stream", Name: want.Name, Action: "updated", Fields: d}, nil
}

func ensureBucket(ctx context.Context, js jetstream.JetStream, want jetstream.KeyValueConfig) (*Change, error) {
	st, err := js.Stream(ctx, "KV_"+want.Bucket)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		if _, err := js.CreateKeyValue(ctx, want); err != nil {
			return nil, err
		}
		return &Change{Kind: "kv", Name: want.Bucket, Action: "created"}, nil
	}
	if err != nil {
		return nil, err
	}
	have := st.CachedInfo().Config
	var d diff
	d.check("description", have.Description != want.Description)
	d.check("history", have.MaxMsgsPerSubject != int64(want.History))
	d.check("ttl", have.MaxAge != want.TTL)
	d.check("limit_marker_ttl", have.SubjectDeleteMarkerTTL != want.LimitMarkerTTL || have.AllowMsgTTL != (want.LimitMarkerTTL > 0))
	d.check("storage", have.Storage != want.Storage)
	d.check("num_replicas", have.Replicas != want.Replicas)
	if len(d) == 0 {
		return nil, nil
	}
	if _, err := js.UpdateKeyValue(ctx, want); err != nil {
		return nil, fmt.Errorf("update %v: %w", []string(d), err)
	}
	return &Change{Kind: "kv", Name: want.Bucket, Action: "updated", Fields: d}, nil
}

func ensureConsumer(ctx context.Context, js jetstream.JetStream, want ConsumerDecl) (*Change, error) {
	name := want.Stream + "/" + want.Config.Durable
	st, err := js.Stream(ctx, want.Stream)
	if err != nil {
		return nil, err
	}
	c, err := st.Consumer(ctx, want.Config.Durable)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		if _, err := st.CreateConsumer(ctx, want.Config); err != nil {
			return nil, err
		}
		return &Change{Kind: "consumer", Name: name, Action: "created"}, nil
	}
	if err != nil {
		return nil, err
	}
	have, w := c.CachedInfo().Config, want.Config
	var d diff
	d.check("description", have.Description != w.Description)
	d.check("deliver_policy", have.DeliverPolicy != w.DeliverPolicy)
	d.check("ack_policy", have.AckPolicy != w.AckPolicy)
	d.check("ack_wait", have.AckWait != w.AckWait)
	d.check("max_deliver", have.MaxDeliver != w.MaxDeliver)
	d.check("max_ack_pending", have.MaxAckPending != w.MaxAckPending)
	d.check("filter_subject", have.FilterSubject != w.FilterSubject || len(have.FilterSubjects) > 0)
	if len(d) == 0 {
		return nil, nil
	}
	if _, err := st.UpdateConsumer(ctx, w); err != nil {
		return nil, fmt.Errorf("update %v: %w", []string(d), err)
	}
	return &Change{Kind: "consumer", Name: name, Action: "updated", Fields: d}, nil
}
