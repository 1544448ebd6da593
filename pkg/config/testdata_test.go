package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestInvalidFiles loads every testdata/invalid file and checks that it is
// refused with exactly one problem, naming the key its first line gives
// ("# key: remediation.approval_window") and, when a "# allowed:" line
// follows, listing those values.
func TestInvalidFiles(t *testing.T) {
	files, err := filepath.Glob("testdata/invalid/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata/invalid files: %v", err)
	}
	sections := map[string]bool{}
	for _, file := range files {
		key, allowed := expectation(t, file)
		sections[strings.FieldsFunc(key, func(r rune) bool { return r == '.' || r == '[' })[0]] = true
		t.Run(filepath.Base(file), func(t *testing.T) {
			_, err := LoadFile(file, nil)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("LoadFile = %v, want an ErrInvalid", err)
			}
			got := fieldErrors(err)
			if len(got) != 1 || got[0].Key != key {
				t.Fatalf("error %q: want one problem, naming %s", err, key)
			}
			if !strings.Contains(err.Error(), `config key "`+key+`"`) || !strings.Contains(err.Error(), allowed) {
				t.Errorf("error %q does not name %s (allowed %q)", err, key, allowed)
			}
		})
	}
	for _, s := range []string{"server", "kubernetes", "remediation", "nats", "policy", "watcher", "mcp", "notify", "signing"} {
		if !sections[s] {
			t.Errorf("no testdata/invalid file for section %s", s)
		}
	}
}

// expectation reads the "# key:" and optional "# allowed:" lines that
// open an invalid file.
func expectation(t *testing.T, file string) (key, allowed string) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "# key: "); ok {
			key = v
		} else if v, ok := strings.CutPrefix(line, "# allowed: "); ok {
			allowed = v
		} else {
			break
		}
	}
	if key == "" {
		t.Fatalf("%s: the first line must be \"# key: <the key its error names>\"", file)
	}
	return key, allowed
}

// fieldErrors flattens the FieldErrors of an error tree (errors.Join).
func fieldErrors(err error) []*FieldError {
	if fe, ok := err.(*FieldError); ok {
		return []*FieldError{fe}
	}
	var out []*FieldError
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			out = append(out, fieldErrors(e)...)
		}
	} else if e := errors.Unwrap(err); e != nil {
		out = append(out, fieldErrors(e)...)
	}
	return out
}

func TestValidFiles(t *testing.T) {
	files, err := filepath.Glob("testdata/valid/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata/valid files: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			if _, err := LoadFile(file, nil); err != nil {
				t.Errorf("LoadFile: %v", err)
			}
		})
	}
}

// TestValidateReportsEveryProblem: one file with a problem in several
// sections gets one error naming each key.
func TestValidateReportsEveryProblem(t *testing.T) {
	src := `
server: {port: 0, log_level: loud}
kubernetes: {cluster_name: Prod.EU}
remediation: {approval_window: 0s, max_pods: 0, memory_factor: 1}
nats: {replicas: 2}
policy: {gitops_managed: ignore}
watcher: {resolve_wait: 0s}
mcp: {path: nope}
notify: {slack: {bot_token: xoxb-1, signing_secret: s}}
signing: {trusted_planners: [x]}
`
	_, err := Load(strings.NewReader(src), nil)
	var keys []string
	for _, fe := range fieldErrors(err) {
		keys = append(keys, fe.Key)
	}
	want := []string{"server.port", "server.log_level", "kubernetes.cluster_name", "remediation.max_pods",
		"remediation.approval_window", "remediation.memory_factor", "nats.replicas", "policy.gitops_managed",
		"watcher.resolve_wait", "mcp.path", "notify.slack.channel", "signing.trusted_planners[0]"}
	if strings.Join(keys, " ") != strings.Join(want, " ") {
		t.Errorf("keys named:\n %v\nwant\n %v\n(error %v)", keys, want, err)
	}
}
