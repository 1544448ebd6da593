package main_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
)

// TestChaosOnAThreeNodeCluster: the chaos suite on a JetStream cluster
// of three kaar nats processes (every stream and bucket at R3), with two
// executor processes: the node that leads the APPROVALS stream, then the
// node that leads the kaar_plans bucket, is killed (SIGKILL) in the
// middle of executions and restarted on its store; an executor is killed
// mid-step. Every plan must be executed exactly once: 0 duplicates, 0
// losses, and none refused as stale or expired. `make chaos` runs it
// with KAAR_CHAOS_RUNS x KAAR_CHAOS_BATCH plans per scenario and writes
// the table to KAAR_CHAOS_CLUSTER_TABLE.
func TestChaosOnAThreeNodeCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("three NATS processes, executors and the sandbox; run without -short")
	}
	parallel(t)
	runs, batch := envInt(t, "KAAR_CHAOS_RUNS", 1), envInt(t, "KAAR_CHAOS_BATCH", 1)
	ce := newChaosEnvWith(t, 3)

	var results []chaosResult
	for _, st := range []string{events.StreamApprovals, "KV_" + events.BucketPlans} {
		results = append(results, ce.scenario("R3: SIGKILL the node leading "+st, runs, batch, func(t *testing.T, plans []chaosPlan) {
			ce.startExecutor(t, "")
			ce.startExecutor(t, "")
			ce.approveAll(t, plans)
			ce.waitAnyExecution(t, plans, time.Minute)
			i := ce.streamLeader(t, st)
			t.Logf("killing n%d, the leader of %s", i, st)
			ce.nodes[i].proc.kill(t)
			time.Sleep(2 * time.Second)
			ce.startNATS(ce.t, i) // outlives this scenario
		}))
	}
	for _, point := range []string{"claimed", "step-applied:0"} {
		results = append(results, ce.scenario("R3: executor SIGKILL at "+point, runs, batch, func(t *testing.T, plans []chaosPlan) {
			crashed := ce.startExecutor(t, point)
			ce.approveAll(t, plans)
			if err, exited := crashed.waitExit(2 * time.Minute); !exited || err == nil || !strings.Contains(err.Error(), "killed") {
				t.Fatalf("executor with failpoint %s: want it killed, got exited=%t %v:\n%s", point, exited, err, tail(crashed.out.String(), 40))
			}
			ce.startExecutor(t, "") // resumes after the ack wait
		}))
	}
	reportChaos(t, results, "KAAR_CHAOS_CLUSTER_TABLE")
	for _, r := range results {
		if r.stale != 0 || r.expired != 0 {
			t.Errorf("%s: %d stale, %d expired: approved plans within their window on an unchanged target must run", r.name, r.stale, r.expired)
		}
	}
}

// streamLeader is the index of the node leading stream (its server name
// is n<index>).
func (ce *chaosEnv) streamLeader(t testing.TB, stream string) int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := ce.js.Stream(ctx, stream)
		cancel()
		if err == nil {
			if c := st.CachedInfo().Cluster; c != nil {
				var i int
				if _, err := fmt.Sscanf(c.Leader, "n%d", &i); err == nil && i >= 0 && i < len(ce.nodes) {
					return i
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no leader of %s: %v", stream, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
