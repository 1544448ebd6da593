package bus

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kaar-dev/kaar/pkg/events"
)

// ErrNotProvisioned is returned by CheckBound when a stream, bucket or
// consumer a service binds to does not exist: "kaar bus provision" has
// not run (or not for this cluster or notifier configuration).
var ErrNotProvisioned = errors.New(`the bus is not provisioned: run "kaar bus provision" (as the provisioner) first`)

// streams are the streams (and buckets' streams) the role binds to; it
// may read their configuration and state (stream info).
func (r Role) streams() []string {
	kv := func(b string) string { return "KV_" + b }
	switch r {
	case RoleWatcher:
		return []string{events.StreamIssues, kv(events.BucketIncidents), kv(events.BucketLeases), kv(events.BucketUsage)}
	case RolePlanner:
		return []string{events.StreamIssues, events.StreamPlanEvents, events.StreamAudit, kv(events.BucketPlans)}
	case RoleExecutor:
		return []string{events.StreamApprovals, events.StreamPlanEvents, events.StreamAudit, kv(events.BucketPlans),
			kv(events.BucketExecutions), kv(events.BucketControl)}
	case RoleMCPGateway, RoleMCPStdio:
		return []string{events.StreamApprovals, events.StreamAudit, kv(events.BucketPlans), kv(events.BucketExecutions), kv(events.BucketControl)}
	case RoleNotifier:
		return []string{events.StreamApprovals, NotifyStream, kv(events.BucketPlans), kv(NotifyBucket), kv(events.BucketLeases)}
	case RoleCLI:
		return []string{events.StreamApprovals, events.StreamIssues, events.StreamAudit, kv(events.BucketPlans)}
	}
	return nil
}

// durables are the role's durable consumers for cfg, as stream/name.
func (r Role) durables(cfg Config) [][2]string {
	var out [][2]string
	for _, cl := range cfg.Clusters {
		switch r {
		case RolePlanner:
			n, _ := events.PlannerConsumer(cl)
			out = append(out, [2]string{events.StreamIssues, n})
		case RoleExecutor:
			n, _ := events.ExecutorConsumer(cl)
			a, _ := events.AutoApproveConsumer(cl)
			out = append(out, [2]string{events.StreamApprovals, n}, [2]string{events.StreamPlanEvents, a})
		}
	}
	if r == RoleNotifier && cfg.Notify != nil {
		for _, c := range cfg.Notify.Consumers {
			out = append(out, [2]string{NotifyStream, c.Durable})
		}
	}
	return out
}

// CheckBound verifies, with the role's own permissions, that every
// stream, bucket and durable consumer the role uses for cfg exists. A
// service calls it before it starts, so that a bus nobody provisioned is
// one clear error (ErrNotProvisioned, naming what is missing) instead of
// a failure deep in the service.
func CheckBound(ctx context.Context, js jetstream.JetStream, r Role, cfg Config) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	var missing []string
	for _, s := range r.streams() {
		_, err := js.Stream(ctx, s)
		switch {
		case errors.Is(err, jetstream.ErrStreamNotFound):
			missing = append(missing, "stream "+s)
		case err != nil:
			return fmt.Errorf("%s: stream %s: %w (is this credential the %s's? %s may read that stream)", r, s, err, r.User(), r.User())
		}
	}
	for _, d := range r.durables(cfg) {
		_, err := js.Consumer(ctx, d[0], d[1])
		switch {
		case errors.Is(err, jetstream.ErrConsumerNotFound), errors.Is(err, jetstream.ErrStreamNotFound):
			missing = append(missing, "consumer "+d[0]+"/"+d[1])
		case err != nil:
			return fmt.Errorf("%s: consumer %s/%s: %w", r, d[0], d[1], err)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s: missing %s: %w", r, strings.Join(missing, ", "), ErrNotProvisioned)
	}
	return nil
}

// StateDir is kaar's state directory for name (the embedded bus's store,
// credentials, signing keys): ${XDG_STATE_HOME:-~/.local/state}/kaar/<name>.
// It does not create it.
func StateDir(name string) (string, error) {
	base := os.Getenv("XDG_STATE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("state directory: %w", err)
		}
		base = filepath.Join(home, ".local", "state")
	}
	return filepath.Join(base, "kaar", name), nil
}

// DefaultCredentialsDir is where kaar serve keeps one nkey seed per role:
// ${XDG_STATE_HOME:-~/.local/state}/kaar/credentials.
func DefaultCredentialsDir() (string, error) { return StateDir("credentials") }

// DefaultSeedFile is the role's seed file in DefaultCredentialsDir, if
// that file exists.
func DefaultSeedFile(r Role) (string, bool) {
	dir, err := DefaultCredentialsDir()
	if err != nil {
		return "", false
	}
	p := filepath.Join(dir, SeedFileName(r))
	if _, err := os.Stat(p); err != nil {
		return "", false
	}
	return p, true
}
