// Command kaar-demo-cluster is the compose demo's Kubernetes cluster: the
// sandbox control plane of pkg/sandbox (etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler and kwok nodes, the static
// binaries it builds and caches) in one container, with the demo shop and
// its failures (sandbox.ApplyDemo with the extras), as `kaar-sandbox up
// --demo` runs it on a workstation.
//
// The sandbox listens on the container's loopback only and its serving
// certificate names 127.0.0.1, localhost and kubernetes. So that the other
// containers reach it, this program forwards --listen (TCP, port 6443) to the
// API server and writes each consumer a kubeconfig whose server is
// --server (https://cluster:6443) and whose TLS server name is "kubernetes":
// the certificate is still verified against the sandbox's CA.
//
// Each kaar service gets its own sandbox user (kaar-watcher, kaar-planner,
// kaar-executor), bound to the ClusterRole of the same name from the
// rendered manifests (--rbac, deploy/manifests/kaar.yaml): the least
// privilege of the Helm chart. Its kubeconfig is written to
// --kube-dir/<service>/kubeconfig, one directory (one compose volume) per
// service; the admin's to --kube-dir/admin/kubeconfig (server --server) and
// kubeconfig-host (server --host-server, the port the host publishes).
//
// /readyz on --ops answers 200 once all of it is done; the container's
// healthcheck and the services' depends_on wait for it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kaar-dev/kaar/pkg/sandbox"
)

// services are the kaar services that hold cluster credentials.
var services = []string{"watcher", "planner", "executor"}

type options struct {
	stateDir, cacheDir, kubeDir string
	rbacFile                    string
	listen, ops                 string
	server, hostServer          string
	nodes                       int
}

func main() {
	var o options
	flag.StringVar(&o.stateDir, "state-dir", "/var/lib/kaar/sandbox", "the sandbox's state directory (a tmpfs: every start is a fresh cluster)")
	flag.StringVar(&o.cacheDir, "cache-dir", "/opt/kaar", "where the image holds the control-plane binaries (<dir>/sandbox/bin/<key>, as pkg/sandbox caches them)")
	flag.StringVar(&o.kubeDir, "kube-dir", "/kube", "where the kubeconfigs are written, one directory per consumer")
	flag.StringVar(&o.rbacFile, "rbac", "/etc/kaar/kaar.yaml", "manifests holding the ClusterRoles kaar-watcher, kaar-planner and kaar-executor")
	flag.StringVar(&o.listen, "listen", ":6443", "address forwarded to the API server")
	flag.StringVar(&o.ops, "ops", ":9090", "address of /healthz and /readyz")
	flag.StringVar(&o.server, "server", "https://cluster:6443", "the API server URL the other containers use")
	flag.StringVar(&o.hostServer, "host-server", "https://127.0.0.1:6443", "the API server URL from the host (kubeconfig-host)")
	flag.IntVar(&o.nodes, "nodes", sandbox.DefaultNodes, "number of kwok nodes")
	ensure := flag.Bool("ensure-binaries", false, "only build (or find) the control-plane binaries in --cache-dir and print their directory (deploy/hack/build-images.sh copies it into the image)")
	flag.Parse()
	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *ensure {
		b, err := sandbox.EnsureBinaries(ctx, sandbox.Options{CacheDir: o.cacheDir, Progress: os.Stderr})
		if err != nil {
			logger.Error("kaar-demo-cluster", slog.Any("err", err))
			os.Exit(1)
		}
		fmt.Println(b.Dir)
		return
	}
	if err := run(ctx, o, logger); err != nil {
		logger.Error("kaar-demo-cluster", slog.Any("err", err))
		os.Exit(1)
	}
}

func run(ctx context.Context, o options, logger *slog.Logger) error {
	var ready atomic.Value
	ready.Store("starting the control plane")
	ops := &http.Server{Addr: o.ops, Handler: opsHandler(&ready), ReadHeaderTimeout: 5 * time.Second}
	opsErr := make(chan error, 1)
	go func() { opsErr <- ops.ListenAndServe() }()
	defer ops.Close() //nolint:errcheck // shutting down

	start := time.Now()
	c, err := sandbox.Up(ctx, sandbox.Options{StateDir: o.stateDir, CacheDir: o.cacheDir, Nodes: o.nodes, Progress: os.Stderr, Logger: logger})
	if err != nil {
		return err
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := c.Down(dctx); err != nil {
			logger.Error("stop the control plane", slog.Any("err", err))
		}
	}()
	fwd, err := forward(ctx, o.listen, strconv.Itoa(c.Ports.APIServer), logger)
	if err != nil {
		return err
	}
	defer fwd.Close() //nolint:errcheck // shutting down
	ready.Store("granting the services their roles")
	if err := grantRoles(ctx, c.Clientset(), o.rbacFile); err != nil {
		return err
	}
	if err := writeKubeconfigs(c, o); err != nil {
		return err
	}
	ready.Store("installing the demo shop")
	if err := sandbox.ApplyDemo(ctx, c.Clientset(), sandbox.DemoOptions{Extras: true}, os.Stderr); err != nil {
		return err
	}
	ready.Store("")
	logger.Info("cluster ready", slog.String("server", o.server), slog.Duration("took", time.Since(start).Round(time.Second)))
	select {
	case <-ctx.Done():
		return nil
	case err := <-opsErr:
		return fmt.Errorf("ops server: %w", err)
	}
}

// opsHandler serves /healthz (the process runs) and /readyz (503 with what
// is still being done, 200 once the cluster and the demo are ready).
func opsHandler(ready *atomic.Value) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if s, _ := ready.Load().(string); s != "" {
			http.Error(w, s, http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return mux
}

// forward accepts TCP connections on listen and pipes each to the API
// server on the loopback port; TLS passes through untouched.
func forward(ctx context.Context, listen, port string, logger *slog.Logger) (net.Listener, error) {
	l, err := (&net.ListenConfig{}).Listen(ctx, "tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("forward %s: %w", listen, err)
	}
	target := net.JoinHostPort("127.0.0.1", port)
	go func() {
		for {
			in, err := l.Accept()
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					logger.Error("forward: accept", slog.Any("err", err))
				}
				return
			}
			go pipe(ctx, in, target, logger)
		}
	}()
	return l, nil
}

func pipe(ctx context.Context, in net.Conn, target string, logger *slog.Logger) {
	defer in.Close() //nolint:errcheck // done
	out, err := (&net.Dialer{Timeout: 10 * time.Second}).DialContext(ctx, "tcp", target)
	if err != nil {
		logger.Error("forward: dial the API server", slog.Any("err", err))
		return
	}
	defer out.Close() //nolint:errcheck // done
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(out, in); done <- struct{}{} }()
	go func() { _, _ = io.Copy(in, out); done <- struct{}{} }()
	<-done
}

// grantRoles creates the ClusterRoles kaar-<service> of the rendered
// manifests and binds each to the sandbox user of the same name.
func grantRoles(ctx context.Context, cs kubernetes.Interface, file string) error {
	roles, err := clusterRoles(file)
	if err != nil {
		return err
	}
	for _, s := range services {
		name := "kaar-" + s
		role, ok := roles[name]
		if !ok {
			return fmt.Errorf("grant roles: %s has no ClusterRole %s", file, name)
		}
		role.ResourceVersion = ""
		if _, err := cs.RbacV1().ClusterRoles().Create(ctx, &role, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("grant roles: create ClusterRole %s: %w", name, err)
		}
		binding := &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: role.Labels},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
			Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: name}},
		}
		if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("grant roles: bind %s: %w", name, err)
		}
	}
	return nil
}

// clusterRoles reads the ClusterRoles of a multi-document manifest file.
func clusterRoles(file string) (map[string]rbacv1.ClusterRole, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("read roles: %w", err)
	}
	defer f.Close() //nolint:errcheck // read only
	dec := utilyaml.NewYAMLOrJSONDecoder(f, 4096)
	roles := map[string]rbacv1.ClusterRole{}
	for {
		var r rbacv1.ClusterRole
		if err := dec.Decode(&r); err != nil {
			if errors.Is(err, io.EOF) {
				return roles, nil
			}
			return nil, fmt.Errorf("read roles from %s: %w", file, err)
		}
		if r.Kind == "ClusterRole" {
			roles[r.Name] = r
		}
	}
}

// writeKubeconfigs writes each service's kubeconfig and the admin's, with
// the API server reached through the forwarder.
func writeKubeconfigs(c *sandbox.Cluster, o options) error {
	for _, s := range services {
		src, err := c.KubeconfigFor("kaar-" + s)
		if err != nil {
			return err
		}
		if err := rewrite(src, filepath.Join(o.kubeDir, s, "kubeconfig"), o.server); err != nil {
			return err
		}
	}
	if err := rewrite(c.KubeconfigPath, filepath.Join(o.kubeDir, "admin", "kubeconfig"), o.server); err != nil {
		return err
	}
	return rewrite(c.KubeconfigPath, filepath.Join(o.kubeDir, "admin", "kubeconfig-host"), o.hostServer)
}

// rewrite copies the kubeconfig src to dst with every cluster's server
// set to server and its TLS server name to one the certificate names.
func rewrite(src, dst, server string) error {
	cfg, err := clientcmd.LoadFromFile(src)
	if err != nil {
		return fmt.Errorf("kubeconfig %s: %w", src, err)
	}
	for _, cl := range cfg.Clusters {
		cl.Server = server
		cl.TLSServerName = "kubernetes"
	}
	tmp := dst + ".tmp"
	if err := clientcmd.WriteToFile(*cfg, tmp); err != nil {
		return fmt.Errorf("kubeconfig %s: %w", dst, err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("kubeconfig %s: %w", dst, err)
	}
	return nil
}
