package config

import (
	"fmt"
	"slices"
	"strings"
)

// Server is where the gateway listens and how every service logs.
type Server struct {
	Host string `yaml:"host"`
	Port int    `yaml:"port"`
	// LogLevel is one of LogLevels in any case, or warning or critical
	// (the original server's names for warn and error); Load stores it
	// as the LogLevels entry.
	LogLevel  string `yaml:"log_level"`
	LogFile   string `yaml:"log_file"`
	LogFormat string `yaml:"log_format"`
	// MetricsAddr is the listen address of the Prometheus /metrics and the
	// /healthz, /readyz endpoints of services that do not serve HTTP
	// otherwise. Empty disables it.
	MetricsAddr string `yaml:"metrics_addr"`
	// TLSCertFile and TLSKeyFile (PEM) make the gateway serve HTTPS; both
	// or neither. Read at start: restart after renewing them.
	TLSCertFile string `yaml:"tls_cert_file"`
	TLSKeyFile  string `yaml:"tls_key_file"`
	// StrictFilePermissions refuses to start when a credential file kaar
	// reads (kubeconfigs, mcp.token_file, nats.creds_file, nats.nkey_file,
	// signing.key_file, the TLS keys) is readable by its group or others,
	// or the configuration file (which may hold tokens and secrets) by
	// others; false only warns (slog, naming the file and its mode).
	StrictFilePermissions bool `yaml:"strict_file_permissions"`
	// MemoryLimit is the process's soft memory limit (memory.go): auto
	// (90% of its container's memory limit, none outside a container),
	// off, or a size such as 96Mi. GOMEMLIMIT in the environment wins.
	MemoryLimit string `yaml:"memory_limit"`

	// permWarnings are the files LoadFile found too open (warn only); a
	// pointer keeps Server comparable.
	permWarnings *[]FilePermission
}

// LogLevels are the values of server.log_level, in any case ("INFO", as
// the original server's config.yaml writes it, is "info").
var LogLevels = []string{"debug", "info", "warn", "error"}

// logLevelAliases are the other names of LogLevels that the original
// server (Python's logging) used.
var logLevelAliases = map[string]string{"warning": "warn", "critical": "error"}

// canonicalLogLevel returns the LogLevels entry level names, and false when
// it names none.
func canonicalLogLevel(level string) (string, bool) {
	l := strings.ToLower(strings.TrimSpace(level))
	if a, ok := logLevelAliases[l]; ok {
		l = a
	}
	return l, slices.Contains(LogLevels, l)
}

func (s Server) validate() error {
	var p problems
	if s.Host == "" {
		p.add(fieldErr("server.host", "must not be empty"))
	}
	if s.Port < 1 || s.Port > 65535 {
		p.addf("server.port", "%d is out of range 1-65535", s.Port)
	}
	if _, ok := canonicalLogLevel(s.LogLevel); !ok {
		p.add(fieldErr("server.log_level", fmt.Sprintf("%q is not allowed, in any case (warning and critical are read as warn and error)", s.LogLevel), LogLevels...))
	}
	p.add(oneOf("server.log_format", s.LogFormat, "text", "json"))
	p.add(checkKeyPair("server.tls_cert_file", s.TLSCertFile, "server.tls_key_file", s.TLSKeyFile))
	p.add(ValidateMemoryLimit(s.MemoryLimit))
	return p.join()
}
