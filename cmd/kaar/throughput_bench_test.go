package main_test

import (
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
)

// BenchmarkExecutedDecisions: how many approved plans the split
// deployment executes and verifies per second, on one NATS server and on
// a three-node JetStream cluster with every stream and bucket at R3. Each
// iteration approves a batch of two-step plans (KAAR_BENCH_BATCH, default
// 30; a set_image and a memory limit on its own Deployment) at once, with
// two executor processes (remediation.max_concurrent 8 each), and waits
// until every plan's execution has succeeded (applied and verified: the
// Deployment rolled out again). It reports decisions/s and the mean time
// from approval to verified. Run with make bench-ha (-benchtime 1x: each
// iteration builds its own bus and namespace).
func BenchmarkExecutedDecisions(b *testing.B) {
	batch := 30
	if v := os.Getenv("KAAR_BENCH_BATCH"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			b.Fatalf("KAAR_BENCH_BATCH=%q: want a positive integer", v)
		}
		batch = n
	}
	for _, nodes := range []int{1, 3} {
		b.Run(fmt.Sprintf("nats-nodes=%d", nodes), func(b *testing.B) {
			ce := newChaosEnvWith(b, nodes)
			ce.startExecutor(b, "")
			ce.startExecutor(b, "")
			b.ResetTimer()
			var total, perPlan time.Duration
			done := 0
			for range b.N {
				b.StopTimer()
				plans := ce.newPlans(b, batch, 15*time.Minute)
				b.StartTimer()
				t0 := time.Now()
				ce.approveAll(b, plans)
				perPlan += ce.waitSucceeded(b, plans, t0)
				total += time.Since(t0)
				done += len(plans)
				b.StopTimer()
				ce.deleteDeployments(b, plans)
				b.StartTimer()
			}
			b.ReportMetric(float64(done)/total.Seconds(), "decisions/s")
			b.ReportMetric(perPlan.Seconds()/float64(done), "s/plan-to-verified")
		})
	}
}

// waitSucceeded waits until every plan's execution succeeded and returns
// the sum over the plans of the time from t0 to their end.
func (ce *chaosEnv) waitSucceeded(t testing.TB, plans []chaosPlan, t0 time.Time) time.Duration {
	t.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	ended := map[string]time.Duration{}
	for len(ended) < len(plans) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d plans ended within 5m", len(ended), len(plans))
		}
		for _, cp := range plans {
			if _, ok := ended[cp.plan.ID]; ok {
				continue
			}
			ex, err := ce.execution(cp.plan.ID)
			if err != nil || ex == nil || ex.State == events.ExecutionExecuting {
				continue
			}
			if ex.State != events.ExecutionSucceeded {
				t.Fatalf("plan %s ended %s (%s)", cp.plan.ID, ex.State, ex.RefusalReason)
			}
			ended[cp.plan.ID] = time.Since(t0)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var sum time.Duration
	for _, d := range ended {
		sum += d
	}
	return sum
}
