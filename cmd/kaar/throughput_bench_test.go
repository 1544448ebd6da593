package main_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kaar-dev/kaar/internal/testutil"
	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/config"
	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/kaar-dev/kaar/pkg/sandbox"
	"github.com/kaar-dev/kaar/pkg/svcmain"
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

// BenchmarkIncidentsToExecutions: what a deployment of kaar sustains from
// failures to plans to executions, one process (kaar serve, embedded
// NATS) next to the split deployment on a three-node R3 cluster (three
// kaar nats processes; two watchers, one active by the lease; two
// planners; two executors; each its own process). Each iteration makes
// KAAR_BENCH_BATCH Deployments (default 30) fail at once (OOMKilled: a
// 64Mi limit, 100Mi used) and measures
//
//   - incidents/s detected: the batch over the time from the first to
//     the last detected event on ISSUES (how fast the control plane
//     makes the pods fail bounds it);
//   - incidents/s planned: the batch over the time from the first
//     detection to the last plan stored (the planners' created_at);
//   - the detection-to-plan latency of each incident (p50, p99);
//   - decisions/s: every plan approved at once, the batch over the time
//     until every execution succeeded (applied and verified).
//
// Run with make bench-ha (-benchtime 1x: each deployment has its own bus
// and namespace).
func BenchmarkIncidentsToExecutions(b *testing.B) {
	batch := 30
	if v := os.Getenv("KAAR_BENCH_BATCH"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			b.Fatalf("KAAR_BENCH_BATCH=%q: want a positive integer", v)
		}
		batch = n
	}
	for _, deployment := range []string{"one-process", "split-R3"} {
		b.Run("deployment="+deployment, func(b *testing.B) {
			var ce *chaosEnv
			if deployment == "one-process" {
				ce = newServeEnv(b)
			} else {
				ce = newChaosEnvWith(b, 3)
				for _, svc := range []string{events.ServiceWatcher, events.ServiceWatcher, events.ServicePlanner, events.ServicePlanner} {
					ce.start(b, nil, svc, "--config", ce.cfg)
				}
				ce.startExecutor(b, "")
				ce.startExecutor(b, "")
			}
			detections := watchDetections(b, roleJetStream(b, ce.natsURL(), bus.RoleProvisioner), ce.cluster)
			var m throughput
			b.ResetTimer()
			for range b.N {
				m.add(b, ce, detections, batch)
			}
			m.report(b)
		})
	}
}

// newServeEnv runs kaar serve as a process (its embedded NATS listening
// on a free port) against a namespace of the sandbox, and connects to
// its bus as the chaos environment does.
func newServeEnv(b *testing.B) *chaosEnv {
	c := sandbox.ForTest(b)
	ce := &chaosEnv{bin: buildKaar(b), kube: c.Clientset()}
	ce.ns = sandbox.NewNamespace(b, ce.kube)
	ce.cluster = "bench-" + strings.ReplaceAll(ce.ns[len(ce.ns)-5:], "-", "")
	port, natsPort := testutil.FreePort(b), testutil.FreePort(b)
	ce.nodes = []*natsNode{{port: natsPort}}
	ce.cfg = writeConfig(b, c, ce.ns, ce.cluster, port, "  max_concurrent: 16\n  max_concurrent_per_namespace: 16")
	f, err := os.OpenFile(ce.cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := fmt.Fprintf(f, "nats:\n  store_dir: %s\n", b.TempDir()); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	p := ce.start(b, nil, "serve", "--config", ce.cfg, "--nats-listen", fmt.Sprintf("127.0.0.1:%d", natsPort), "--no-sandbox")
	deadline := time.Now().Add(2 * time.Minute)
	for {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/health", port))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if _, exited := p.waitExit(0); exited || time.Now().After(deadline) {
			b.Fatalf("kaar serve not healthy:\n%s", tail(p.out.String(), 40))
		}
		time.Sleep(200 * time.Millisecond)
	}
	loaded, err := config.LoadFile(ce.cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	if ce.cli, err = svcmain.EnsureKey(loaded.Signing.KeyDir, svcmain.RoleCLI, slog.New(slog.DiscardHandler)); err != nil {
		b.Fatal(err)
	}
	ce.js = roleJetStream(b, ce.natsURL(), bus.RoleMCPGateway)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if ce.plans, err = bus.OpenPlanStore(ctx, roleJetStream(b, ce.natsURL(), bus.RolePlanner)); err != nil {
		b.Fatal(err)
	}
	return ce
}

// detectionLog is when each owner's incident was first detected, as
// this benchmark's own ISSUES consumer saw it arrive.
type detectionLog struct {
	mu sync.Mutex
	at map[string]time.Time
}

func (d *detectionLog) first(owner string) (time.Time, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	t, ok := d.at[owner]
	return t, ok
}

func watchDetections(b *testing.B, js jetstream.JetStream, cluster string) *detectionLog {
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	c, err := js.OrderedConsumer(ctx, events.StreamIssues, jetstream.OrderedConsumerConfig{FilterSubjects: []string{events.SubjectRoot + "." + cluster + ".>"}})
	if err != nil {
		b.Fatal(err)
	}
	d := &detectionLog{at: map[string]time.Time{}}
	cc, err := c.Consume(func(m jetstream.Msg) {
		now := time.Now()
		env, err := events.Decode(m.Data())
		if err != nil {
			return
		}
		e, err := events.DecodeData[events.IncidentEvent](env)
		if err != nil || e.Transition != events.TransitionDetected {
			return
		}
		d.mu.Lock()
		if _, ok := d.at[e.Incident.Owner.Name]; !ok {
			d.at[e.Incident.Owner.Name] = now
		}
		d.mu.Unlock()
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(cc.Stop)
	return d
}

// throughput accumulates the measures of the iterations.
type throughput struct {
	incidents                  int
	detecting, planning, execs time.Duration
	latencies                  []time.Duration
}

// add runs one iteration: batch failing Deployments, their plans, and
// their executions.
func (m *throughput) add(b *testing.B, ce *chaosEnv, detections *detectionLog, batch int) {
	b.StopTimer()
	var names []string
	for range batch {
		ce.seq++
		names = append(names, fmt.Sprintf("t%d", ce.seq))
	}
	b.StartTimer()
	generation := map[string]int64{}
	for _, name := range names {
		dep := sandbox.TestDeployment(ce.ns, name, "nginx:1.27", 1, map[string]string{sandbox.AnnotationMemoryUsage: pipelineUsage})
		dep.Spec.Template.Spec.Containers[0].Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse(pipelineLimit)}
		created, err := ce.kube.AppsV1().Deployments(ce.ns).Create(context.Background(), dep, metav1.CreateOptions{})
		if err != nil {
			b.Fatal(err)
		}
		generation[name] = created.Generation
	}
	plans := map[string]events.Plan{}
	deadline := time.Now().Add(5 * time.Minute)
	for len(plans) < len(names) {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d plans stored within 5m", len(plans), len(names))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		all, _ := ce.plans.List(ctx)
		cancel()
		for _, sp := range all {
			p := sp.Plan
			if p.State == events.PlanProposed && !p.DiagnosticOnly && slices.Contains(names, p.Target.Name) {
				plans[p.Target.Name] = p
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	var firstDetected, lastDetected, lastPlanned time.Time
	for _, name := range names {
		at, ok := detections.first(name)
		if !ok {
			b.Fatalf("plan for %s, but no detection seen", name)
		}
		if firstDetected.IsZero() || at.Before(firstDetected) {
			firstDetected = at
		}
		if at.After(lastDetected) {
			lastDetected = at
		}
		if c := plans[name].CreatedAt; c.After(lastPlanned) {
			lastPlanned = c
		}
		m.latencies = append(m.latencies, plans[name].CreatedAt.Sub(at))
	}
	m.incidents += len(names)
	m.detecting += lastDetected.Sub(firstDetected)
	m.planning += lastPlanned.Sub(firstDetected)

	var cps []chaosPlan
	for _, name := range names {
		cps = append(cps, chaosPlan{plan: plans[name], dep: &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name, Generation: generation[name]}}})
	}
	t0 := time.Now()
	ce.approveAll(b, cps)
	ce.waitSucceeded(b, cps, t0)
	m.execs += time.Since(t0)
	b.StopTimer()
	ce.deleteDeployments(b, cps)
	b.StartTimer()
}

func (m *throughput) report(b *testing.B) {
	slices.Sort(m.latencies)
	pct := func(q float64) float64 {
		return float64(m.latencies[min(len(m.latencies)-1, int(q*float64(len(m.latencies))))].Microseconds()) / 1000
	}
	perSecond := func(d time.Duration) float64 { return float64(m.incidents) / max(d, time.Millisecond).Seconds() }
	b.ReportMetric(perSecond(m.detecting), "detected/s")
	b.ReportMetric(perSecond(m.planning), "planned/s")
	b.ReportMetric(pct(0.5), "detect-to-plan-p50-ms")
	b.ReportMetric(pct(0.99), "detect-to-plan-p99-ms")
	b.ReportMetric(perSecond(m.execs), "decisions/s")
	b.ReportMetric(0, "ns/op")
}
