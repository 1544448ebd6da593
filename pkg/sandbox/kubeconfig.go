package sandbox

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	clientcmd "k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// AdminUser is the sandbox's cluster administrator (group system:masters).
const AdminUser = "kaar-admin"

// ServiceUsers are the users of kaar's services. They belong to no group
// and get no permissions from the sandbox, so RBAC can be tested: grant
// them what each service needs.
var ServiceUsers = []string{"kaar-watcher", "kaar-planner", "kaar-executor", "kaar-mcpgateway"}

// clusterName names the cluster entry in the kubeconfigs.
const clusterName = "kaar-sandbox"

// user is one static-token identity.
type user struct {
	Name   string
	Token  string
	Groups []string
}

// componentUsers authenticate the control-plane components.
var componentUsers = []string{"sandbox:kube-controller-manager", "sandbox:kube-scheduler", "sandbox:kwok", "sandbox:metrics-server"}

// newUsers returns fresh tokens for the admin, the service users and the
// components.
func newUsers() []user {
	users := []user{{Name: AdminUser, Token: randomToken(), Groups: []string{"system:masters"}}}
	for _, n := range ServiceUsers {
		users = append(users, user{Name: n, Token: randomToken()})
	}
	for _, n := range componentUsers {
		users = append(users, user{Name: n, Token: randomToken(), Groups: []string{"system:masters"}})
	}
	return users
}

// renderTokenFile renders kube-apiserver's --token-auth-file:
// token,user,uid,"group1,group2".
func renderTokenFile(users []user) []byte {
	var b bytes.Buffer
	for _, u := range users {
		fmt.Fprintf(&b, "%s,%s,%s", u.Token, u.Name, u.Name)
		if len(u.Groups) > 0 {
			fmt.Fprintf(&b, ",%q", strings.Join(u.Groups, ","))
		}
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// renderKubeconfig renders a kubeconfig for server with one context per
// user, named after the user; current is the current context.
func renderKubeconfig(server string, caPEM []byte, users []user, current string) ([]byte, error) {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[clusterName] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	found := false
	for _, u := range users {
		cfg.AuthInfos[u.Name] = &clientcmdapi.AuthInfo{Token: u.Token}
		cfg.Contexts[u.Name] = &clientcmdapi.Context{Cluster: clusterName, AuthInfo: u.Name, Namespace: "default"}
		found = found || u.Name == current
	}
	if !found {
		return nil, fmt.Errorf("kubeconfig: current context %q: %w", current, ErrUnknownUser)
	}
	cfg.CurrentContext = current
	return clientcmd.Write(*cfg)
}

// kubeconfigPaths are the kubeconfig files of a state directory.
type kubeconfigPaths struct {
	Admin string            // all users' contexts, current: AdminUser
	Users map[string]string // per service user
	Comps map[string]string // per component user
}

func kubeconfigsIn(stateDir string) kubeconfigPaths {
	p := kubeconfigPaths{Admin: filepath.Join(stateDir, "kubeconfig"), Users: map[string]string{}, Comps: map[string]string{}}
	for _, u := range ServiceUsers {
		p.Users[u] = filepath.Join(stateDir, "users", u+".kubeconfig")
	}
	for _, u := range componentUsers {
		p.Comps[u] = filepath.Join(stateDir, "components", strings.TrimPrefix(u, "sandbox:")+".kubeconfig")
	}
	return p
}

// writeKubeconfigs writes the admin kubeconfig (every human and service
// user as a context) and one kubeconfig per service and component user.
func writeKubeconfigs(stateDir, server string, caPEM []byte, users []user) (kubeconfigPaths, error) {
	paths := kubeconfigsIn(stateDir)
	var people []user
	for _, u := range users {
		if !strings.HasPrefix(u.Name, "sandbox:") {
			people = append(people, u)
		}
	}
	write := func(path string, us []user, current string) error {
		b, err := renderKubeconfig(server, caPEM, us, current)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return err
		}
		return os.WriteFile(path, b, 0o600)
	}
	if err := write(paths.Admin, people, AdminUser); err != nil {
		return paths, fmt.Errorf("write kubeconfig: %w", err)
	}
	for _, u := range users {
		path := paths.Users[u.Name]
		if path == "" {
			path = paths.Comps[u.Name]
		}
		if path == "" {
			continue
		}
		if err := write(path, []user{u}, u.Name); err != nil {
			return paths, fmt.Errorf("write kubeconfig for %s: %w", u.Name, err)
		}
	}
	return paths, nil
}
