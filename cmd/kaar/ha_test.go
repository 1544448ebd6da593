package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	apimeta "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kaar-dev/kaar/internal/testutil"
	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/kaar-dev/kaar/pkg/lease"
	"github.com/kaar-dev/kaar/pkg/sandbox"
)

// issueLog collects the incident transitions a cluster's watcher
// publishes on ISSUES, by owner name.
type issueLog struct {
	mu  sync.Mutex
	all []events.IncidentEvent
}

// count counts the transitions tr of owner's failures. The warnings of
// the tests' templates (MissingProbes, MissingResources: kaar's defaults
// report them) are left out: the tests make failures and follow them;
// detectedTwice checks every incident, warnings included.
func (l *issueLog) count(owner string, tr events.Transition) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, e := range l.all {
		if e.Incident.Owner.Name == owner && e.Transition == tr && !e.Incident.Type.IsWarning() {
			n++
		}
	}
	return n
}

// detectedTwice lists the incidents (failures and warnings) announced as
// detected more than once.
func (l *issueLog) detectedTwice() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	seen := map[string]int{}
	var out []string
	for _, e := range l.all {
		if e.Transition != events.TransitionDetected {
			continue
		}
		if seen[e.Incident.ID]++; seen[e.Incident.ID] == 2 {
			out = append(out, e.Incident.Owner.Name+" "+string(e.Incident.Type)+" "+e.Incident.Container)
		}
	}
	return out
}

func (l *issueLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for _, e := range l.all {
		fmt.Fprintf(&b, "  %s %s %s #%d\n", e.Incident.Owner.Name, e.Incident.Type, e.Transition, e.Observation)
	}
	return b.String()
}

// followIssues reads every incident transition of cluster from the start
// of ISSUES (an ordered consumer, as the provisioner).
func followIssues(t *testing.T, js jetstream.JetStream, cluster string) *issueLog {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	c, err := js.OrderedConsumer(ctx, events.StreamIssues, jetstream.OrderedConsumerConfig{FilterSubjects: []string{events.SubjectRoot + "." + cluster + ".>"}})
	if err != nil {
		t.Fatal(err)
	}
	l := &issueLog{}
	cc, err := c.Consume(func(m jetstream.Msg) {
		env, err := events.Decode(m.Data())
		if err != nil {
			t.Errorf("ISSUES message on %s: %v", m.Subject(), err)
			return
		}
		e, err := events.DecodeData[events.IncidentEvent](env)
		if err != nil {
			t.Errorf("ISSUES message on %s: %v", m.Subject(), err)
			return
		}
		l.mu.Lock()
		l.all = append(l.all, e)
		l.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cc.Stop)
	return l
}

// leaseHolder is the pid holding the watcher lease of cluster (0: none).
func leaseHolder(t *testing.T, kv jetstream.KeyValue, cluster string) int {
	t.Helper()
	e, err := kv.Get(context.Background(), events.LeaseKey(events.ServiceWatcher, cluster))
	if err != nil {
		return 0
	}
	var r lease.Record
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		t.Fatalf("lease record %q: %v", e.Value(), err)
	}
	_, pid, _ := strings.Cut(r.Holder, "/")
	n, _ := strconv.Atoi(pid)
	return n
}

func waitUntil(t *testing.T, within time.Duration, what string, ok func() bool, diag func() string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s\n%s", what, within, diag())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// startKillable starts a kaar process the test may kill (SIGKILL); it is
// stopped (SIGTERM) at the end if it still runs.
func startKillable(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{out: &testutil.Buffer{}, done: make(chan error, 1)}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start kaar %v: %v", args, err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(p.stop)
	return p
}

// TestWatcherFailover: two watcher processes of one cluster; one holds
// the lease and announces, the other stands by. The active one is killed
// (SIGKILL: no release); the standby takes over after the lease
// duration and resumes from the state on the bus: the incidents already
// announced are not announced again, an incident that began during the
// failover is detected once, and one healed during it is resolved once.
func TestWatcherFailover(t *testing.T) {
	parallel(t)
	c := sandbox.ForTest(t)
	kube := c.Clientset()
	ns := sandbox.NewNamespace(t, kube)
	cluster := "ha-" + strings.ReplaceAll(ns[len(ns)-5:], "-", "")
	bin := buildKaar(t)
	natsPort := testutil.FreePort(t)
	cfg := writeConfig(t, c, ns, cluster, testutil.FreePort(t), "")
	extra := fmt.Sprintf("nats:\n  url: nats://127.0.0.1:%d\n  lease_duration: 3s\n", natsPort)
	f, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(extra); err != nil {
		t.Fatal(err)
	}
	f.Close()

	_, natsOut := startProcess(t, bin, "nats", "--listen", fmt.Sprintf("127.0.0.1:%d", natsPort), "--store-dir", t.TempDir(), "--config", cfg)
	waitUntil(t, 30*time.Second, "kaar nats listens", func() bool { return strings.Contains(natsOut.String(), "listening on") }, natsOut.String)
	url := fmt.Sprintf("nats://127.0.0.1:%d", natsPort)
	pjs := roleJetStream(t, url, bus.RoleProvisioner)
	issues := followIssues(t, pjs, cluster)
	leases, err := pjs.KeyValue(context.Background(), events.BucketLeases)
	if err != nil {
		t.Fatal(err)
	}

	crashing := map[string]string{sandbox.AnnotationCrashExitCode: "1"}
	create := func(name string) {
		t.Helper()
		if _, err := kube.AppsV1().Deployments(ns).Create(context.Background(), sandbox.TestDeployment(ns, name, "nginx:1.27", 1, crashing), apimeta.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"d1", "d2", "d3"} {
		create(d)
	}

	watchers := map[int]*proc{}
	var outs []*testutil.Buffer
	for range 2 {
		p := startKillable(t, bin, "watcher", "--config", cfg)
		watchers[p.cmd.Process.Pid] = p
		outs = append(outs, p.out)
	}
	diag := func() string {
		var b strings.Builder
		fmt.Fprintf(&b, "ISSUES:\n%s", issues)
		for i, o := range outs {
			fmt.Fprintf(&b, "watcher %d:\n%s\n", i, tail(o.String(), 30))
		}
		return b.String()
	}
	waitUntil(t, 90*time.Second, "d1, d2, d3 detected", func() bool {
		return issues.count("d1", events.TransitionDetected) == 1 && issues.count("d2", events.TransitionDetected) == 1 && issues.count("d3", events.TransitionDetected) == 1
	}, diag)
	active := leaseHolder(t, leases, cluster)
	if watchers[active] == nil {
		t.Fatalf("the lease holder %d is not one of the watchers %v", active, watchers)
	}

	// The active watcher dies; meanwhile d4 starts failing and d1 is
	// healed (its template no longer crashes).
	watchers[active].kill(t)
	killedAt := time.Now()
	create("d4")
	patch := []byte(`{"spec":{"template":{"metadata":{"annotations":{"` + sandbox.AnnotationCrashExitCode + `":null}}}}}`)
	if _, err := kube.AppsV1().Deployments(ns).Patch(context.Background(), "d1", types.StrategicMergePatchType, patch, apimeta.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	var standby int
	for pid := range watchers {
		if pid != active {
			standby = pid
		}
	}
	waitUntil(t, 30*time.Second, "the standby holds the lease", func() bool { return leaseHolder(t, leases, cluster) == standby }, diag)
	t.Logf("standby %d took over %s after the active watcher %d was killed", standby, time.Since(killedAt).Round(100*time.Millisecond), active)
	waitUntil(t, 2*time.Minute, "d4 detected and d1 resolved by the new active watcher", func() bool {
		return issues.count("d4", events.TransitionDetected) == 1 && issues.count("d1", events.TransitionResolved) == 1
	}, diag)
	// Let the new watcher settle past a group interval, then count.
	time.Sleep(5 * time.Second)
	for _, d := range []string{"d1", "d2", "d3", "d4"} {
		if n := issues.count(d, events.TransitionDetected); n != 1 {
			t.Errorf("%s detected %d times, want once across the failover\n%s", d, n, diag())
		}
	}
	if n := issues.count("d1", events.TransitionResolved); n != 1 {
		t.Errorf("d1 resolved %d times, want once", n)
	}
	if twice := issues.detectedTwice(); len(twice) > 0 {
		t.Errorf("detected twice across the failover: %v", twice)
	}
	for _, d := range []string{"d2", "d3", "d4"} {
		if n := issues.count(d, events.TransitionResolved); n != 0 {
			t.Errorf("%s resolved %d times while it still fails", d, n)
		}
	}
}
