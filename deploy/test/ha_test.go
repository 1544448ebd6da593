package deploytest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/config"
	"github.com/kaar-dev/kaar/pkg/events"
	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// routePassword is the test's key route of the NATS Secret (the cluster
// routes' password).
const routePassword = "5e0ab1c2d3e4f5a6b7c8d9e0f1a2b3c4"

// haValues is the chart's values-ha.yaml.
func haValues(t testing.TB) string { return filepath.Join(chartDir(t), "values-ha.yaml") }

// haCase is the chart case of values-ha.yaml (with the notifier).
func haCase(t *testing.T) chartCase {
	t.Helper()
	for _, tc := range chartCases(t) {
		if tc.natsCluster {
			return tc
		}
	}
	t.Fatal("no chart case with values-ha.yaml")
	return chartCase{}
}

// TestChartHAValuesRunEveryServiceReplicated renders values-ha.yaml (the
// API server accepts it: TestChartObjectsAcceptedByAPIServer) and checks
// the topology deploy/README.md describes: two replicas of each of the
// five services, each with a PodDisruptionBudget that keeps one running
// and a preference for different nodes; three NATS nodes clustered by
// authenticated routes; every service configured for R3 streams and
// buckets and the lease duration of the values.
func TestChartHAValuesRunEveryServiceReplicated(t *testing.T) {
	tc := haCase(t)
	objs := render(t, "kaar", "kaar-system", tc.args...)
	for _, svc := range chartServices(tc) {
		dep := find(t, objs, "Deployment", "kaar-"+svc)
		if r, _, _ := unstructured.NestedInt64(dep.Object, "spec", "replicas"); r != 2 {
			t.Errorf("%s: %d replicas, want 2", svc, r)
		}
		checkSpreadAndBudget(t, objs, dep, svc, 2)
		cfg, _ := effectiveConfig(t, tc, objs, dep)
		if cfg.NATS.Replicas != 3 || cfg.NATS.LeaseDuration.Duration != 15*time.Second || cfg.NATS.ExecutorAckWait.Duration != 2*time.Minute {
			t.Errorf("%s: nats.replicas %d lease_duration %s executor_ack_wait %s, want 3, 15s, 2m", svc, cfg.NATS.Replicas, cfg.NATS.LeaseDuration, cfg.NATS.ExecutorAckWait)
		}
	}
	prov, _ := effectiveConfig(t, tc, objs, find(t, objs, "Job", "kaar-provision"))
	if prov.NATS.Replicas != 3 {
		t.Errorf("the provision Job declares the bus with %d replicas, want 3", prov.NATS.Replicas)
	}
	sts := find(t, objs, "StatefulSet", "kaar-nats")
	if r, _, _ := unstructured.NestedInt64(sts.Object, "spec", "replicas"); r != 3 {
		t.Errorf("NATS StatefulSet: %d replicas, want 3", r)
	}
	if p, _, _ := unstructured.NestedString(sts.Object, "spec", "podManagementPolicy"); p != "Parallel" {
		t.Errorf("NATS podManagementPolicy %q, want Parallel (a node waits for its peers)", p)
	}
	checkSpreadAndBudget(t, objs, sts, "nats", 3)
	headless := find(t, objs, "Service", "kaar-nats-headless")
	ports, _, _ := unstructured.NestedSlice(headless.Object, "spec", "ports")
	hasRoute := false
	for _, p := range ports {
		hasRoute = hasRoute || p.(map[string]any)["port"] == int64(6222)
	}
	if !hasRoute {
		t.Errorf("the headless NATS Service has no route port 6222: %v", ports)
	}
	// The other chart cases keep one NATS node and their own replicas.
	single := render(t, "kaar", "kaar-system", "--set", withSecrets)
	if r, _, _ := unstructured.NestedInt64(find(t, single, "StatefulSet", "kaar-nats").Object, "spec", "replicas"); r != 1 {
		t.Errorf("default NATS StatefulSet: %d replicas, want 1", r)
	}
	if conf, _, _ := unstructured.NestedString(find(t, single, "ConfigMap", "kaar-nats").Object, "data", "nats.conf"); strings.Contains(conf, "cluster") {
		t.Errorf("the single NATS node has a cluster block:\n%s", conf)
	}
	for _, svc := range services {
		dep := find(t, single, "Deployment", "kaar-"+svc)
		r, _, _ := unstructured.NestedInt64(dep.Object, "spec", "replicas")
		checkSpreadAndBudget(t, single, dep, svc, r)
	}
}

// checkSpreadAndBudget: workload's pods prefer nodes without another pod
// of component (preferred anti-affinity by hostname on exactly the pods'
// own selector labels), and a PodDisruptionBudget on the same pods lets a
// drain evict one at a time and, with more than one replica, keeps one.
func checkSpreadAndBudget(t *testing.T, objs []*unstructured.Unstructured, workload *unstructured.Unstructured, component string, replicas int64) {
	t.Helper()
	podLabels, _, _ := unstructured.NestedStringMap(workload.Object, "spec", "template", "metadata", "labels")
	terms, _, _ := unstructured.NestedSlice(workload.Object, "spec", "template", "spec", "affinity", "podAntiAffinity", "preferredDuringSchedulingIgnoredDuringExecution")
	if len(terms) != 1 {
		t.Errorf("%s: preferred pod anti-affinity %v, want one term", component, terms)
	} else {
		term := terms[0].(map[string]any)
		key, _, _ := unstructured.NestedString(term, "podAffinityTerm", "topologyKey")
		sel, _, _ := unstructured.NestedStringMap(term, "podAffinityTerm", "labelSelector", "matchLabels")
		if key != "kubernetes.io/hostname" || sel["app.kubernetes.io/component"] != component || !subset(sel, podLabels) {
			t.Errorf("%s: anti-affinity on %q selecting %v, want kubernetes.io/hostname and the pods' own labels %v", component, key, sel, podLabels)
		}
	}
	pdb := find(t, objs, "PodDisruptionBudget", "kaar-"+component)
	sel, _, _ := unstructured.NestedStringMap(pdb.Object, "spec", "selector", "matchLabels")
	if sel["app.kubernetes.io/component"] != component || !subset(sel, podLabels) {
		t.Errorf("%s: PodDisruptionBudget selects %v, not its pods %v", component, sel, podLabels)
	}
	maxUnavailable, hasMax, _ := unstructured.NestedInt64(pdb.Object, "spec", "maxUnavailable")
	minAvailable, hasMin, _ := unstructured.NestedInt64(pdb.Object, "spec", "minAvailable")
	switch {
	case hasMax && maxUnavailable == 1:
	case hasMin && minAvailable >= 1 && minAvailable < replicas:
	case hasMin && replicas == 1:
		// The default gateway budget (minAvailable 1) with one replica
		// would block a drain; the chart's default is two gateways.
		t.Errorf("%s: minAvailable %d with %d replica blocks every drain", component, minAvailable, replicas)
	default:
		t.Errorf("%s: PodDisruptionBudget maxUnavailable %d (set %t) minAvailable %d (set %t), want one pod at a time", component, maxUnavailable, hasMax, minAvailable, hasMin)
	}
}

func subset(sub, of map[string]string) bool {
	for k, v := range sub {
		if of[k] != v {
			return false
		}
	}
	return len(sub) > 0
}

// TestChartNATSClusterRunsR3 loads the chart's clustered nats.conf with
// nats-server's own parser as each of the three pods (their POD_NAME and
// the StatefulSet's environment: the route URLs kubelet composes from the
// route password), checks the routes go through the headless Service to
// the three pods with the route user, then runs the three nodes from those
// options (addresses moved to loopback, route credentials kept): they form
// a JetStream cluster, only the route user may open a route, and the
// provision Job's configuration declares every stream and bucket at R3,
// to which every service binds with its own login.
func TestChartNATSClusterRunsR3(t *testing.T) {
	tc := haCase(t)
	objs := render(t, "kaar", "kaar-system", tc.args...)
	data, _, _ := unstructured.NestedStringMap(find(t, objs, "ConfigMap", "kaar-nats").Object, "data")
	dir := t.TempDir()
	for name, content := range data {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	env := natsServerEnv(t, tc, find(t, objs, "StatefulSet", "kaar-nats"))
	// The three nodes on free loopback ports: a port found free can be
	// taken by another test's connection before its node listens on it
	// (seen once: "node 2 did not start"), so the cluster is formed again
	// on new ports, three times at most.
	var ports []int
	var urls []string
	for attempt := 1; ; attempt++ {
		var err error
		ports, urls, err = startChartNATSCluster(t, env, dir, data["nats.conf"])
		if err == nil {
			break
		}
		if attempt == 3 {
			t.Fatal(err)
		}
		t.Logf("attempt %d: %v; again on other ports", attempt, err)
	}
	refusesRoute(t, fmt.Sprintf("127.0.0.1:%d", ports[3]))
	cfgs := map[string]config.Config{}
	for _, svc := range chartServices(tc) {
		cfgs[svc], _ = effectiveConfig(t, tc, objs, find(t, objs, "Deployment", "kaar-"+svc))
	}
	cfgs["provisioner"], _ = effectiveConfig(t, tc, objs, find(t, objs, "Job", "kaar-provision"))
	url := strings.Join(urls, ",")
	waitForJetStreamCluster(t, url, cfgs["provisioner"])
	checkBusAsServices(t, url, cfgs)
	nc, err := nats.Connect(url, nats.UserInfo(cfgs["provisioner"].NATS.User, cfgs["provisioner"].NATS.Password),
		nats.CustomInboxPrefix(bus.RoleProvisioner.InboxPrefix()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, name := range []string{events.StreamApprovals, "KV_" + events.BucketPlans, "KV_" + events.BucketLeases} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		if r := s.CachedInfo().Config.Replicas; r != 3 {
			t.Errorf("stream %s: %d replicas, want 3", name, r)
		}
	}
}

// waitForJetStreamCluster waits until the three nodes have elected a
// JetStream meta leader (an account info request answers).
func waitForJetStreamCluster(t *testing.T, url string, cfg config.Config) {
	t.Helper()
	nc, err := nats.Connect(url, nats.UserInfo(cfg.NATS.User, cfg.NATS.Password),
		nats.CustomInboxPrefix(bus.RoleProvisioner.InboxPrefix()))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := js.AccountInfo(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the three nodes formed no JetStream cluster: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// refusesRoute: a route connection without the route user's credentials
// is refused by the cluster port.
func refusesRoute(t *testing.T, addr string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(conn)
	if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "INFO ") {
		t.Fatalf("cluster port %s: %q, %v", addr, line, err)
	}
	if _, err := fmt.Fprintf(conn, "CONNECT {\"verbose\":false,\"user\":\"kaar-route\",\"pass\":\"wrong\",\"cluster\":\"kaar-nats\"}\r\nPING\r\n"); err != nil {
		t.Fatal(err)
	}
	line, _ := r.ReadString('\n')
	if !strings.Contains(line, "Authorization Violation") {
		t.Errorf("cluster port %s answers a route with a wrong password with %q, want an authorization violation", addr, line)
	}
}

// freePort is a TCP port free on loopback right now.
// startChartNATSCluster starts the chart's three NATS nodes (nats.conf
// in dir, the StatefulSet's environment env) on free loopback ports,
// their routes moved there, and returns the ports (clients, then routes)
// and the client URLs; the servers stop when the test ends.
func startChartNATSCluster(t *testing.T, env []string, dir, conf string) ([]int, []string, error) {
	t.Helper()
	var ports []int
	for range 6 {
		ports = append(ports, freePort(t))
	}
	var nodes []*natsserver.Options
	for i := range 3 {
		for _, kv := range env {
			k, v, _ := strings.Cut(kv, "=")
			t.Setenv(k, v)
		}
		pod := fmt.Sprintf("kaar-nats-%d", i)
		t.Setenv("POD_NAME", pod)
		opts, err := natsserver.ProcessConfigFile(filepath.Join(dir, "nats.conf"))
		if err != nil {
			t.Fatalf("nats-server rejects the chart's clustered nats.conf as %s: %v\n%s", pod, err, conf)
		}
		if opts.ServerName != pod || !opts.JetStream || opts.Cluster.Name != "kaar-nats" || opts.Cluster.Port != 6222 ||
			opts.Cluster.Username != "kaar-route" || opts.Cluster.Password != routePassword {
			t.Fatalf("%s: server_name %q jetstream %t cluster %q port %d route user %q password %q", pod, opts.ServerName, opts.JetStream,
				opts.Cluster.Name, opts.Cluster.Port, opts.Cluster.Username, opts.Cluster.Password)
		}
		if len(opts.Routes) != 3 {
			t.Fatalf("%s: routes %v, want the three pods", pod, opts.Routes)
		}
		for j, r := range opts.Routes {
			pw, _ := r.User.Password()
			if want := fmt.Sprintf("kaar-nats-%d.kaar-nats-headless.kaar-system.svc:6222", j); r.Host != want || r.User.Username() != "kaar-route" || pw != routePassword {
				t.Fatalf("%s: route %d to %s as %q, want %s as kaar-route with the route password", pod, j, r.Host, r.User.Username(), want)
			}
			// The same route on loopback, with the credentials it carries.
			r.Host = fmt.Sprintf("127.0.0.1:%d", ports[3+j])
		}
		opts.Host, opts.Port, opts.HTTPPort, opts.StoreDir = "127.0.0.1", ports[i], -1, t.TempDir()
		opts.Cluster.Host, opts.Cluster.Port = "127.0.0.1", ports[3+i]
		nodes = append(nodes, opts)
	}
	var urls []string
	var servers []*natsserver.Server
	for i, opts := range nodes {
		s, err := natsserver.NewServer(opts)
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
		go s.Start()
		if !s.ReadyForConnections(30 * time.Second) {
			for _, started := range servers {
				started.Shutdown()
			}
			s.Shutdown()
			return nil, nil, fmt.Errorf("node %d did not start (ports %v)", i, ports)
		}
		servers = append(servers, s)
		urls = append(urls, s.ClientURL())
	}
	for _, s := range servers {
		t.Cleanup(s.Shutdown)
	}
	return ports, urls, nil
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
