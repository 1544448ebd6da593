package mcpinterop_test

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// reporter is the part of testing.TB that compareExpected reports to.
type reporter interface {
	Helper()
	Errorf(format string, args ...any)
	Logf(format string, args ...any)
}

// expectedFailure is one line of testdata/expected-failures.txt.
type expectedFailure struct {
	check  string // conformance/<scenario> or interop/<name>
	marker string // text the failure message must contain
	reason string
	line   int
}

// loadExpectedFailures reads testdata/expected-failures.txt:
//
//	<check> | <text the failure message must contain> | <reason>
//
// Blank lines and lines starting with # are comments.
func loadExpectedFailures(t *testing.T) map[string]expectedFailure {
	t.Helper()
	path := filepath.Join("testdata", "expected-failures.txt")
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]expectedFailure{}
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		parts := strings.SplitN(line, "|", 3)
		if len(parts) != 3 {
			t.Fatalf("%s:%d: want <check> | <failure text> | <reason>, got %q", path, n, line)
		}
		e := expectedFailure{check: strings.TrimSpace(parts[0]), marker: strings.TrimSpace(parts[1]), reason: strings.TrimSpace(parts[2]), line: n}
		if e.check == "" || e.marker == "" || len(e.reason) < 20 {
			t.Fatalf("%s:%d: every entry needs a check, the failure text and a reason (20+ characters): %q", path, n, line)
		}
		if !strings.HasPrefix(e.check, "conformance/") && !strings.HasPrefix(e.check, "interop/") {
			t.Fatalf("%s:%d: check %q: want conformance/<scenario> or interop/<name>", path, n, e.check)
		}
		if prev, dup := out[e.check]; dup {
			t.Fatalf("%s:%d: %s is already listed on line %d", path, n, e.check, prev.line)
		}
		out[e.check] = e
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// outcome is what one check did.
type outcome struct {
	failed  bool
	message string // the failure messages, when failed
}

// compareExpected fails the test for every check whose outcome does not
// match the list: an unlisted failure, a listed failure with another
// message, a listed check that passed. With a prefix, got holds every
// check of that prefix, and a listed one that did not run is an error
// too (the list names something that no longer exists).
func compareExpected(t reporter, prefix string, expected map[string]expectedFailure, got map[string]outcome) {
	t.Helper()
	names := make([]string, 0, len(got))
	for name := range got {
		names = append(names, name)
	}
	sort.Strings(names)
	var passed, expectedFailed int
	for _, name := range names {
		o := got[name]
		e, listed := expected[name]
		switch {
		case !o.failed && !listed:
			passed++
		case !o.failed && listed:
			t.Errorf("%s passes now but testdata/expected-failures.txt:%d still lists it as failing (%s): remove the line", name, e.line, e.reason)
		case o.failed && !listed:
			t.Errorf("%s failed unexpectedly: %s", name, o.message)
		case !strings.Contains(o.message, e.marker):
			t.Errorf("%s failed, as listed on testdata/expected-failures.txt:%d, but no longer for the listed cause (%q not in the failure): %s", name, e.line, e.marker, o.message)
		default:
			expectedFailed++
			t.Logf("%s: expected failure (%s)", name, e.reason)
		}
	}
	for name, e := range expected {
		if _, ran := got[name]; prefix != "" && strings.HasPrefix(name, prefix) && !ran {
			t.Errorf("testdata/expected-failures.txt:%d lists %s, which did not run", e.line, name)
		}
	}
	if prefix != "" {
		t.Logf("%s: %d passed, %d failed as expected, of %d", strings.TrimSuffix(prefix, "/"), passed, expectedFailed, len(got))
	}
}

// recorder keeps what compareExpected reported.
type recorder struct{ errors, logs []string }

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}
func (r *recorder) Logf(format string, args ...any) {
	r.logs = append(r.logs, fmt.Sprintf(format, args...))
}

// TestCompareExpected: the list judges both ways.
func TestCompareExpected(t *testing.T) {
	t.Parallel()
	expected := map[string]expectedFailure{
		"conformance/a":    {check: "conformance/a", marker: "tool 'x' not found", reason: "fixture: the suite's tool x", line: 1},
		"conformance/b":    {check: "conformance/b", marker: "logging not supported", reason: "capability: no logging declared", line: 2},
		"conformance/gone": {check: "conformance/gone", marker: "x", reason: "a scenario the suite dropped", line: 3},
		"interop/other":    {check: "interop/other", marker: "x", reason: "not judged under the conformance/ prefix", line: 4},
	}
	for _, tc := range []struct {
		name string
		got  map[string]outcome
		want []string // substrings of the errors, in order
	}{
		{"as listed", map[string]outcome{
			"conformance/a":    {failed: true, message: "FAILURE a: tool 'x' not found"},
			"conformance/b":    {failed: true, message: "FAILURE b: logging not supported"},
			"conformance/gone": {failed: true, message: "x"},
			"conformance/ok":   {},
		}, nil},
		{"unlisted failure", map[string]outcome{
			"conformance/a": {failed: true, message: "tool 'x' not found"}, "conformance/b": {failed: true, message: "logging not supported"},
			"conformance/gone": {failed: true, message: "x"}, "conformance/new": {failed: true, message: "boom"},
		}, []string{"conformance/new failed unexpectedly: boom"}},
		{"listed check passes", map[string]outcome{
			"conformance/a": {}, "conformance/b": {failed: true, message: "logging not supported"}, "conformance/gone": {failed: true, message: "x"},
		}, []string{"conformance/a passes now but testdata/expected-failures.txt:1 still lists it"}},
		{"other cause", map[string]outcome{
			"conformance/a": {failed: true, message: "timeout"}, "conformance/b": {failed: true, message: "logging not supported"}, "conformance/gone": {failed: true, message: "x"},
		}, []string{"no longer for the listed cause"}},
		{"listed check did not run", map[string]outcome{
			"conformance/a": {failed: true, message: "tool 'x' not found"}, "conformance/b": {failed: true, message: "logging not supported"},
		}, []string{"lists conformance/gone, which did not run"}},
	} {
		var r recorder
		compareExpected(&r, "conformance/", expected, tc.got)
		if len(r.errors) != len(tc.want) {
			t.Errorf("%s: errors %q, want %d", tc.name, r.errors, len(tc.want))
			continue
		}
		for i, w := range tc.want {
			if !strings.Contains(r.errors[i], w) {
				t.Errorf("%s: error %q lacks %q", tc.name, r.errors[i], w)
			}
		}
	}
}

// TestExpectedFailuresFile: the checked-in list parses, each entry with its
// failure text and reason.
func TestExpectedFailuresFile(t *testing.T) {
	t.Parallel()
	list := loadExpectedFailures(t)
	if len(list) == 0 {
		t.Fatal("testdata/expected-failures.txt lists nothing")
	}
	for name, e := range list {
		if !strings.HasPrefix(e.reason, "fixture: ") && !strings.HasPrefix(e.reason, "capability: ") && !strings.HasPrefix(e.reason, "bug: ") {
			t.Errorf("%s: the reason should start with its kind (fixture: , capability: or bug: ): %q", name, e.reason)
		}
	}
}
