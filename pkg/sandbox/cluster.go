package sandbox

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Cluster is a running sandbox.
type Cluster struct {
	// StateDir is the state directory ("" for a cluster attached through a
	// kubeconfig that is not in a state directory).
	StateDir string
	// KubeconfigPath is the admin kubeconfig; it also holds one context per
	// service user (named after the user).
	KubeconfigPath string
	// Kubectl is the path of the kubectl built with the control plane.
	Kubectl string
	// Server is the API server URL.
	Server string
	// Ports are the ports the sandbox listens on (zero when attached
	// without a state directory).
	Ports Ports

	attached  bool                    // found through a kubeconfig: Down leaves it running
	configs   map[string]*rest.Config // by user
	clientset *kubernetes.Clientset
	owned     []*process // processes started by this program
	logger    *slog.Logger
	downOnce  sync.Once
	downErr   error
}

// RESTConfig returns a copy of the admin's client configuration.
func (c *Cluster) RESTConfig() *rest.Config {
	return rest.CopyConfig(c.configs[AdminUser])
}

// RESTConfigFor returns a copy of the client configuration of user: AdminUser
// or one of ServiceUsers.
func (c *Cluster) RESTConfigFor(user string) (*rest.Config, error) {
	cfg, ok := c.configs[user]
	if !ok {
		return nil, fmt.Errorf("rest config for %q: %w (known: %s and %v)", user, ErrUnknownUser, AdminUser, ServiceUsers)
	}
	return rest.CopyConfig(cfg), nil
}

// Clientset returns the admin's clientset.
func (c *Cluster) Clientset() *kubernetes.Clientset {
	return c.clientset
}

// KubeconfigFor returns the path of a kubeconfig holding only user's
// credentials (a service user), or the admin kubeconfig for AdminUser.
func (c *Cluster) KubeconfigFor(user string) (string, error) {
	if user == AdminUser {
		return c.KubeconfigPath, nil
	}
	if c.StateDir == "" {
		return "", fmt.Errorf("kubeconfig for %q: attached cluster has no state directory; use context %q of %s", user, user, c.KubeconfigPath)
	}
	p, ok := kubeconfigsIn(c.StateDir).Users[user]
	if !ok {
		return "", fmt.Errorf("kubeconfig for %q: %w", user, ErrUnknownUser)
	}
	return p, nil
}

// Down stops the cluster and removes its state (see the package-level Down).
// For a cluster found with Attach, it does nothing: it belongs to whoever
// started it.
func (c *Cluster) Down(ctx context.Context) error {
	c.downOnce.Do(func() {
		if c.attached || c.StateDir == "" {
			return
		}
		c.downErr = Down(ctx, c.StateDir)
		for _, p := range c.owned {
			select {
			case <-p.done:
			case <-ctx.Done():
			}
		}
	})
	return c.downErr
}

// newClients builds the client configurations of every user in the admin
// kubeconfig (one context per user) and the admin clientset.
func (c *Cluster) newClients() error {
	raw, err := clientcmd.LoadFromFile(c.KubeconfigPath)
	if err != nil {
		return fmt.Errorf("load kubeconfig: %w", err)
	}
	c.configs = map[string]*rest.Config{}
	for name := range raw.Contexts {
		cfg, err := clientcmd.NewNonInteractiveClientConfig(*raw, name, &clientcmd.ConfigOverrides{}, nil).ClientConfig()
		if err != nil {
			return fmt.Errorf("kubeconfig context %s: %w", name, err)
		}
		cfg.QPS, cfg.Burst = 50, 100
		c.configs[raw.Contexts[name].AuthInfo] = cfg
	}
	admin, ok := c.configs[AdminUser]
	if !ok {
		return fmt.Errorf("kubeconfig %s: no context for %s: not a sandbox kubeconfig", c.KubeconfigPath, AdminUser)
	}
	c.Server = admin.Host
	cs, err := kubernetes.NewForConfig(admin)
	if err != nil {
		return fmt.Errorf("clientset: %w", err)
	}
	c.clientset = cs
	return nil
}

// Attach returns the running sandbox whose admin kubeconfig is at path
// (for instance $KAAR_SANDBOX_KUBECONFIG). Down on the result does not stop
// it.
func Attach(ctx context.Context, kubeconfig string) (*Cluster, error) {
	abs, err := filepath.Abs(kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("attach %s: %w", kubeconfig, err)
	}
	c := &Cluster{KubeconfigPath: abs, attached: true, logger: slog.New(slog.DiscardHandler)}
	if err := c.newClients(); err != nil {
		return nil, fmt.Errorf("attach %s: %w", kubeconfig, err)
	}
	if st, err := readState(filepath.Dir(abs)); err == nil {
		c.StateDir, c.Kubectl, c.Ports = filepath.Dir(abs), st.Binaries.Kubectl, st.Ports
	} else if p, err := exec.LookPath("kubectl"); err == nil {
		c.Kubectl = p
	}
	if err := c.ready(ctx); err != nil {
		return nil, fmt.Errorf("attach %s: %w: %w", kubeconfig, ErrNotRunning, err)
	}
	return c, nil
}

// ready checks the API server's /readyz.
func (c *Cluster) ready(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	body, err := c.clientset.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
	if err != nil {
		return fmt.Errorf("readyz: %w: %s", err, body)
	}
	return nil
}

// attachState rebuilds a Cluster from a state directory.
func attachState(stateDir string, st *State, logger *slog.Logger) (*Cluster, error) {
	c := &Cluster{StateDir: stateDir, KubeconfigPath: st.Kubeconfig, Kubectl: st.Binaries.Kubectl, Ports: st.Ports, logger: logger}
	if err := c.newClients(); err != nil {
		return nil, err
	}
	return c, nil
}

// Status is what StatusOf reports about a state directory.
type Status struct {
	StateDir   string            `json:"stateDir"`
	Running    bool              `json:"running"` // some process of the sandbox runs
	Healthy    bool              `json:"healthy"` // every process runs and the API server is ready
	Problem    string            `json:"problem,omitempty"`
	Server     string            `json:"server,omitempty"`
	Kubeconfig string            `json:"kubeconfig,omitempty"`
	Kubectl    string            `json:"kubectl,omitempty"`
	Ports      Ports             `json:"ports"`
	Nodes      int               `json:"nodes,omitempty"`
	Detached   bool              `json:"detached"`
	Components []ComponentStatus `json:"components,omitempty"`
}

// ComponentStatus is one process of the sandbox.
type ComponentStatus struct {
	Name    string `json:"name"`
	PID     int    `json:"pid"`
	Running bool   `json:"running"`
	Log     string `json:"log"`
}

// String renders the status for people.
func (s Status) String() string {
	if !s.Running && len(s.Components) == 0 {
		return fmt.Sprintf("sandbox: not running (state dir %s)\n", s.StateDir)
	}
	health := "healthy"
	if !s.Healthy {
		health = "UNHEALTHY: " + s.Problem
	}
	out := fmt.Sprintf("sandbox: %s\n  state dir:  %s\n  server:     %s\n  kubeconfig: %s\n  kubectl:    %s\n  nodes:      %d\n",
		health, s.StateDir, s.Server, s.Kubeconfig, s.Kubectl, s.Nodes)
	for _, c := range s.Components {
		state := "running"
		if !c.Running {
			state = "STOPPED"
		}
		out += fmt.Sprintf("  %-24s pid %-7d %-8s log %s\n", c.Name, c.PID, state, c.Log)
	}
	return out
}

// StatusOf reports on the sandbox of stateDir. A directory without a sandbox
// is "not running", not an error.
func StatusOf(ctx context.Context, stateDir string) (Status, error) {
	abs, err := filepath.Abs(stateDir)
	if err != nil {
		return Status{}, fmt.Errorf("status: %w", err)
	}
	st, err := readState(abs)
	if errors.Is(err, ErrNotRunning) {
		return Status{StateDir: abs}, nil
	}
	if err != nil {
		return Status{StateDir: abs}, err
	}
	return statusOf(ctx, abs, st), nil
}

func statusOf(ctx context.Context, stateDir string, st *State) Status {
	s := Status{StateDir: stateDir, Server: st.Server, Kubeconfig: st.Kubeconfig, Kubectl: st.Binaries.Kubectl,
		Ports: st.Ports, Nodes: st.Nodes, Detached: st.Detached, Healthy: true}
	for _, p := range st.Processes {
		alive := isOurProcess(p.PID, p.Binary)
		s.Components = append(s.Components, ComponentStatus{Name: p.Name, PID: p.PID, Running: alive, Log: p.Log})
		s.Running = s.Running || alive
		if !alive && s.Healthy {
			s.Healthy, s.Problem = false, p.Name+" is not running (see its log)"
		}
	}
	if s.Healthy {
		c, err := attachState(stateDir, st, slog.New(slog.DiscardHandler))
		if err == nil {
			err = c.ready(ctx)
		}
		if err != nil {
			s.Healthy, s.Problem = false, "API server not ready: "+err.Error()
		}
	}
	return s
}

// healthz checks an HTTPS /healthz endpoint of a component serving a
// self-signed certificate on 127.0.0.1.
func healthz(ctx context.Context, port int) error {
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // local self-signed component endpoint
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: 3 * time.Second}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://127.0.0.1:"+strconv.Itoa(port)+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := cl.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }() // a response body: closing only frees the connection
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthz: %s", resp.Status)
	}
	return nil
}
