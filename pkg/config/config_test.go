package config

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

// original is the original server's config.yaml, as it was written.
func original(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile("testdata/valid/original.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestLoadOriginalConfigAsIs(t *testing.T) {
	cfg, err := LoadFile("testdata/valid/original.yaml", nil)
	if err != nil {
		t.Fatalf("original config.yaml refused: %v", err)
	}
	if cfg.Server.Host != "0.0.0.0" || cfg.Server.Port != 8000 || cfg.Server.LogFile != "mcp-server.log" {
		t.Errorf("server = %+v", cfg.Server)
	}
	if cfg.Server.LogLevel != "info" {
		t.Errorf("log_level \"INFO\" loaded as %q, want info (what the loggers parse)", cfg.Server.LogLevel)
	}
	if cfg.Kubernetes.Context != "minikube" || cfg.Kubernetes.Namespace != "default" {
		t.Errorf("kubernetes = %+v", cfg.Kubernetes)
	}
	if cfg.Remediation.MaxPods != 5 || cfg.Remediation.AutoApprove {
		t.Errorf("remediation = %+v", cfg.Remediation)
	}
	got := cfg.Remediation.Strategies["ImagePullBackOff"]
	if len(got) != 2 || got[0].Action != "check_image" || got[1].Action != "update_image" {
		t.Errorf("ImagePullBackOff strategies = %+v", got)
	}
	if _, ok := cfg.Remediation.Strategies["OOMKilled"]; ok {
		t.Errorf("strategies from the file must replace the defaults, got OOMKilled too")
	}
	// kaar's own keys keep their defaults.
	if cfg.Remediation.ApprovalWindow.Duration != 15*time.Minute || cfg.Kubernetes.ClusterName != "default" {
		t.Errorf("defaults lost: window=%s cluster=%q", cfg.Remediation.ApprovalWindow, cfg.Kubernetes.ClusterName)
	}
}

func TestLogLevelInAnyCase(t *testing.T) {
	for in, want := range map[string]string{"INFO": "info", "Debug": "debug", "WARNING": "warn", "warn": "warn", "ERROR": "error", "CRITICAL": "error"} {
		cfg, err := Load(strings.NewReader("server: {log_level: "+in+"}"), nil)
		if err != nil || cfg.Server.LogLevel != want {
			t.Errorf("log_level %s = %q, %v; want %s", in, cfg.Server.LogLevel, err, want)
		}
	}
	cfg, err := Load(strings.NewReader(""), []string{"KAAR_SERVER_LOG_LEVEL=DEBUG"})
	if err != nil || cfg.Server.LogLevel != "debug" {
		t.Errorf("KAAR_SERVER_LOG_LEVEL=DEBUG = %q, %v", cfg.Server.LogLevel, err)
	}
}

func TestLoadEmptyIsDefault(t *testing.T) {
	cfg, err := Load(strings.NewReader(""), nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server.Port != 8000 || len(cfg.Remediation.Strategies) == 0 || cfg.MCP.Path != "/mcp" {
		t.Errorf("defaults = %+v", cfg)
	}
}

func TestLoadKaarKeysAndStrategyMappings(t *testing.T) {
	src := `
kubernetes: {cluster_name: prod-eu-1}
remediation:
  approval_window: 90s
  strategies:
    OOMKilled:
      - action: increase_memory
        params: {factor: "1.5"}
nats: {url: "nats://nats:4222"}
policy: {protected_namespaces: [kube-system, payments]}
`
	cfg, err := Load(strings.NewReader(src), nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Kubernetes.ClusterName != "prod-eu-1" || cfg.Remediation.ApprovalWindow.Duration != 90*time.Second || cfg.NATS.URL != "nats://nats:4222" {
		t.Errorf("cfg = %+v", cfg)
	}
	s := cfg.Remediation.Strategies["OOMKilled"]
	if len(s) != 1 || s[0].Action != "increase_memory" || s[0].Params["factor"] != "1.5" {
		t.Errorf("strategy = %+v", s)
	}
}

func TestLoadErrorsNameTheKey(t *testing.T) {
	cases := []struct {
		name, src, key, allowed string
	}{
		{"unknown top key", "sever: {}", `"sever"`, "kubernetes"},
		{"unknown nested key", "server: {hots: x}", `"server.hots"`, "host"},
		{"unknown deep key", "remediation: {strategies: {OOMKilled: [{action: increase_memory, parms: {}}]}}", `"remediation.strategies.OOMKilled[0].parms"`, "params"},
		{"port out of range", "server: {port: 70000}", `"server.port"`, ""},
		{"port not a number", "server: {port: eighty}", `"server.port"`, "whole number"},
		{"bad log level", "server: {log_level: loud}", `"server.log_level"`, "debug, info, warn, error"},
		{"unknown issue type", "remediation: {strategies: {Crashing: [check_logs]}}", `"remediation.strategies.Crashing"`, "CrashLoopBackOff"},
		{"unknown strategy", "remediation: {strategies: {OOMKilled: [pray]}}", `"remediation.strategies.OOMKilled[0]"`, "check_logs"},
		{"max_pods zero", "remediation: {max_pods: 0}", `"remediation.max_pods"`, ""},
		{"window too short", "remediation: {approval_window: 500ms}", `"remediation.approval_window"`, ""},
		{"window not a duration", "remediation: {approval_window: soon}", `"remediation.approval_window"`, "duration"},
		{"bad cluster name", "kubernetes: {cluster_name: Prod.EU}", `"kubernetes.cluster_name"`, ""},
		{"bad risk", "remediation: {auto_approve_max_risk: yolo}", `"remediation.auto_approve_max_risk"`, "none, low, medium, high"},
		{"bad memory cap", "remediation: {max_memory_limit: lots}", `"remediation.max_memory_limit"`, ""},
		{"short token", "mcp: {tokens: [{token: abc, user: ops, role: admin}]}", `"mcp.tokens[0].token"`, ""},
		{"bad role", "mcp: {tokens: [{token: 0123456789abcdef0, user: ops, role: god}]}", `"mcp.tokens[0].role"`, "read, assistant, approver, admin"},
		{"section not a mapping", "server: 8000", `"server"`, ""},
		{"scalar given a list", "server: {host: [a, b]}", `"server.host"`, ""},
		{"bad namespace", "policy: {protected_namespaces: [Kube_System]}", `"policy.protected_namespaces[0]"`, ""},
		{"not yaml", "server: [", "", ""},
		// A strategy's params: each step's own, each value checked.
		{"memory factor below 1", `remediation: {strategies: {OOMKilled: [{action: increase_memory, params: {factor: "0.5"}}]}}`, `"remediation.strategies.OOMKilled[0].params.factor"`, "greater than 1"},
		{"memory factor not a number", `remediation: {strategies: {OOMKilled: [{action: set_memory_limit, params: {factor: double}}]}}`, `"remediation.strategies.OOMKilled[0].params.factor"`, "number"},
		{"unknown param", `remediation: {strategies: {OOMKilled: [{action: increase_memory, params: {factr: "2"}}]}}`, `"remediation.strategies.OOMKilled[0].params.factr"`, "factor, horizon, max"},
		{"bad memory max", `remediation: {strategies: {OOMKilled: [{action: increase_memory, params: {max: lots}}]}}`, `"remediation.strategies.OOMKilled[0].params.max"`, "quantity"},
		{"bad horizon", `remediation: {strategies: {MemoryNearLimit: [{action: increase_memory, params: {horizon: "-1h"}}]}}`, `"remediation.strategies.MemoryNearLimit[0].params.horizon"`, "between 1m0s and 720h0m0s"},
		{"step without params", `remediation: {strategies: {CrashLoopBackOff: [{action: rollback, params: {revision: "3"}}]}}`, `"remediation.strategies.CrashLoopBackOff[0].params"`, "takes no params"},
		{"image with a space", `remediation: {strategies: {ImagePullBackOff: [{action: set_image, params: {image: "redis 7"}}]}}`, `"remediation.strategies.ImagePullBackOff[0].params.image"`, "image reference"},
		{"bad request", `remediation: {strategies: {Pending: [{action: lower_requests, params: {cpu: "0"}}]}}`, `"remediation.strategies.Pending[0].params.cpu"`, "above zero"},
		{"toleration operator", `remediation: {strategies: {Pending: [{action: add_toleration, params: {key: dedicated, operator: Maybe}}]}}`, `"remediation.strategies.Pending[0].params.operator"`, "Equal, Exists"},
		{"toleration without key", `remediation: {strategies: {Pending: [{action: add_toleration, params: {effect: NoSchedule}}]}}`, `"remediation.strategies.Pending[0].params.key"`, "taint's key"},
		{"toleration Exists with value", `remediation: {strategies: {Pending: [{action: add_toleration, params: {key: dedicated, operator: Exists, value: gpu}}]}}`, `"remediation.strategies.Pending[0].params.value"`, "operator Exists"},
		{"node selector key", `remediation: {strategies: {Pending: [{action: set_node_selector, params: {"bad key!": x}}]}}`, `"remediation.strategies.Pending[0].params"`, "label key"},
		{"node selector value", `remediation: {strategies: {Pending: [{action: set_node_selector, params: {pool: "a b"}}]}}`, `"remediation.strategies.Pending[0].params.pool"`, "label value"},
		{"custom step param", `remediation: {custom_strategies: {mine: [{action: set_image, params: {image: ""}}]}, strategies: {ImagePullBackOff: [mine]}}`, `"remediation.custom_strategies.mine[0].params.image"`, "image reference"},
		{"params on a custom strategy", `remediation: {custom_strategies: {mine: [check_logs]}, strategies: {CrashLoopBackOff: [{action: mine, params: {x: "1"}}]}}`, `"remediation.strategies.CrashLoopBackOff[0].params"`, "custom strategy"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(strings.NewReader(tc.src), nil)
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v is not ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tc.key) || !strings.Contains(err.Error(), tc.allowed) {
				t.Errorf("error %q does not name %s (allowed %q)", err, tc.key, tc.allowed)
			}
		})
	}
}

func TestEnvOverrides(t *testing.T) {
	env := []string{"KAAR_SERVER_PORT=9090", "KAAR_NATS_URL=nats://x:4222", "KAAR_REMEDIATION_AUTO_APPROVE=true",
		"KAAR_REMEDIATION_APPROVAL_WINDOW=2m", "KAAR_POLICY_PROTECTED_NAMESPACES=a, b", "PATH=/bin"}
	cfg, err := Load(strings.NewReader(original(t)), env)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server.Port != 9090 || cfg.NATS.URL != "nats://x:4222" || !cfg.Remediation.AutoApprove ||
		cfg.Remediation.ApprovalWindow.Duration != 2*time.Minute || strings.Join(cfg.Policy.ProtectedNamespaces, "|") != "a|b" {
		t.Errorf("cfg = %+v", cfg)
	}
	_, err = Load(strings.NewReader(""), []string{"KAAR_SERVER_PORT=http"})
	if err == nil || !strings.Contains(err.Error(), `"server.port"`) || !strings.Contains(err.Error(), "KAAR_SERVER_PORT") {
		t.Errorf("bad env value: %v", err)
	}
	_, err = Load(strings.NewReader(""), []string{"KAAR_SERVER_PORT=0"})
	if err == nil || !strings.Contains(err.Error(), `"server.port"`) {
		t.Errorf("env value must be validated: %v", err)
	}
}

func TestParseQuantityBytes(t *testing.T) {
	for in, want := range map[string]int64{"512Mi": 512 << 20, "4Gi": 4 << 30, "1.5Gi": 3 << 29, "1G": 1e9, "100": 100, "64k": 64000, "0.5": 1} {
		if got, err := ParseQuantityBytes(in); err != nil || got != want {
			t.Errorf("%s = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "Mi", "-1Gi", "0", "0Gi", "lots", "4 Gi"} {
		if _, err := ParseQuantityBytes(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

func FuzzLoad(f *testing.F) {
	f.Add(original(f))
	f.Add("server: {port: 1}")
	f.Add("remediation: {strategies: {OOMKilled: [{action: x}]}}")
	f.Fuzz(func(t *testing.T, src string) {
		cfg, err := Load(strings.NewReader(src), nil)
		if err == nil {
			if verr := cfg.Validate(); verr != nil {
				t.Fatalf("Load accepted an invalid config: %v", verr)
			}
		}
	})
}
