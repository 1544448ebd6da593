package main_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kaar-dev/kaar/internal/testutil"
	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/kaar-dev/kaar/pkg/sandbox"
)

// TestLeafClusterDecidedCentrally: a cluster's watcher, planner and
// executor run as processes on a leaf node ("kaar nats --leaf-remote",
// its own JetStream domain) that reaches the central NATS ("kaar nats
// --leaf-listen", holding the gateway) over TLS verified both ways; each
// process connects (over TLS too) with its own role's nkey, the leaf with
// its own. An incident on the sandbox is detected on the leaf, planned
// there, approved centrally by a person over MCP, executed on the leaf
// and verified healthy. Then the link is cut while an execution runs and
// a new incident begins: the leaf goes on alone, a decision asked for
// meanwhile is refused (not kept where nobody executes it), and once the
// link is back every incident and every audit record has arrived
// centrally exactly once and each plan ran exactly once.
func TestLeafClusterDecidedCentrally(t *testing.T) {
	parallel(t)
	// Four healthy Deployments roll out while the bus starts; each is
	// broken (an image that does not exist) when the story needs it.
	owners := []string{"web-1", "web-2", "web-3", "web-4"}
	e := newLeafEnv(t, owners)
	kube, ns, mc, link := e.kube, e.ns, e.mc, e.link
	e.phase("bus, services and workloads up")

	// Decided centrally, executed on the leaf.
	breakImage(t, kube, ns, "web-1")
	waitOwnerIncident(t, mc, ns, "web-1")
	p1 := planFor(t, mc, ns, "web-1")
	call[decisionOut](t, mc, "approve_remediation_plan", map[string]any{"plan_id": p1.PlanID, "digest": p1.Digest})
	remediated(t, mc, p1)
	waitPodsHealthy(t, kube, ns, "web-1", time.Minute)
	e.phase("web-1 detected on the leaf, approved centrally, executed on the leaf, healthy")

	// web-2 is approved and the link cut while it executes; web-3's plan
	// waits for a decision; web-4 starts failing during the cut.
	breakImage(t, kube, ns, "web-2")
	breakImage(t, kube, ns, "web-3")
	p2, p3 := planFor(t, mc, ns, "web-2"), planFor(t, mc, ns, "web-3")
	call[decisionOut](t, mc, "approve_remediation_plan", map[string]any{"plan_id": p2.PlanID, "digest": p2.Digest})
	link.Cut()
	if kinds := e.audit.byPlan()[p2.PlanID]; kinds[events.AuditExecutionFinished] != 0 {
		t.Fatalf("web-2's plan finished before the cut (%v): the cut would not interrupt an execution", kinds)
	}
	t.Logf("link cut while %s executes", p2.PlanID)
	waitUntil(t, 15*time.Second, "the hub notices the cut", func() bool { return !e.linked() }, e.diag)
	breakImage(t, kube, ns, "web-4")
	// A decision cannot reach the leaf: it is refused, not kept where no
	// executor reads it.
	msg := callErr(t, mc, "approve_remediation_plan", map[string]any{"plan_id": p3.PlanID, "digest": p3.Digest})
	t.Logf("a decision during the cut: %s", msg)
	// The leaf goes on: web-4 is detected there, web-2's plan completes.
	waitUntil(t, time.Minute, "web-4 detected on the cut-off leaf", func() bool { return e.leafIssues.count("web-4", events.TransitionDetected) == 1 }, e.diag)
	if n := e.issues.count("web-4", events.TransitionDetected); n != 0 {
		t.Fatalf("web-4's incident reached the hub (%d) through a cut link", n)
	}
	waitPodsHealthy(t, kube, ns, "web-2", 90*time.Second)
	e.phase("web-2 executed on the cut-off leaf")
	link.Restore()
	waitUntil(t, 30*time.Second, "the leaf reconnects", e.linked, e.diag)
	e.phase("link restored")

	remediated(t, mc, p2)
	p4 := planFor(t, mc, ns, "web-4")
	for _, p := range []planOut{p3, p4} {
		call[decisionOut](t, mc, "approve_remediation_plan", map[string]any{"plan_id": p.PlanID, "digest": p.Digest})
		remediated(t, mc, p)
	}
	waitPodsHealthy(t, kube, ns, "web-3", time.Minute)
	waitPodsHealthy(t, kube, ns, "web-4", time.Minute)

	e.phase("web-3 and web-4 executed after the reconnection")

	e.checkCentral(owners, []planOut{p1, p2, p3, p4})
	e.phase("every incident and audit record arrived centrally once")
}

// checkCentral waits until the central streams hold the detection of
// every owner's incident and the end of every plan, then requires each
// incident detected once, each plan claimed once, each of its steps run
// once (as many results as starts), finished once, never resumed, no
// other plan claimed, and no decision of the leaf cluster kept centrally.
// It returns how many plans broke each rule (duplicates) and how many
// did not finish (losses).
func (e *leafEnv) checkCentral(owners []string, plans []planOut) (duplicates, losses int) {
	t := e.t
	t.Helper()
	diag := func() string { return fmt.Sprintf("ISSUES:\n%sAUDIT:\n%s%s", e.issues, e.audit, e.diag()) }
	finished := func() int {
		n := 0
		for _, p := range plans {
			if e.audit.byPlan()[p.PlanID][events.AuditExecutionFinished] > 0 {
				n++
			}
		}
		return n
	}
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		detected := 0
		for _, o := range owners {
			if e.issues.count(o, events.TransitionDetected) > 0 {
				detected++
			}
		}
		if detected == len(owners) && finished() == len(plans) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // anything duplicated would arrive by now
	for _, o := range owners {
		if n := e.issues.count(o, events.TransitionDetected); n != 1 {
			t.Errorf("%s detected %d times centrally, want once\n%s", o, n, diag())
		}
	}
	byPlan := e.audit.byPlan()
	known := map[string]bool{}
	for _, p := range plans {
		known[p.PlanID] = true
		kinds := byPlan[p.PlanID]
		switch {
		case kinds[events.AuditExecutionFinished] == 0:
			losses++
			t.Errorf("plan %s did not finish centrally: audit %v\n%s", p.PlanID, kinds, diag())
		case kinds[events.AuditClaimed] != 1 || kinds[events.AuditExecutionFinished] != 1 || kinds[events.AuditResumed] != 0 ||
			kinds[events.AuditStepStarted] != kinds[events.AuditStepResult] || kinds[events.AuditStepStarted] == 0:
			duplicates++
			t.Errorf("plan %s: audit %v, want claimed and finished once, never resumed, one result per step started", p.PlanID, kinds)
		}
	}
	for id, kinds := range byPlan {
		if !known[id] && kinds[events.AuditClaimed] != 0 {
			duplicates++
			t.Errorf("plan %s, never approved here, was claimed: %v", id, kinds)
		}
	}
	if st, err := e.central.Stream(context.Background(), events.StreamApprovals); err != nil || st.CachedInfo().State.Msgs != 0 {
		t.Errorf("the hub's APPROVALS holds a leaf cluster's decisions (%v)", err)
	}
	return duplicates, losses
}

// leafEnv is a leaf cluster and its central server as processes: the
// central kaar nats (restartable on its store), the leaf kaar nats
// linked to it over TLS through a link the test cuts, the cluster's
// watcher, planner and executor on the leaf, the gateway centrally, a
// person's MCP client, and the test's readers of the central streams.
type leafEnv struct {
	t           *testing.T
	start       time.Time
	bin         string
	kube        kubernetes.Interface
	ns, cluster string
	hubArgs     []string
	hub         *proc
	leafOut     *testutil.Buffer
	link        *testutil.Link
	central     jetstream.JetStream // the hub, as the provisioner
	leafView    jetstream.JetStream // the leaf's domain through the hub, as the CLI
	mc          *mcpCaller
	issues      *issueLog // the hub's ISSUES (sourced from the leaf)
	leafIssues  *issueLog // the leaf's own ISSUES
	audit       *auditLog
}

func newLeafEnv(t *testing.T, owners []string) *leafEnv {
	t.Helper()
	c := sandbox.ForTest(t)
	e := &leafEnv{t: t, kube: c.Clientset(), bin: buildKaar(t)}
	e.ns = sandbox.NewNamespace(t, e.kube)
	e.start = time.Now()
	for _, o := range owners {
		createWeb(t, e.kube, e.ns, o)
	}
	suffix := strings.ReplaceAll(e.ns[len(e.ns)-5:], "-", "")
	e.cluster = "leaf-" + suffix
	pki := newLeafPKI(t)
	creds := filepath.Join(t.TempDir(), "credentials")

	// The central server: its own cluster, the leaf cluster's sources,
	// the leaf port with TLS that requires the leaf's certificate.
	hubPort, hubLeafPort := testutil.FreePort(t), testutil.FreePort(t)
	hubCfg := writeFile(t, "hub.yaml", fmt.Sprintf("kubernetes:\n  cluster_name: hub-%s\nnats:\n  leaf_clusters: [%s]\n", suffix, e.cluster))
	// The leaf node reaches the leaf port through a link the test cuts:
	// the address the hub advertises for reconnections.
	e.link = testutil.NewLink(t, fmt.Sprintf("127.0.0.1:%d", hubLeafPort))
	e.hubArgs = []string{"nats", "--listen", fmt.Sprintf("127.0.0.1:%d", hubPort), "--store-dir", t.TempDir(), "--credentials-dir", creds,
		"--config", hubCfg, "--server-name", "hub", "--jetstream-domain", "hub",
		"--leaf-listen", fmt.Sprintf("127.0.0.1:%d", hubLeafPort), "--leaf-advertise", fmt.Sprintf("127.0.0.1:%d", e.link.Port()),
		"--leaf-tls-cert", pki.server, "--leaf-tls-key", pki.serverKey, "--leaf-tls-ca", pki.ca}
	e.startHub()
	hubURL := fmt.Sprintf("nats://127.0.0.1:%d", hubPort)

	leafPort := testutil.FreePort(t)
	leafCfg := writeFile(t, "leaf.yaml", fmt.Sprintf("nats:\n  tls: {ca_file: %s, cert_file: %s, key_file: %s}\n", pki.ca, pki.server, pki.serverKey))
	_, e.leafOut = startProcess(t, e.bin, "nats", "--listen", fmt.Sprintf("127.0.0.1:%d", leafPort), "--store-dir", t.TempDir(), "--credentials-dir", creds,
		"--config", leafCfg, "--cluster-name", e.cluster, "--server-name", "leaf-"+suffix,
		"--leaf-remote", fmt.Sprintf("tls://127.0.0.1:%d", e.link.Port()), "--leaf-remote-ca", pki.ca, "--leaf-remote-cert", pki.client, "--leaf-remote-key", pki.clientKey)
	waitUntil(t, 30*time.Second, "the leaf kaar nats listens", func() bool { return strings.Contains(e.leafOut.String(), "listening on") }, e.leafOut.String)

	// The test reads the central bus as the provisioner: the hub's
	// streams hold the copies sourced from the leaf.
	e.central = credsJetStream(t, hubURL, creds, bus.RoleProvisioner, "")
	e.leafView = credsJetStream(t, hubURL, creds, bus.RoleCLI, bus.LeafDomain(e.cluster))
	waitUntil(t, 30*time.Second, "the leaf's JetStream is reachable from the hub", e.linked, e.diag)

	// The cluster's services on the leaf, each with its own nkey, over
	// TLS; the gateway centrally, in the leaf's JetStream domain.
	gwPort := testutil.FreePort(t)
	base := writeConfig(t, c, e.ns, e.cluster, gwPort, "")
	if out, err := exec.Command(e.bin, "keys", "init", "--config", base).CombinedOutput(); err != nil {
		t.Fatalf("kaar keys init: %v\n%s", err, out)
	}
	for _, svc := range []string{"watcher", "planner", "executor"} {
		cfg := withNATS(t, base, fmt.Sprintf("  url: tls://127.0.0.1:%d\n  tls: {ca_file: %s}\n  nkey_file: %s\n", leafPort, pki.ca, filepath.Join(creds, svc+".nk")))
		startProcess(t, e.bin, svc, "--config", cfg)
	}
	gwCfg := withNATS(t, base, fmt.Sprintf("  url: %s\n  jetstream_domain: %s\n  nkey_file: %s\n", hubURL, bus.LeafDomain(e.cluster), filepath.Join(creds, "mcpgateway.nk")))
	startProcess(t, e.bin, "mcpgateway", "--config", gwCfg)
	inst := &instance{base: fmt.Sprintf("http://127.0.0.1:%d", gwPort), ns: e.ns, cluster: e.cluster, kube: e.kube}
	waitHealthy(t, inst, nil, e.hub.out)
	e.mc = newMCPCaller(t, inst, "")
	e.issues = followIssues(t, e.central, e.cluster)
	e.leafIssues = followIssues(t, credsJetStream(t, fmt.Sprintf("tls://127.0.0.1:%d", leafPort), creds, bus.RoleProvisioner, "", bus.TLSFiles{CAFile: pki.ca}), e.cluster)
	e.audit = followAudit(t, e.central, e.cluster)
	for _, o := range owners {
		waitPodsHealthy(t, e.kube, e.ns, o, 2*time.Minute)
	}
	return e
}

// startHub starts (or, after a kill, restarts on its store) the central
// kaar nats and waits until it serves.
func (e *leafEnv) startHub() {
	e.t.Helper()
	e.hub = startKillable(e.t, e.bin, e.hubArgs...)
	waitUntil(e.t, 30*time.Second, "the central kaar nats listens", func() bool { return strings.Contains(e.hub.out.String(), "listening on") }, e.hub.out.String)
}

// linked reports whether the leaf's JetStream answers through the hub.
func (e *leafEnv) linked() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := e.leafView.Stream(ctx, events.StreamApprovals)
	return err == nil
}

func (e *leafEnv) diag() string {
	return fmt.Sprintf("central nats:\n%s\nleaf nats:\n%s", tail(e.hub.out.String(), 30), tail(e.leafOut.String(), 30))
}

func (e *leafEnv) phase(what string) {
	e.t.Logf("%s: %s", time.Since(e.start).Round(100*time.Millisecond), what)
}

// createWeb creates a healthy two-replica Deployment name (no wait).
func createWeb(t *testing.T, cs kubernetes.Interface, ns, name string) {
	t.Helper()
	labels := map[string]string{"app": name}
	replicas := int32(2)
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx:1.27"}}},
			},
		},
	}
	if _, err := cs.AppsV1().Deployments(ns).Create(context.Background(), dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// breakImage rolls Deployment name to an image that does not exist.
func breakImage(t *testing.T, cs kubernetes.Interface, ns, name string) {
	t.Helper()
	ctx := context.Background()
	cur, err := cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cur.Spec.Template.Spec.Containers[0].Image = "nginx:1.27-nonexistent"
	if _, err := cs.AppsV1().Deployments(ns).Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// leafPKI is a throwaway CA, a server certificate for 127.0.0.1 (the
// leaf port of the hub, the client port of the leaf) and the leaf's
// client certificate.
type leafPKI struct{ ca, server, serverKey, client, clientKey string }

func newLeafPKI(t *testing.T) leafPKI {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kaar leaf test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	p := leafPKI{ca: writePEMFile(t, dir, "ca.pem", "CERTIFICATE", caDER)}
	issue := func(name string, serial int64, usage x509.ExtKeyUsage) (string, string) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return writePEMFile(t, dir, name+".pem", "CERTIFICATE", der), writePEMFile(t, dir, name+"-key.pem", "PRIVATE KEY", kder)
	}
	p.server, p.serverKey = issue("nats", 2, x509.ExtKeyUsageServerAuth)
	p.client, p.clientKey = issue("leaf", 3, x509.ExtKeyUsageClientAuth)
	return p
}

func writePEMFile(t *testing.T, dir, name, typ string, der []byte) string {
	t.Helper()
	return writeFileIn(t, dir, name, string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})))
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	return writeFileIn(t, t.TempDir(), name, content)
}

func writeFileIn(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// withNATS is a copy of the configuration file base with a nats section.
func withNATS(t *testing.T, base, natsSection string) string {
	t.Helper()
	b, err := os.ReadFile(base)
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, "config.yaml", string(b)+"nats:\n"+natsSection)
}

// credsJetStream connects to url as role with its seed from the
// credentials directory dir, in JetStream domain (empty: the server's).
func credsJetStream(t *testing.T, url, dir string, role bus.Role, domain string, tls ...bus.TLSFiles) jetstream.JetStream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	o := bus.ConnectOptions{Name: "kaar-" + string(role), Logger: slog.New(slog.DiscardHandler),
		NkeyFile: filepath.Join(dir, bus.SeedFileName(role)), InboxPrefix: role.InboxPrefix()}
	if len(tls) > 0 {
		o.TLS = tls[0]
	}
	nc, err := bus.Connect(ctx, url, o)
	if err != nil {
		t.Fatalf("connect as %s: %v", role, err)
	}
	t.Cleanup(nc.Close)
	js, err := bus.NewJetStream(nc, domain)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func hasOwner(a analyzeOut, owner string) bool {
	for _, in := range a.Incidents {
		if in.OwnerName == owner {
			return true
		}
	}
	return false
}

// waitOwnerIncident waits until analyze_cluster, asked about Deployment
// name only (the first page may list others when many fail), reports
// its incident.
func waitOwnerIncident(t *testing.T, c toolCaller, ns, name string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	var last string
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		raw, toolErr, err := c.Call(ctx, "analyze_cluster", map[string]any{"namespace": ns, "owner": "Deployment/" + name})
		cancel()
		if err != nil {
			t.Fatalf("analyze_cluster: %v", err)
		}
		last = toolErr
		if toolErr == "" {
			var a analyzeOut
			if err := json.Unmarshal(raw, &a); err != nil {
				t.Fatalf("analyze_cluster: decode %s: %v", raw, err)
			}
			if hasOwner(a, name) {
				return
			}
			last = string(raw)
		}
		if time.Now().After(deadline) {
			t.Fatalf("analyze_cluster: %s's incident not reported within 90s; last answer: %s", name, last)
		}
		time.Sleep(time.Second)
	}
}

// planFor asks the gateway for the plan of Deployment name (planned on
// the leaf) once its incident is known.
func planFor(t *testing.T, c toolCaller, ns, name string) planOut {
	t.Helper()
	waitOwnerIncident(t, c, ns, name)
	p := call[planOut](t, c, "generate_remediation_plan", map[string]any{"resource_type": "deployment", "namespace": ns, "resource_name": name})
	if p.PlanID == "" || p.State != "proposed" || p.DiagnosticOnly {
		t.Fatalf("plan for %s: %+v", name, p)
	}
	return p
}

// remediated waits for plan p's execution and requires it succeeded and
// verified healthy.
func remediated(t *testing.T, c toolCaller, p planOut) {
	t.Helper()
	r := call[remediateOut](t, c, "remediate_issue", map[string]any{"plan_id": p.PlanID})
	if r.Execution == nil || r.Execution.State != "succeeded" || r.Execution.Verification == nil || !r.Execution.Verification.Healthy {
		b, _ := json.Marshal(r)
		t.Fatalf("remediate %s: want a succeeded, verified execution; got %s", p.PlanID, b)
	}
}

// auditLog collects the audit records of a cluster, by plan and kind.
type auditLog struct {
	mu  sync.Mutex
	all []events.AuditRecord
}

func (l *auditLog) byPlan() map[string]map[events.AuditKind]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]map[events.AuditKind]int{}
	for _, r := range l.all {
		if out[r.PlanID] == nil {
			out[r.PlanID] = map[events.AuditKind]int{}
		}
		out[r.PlanID][r.Kind]++
	}
	return out
}

func (l *auditLog) String() string {
	var b strings.Builder
	for plan, kinds := range l.byPlan() {
		fmt.Fprintf(&b, "  %s %v\n", plan, kinds)
	}
	return b.String()
}

// followAudit reads every audit record of cluster from the start of AUDIT.
func followAudit(t *testing.T, js jetstream.JetStream, cluster string) *auditLog {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	filter, _ := events.AuditFilter(cluster)
	c, err := js.OrderedConsumer(ctx, events.StreamAudit, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		t.Fatal(err)
	}
	l := &auditLog{}
	cc, err := c.Consume(func(m jetstream.Msg) {
		env, err := events.Decode(m.Data())
		if err != nil {
			t.Errorf("AUDIT message on %s: %v", m.Subject(), err)
			return
		}
		r, err := events.DecodeData[events.AuditRecord](env)
		if err != nil {
			t.Errorf("AUDIT message on %s: %v", m.Subject(), err)
			return
		}
		l.mu.Lock()
		l.all = append(l.all, r)
		l.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cc.Stop)
	return l
}

// TestLeafChaos is the long version, in make chaos
// (KAAR_CHAOS_LEAF=1): KAAR_CHAOS_RUNS rounds of KAAR_CHAOS_BATCH broken
// Deployments of the leaf cluster; in each, half of the plans are approved
// centrally, then the link is cut (even rounds) or the central kaar nats
// is killed (SIGKILL) and restarted on its store (odd rounds) while they
// execute, and the rest are approved once the leaf is reachable again.
// Every plan must run exactly once and every incident arrive centrally
// once; the table is written to KAAR_CHAOS_LEAF_TABLE.
func TestLeafChaos(t *testing.T) {
	if os.Getenv("KAAR_CHAOS_LEAF") == "" {
		t.Skip("the long leaf chaos suite runs in make chaos (KAAR_CHAOS_LEAF=1); TestLeafClusterDecidedCentrally is its short version")
	}
	parallel(t)
	runs, batch := envInt(t, "KAAR_CHAOS_RUNS", 2), envInt(t, "KAAR_CHAOS_BATCH", 2)
	var owners []string
	for r := range runs {
		for i := range batch {
			owners = append(owners, fmt.Sprintf("r%d-web-%d", r, i))
		}
	}
	e := newLeafEnv(t, owners)
	results := map[string]*chaosResult{}
	var all []planOut
	var prevDups, prevLosses int
	for r := range runs {
		round := owners[r*batch : (r+1)*batch]
		for _, o := range round {
			breakImage(t, e.kube, e.ns, o)
		}
		var plans []planOut
		for _, o := range round {
			plans = append(plans, planFor(t, e.mc, e.ns, o))
		}
		before, after := plans[:(len(plans)+1)/2], plans[(len(plans)+1)/2:]
		for _, p := range before {
			call[decisionOut](t, e.mc, "approve_remediation_plan", map[string]any{"plan_id": p.PlanID, "digest": p.Digest})
		}
		name := "leaf link cut mid-execution"
		if r%2 == 1 {
			name = "central NATS SIGKILL+restart mid-execution"
			e.hub.kill(t)
			time.Sleep(2 * time.Second)
			e.startHub()
			defer func(hub *proc) {
				// kaar nats restarts the sources set up before the leaf was back.
				t.Logf("central NATS after its restart: resumed the leaf sources: %t", strings.Contains(hub.out.String(), "leaf sources resumed"))
			}(e.hub)
		} else {
			e.link.Cut()
			time.Sleep(3 * time.Second)
			e.link.Restore()
		}
		waitUntil(t, time.Minute, "the leaf is reachable again", e.linked, e.diag)
		for _, p := range after {
			approveWhenReachable(t, e.mc, p)
		}
		for _, p := range plans {
			remediated(t, e.mc, p)
		}
		e.phase(fmt.Sprintf("round %d (%s): %d plans executed", r, name, len(plans)))
		// The check covers every round so far: this round adds the
		// difference.
		all = append(all, plans...)
		dups, losses := e.checkCentral(owners[:(r+1)*batch], all)
		dups, losses, prevDups, prevLosses = dups-prevDups, losses-prevLosses, dups, losses
		res := results[name]
		if res == nil {
			res = &chaosResult{name: name}
			results[name] = res
		}
		res.runs++
		res.executions += len(plans)
		res.duplicates += dups
		res.losses += losses
	}
	var table []chaosResult
	for _, n := range []string{"leaf link cut mid-execution", "central NATS SIGKILL+restart mid-execution"} {
		if r := results[n]; r != nil {
			table = append(table, *r)
		}
	}
	reportChaos(t, table, "KAAR_CHAOS_LEAF_TABLE")
}

// approveWhenReachable approves p, retrying while the gateway reports
// the leaf unavailable (the reconnection settling).
func approveWhenReachable(t *testing.T, c toolCaller, p planOut) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		raw, toolErr, err := c.Call(ctx, "approve_remediation_plan", map[string]any{"plan_id": p.PlanID, "digest": p.Digest})
		cancel()
		if err != nil {
			t.Fatalf("approve %s: %v", p.PlanID, err)
		}
		if toolErr == "" {
			var d decisionOut
			if err := json.Unmarshal(raw, &d); err != nil || d.Decision != "approved" {
				t.Fatalf("approve %s: %s %v", p.PlanID, raw, err)
			}
			return
		}
		if !strings.Contains(toolErr, "unavailable") || time.Now().After(deadline) {
			t.Fatalf("approve %s: %s", p.PlanID, toolErr)
		}
		time.Sleep(time.Second)
	}
}
