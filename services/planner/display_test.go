package planner

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kaar-dev/kaar/pkg/events"
)

// A Node's plan lives in namespace events.ClusterScopeNamespace, a token
// for subjects and ids: its summary, step titles, kubectl commands and
// notes (what people read) never show it; the golden plans of every node
// incident are checked.
func TestNodePlansShowNoClusterToken(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "plans", "node-*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no node golden plans: %v", err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var p events.Plan
		if err := json.Unmarshal(b, &p); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if p.Namespace != events.ClusterScopeNamespace || p.Target.Kind != "Node" {
			t.Errorf("%s: namespace %q target %+v, want a Node's plan in %q", f, p.Namespace, p.Target, events.ClusterScopeNamespace)
		}
		texts := append([]string{p.Summary}, p.Notes...)
		for _, s := range p.Steps {
			texts = append(texts, s.Title, s.Kubectl)
		}
		for _, txt := range texts {
			if strings.Contains(txt, events.ClusterScopeNamespace) {
				t.Errorf("%s: %q shows the namespace token", f, txt)
			}
		}
	}
}
