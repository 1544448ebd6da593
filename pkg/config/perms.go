package config

import (
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// FilePermission is a file kaar reads that more people than its owner
// may read.
type FilePermission struct {
	// Key is the configuration key naming the file ("config" for the
	// configuration file itself).
	Key  string
	Path string
	Mode fs.FileMode
}

func (f FilePermission) String() string {
	return fmt.Sprintf("%s %s has mode %04o", f.Key, f.Path, f.Mode.Perm())
}

// FilePermissionWarnings are the files LoadFile found readable by more
// than they should be, when server.strict_file_permissions is off. The
// logger of every kaar process reports them (svcmain.NewLogger).
func (s Server) FilePermissionWarnings() []FilePermission {
	if s.permWarnings == nil {
		return nil
	}
	return *s.permWarnings
}

// checkFilePermissions lists the credential files that their group or
// others may read, and the configuration file when others may read it
// (0640 with the service's group is the documented mode: it may hold
// tokens and secrets inline). Files that do not exist are left to the
// code that reads them.
func (c Config) checkFilePermissions(configPath string) []FilePermission {
	var out []FilePermission
	check := func(key, path string, mask fs.FileMode) {
		if path == "" {
			return
		}
		fi, err := os.Stat(path)
		if err != nil || !fi.Mode().IsRegular() {
			return
		}
		if fi.Mode().Perm()&mask != 0 {
			out = append(out, FilePermission{Key: key, Path: path, Mode: fi.Mode().Perm()})
		}
	}
	check("config", configPath, 0o007)
	files := []struct{ key, path string }{
		{"kubernetes.kubeconfig", c.Kubernetes.Kubeconfig},
		{"mcp.token_file", c.MCP.TokenFile},
		{"nats.creds_file", c.NATS.CredsFile},
		{"nats.nkey_file", c.NATS.NkeyFile},
		{"nats.tls.key_file", c.NATS.TLS.KeyFile},
		{"server.tls_key_file", c.Server.TLSKeyFile},
		{"signing.key_file", c.Signing.KeyFile},
	}
	for i, a := range c.Kubernetes.AdditionalClusters {
		files = append(files, struct{ key, path string }{fmt.Sprintf("kubernetes.additional_clusters[%d].kubeconfig", i), a.Kubeconfig})
	}
	for _, f := range files {
		check(f.key, f.path, 0o077)
	}
	return out
}

// applyFilePermissions refuses the files checkFilePermissions found with
// server.strict_file_permissions, else keeps them for the logger.
func (c *Config) applyFilePermissions(configPath string) error {
	found := c.checkFilePermissions(configPath)
	if len(found) == 0 {
		return nil
	}
	if c.Server.StrictFilePermissions {
		var parts []string
		for _, f := range found {
			parts = append(parts, f.String())
		}
		return fieldErr("server.strict_file_permissions", "refusing to start: "+strings.Join(parts, "; ")+
			": make credential files private to the service user (chmod 600, or 640 with the service's group for the configuration file), or set server.strict_file_permissions: false to only warn")
	}
	c.Server.permWarnings = &found
	return nil
}
