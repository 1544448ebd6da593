package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/dynamic"
)

// Timeouts of the start-up steps (generous: 2 cores, parallel tests).
const (
	etcdTimeout      = time.Minute
	apiServerTimeout = 3 * time.Minute
	settleTimeout    = 3 * time.Minute
	stopGrace        = 10 * time.Second
)

// Up starts a sandbox in opts.StateDir, building the binaries first if
// needed, and returns it once the nodes are Ready and the default
// ServiceAccount exists. It is idempotent: if the state directory holds a
// healthy sandbox, Up returns it; a stopped or broken one is cleaned up and
// started afresh.
func Up(ctx context.Context, opts Options) (*Cluster, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	bins, err := EnsureBinaries(ctx, opts)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.StateDir, 0o755); err != nil {
		return nil, fmt.Errorf("up: %w", err)
	}
	unlock, err := lockFile(ctx, filepath.Join(opts.StateDir, ".lock"), opts.Progress, "another process is starting or stopping this sandbox; waiting")
	if err != nil {
		return nil, fmt.Errorf("up: %w", err)
	}
	defer unlock()

	st, err := readState(opts.StateDir)
	switch {
	case err == nil:
		s := statusOf(ctx, opts.StateDir, st)
		if s.Healthy {
			fmt.Fprintf(opts.Progress, "sandbox already running in %s\n", opts.StateDir)
			return attachState(opts.StateDir, st, opts.Logger)
		}
		fmt.Fprintf(opts.Progress, "sandbox in %s is unhealthy (%s); restarting it\n", opts.StateDir, s.Problem)
		stopProcesses(ctx, st.Processes, stopGrace, opts.Logger)
	case !errors.Is(err, ErrNotRunning):
		fmt.Fprintf(opts.Progress, "ignoring unreadable state (%v); starting afresh\n", err)
	}
	if err := removeState(opts.StateDir); err != nil {
		return nil, fmt.Errorf("up: %w", err)
	}
	start := time.Now()
	s := &starter{opts: opts, bins: bins}
	c, err := s.run(ctx)
	if err != nil {
		// Leave the logs for diagnosis; the next Up or Down cleans them.
		stopProcesses(context.Background(), s.states(), stopGrace, opts.Logger)
		return nil, err
	}
	fmt.Fprintf(opts.Progress, "sandbox ready in %s\n", time.Since(start).Round(100*time.Millisecond))
	return c, nil
}

// Down stops the sandbox of stateDir (SIGTERM, then SIGKILL after a
// grace period) and removes its state. Without a sandbox it does nothing.
func Down(ctx context.Context, stateDir string) error {
	abs, err := filepath.Abs(stateDir)
	if err != nil {
		return fmt.Errorf("down: %w", err)
	}
	if _, err := os.Stat(abs); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	unlock, err := lockFile(ctx, filepath.Join(abs, ".lock"), io.Discard, "")
	if err != nil {
		return fmt.Errorf("down: %w", err)
	}
	defer unlock()
	st, err := readState(abs)
	switch {
	case err == nil:
		stopProcesses(ctx, st.Processes, stopGrace, slog.New(slog.DiscardHandler))
	case !errors.Is(err, ErrNotRunning):
		return fmt.Errorf("down: %w", err)
	}
	if err := removeState(abs); err != nil {
		return fmt.Errorf("down: %w", err)
	}
	_ = os.Remove(filepath.Join(abs, ".lock"))
	_ = os.Remove(abs) // only if empty: the directory may be the user's
	return nil
}

// stateEntries are everything Up creates in a state directory, so that
// cleaning never touches anything else in a user-chosen directory.
var stateEntries = []string{stateFileName, stateFileName + ".tmp", "etcd", "pki", "logs", "users", "components", "kubeconfig", "kwok.yaml", "podlogs"}

func removeState(dir string) error {
	for _, e := range stateEntries {
		if err := os.RemoveAll(filepath.Join(dir, e)); err != nil {
			return fmt.Errorf("remove state: %w", err)
		}
	}
	return nil
}

// starter starts the components of one sandbox in order.
type starter struct {
	opts  Options
	bins  Binaries
	procs []*process
}

func (s *starter) states() []ProcessState {
	out := make([]ProcessState, 0, len(s.procs))
	for _, p := range s.procs {
		out = append(out, p.ProcessState)
	}
	return out
}

func (s *starter) progress(format string, a ...any) {
	fmt.Fprintf(s.opts.Progress, format+"\n", a...)
}

func (s *starter) start(name, bin string, args ...string) (*process, error) {
	p, err := startProcess(name, bin, args, filepath.Join(s.opts.StateDir, "logs", name+".log"), s.opts.Detached)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStart, err)
	}
	s.procs = append(s.procs, p)
	s.opts.Logger.Info("started sandbox process", slog.String("component", name), slog.Int("pid", p.PID))
	return p, nil
}

// waitFor polls check until it succeeds, a process of s exits, or timeout.
func (s *starter) waitFor(ctx context.Context, what string, timeout time.Duration, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		for _, p := range s.procs {
			if p.exited() {
				return fmt.Errorf("%w: %s exited while waiting for %s (%v); last lines of %s:\n%s", ErrStart, p.Name, what, p.err, p.Log, logTail(p.Log, 20))
			}
		}
		if last = check(ctx); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %s: %w (last error: %v)", ErrStart, what, ctx.Err(), last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (s *starter) run(ctx context.Context) (*Cluster, error) {
	o := s.opts
	for _, d := range []string{"logs", "etcd"} {
		if err := os.MkdirAll(filepath.Join(o.StateDir, d), 0o700); err != nil {
			return nil, fmt.Errorf("up: %w", err)
		}
	}
	ports, err := pickSandboxPorts()
	if err != nil {
		return nil, fmt.Errorf("up: %w", err)
	}
	pkiDir := filepath.Join(o.StateDir, "pki")
	pki, err := generatePKI(pkiDir)
	if err != nil {
		return nil, fmt.Errorf("up: %w", err)
	}
	users := newUsers()
	tokenFile := filepath.Join(pkiDir, "tokens.csv")
	if err := os.WriteFile(tokenFile, renderTokenFile(users), 0o600); err != nil {
		return nil, fmt.Errorf("up: %w", err)
	}

	etcdURL := "http://127.0.0.1:" + strconv.Itoa(ports.EtcdClient)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(ports.EtcdPeer)
	s.progress("starting etcd %s on %s", EtcdVersion, etcdURL)
	if _, err := s.start("etcd", s.bins.Etcd,
		"--name=sandbox", "--data-dir="+filepath.Join(o.StateDir, "etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=sandbox="+peerURL,
		"--unsafe-no-fsync", // a sandbox trades durability for speed
		"--log-level=warn"); err != nil {
		return nil, err
	}
	if err := s.waitFor(ctx, "etcd health", etcdTimeout, func(ctx context.Context) error {
		return etcdHealthy(ctx, etcdURL)
	}); err != nil {
		return nil, err
	}

	server := "https://127.0.0.1:" + strconv.Itoa(ports.APIServer)
	s.progress("starting kube-apiserver %s on %s", KubernetesVersion, server)
	t0 := time.Now()
	apiServerArgs := append([]string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--secure-port=" + strconv.Itoa(ports.APIServer),
		"--cert-dir=" + pkiDir, "--tls-cert-file=" + pki.ServerCert, "--tls-private-key-file=" + pki.ServerKey,
		"--client-ca-file=" + pki.CACert,
		"--token-auth-file=" + tokenFile,
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + pki.SAPub, "--service-account-signing-key-file=" + pki.SAKey,
		"--service-cluster-ip-range=10.96.0.0/16",
		// The reconciler refuses a loopback address; nothing in the sandbox
		// reaches the API server through the kubernetes Service.
		"--endpoint-reconciler-type=none",
		// kwok nodes list InternalDNS localhost first, so that pods/log
		// reaches kwok's kubelet server on 127.0.0.1 (nodeAddresses).
		"--kubelet-preferred-address-types=InternalDNS,InternalIP,Hostname",
		"--allow-privileged=true",
		"--profiling=false"}, aggregationArgs(pki)...)
	if _, err := s.start("kube-apiserver", s.bins.KubeAPIServer, apiServerArgs...); err != nil {
		return nil, err
	}
	caPEM, err := os.ReadFile(pki.CACert)
	if err != nil {
		return nil, fmt.Errorf("up: %w", err)
	}
	kc, err := writeKubeconfigs(o.StateDir, server, caPEM, users)
	if err != nil {
		return nil, fmt.Errorf("up: %w", err)
	}
	c := &Cluster{StateDir: o.StateDir, KubeconfigPath: kc.Admin, Kubectl: s.bins.Kubectl, Ports: ports, logger: o.Logger}
	if err := c.newClients(); err != nil {
		return nil, fmt.Errorf("up: %w", err)
	}
	if err := s.waitFor(ctx, "kube-apiserver /readyz", apiServerTimeout, c.ready); err != nil {
		return nil, err
	}
	s.progress("kube-apiserver ready in %s", time.Since(t0).Round(100*time.Millisecond))

	podLogsDir := filepath.Join(o.StateDir, "podlogs")
	stages, err := renderKwokConfig(podLogsDir, !o.NoMetrics)
	if err != nil {
		return nil, fmt.Errorf("up: %w", err)
	}
	stagesPath := filepath.Join(o.StateDir, "kwok.yaml")
	if err := os.WriteFile(stagesPath, stages, 0o644); err != nil {
		return nil, fmt.Errorf("up: %w", err)
	}
	if err := installLogsCRD(ctx, c); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStart, err)
	}
	dyn, err := dynamic.NewForConfig(c.RESTConfig())
	if err != nil {
		return nil, fmt.Errorf("up: %w", err)
	}
	if !o.NoMetrics {
		if err := installMetricsAPI(ctx, c.clientset, dyn, ports.MetricsServer, caPEM); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrStart, err)
		}
	}
	if err := s.startComponents(kc, pki, ports, pkiDir, stagesPath, podLogsDir); err != nil {
		return nil, err
	}
	s.progress("creating %d kwok nodes (%s CPU, %s memory, %d pods each)", o.Nodes, o.NodeCPU, o.NodeMemory, o.NodePods)
	if err := createNodes(ctx, c.clientset, o); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStart, err)
	}
	checks := []startCheck{
		{"kube-controller-manager /healthz", func(ctx context.Context) error { return healthz(ctx, ports.ControllerManager) }},
		{"kube-scheduler /healthz", func(ctx context.Context) error { return healthz(ctx, ports.Scheduler) }},
		{fmt.Sprintf("%d Ready kwok nodes", o.Nodes), func(ctx context.Context) error { return nodesReady(ctx, c.clientset, o.Nodes) }},
		{"the default ServiceAccount", func(ctx context.Context) error { return defaultServiceAccount(ctx, c.clientset) }},
	}
	if !o.NoMetrics {
		checks = append(checks, startCheck{"the metrics API (APIService " + MetricsAPIService + " Available)",
			func(ctx context.Context) error { return metricsAPIAvailable(ctx, dyn) }})
	}
	for _, ch := range checks {
		if err := s.waitFor(ctx, ch.what, settleTimeout, ch.check); err != nil {
			return nil, err
		}
	}
	st := &State{CreatedAt: time.Now().UTC(), Detached: o.Detached, Server: server, Kubeconfig: kc.Admin,
		Ports: ports, Nodes: o.Nodes, Binaries: s.bins, Processes: s.states()}
	if err := writeState(o.StateDir, st); err != nil {
		return nil, err
	}
	c.owned = s.procs
	return c, nil
}

// startComponents starts kube-controller-manager, kube-scheduler, kwok and
// (unless NoMetrics) metrics-server, once kube-apiserver is ready.
func (s *starter) startComponents(kc kubeconfigPaths, pki pkiFiles, ports Ports, pkiDir, stagesPath, podLogsDir string) error {
	o := s.opts
	certDir := filepath.Join(pkiDir, "components")
	if o.NoMetrics {
		s.progress("starting kube-controller-manager, kube-scheduler and kwok %s (no metrics API)", KwokVersion)
	} else {
		s.progress("starting kube-controller-manager, kube-scheduler, kwok %s and metrics-server %s", KwokVersion, MetricsServerVersion)
	}
	if _, err := s.start("kube-controller-manager", s.bins.KubeControllerManager,
		"--kubeconfig="+kc.Comps["sandbox:kube-controller-manager"],
		"--service-account-private-key-file="+pki.SAKey, "--root-ca-file="+pki.CACert,
		"--cluster-name="+clusterName,
		"--leader-elect=false",
		"--bind-address=127.0.0.1", "--secure-port="+strconv.Itoa(ports.ControllerManager), "--cert-dir="+certDir,
		// HPAs act on the metrics within seconds (default 15 s).
		"--horizontal-pod-autoscaler-sync-period=5s",
		"--profiling=false"); err != nil {
		return err
	}
	if _, err := s.start("kube-scheduler", s.bins.KubeScheduler,
		"--kubeconfig="+kc.Comps["sandbox:kube-scheduler"],
		"--leader-elect=false",
		"--bind-address=127.0.0.1", "--secure-port="+strconv.Itoa(ports.Scheduler), "--cert-dir="+certDir,
		"--profiling=false"); err != nil {
		return err
	}
	if _, err := s.start("kwok", s.bins.Kwok,
		"--kubeconfig="+kc.Comps["sandbox:kwok"],
		"--config="+stagesPath,
		"--manage-nodes-with-annotation-selector="+kwokNodeAnnotation+"=fake",
		// The kubelet server: container logs from kwok Logs objects, which
		// the pod log writer built into the sandbox's kwok creates.
		"--server-address=127.0.0.1:"+strconv.Itoa(ports.Kubelet),
		"--node-port="+strconv.Itoa(ports.Kubelet),
		"--enable-crds=Logs",
		"--kaar-pod-logs-dir="+podLogsDir,
		"--node-lease-duration-seconds=40",
		"--cidr=10.244.0.0/16"); err != nil {
		return err
	}
	if !o.NoMetrics {
		if _, err := s.start("metrics-server", s.bins.MetricsServer,
			metricsServerArgs(kc.Comps["sandbox:metrics-server"], pki, ports.MetricsServer)...); err != nil {
			return err
		}
	}
	return nil
}

// startCheck is one condition Up waits for before the sandbox is ready.
type startCheck struct {
	what  string
	check func(context.Context) error
}

// etcdHealthy checks etcd's /health endpoint.
func etcdHealthy(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/health", nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Timeout: 3 * time.Second}).Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }() // a response body: closing only frees the connection
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"health":"true"`) {
		return fmt.Errorf("etcd health: %s %s", resp.Status, b)
	}
	return nil
}
