package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/config"
	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/kaar-dev/kaar/pkg/sandbox"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// results are the numbers of one run.
type results struct {
	shape          shape
	nodes          int
	loadTime       time.Duration
	syncTime       time.Duration
	detect         []time.Duration
	detectMissing  int
	analyze        []time.Duration
	analyzeErrors  int
	incidents      int
	rss, hwm       uint64
	rssAnon        uint64 // anonymous resident memory (the Go runtime's, mostly)
	rssFile        uint64 // file-backed resident memory (the binary's pages)
	mem            goMemory
	binary         string // how the measured kaar-watcher was made
	binarySize     int64
	memoryLimit    string // server.memory_limit of its configuration
	warnings       bool   // watcher.warnings.enabled of its configuration
	loadStart      string // load averages: at the start, at the steady-state measurement
	loadSteady     string
	stormSend      time.Duration // time to send the storm's patches
	stormWindow    time.Duration // first to last storm pod seen failing
	stormSeen      int           // storm pods seen failing
	stormDetected  int
	stormLost      int
	stormDuplicate int
	stormRate      float64 // detected events per second
	stormDetect    []time.Duration
	stormRSS       uint64
	stormHWM       uint64
	stormAnon      uint64
	stormFile      uint64
	stormMem       goMemory
	notes          []string
}

// benchRun is one run of the bench: what its steps set up for the next
// ones, and the cleanups that undo them.
type benchRun struct {
	f       flags
	out     io.Writer
	sh      shape
	r       *results
	cleanup cleanups

	cluster *sandbox.Cluster
	cs      *kubernetes.Clientset
	ns      string
	emb     *bus.Embedded
	nc      *nats.Conn
	col     *collector
	obs     *podObserver
	want    int    // pods running at steady state
	scratch string // the watcher's binary, configuration and log
	seed    string // the watcher's NATS credential
	watcher *watcherProc
}

// cleanups are deferred steps, run last in, first out, as defer would.
type cleanups []func()

func (c *cleanups) add(f func()) { *c = append(*c, f) }

func (c *cleanups) run() {
	for i := len(*c) - 1; i >= 0; i-- {
		(*c)[i]()
	}
}

// bench runs the benchmark, one step after the other, and reports it.
func bench(ctx context.Context, f flags, out io.Writer) error {
	sh, err := planLoad(f.pods, f.failPercent, f.storm)
	if err != nil {
		return err
	}
	if err := config.ValidateMemoryLimit(f.memoryLimit); err != nil {
		return err
	}
	b := &benchRun{f: f, out: out, sh: sh, r: &results{shape: sh, nodes: f.nodes, memoryLimit: f.memoryLimit, warnings: f.warnings, loadStart: loadAverage()}}
	defer b.cleanup.run()
	logf(out, "load: %d healthy Deployments x %d, %d failing Deployments x %d, %d storm pods (%d pods)",
		sh.HealthyDeployments, sh.HealthyReplicas, sh.FailingDeployments, sh.FailingReplicas, sh.StormPods, sh.total())

	if err := b.prepareWatcher(ctx); err != nil {
		return err
	}
	if err := b.startCluster(ctx); err != nil {
		return err
	}
	if err := b.createNamespace(ctx); err != nil {
		return err
	}
	if err := b.startBus(ctx); err != nil {
		return err
	}
	if err := b.createLoad(ctx); err != nil {
		return err
	}
	if err := b.startWatcher(ctx); err != nil {
		return err
	}
	if err := b.measureDetection(ctx); err != nil {
		return err
	}
	b.measureAnalyze()
	if err := b.watcher.exited(); err != nil {
		return err
	}
	b.r.loadSteady = loadAverage()
	if m, err := procStatus(b.watcher.pid()); err == nil {
		b.r.rss, b.r.hwm, b.r.rssAnon, b.r.rssFile = m["VmRSS"], m["VmHWM"], m["RssAnon"], m["RssFile"]
	}
	if b.r.mem, err = scrapeGoMemory(b.watcher.metricsURL); err != nil {
		return fmt.Errorf("watcher metrics: %w", err)
	}
	if sh.StormPods > 0 {
		if err := b.measureStorm(ctx); err != nil {
			return err
		}
	}
	return b.report()
}

// prepareWatcher makes the scratch directory of the watcher and builds
// kaar-watcher there (or takes -watcher-binary).
func (b *benchRun) prepareWatcher(ctx context.Context) error {
	dir, err := os.MkdirTemp("", "kaar-watcher-bench-watcher-")
	if err != nil {
		return err
	}
	b.scratch = dir
	b.cleanup.add(func() { _ = os.RemoveAll(dir) }) // scratch space; a leftover does no harm
	if b.f.watcherBinary != "" {
		b.r.binary = b.f.watcherBinary + " (-watcher-binary)"
	} else {
		logf(b.out, "building kaar-watcher: CGO_ENABLED=0 GOWORK=off go build %s", strings.Join(quoted(buildFlags), " "))
		if b.f.watcherBinary, err = buildWatcher(ctx, dir); err != nil {
			return err
		}
		b.r.binary = "kaar-watcher built by the bench with CGO_ENABLED=0 go build " + strings.Join(quoted(buildFlags), " ") + " (as the images)"
	}
	fi, err := os.Stat(b.f.watcherBinary)
	if err != nil {
		return err
	}
	b.r.binarySize = fi.Size()
	return nil
}

func quoted(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = a
		if strings.Contains(a, " ") {
			out[i] = `"` + a + `"`
		}
	}
	return out
}

// startCluster attaches to the sandbox of -kubeconfig, or starts a
// private one with -nodes kwok nodes.
func (b *benchRun) startCluster(ctx context.Context) error {
	var err error
	if b.f.kubeconfig != "" {
		if b.cluster, err = sandbox.Attach(ctx, b.f.kubeconfig); err != nil {
			return err
		}
		b.r.notes = append(b.r.notes, "attached to an existing sandbox: -nodes was not applied")
		return nil
	}
	dir := b.f.stateDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "kaar-watcher-bench-"); err != nil {
			return err
		}
		b.cleanup.add(func() { _ = os.RemoveAll(dir) }) // scratch space; a leftover does no harm
	}
	logf(b.out, "starting a private sandbox with %d kwok nodes in %s", b.f.nodes, dir)
	c, err := sandbox.Up(ctx, sandbox.Options{StateDir: dir, Nodes: b.f.nodes, Progress: prefixed(b.out)})
	if err != nil {
		return err
	}
	b.cluster = c
	b.cleanup.add(func() {
		dctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = c.Down(dctx)
	})
	return nil
}

// createNamespace makes the client and the bench's namespace, deleted
// at the end.
func (b *benchRun) createNamespace(ctx context.Context) error {
	rc := b.cluster.RESTConfig()
	rc.QPS, rc.Burst = 300, 600
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	b.cs = cs
	ns := fmt.Sprintf("kaar-bench-%d", time.Now().Unix()%100000)
	b.ns = ns
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	b.cleanup.add(func() {
		dctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = cs.CoreV1().Namespaces().Delete(dctx, ns, metav1.DeleteOptions{})
	})
	return waitServiceAccount(ctx, cs, ns)
}

// startBus starts an embedded NATS JetStream on a TCP port, declares the
// bus for the cluster (kaar bus provision) and subscribes the collector
// to the incidents. The watcher logs in with its role's seed (--creds).
func (b *benchRun) startBus(ctx context.Context) error {
	credDir, err := os.MkdirTemp("", "kaar-bench-creds-")
	if err != nil {
		return err
	}
	b.cleanup.add(func() { _ = os.RemoveAll(credDir) }) // scratch space; a leftover does no harm
	creds, err := bus.LoadOrCreateCredentials(credDir)
	if err != nil {
		return err
	}
	b.seed = creds.SeedFile(bus.RoleWatcher)
	if b.emb, err = bus.StartEmbedded(ctx, bus.EmbeddedOptions{Port: bus.RandomPort, Credentials: creds}); err != nil {
		return err
	}
	b.cleanup.add(b.emb.Shutdown)
	if b.nc, err = b.emb.Connect(ctx, bus.ConnectOptions{Name: "kaar-watcher-bench"}); err != nil {
		return err
	}
	b.cleanup.add(b.nc.Close)
	js, _ := jetstream.New(b.nc)
	if _, err := bus.Provision(ctx, js, bus.Config{Clusters: []string{b.f.cluster}}); err != nil {
		return err
	}
	if b.col, err = newCollector(ctx, b.nc, b.f.cluster); err != nil {
		return err
	}
	b.cleanup.add(b.col.cc.Stop)
	return nil
}

// createLoad starts the bench's own watch, then creates the healthy load
// and waits for it to run.
func (b *benchRun) createLoad(ctx context.Context) error {
	sh := b.sh
	opts, err := benchClassify(b.f.cluster, b.f.memoryLimit)
	if err != nil {
		return err
	}
	obs, err := newPodObserver(b.cs, b.ns, b.f.cluster, opts)
	if err != nil {
		return err
	}
	b.obs = obs
	if err := obs.run(ctx); err != nil {
		return err
	}
	t0 := time.Now()
	logf(b.out, "creating %d healthy pods", sh.total()-sh.FailingDeployments*int(sh.FailingReplicas)+countEvict(sh)*int(sh.FailingReplicas))
	if err := createHealthy(ctx, b.cs, b.ns, sh); err != nil {
		return fmt.Errorf("create load: %w", err)
	}
	want := sh.total() - sh.FailingDeployments*int(sh.FailingReplicas) + countEvict(sh)*int(sh.FailingReplicas)
	b.want = want
	if err := poll(ctx, b.f.loadTimeout, 10*time.Second, func() (bool, string) {
		n := obs.runningCount()
		return n >= want, fmt.Sprintf("%d of %d pods running", n, want)
	}, b.out); err != nil {
		return err
	}
	b.r.loadTime = time.Since(t0)
	logf(b.out, "%d pods running after %s", want, b.r.loadTime.Round(time.Second))
	return nil
}

// startWatcher runs kaar-watcher and waits until it answers analyze,
// its caches synced.
func (b *benchRun) startWatcher(ctx context.Context) error {
	kc, err := b.cluster.KubeconfigFor(sandbox.AdminUser)
	if err != nil {
		return err
	}
	wctx, stopWatcher := context.WithCancel(ctx)
	b.cleanup.add(stopWatcher)
	w, err := startWatcherProc(wctx, b.f.watcherBinary, b.scratch, b.emb.ClientURL(), b.seed, kc, b.f.cluster, b.f.memoryLimit, b.f.warnings)
	if err != nil {
		return err
	}
	b.watcher = w
	b.cleanup.add(func() { stopWatcher(); w.wait() })
	t0 := time.Now()
	var exited error
	if err := poll(ctx, 10*time.Minute, 5*time.Second, func() (bool, string) {
		if exited = w.exited(); exited != nil {
			return true, ""
		}
		_, err := analyze(b.nc, b.f.cluster, events.AnalyzeRequest{Limit: 1})
		return err == nil, fmt.Sprint(err)
	}, b.out); err != nil {
		return fmt.Errorf("watcher sync: %w", err)
	}
	if exited != nil {
		return exited
	}
	b.r.syncTime = time.Since(t0)
	logf(b.out, "watcher synced %d pods in %s", b.want, b.r.syncTime.Round(10*time.Millisecond))
	return nil
}

// measureDetection makes the failing share of the load fail and times
// the detection of each incident.
func (b *benchRun) measureDetection(ctx context.Context) error {
	sh := b.sh
	mark := b.col.len()
	logf(b.out, "making %d pods fail (%d Deployments)", sh.FailingDeployments*int(sh.FailingReplicas), sh.FailingDeployments)
	tFail := time.Now()
	if err := createFailing(ctx, b.cs, b.ns, sh); err != nil {
		return fmt.Errorf("create failing load: %w", err)
	}
	failIDs := func() []string { return observedSince(b.obs, tFail) }
	_ = poll(ctx, 5*time.Minute, 10*time.Second, func() (bool, string) {
		ids := failIDs()
		missing := len(ids) - countDetected(detectedBy(b.col.since(mark)), ids)
		return len(ids) >= sh.FailingDeployments && missing == 0, fmt.Sprintf("%d incidents seen failing, %d not detected yet", len(ids), missing)
	}, b.out)
	det := detectedBy(b.col.since(mark))
	for _, id := range failIDs() {
		at, ok := det[id]
		first, _ := b.obs.firstFailing(id)
		if !ok {
			b.r.detectMissing++
			continue
		}
		b.r.detect = append(b.r.detect, at[0].Sub(first))
	}
	b.r.incidents = len(b.r.detect)
	return nil
}

// countDetected counts the incidents of ids that det has.
func countDetected(det map[string][]time.Time, ids []string) int {
	n := 0
	for _, id := range ids {
		if _, ok := det[id]; ok {
			n++
		}
	}
	return n
}

// measureAnalyze times -analyze requests over NATS request/reply, served
// from the watcher's memory.
func (b *benchRun) measureAnalyze() {
	time.Sleep(2 * time.Second)
	types := []events.IssueType{events.IssueCrashLoopBackOff, events.IssueImagePullBackOff, events.IssueOOMKilled, events.IssuePending, events.IssueEvicted}
	for i := range b.f.analyze {
		req := []events.AnalyzeRequest{{}, {Namespace: b.ns}, {Type: types[i%len(types)]}, {Owner: fmt.Sprintf("fail-%s-%03d", failures[i%len(failures)], i%b.sh.FailingDeployments)}, {Limit: 100}}[i%5]
		start := time.Now()
		if _, err := analyze(b.nc, b.f.cluster, req); err != nil {
			b.r.analyzeErrors++
			continue
		}
		b.r.analyze = append(b.r.analyze, time.Since(start))
	}
}

// measureStorm makes the storm pods crash within -storm-window and counts
// what the watcher detected, lost and duplicated, and how fast.
func (b *benchRun) measureStorm(ctx context.Context) error {
	n := b.sh.StormPods
	mark := b.col.len()
	logf(b.out, "storm: %d pods crash within %s", n, b.f.stormWindow)
	sent := time.Now()
	if err := storm(ctx, b.cs, b.ns, n, b.f.stormWindow); err != nil {
		return fmt.Errorf("storm: %w", err)
	}
	b.r.stormSend = time.Since(sent)
	ids := make([]string, n)
	keys := make([]string, n)
	for i := range ids {
		ids[i] = events.IncidentID(b.f.cluster, b.ns, "Pod", stormPodName(i), "app", events.IssueCrashLoopBackOff)
		keys[i] = b.ns + "/" + stormPodName(i)
	}
	_ = poll(ctx, 5*time.Minute, 5*time.Second, func() (bool, string) {
		got := countDetected(detectedBy(b.col.since(mark)), ids)
		return got == len(ids), fmt.Sprintf("%d of %d storm incidents detected", got, len(ids))
	}, b.out)
	time.Sleep(5 * time.Second) // late duplicates, if any, arrive
	b.tallyStorm(detectedBy(b.col.since(mark)), ids)
	seen := b.obs.failingPods(keys)
	b.r.stormSeen = len(seen)
	if len(seen) > 0 {
		slices.SortFunc(seen, func(x, y time.Time) int { return x.Compare(y) })
		b.r.stormWindow = seen[len(seen)-1].Sub(seen[0])
	}
	if err := b.watcher.exited(); err != nil {
		return err
	}
	if m, err := procStatus(b.watcher.pid()); err == nil {
		b.r.stormRSS, b.r.stormHWM, b.r.stormAnon, b.r.stormFile = m["VmRSS"], m["VmHWM"], m["RssAnon"], m["RssFile"]
	}
	var err error
	if b.r.stormMem, err = scrapeGoMemory(b.watcher.metricsURL); err != nil {
		return fmt.Errorf("watcher metrics: %w", err)
	}
	return nil
}

// tallyStorm counts the storm incidents ids in det (detected, lost,
// duplicates), their detection latencies, and the detection rate from
// the first to the last.
func (b *benchRun) tallyStorm(det map[string][]time.Time, ids []string) {
	r := b.r
	var firstAt, lastAt time.Time
	for _, id := range ids {
		at, ok := det[id]
		if !ok {
			r.stormLost++
			continue
		}
		r.stormDetected++
		if len(at) > 1 {
			r.stormDuplicate += len(at) - 1
		}
		if first, ok := b.obs.firstFailing(id); ok {
			r.stormDetect = append(r.stormDetect, at[0].Sub(first))
		}
		if firstAt.IsZero() || at[0].Before(firstAt) {
			firstAt = at[0]
		}
		lastAt = later(lastAt, at[0])
	}
	if span := lastAt.Sub(firstAt); span > 0 {
		r.stormRate = float64(r.stormDetected) / span.Seconds()
	}
}

// report prints the table and appends it to -out.
func (b *benchRun) report() error {
	table := b.r.table()
	fmt.Fprintln(b.out)
	fmt.Fprintln(b.out, "command: "+commandLine())
	fmt.Fprintln(b.out)
	fmt.Fprint(b.out, table)
	if b.f.out != "" {
		if err := appendResults(b.f.out, table, b.r); err != nil {
			return err
		}
		logf(b.out, "results appended to %s", b.f.out)
	}
	return nil
}

func countEvict(s shape) int {
	n := 0
	for i := range s.FailingDeployments {
		if _, f := failingName(i); f == failEvict {
			n++
		}
	}
	return n
}

// observedSince returns the incidents the bench's watch saw start failing
// at or after t.
func observedSince(o *podObserver, t time.Time) []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var ids []string
	for id, at := range o.failingAt {
		if !at.Before(t) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// detectedBy returns the arrival times of the detected announcements of
// each incident.
func detectedBy(arr []arrival) map[string][]time.Time {
	out := map[string][]time.Time{}
	for _, a := range arr {
		if a.event.Transition == events.TransitionDetected {
			out[a.event.Incident.ID] = append(out[a.event.Incident.ID], a.at)
		}
	}
	return out
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func analyze(nc *nats.Conn, cluster string, req events.AnalyzeRequest) (events.AnalyzeResponse, error) {
	subject, err := events.ServiceSubject(cluster, events.ServiceWatcher, events.VerbAnalyze)
	if err != nil {
		return events.AnalyzeResponse{}, err
	}
	body, _ := json.Marshal(req)
	msg, err := nc.Request(subject, body, 10*time.Second)
	if err != nil {
		return events.AnalyzeResponse{}, err
	}
	return events.DecodeReply[events.AnalyzeResponse](msg.Data, msg.Header.Get(events.HeaderError))
}

func waitServiceAccount(ctx context.Context, cs kubernetes.Interface, ns string) error {
	return poll(ctx, time.Minute, time.Minute, func() (bool, string) {
		_, err := cs.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, fmt.Sprint(err)
	}, io.Discard)
}

// poll checks cond every 250ms until it holds, printing its state every
// report, and fails after timeout.
func poll(ctx context.Context, timeout, report time.Duration, cond func() (bool, string), out io.Writer) error {
	deadline := time.Now().Add(timeout)
	next := time.Now().Add(report)
	for {
		ok, why := cond()
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			logf(out, "gave up after %s: %s", timeout, why)
			return errors.New("timed out: " + why)
		}
		if time.Now().After(next) {
			logf(out, "%s", why)
			next = time.Now().Add(report)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func percentile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(float64(len(s))*q+0.999999) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// ms prints a latency. A detection latency is the difference of two
// watches on the same API server (the watcher's and the bench's), good
// to about a millisecond: one below zero means the watcher's watch
// delivered first, and is printed as "< 1 ms" rather than as a negative
// number.
func ms(d time.Duration) string {
	if d < 0 {
		return "< 1 ms"
	}
	return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000)
}

func mib(b uint64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

func (r *results) table() string {
	s := r.shape
	var b strings.Builder
	row := func(k, v string) { fmt.Fprintf(&b, "| %s | %s |\n", k, v) }
	b.WriteString("| measure | value |\n| --- | --- |\n")
	row("cluster", fmt.Sprintf("%d kwok nodes, %d pods (%d healthy Deployments x %d, %d failing Deployments x %d, %d bare storm pods)",
		r.nodes, s.total(), s.HealthyDeployments, s.HealthyReplicas, s.FailingDeployments, s.FailingReplicas, s.StormPods))
	row("pods running after", r.loadTime.Round(time.Second).String())
	row("watcher start to caches synced", r.syncTime.Round(10*time.Millisecond).String())
	row("detection latency p50 / p99 (status write seen by a separate watch -> detected on the bus)",
		fmt.Sprintf("%s / %s over %d incidents (%d not detected)", ms(percentile(r.detect, .5)), ms(percentile(r.detect, .99)), len(r.detect), r.detectMissing))
	row("analyze latency p50 / p99 (NATS request/reply)",
		fmt.Sprintf("%s / %s over %d requests (%d errors)", ms(percentile(r.analyze, .5)), ms(percentile(r.analyze, .99)), len(r.analyze), r.analyzeErrors))
	row("watcher program", fmt.Sprintf("%s, %s", r.binary, mib(uint64(max(r.binarySize, 0)))))
	row("watcher soft memory limit", r.limitText())
	row("warnings (watcher.warnings.enabled)", map[bool]string{true: "on (kaar's default)", false: "off"}[r.warnings])
	row("load average (1, 5, 15 min) at the start / at the steady-state measurement", fmt.Sprintf("%s / %s", r.loadStart, r.loadSteady))
	row("watcher RSS / peak RSS (steady state, /proc/<pid>/status)", fmt.Sprintf("%s / %s", mib(r.rss), mib(r.hwm)))
	row("watcher RSS anonymous / file-backed (the binary's pages)", fmt.Sprintf("%s / %s", mib(r.rssAnon), mib(r.rssFile)))
	row("watcher Go runtime memory held (go_memstats_sys_bytes - heap_released)", mib(r.mem.Held))
	row("of which heap in use / free heap not yet returned / stacks / runtime metadata", fmt.Sprintf("%s / %s / %s / %s",
		mib(r.mem.HeapInuse), mib(r.mem.HeapFree), mib(r.mem.Stacks), mib(r.mem.Runtime)))
	row("watcher CPU time since its start (process_cpu_seconds_total)", r.mem.CPU.Round(100*time.Millisecond).String())
	row("watcher Go heap allocated (live + not yet collected) / objects / next GC goal", fmt.Sprintf("%s / %d / %s", mib(r.mem.HeapAlloc), r.mem.HeapObjects, mib(r.mem.NextGC)))
	if s.StormPods > 0 {
		row("storm: patches sent (API server accepted them) in", r.stormSend.Round(100*time.Millisecond).String())
		row("storm: pods seen failing, first to last", fmt.Sprintf("%d in %s", r.stormSeen, r.stormWindow.Round(100*time.Millisecond)))
		row("storm: incidents detected / lost / duplicate", fmt.Sprintf("%d / %d / %d", r.stormDetected, r.stormLost, r.stormDuplicate))
		row("storm: detected events per second (first to last detected)", fmt.Sprintf("%.0f", r.stormRate))
		row("storm: detection latency p50 / p99", fmt.Sprintf("%s / %s", ms(percentile(r.stormDetect, .5)), ms(percentile(r.stormDetect, .99))))
		row("watcher RSS / peak RSS after the storm", fmt.Sprintf("%s / %s", mib(r.stormRSS), mib(r.stormHWM)))
		row("watcher RSS anonymous / file-backed, Go memory held after the storm", fmt.Sprintf("%s / %s, %s", mib(r.stormAnon), mib(r.stormFile), mib(r.stormMem.Held)))
		row("watcher CPU time since its start, after the storm", r.stormMem.CPU.Round(100*time.Millisecond).String())
	}
	return b.String()
}

// limitText says which soft memory limit the watcher ran under, as its
// runtime reports it (go_gc_gomemlimit_bytes), and why.
func (r *results) limitText() string {
	gogc := fmt.Sprintf("GOGC %d", r.mem.GOGC)
	if r.mem.Limit == 0 {
		why := "no container memory limit here"
		if r.memoryLimit == config.MemoryLimitOff {
			why = "off"
		}
		return fmt.Sprintf("none (server.memory_limit: %s: %s), %s", r.memoryLimit, why, gogc)
	}
	return fmt.Sprintf("%s (server.memory_limit: %s), %s", mib(r.mem.Limit), r.memoryLimit, gogc)
}

func appendResults(path, table string, r *results) error {
	abs, _ := filepath.Abs(path)
	var b strings.Builder
	if _, err := os.Stat(abs); errors.Is(err, os.ErrNotExist) {
		b.WriteString("# Benchmarks\n\nMeasured numbers, newest last. Each section says the machine, the command and what was measured.\n")
	}
	fmt.Fprintf(&b, "\n## Watcher at scale (%s)\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&b, "Machine: %s\n\n", machine())
	fmt.Fprintf(&b, "Command: `%s`, tree at %s\n\n", commandLine(), treeCommit())
	b.WriteString(table)
	b.WriteString("\nMethod: the bench runs the kaar-watcher program in its own process, configured as a user would (a config file with the defaults but watcher.pending_grace 0s, server.memory_limit as said above, server.metrics_addr; --nats-url, --creds with the watcher's seed, --kubeconfig of the sandbox's admin), against the bench's own NATS server. RSS comes from /proc/<pid>/status, the Go figures from its /metrics. pending_grace 0 makes a Pending pod classifiable at its status write like the other types (the grace is a policy delay, not detection latency). Detection latency is, per incident, the arrival of its detected event on an ISSUES consumer minus the moment the bench's own pod watch first saw one of its pods failing (both in the bench process, same clock). The storm makes bare pods crash (one incident each), paced evenly over the window.\n")
	for _, n := range r.notes {
		b.WriteString("\nNote: " + n + "\n")
	}
	fh, err := os.OpenFile(abs, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := fh.WriteString(b.String()); err != nil {
		_ = fh.Close() // the write error is the one to report
		return err
	}
	return fh.Close()
}

func machine() string {
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
				mem = f[1] + " kB RAM"
			}
		}
	}
	load := ""
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		load = ", load average at the end " + strings.Join(strings.Fields(string(b))[:3], " ")
	}
	free := ""
	if b, err := exec.Command("free", "-g").Output(); err == nil {
		free = "\n\n```\n$ free -g\n" + strings.TrimRight(string(b), "\n") + "\n```"
	}
	return fmt.Sprintf("%d CPUs (nproc), %s, %s%s (shared with other work)%s", nproc(), cpu, mem, load, free)
}

type prefixWriter struct{ w io.Writer }

func (p prefixWriter) Write(b []byte) (int, error) {
	for line := range strings.Lines(string(b)) {
		logf(p.w, "sandbox: %s", strings.TrimRight(line, "\n"))
	}
	return len(b), nil
}

func prefixed(w io.Writer) io.Writer { return prefixWriter{w} }
