package bus

import (
	"fmt"
	"slices"
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
	// DefaultUsageRetention is kaar_usage's TTL (watcher.warnings.usage_retention).
	DefaultUsageRetention = 24 * time.Hour
	// PlanMarkerTTL is how long the purge marker of an expired plan key
	// stays in kaar_plans (LimitMarkerTTL): long enough for watchers that
	// reconnect to see it, short enough not to pile up.
	PlanMarkerTTL = 15 * time.Minute
)

// Consumer settings provisioned for the durable consumers. Handlers that
// run longer than the ack wait must call Msg.InProgress.
const (
	PlannerAckWait        = 30 * time.Second
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
	// UsageRetention is the TTL of the watcher's usage history
	// (events.BucketUsage): a key not written for that long (a workload
	// gone) expires. Default DefaultUsageRetention.
	UsageRetention time.Duration
	// ExecutorAckWait is the ack wait of the executor's consumer: how
	// long an executor may go without signalling progress before its
	// decision is redelivered and another executor resumes the plan (the
	// executor signals at a quarter of it). Default ExecutorAckWait.
	ExecutorAckWait time.Duration
	// Notify declares the notifier's stream (NotifyStream), state bucket
	// (NotifyBucket) and durable consumers; nil when no notifier runs.
	Notify *NotifyConfig
	// Leaves are the leaf clusters of this bus (a hub): their services
	// run on a leaf node with its own JetStream (LeafDomain). ISSUES,
	// PLAN_EVENTS and AUDIT source theirs, and the streams capture only
	// the subjects of Clusters, so that a leaf cluster's decisions are
	// stored by the leaf alone. Not among Clusters.
	Leaves []string
}

// NotifyConfig is what the notifier uses on the bus.
type NotifyConfig struct {
	// Cluster is the notified cluster: NotifyStream sources its subjects
	// of ISSUES, PLAN_EVENTS and AUDIT.
	Cluster string
	// StreamMaxAge is NotifyStream's max age.
	StreamMaxAge time.Duration
	// StateMaxAge is NotifyBucket's TTL.
	StateMaxAge time.Duration
	// Consumers are the notifier's durable consumers on NotifyStream
	// (Slack, one per webhook receiver).
	Consumers []jetstream.ConsumerConfig
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
	for _, l := range c.Leaves {
		if err := events.ValidateClusterName(l); err != nil {
			return c, fmt.Errorf("provision: leaves: %w", err)
		}
		if slices.Contains(c.Clusters, l) {
			return c, fmt.Errorf("provision: field \"leaves\": %q is also a cluster of this bus: %w", l, events.ErrInvalid)
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
	def(&c.UsageRetention, DefaultUsageRetention)
	def(&c.ExecutorAckWait, ExecutorAckWait)
	if n := c.Notify; n != nil {
		if err := events.ValidateClusterName(n.Cluster); err != nil {
			return c, fmt.Errorf("provision: notify: %w", err)
		}
		for _, cc := range n.Consumers {
			if cc.Durable == "" {
				return c, fmt.Errorf("provision: notify: field \"durable\": a consumer of %s has no name: %w", NotifyStream, events.ErrInvalid)
			}
		}
	}
	return c, nil
}

// Streams returns the stream declarations for cfg (defaults applied).
func Streams(cfg Config) ([]jetstream.StreamConfig, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	dup := func(window, maxAge time.Duration) time.Duration { return min(window, maxAge) }
	out := []jetstream.StreamConfig{
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
	}
	if len(cfg.Leaves) > 0 {
		out = withLeaves(out, cfg.Clusters, cfg.Leaves)
	}
	if n := cfg.Notify; n != nil {
		// Sources start where their stream is when NOTIFY is created
		// (Provision sets OptStartSeq): the notifier does not replay
		// history into Slack or into receivers that did not exist yet.
		i, _ := events.IssueFilter(n.Cluster)
		p, _ := events.PlanEventFilter(n.Cluster)
		a, _ := events.AuditFilter(n.Cluster)
		notifyDup := cfg.DuplicateWindow
		if n.StreamMaxAge > 0 {
			notifyDup = dup(notifyDup, n.StreamMaxAge)
		}
		out = append(out, jetstream.StreamConfig{
			Name:        NotifyStream,
			Description: "kaar notifications of cluster " + n.Cluster + " (sources ISSUES, PLAN_EVENTS, AUDIT)",
			Sources: []*jetstream.StreamSource{
				{Name: events.StreamIssues, FilterSubject: i},
				{Name: events.StreamPlanEvents, FilterSubject: p},
				{Name: events.StreamAudit, FilterSubject: a},
			},
			Retention:  jetstream.LimitsPolicy,
			Discard:    jetstream.DiscardOld,
			MaxAge:     n.StreamMaxAge,
			Duplicates: notifyDup,
			Storage:    jetstream.FileStorage,
			Replicas:   cfg.Replicas,
		})
	}
	return out, nil
}

// Buckets returns the key-value bucket declarations for cfg.
func Buckets(cfg Config) ([]jetstream.KeyValueConfig, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	out := []jetstream.KeyValueConfig{
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
		{
			Bucket:      events.BucketLeases,
			Description: "kaar leases: the active replica of the watcher and the notifier per cluster",
			History:     1,
			Storage:     cfg.Storage,
			Replicas:    cfg.Replicas,
		},
		{
			// One small value per workload container, rewritten at most
			// once per usage interval: only the last is kept.
			Bucket:      events.BucketUsage,
			Description: "kaar watcher usage history for the trend warnings (memory samples, restarts, ready replica dips)",
			History:     1,
			TTL:         cfg.UsageRetention,
			Storage:     cfg.Storage,
			Replicas:    cfg.Replicas,
		},
	}
	if n := cfg.Notify; n != nil {
		out = append(out, jetstream.KeyValueConfig{
			Bucket:      NotifyBucket,
			Description: "kaar notifier Slack message state",
			History:     1,
			TTL:         n.StateMaxAge,
			Storage:     jetstream.FileStorage,
			Replicas:    cfg.Replicas,
		})
	}
	return out, nil
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
	if n := cfg.Notify; n != nil {
		for _, c := range n.Consumers {
			out = append(out, ConsumerDecl{Stream: NotifyStream, Config: c})
		}
	}
	return out, nil
}
