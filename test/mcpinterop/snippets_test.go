package mcpinterop_test

import (
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/kaar-dev/kaar/pkg/config"
	"github.com/kaar-dev/kaar/pkg/sandbox"
)

// The client configuration snippets of the README are the files under
// testdata/clients, which the README copies (TestREADMECopiesSnippets):
//
//	claude_desktop_config.json   Claude Desktop (stdio)
//	claude-code.mcp.json         Claude Code, a project's .mcp.json
//	claude-code.sh               Claude Code, "claude mcp add" command lines
//	cursor.mcp.json              Cursor, ~/.cursor/mcp.json or .cursor/mcp.json
//	vscode.mcp.json              VS Code, .vscode/mcp.json
const snippetDir = "testdata/clients"

// snippetServer is one server entry of a client snippet.
type snippetServer struct {
	where   string // file and entry, for messages
	stdio   bool
	command string
	args    []string
	env     map[string]string
	url     string
	headers map[string]string
}

// placeholderRE matches the token placeholders of the snippets: ${KAAR_TOKEN}
// (Claude Code), ${env:KAAR_TOKEN} (Cursor), ${input:kaar-token} (VS Code).
var placeholderRE = regexp.MustCompile(`\$\{(env:|input:)?[A-Za-z_-]+\}`)

// loadSnippets parses every snippet file: the JSON configurations (servers
// under "mcpServers" or, for VS Code, "servers") and the claude command lines.
func loadSnippets(t *testing.T) []snippetServer {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(snippetDir, "*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no snippets in %s: %v", snippetDir, err)
	}
	var out []snippetServer
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		switch filepath.Ext(f) {
		case ".json":
			var doc struct {
				MCPServers map[string]json.RawMessage `json:"mcpServers"`
				Servers    map[string]json.RawMessage `json:"servers"`
			}
			if err := json.Unmarshal(raw, &doc); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			servers := doc.MCPServers
			if servers == nil {
				servers = doc.Servers
			}
			if len(servers) == 0 {
				t.Fatalf("%s: no servers", f)
			}
			for name, rawEntry := range servers {
				var e struct {
					Type    string            `json:"type"`
					Command string            `json:"command"`
					Args    []string          `json:"args"`
					Env     map[string]string `json:"env"`
					URL     string            `json:"url"`
					Headers map[string]string `json:"headers"`
				}
				if err := json.Unmarshal(rawEntry, &e); err != nil {
					t.Fatalf("%s: %s: %v", f, name, err)
				}
				s := snippetServer{where: filepath.Base(f) + " " + name, stdio: e.Command != "", command: e.Command, args: e.Args, env: e.Env, url: e.URL, headers: e.Headers}
				if s.stdio == (e.URL != "") || (e.Type != "" && e.Type != map[bool]string{true: "stdio", false: "http"}[s.stdio]) {
					t.Fatalf("%s: %s: want either a stdio command or an http url (type %q)", f, name, e.Type)
				}
				out = append(out, s)
			}
		case ".sh":
			for i, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
				s, err := parseClaudeAdd(line)
				if err != nil {
					t.Fatalf("%s:%d: %v", f, i+1, err)
				}
				s.where = fmt.Sprintf("%s:%d", filepath.Base(f), i+1)
				out = append(out, s)
			}
		default:
			t.Fatalf("%s: unknown snippet kind", f)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].where < out[j].where })
	return out
}

// parseClaudeAdd reads "claude mcp add --transport stdio NAME -- CMD ARGS..."
// or "claude mcp add --transport http NAME URL [--header "K: V"]...".
func parseClaudeAdd(line string) (snippetServer, error) {
	words, err := shellWords(line)
	if err != nil {
		return snippetServer{}, err
	}
	if len(words) < 7 || strings.Join(words[:4], " ") != "claude mcp add --transport" {
		return snippetServer{}, fmt.Errorf("want claude mcp add --transport ..., got %q", line)
	}
	switch rest := words[5:]; words[4] {
	case "stdio":
		if len(rest) < 3 || rest[1] != "--" {
			return snippetServer{}, fmt.Errorf("want NAME -- COMMAND ARGS..., got %q", line)
		}
		return snippetServer{stdio: true, command: rest[2], args: rest[3:]}, nil
	case "http":
		s := snippetServer{url: rest[1], headers: map[string]string{}}
		for i := 2; i < len(rest); i += 2 {
			if rest[i] != "--header" || i+1 >= len(rest) {
				return snippetServer{}, fmt.Errorf("want --header \"K: V\", got %q", rest[i:])
			}
			k, v, ok := strings.Cut(rest[i+1], ": ")
			if !ok {
				return snippetServer{}, fmt.Errorf("header %q: want \"Name: value\"", rest[i+1])
			}
			s.headers[k] = v
		}
		return s, nil
	}
	return snippetServer{}, fmt.Errorf("transport %q: want stdio or http", words[4])
}

// shellWords splits a command line on blanks, with double quotes grouping
// (enough for the snippets; no escapes).
func shellWords(line string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord, quoted := false, false
	for _, r := range line {
		switch {
		case r == '"':
			quoted, inWord = !quoted, true
		case (r == ' ' || r == '\t') && !quoted:
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quoted {
		return nil, fmt.Errorf("unbalanced quote in %q", line)
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// TestClientSnippetsAgree: every snippet gives the same stdio command line
// and the same URL, and they are kaar's defaults: the address that kaar
// serve's NATS listens on and the HTTP endpoint it serves.
func TestClientSnippetsAgree(t *testing.T) {
	t.Parallel()
	servers := loadSnippets(t)
	def := config.Default()
	wantURL := fmt.Sprintf("http://%s:%d%s", def.Server.Host, def.Server.Port, def.MCP.Path)
	help, _ := exec.Command(kaarBinary(t), "serve", "--help").CombinedOutput()
	var stdio, http int
	for _, s := range servers {
		if s.stdio {
			stdio++
			want := []string{"mcp", "--stdio", "--nats-url", "nats://127.0.0.1:4222"}
			if s.command != "kaar" || !reflect.DeepEqual(s.args, want) || len(s.env) != 0 {
				t.Errorf("%s: stdio command %q %q env %v, want kaar %q", s.where, s.command, s.args, s.env, want)
			}
			continue
		}
		http++
		if s.url != wantURL {
			t.Errorf("%s: url %q, want kaar serve's default %q", s.where, s.url, wantURL)
		}
		if len(s.headers) != 1 || !placeholderRE.MatchString(s.headers["Authorization"]) || !strings.HasPrefix(s.headers["Authorization"], "Bearer ") {
			t.Errorf("%s: headers %v, want only Authorization: Bearer <token placeholder>", s.where, s.headers)
		}
	}
	if !strings.Contains(string(help), `(default "127.0.0.1:4222")`) {
		t.Errorf("the snippets' --nats-url is nats://127.0.0.1:4222, but kaar serve --help does not give it as --nats-listen's default:\n%s", help)
	}
	if stdio < 5 || http < 4 {
		t.Errorf("want a stdio form in each of the 5 snippets and an http form in 4, got %d and %d", stdio, http)
	}
}

// stdioForms are the distinct stdio command lines of the snippets.
func stdioForms(t *testing.T) []snippetServer {
	seen := map[string]bool{}
	var forms []snippetServer
	for _, s := range loadSnippets(t) {
		key := fmt.Sprint(s.command, s.args, s.env)
		if s.stdio && !seen[key] {
			seen[key] = true
			forms = append(forms, s)
		}
	}
	return forms
}

// TestClientSnippetStdioAsWritten starts the snippets' stdio server exactly
// as written (the command "kaar" found on PATH, the arguments as they are),
// through the MCP Inspector, against a kaar serve that listens where the
// snippet says (its defaults): tools/list and the test tool.
func TestClientSnippetStdioAsWritten(t *testing.T) {
	t.Parallel()
	mcpTools(t)
	forms := stdioForms(t)
	natsURL := ""
	for i, a := range forms[0].args {
		if a == "--nats-url" && i+1 < len(forms[0].args) {
			natsURL = forms[0].args[i+1]
		}
	}
	u, err := url.Parse(natsURL)
	if err != nil || u.Scheme != "nats" || u.Host == "" {
		t.Fatalf("%s: --nats-url %q is not a nats:// URL", forms[0].where, natsURL)
	}
	if l, err := net.Listen("tcp", u.Host); err != nil {
		t.Fatalf("this test runs kaar serve's NATS on %s, the address the snippet names, but it is taken (%v): is another kaar serve running here? (ss -ltnp | grep %s)", u.Host, err, u.Port())
	} else {
		l.Close()
	}
	c := sandbox.ForTest(t)
	s := startServe(t, c, sandbox.NewNamespace(t, c.Clientset()), serveOptions{natsListen: u.Host})
	if s.natsURL != natsURL {
		t.Fatalf("kaar serve's NATS is %s, the snippet says %s", s.natsURL, natsURL)
	}
	restNames := restToolNames(t, s.base, "")
	for _, f := range forms {
		target := []string{}
		for k, v := range f.env {
			target = append(target, "-e", k+"="+v)
		}
		target = append(append(target, "--", f.command), f.args...)
		tr := transport{name: f.where, target: target, pathFirst: filepath.Dir(kaarBinary(t))}
		checkTools(t, tr, restNames)
		checkTestTool(t, tr, s.cluster)
	}
}

// TestClientSnippetHTTPWithToken connects as the snippets' HTTP form says,
// to a kaar serve with a bearer token configured: the snippet's header with
// the token in place of its placeholder, at the serve's address (the
// snippets name the default port). Without the header, or with a wrong
// token, the Inspector gets no tools.
func TestClientSnippetHTTPWithToken(t *testing.T) {
	t.Parallel()
	mcpTools(t)
	const token = "interop-read-token-0123456789"
	c := sandbox.ForTest(t)
	s := startServe(t, c, sandbox.NewNamespace(t, c.Clientset()), serveOptions{extraYAML: `mcp:
  tokens:
    - {token: "` + token + `", user: interop@example.com, role: read}`})
	restNames := restToolNames(t, s.base, token) // the REST API takes the same token
	def := config.Default()
	defaultBase := fmt.Sprintf("http://%s:%d", def.Server.Host, def.Server.Port)
	seen := map[string]bool{}
	for _, sn := range loadSnippets(t) {
		if sn.stdio {
			continue
		}
		target := []string{strings.Replace(sn.url, defaultBase, s.base, 1), "--transport", "http"}
		var headers []string
		for k, v := range sn.headers {
			headers = append(headers, "--header", k+": "+placeholderRE.ReplaceAllString(v, token))
		}
		key := fmt.Sprint(target, headers)
		if seen[key] {
			continue
		}
		seen[key] = true
		// --header takes several values: it goes last.
		tr := transport{name: sn.where, target: append(target, headers...)}
		checkTools(t, tr, restNames)
		checkTestTool(t, tr, s.cluster)
	}
	if len(seen) != 1 {
		t.Errorf("the snippets' HTTP forms differ: %v", seen)
	}
	for name, headers := range map[string][]string{
		"no token":    nil,
		"wrong token": {"--header", "Authorization: Bearer interop-wrong-token-0123456789"},
	} {
		// --stored-auth-only: fail at once instead of starting an OAuth
		// login in a browser.
		args := append([]string{s.mcpURL, "--transport", "http", "--stored-auth-only", "--method", "tools/list", "--format", "json"}, headers...)
		run := inspector(t, "", args...)
		out := run.stdout + run.stderr
		if run.err == nil || strings.Contains(run.stdout, `"tools"`) {
			t.Errorf("%s: want no tools and an authentication error: %s", name, run)
		} else if !strings.Contains(out, `"auth_required"`) || !strings.Contains(out, "unauthenticated") {
			t.Errorf("%s: want the Inspector's auth_required error carrying kaar's unauthenticated answer: %s", name, run)
		} else {
			t.Logf("%s: refused as expected: %s", name, tail(strings.TrimSpace(run.stdout+run.stderr), 3))
		}
	}
}

var jsonBlockRE = regexp.MustCompile("(?s)```json\n(.*?)```")

// TestREADMECopiesSnippets: the README shows the snippets as they are in
// testdata/clients (JSON compared as JSON, command lines as lines).
func TestREADMECopiesSnippets(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile(filepath.Join(repoRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var blocks []any
	for _, m := range jsonBlockRE.FindAllStringSubmatch(string(readme), -1) {
		var v any
		if json.Unmarshal([]byte(m[1]), &v) == nil {
			blocks = append(blocks, v)
		}
	}
	lines := map[string]bool{}
	for _, l := range strings.Split(string(readme), "\n") {
		lines[strings.TrimSpace(l)] = true
	}
	files, _ := filepath.Glob(filepath.Join(snippetDir, "*"))
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if filepath.Ext(f) == ".sh" {
			for _, l := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
				if !lines[l] {
					t.Errorf("README.md lacks the line of %s: %s", f, l)
				}
			}
			continue
		}
		var want any
		if err := json.Unmarshal(raw, &want); err != nil {
			t.Fatal(err)
		}
		found := false
		for _, b := range blocks {
			found = found || reflect.DeepEqual(b, want)
		}
		if !found {
			t.Errorf("README.md has no ```json block equal to %s:\n%s", f, raw)
		}
	}
}
