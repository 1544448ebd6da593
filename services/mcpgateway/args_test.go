package mcpgateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// specsForTest builds the registry without a bus, for pure tests of the
// argument rules.
func specsForTest(t testing.TB) []*tool {
	t.Helper()
	cfg, err := Config{Cluster: testCluster}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	s := &Service{cfg: cfg}
	tools, err := s.registry()
	if err != nil {
		t.Fatal(err)
	}
	return tools
}

func toolByName(t testing.TB, name string) *tool {
	for _, tl := range specsForTest(t) {
		if tl.name == name {
			return tl
		}
	}
	t.Fatalf("no tool %s", name)
	return nil
}

func TestCheckArgs(t *testing.T) {
	analyze := toolByName(t, "analyze_cluster")
	remediate := toolByName(t, "remediate_issue")
	generate := toolByName(t, "generate_remediation_plan")
	for _, tc := range []struct {
		tool    *tool
		args    string
		field   string // "" = accepted
		problem string
	}{
		{analyze, ``, "", ""},
		{analyze, `null`, "", ""},
		{analyze, `{}`, "", ""},
		{analyze, `{"namespace":"shop","issue_type":"OOMKilled","owner":"Deployment/web","limit":5,"cursor":"abc"}`, "", ""},
		{analyze, `{"limit":5.0}`, "", ""},
		{analyze, `{"cursor":""}`, "", ""},
		{analyze, `[]`, "", "must be a JSON object, not an array"},
		{analyze, `{"a":1} {"b":2}`, "", "single JSON object"},
		{analyze, `{"namespace":`, "", "not valid JSON"},
		{analyze, `{"namespace":""}`, "namespace", "is empty"},
		{analyze, `{"namespace":"-shop"}`, "namespace", "DNS label"},
		// Node incidents are in the cluster-scope namespace token; any
		// other name with '_' is refused.
		{analyze, `{"namespace":"_cluster","issue_type":"NodeNotReady","owner":"Node/kwok-node-3"}`, "", ""},
		{analyze, `{"namespace":"_clusters"}`, "namespace", "DNS label"},
		{analyze, `{"namespace":"my_ns"}`, "namespace", "DNS label"},
		{generate, `{"resource_type":"Node","namespace":"_cluster","resource_name":"kwok-node-3"}`, "", ""},
		{generate, `{"resource_type":"horizontalpodautoscaler","namespace":"shop","resource_name":"web"}`, "", ""},
		// Every kind an incident sits on (analyze_cluster suggests it).
		{generate, `{"resource_type":"Service","namespace":"shop","resource_name":"web"}`, "", ""},
		{generate, `{"resource_type":"ingress","namespace":"shop","resource_name":"web"}`, "", ""},
		{generate, `{"resource_type":"PersistentVolumeClaim","namespace":"shop","resource_name":"data"}`, "", ""},
		{generate, `{"resource_type":"ConfigMap","namespace":"shop","resource_name":"web"}`, "resource_type", "unknown value"},
		{analyze, `{"namespace":"` + strings.Repeat("a", 64) + `"}`, "namespace", "at most 63"},
		{analyze, `{"namespace":5}`, "namespace", "must be a string, not a number"},
		{analyze, `{"issue_type":"crashloopbackoff"}`, "issue_type", "unknown value"},
		{analyze, `{"limit":-1}`, "limit", "not between 1 and 1000"},
		{analyze, `{"limit":1e3}`, "", ""},
		{analyze, `{"limit":1e400}`, "limit", "must be an integer"},
		{analyze, `{"limit":true}`, "limit", "not a boolean"},
		{analyze, `{"zz":1,"aa":2}`, "aa", "unknown argument"},
		{remediate, `{"plan_id":"01936f8e-7c1a-7b2e-9f3d-4a5b6c7d8e9f","timeout_seconds":1800}`, "", ""},
		{remediate, `{"plan_id":"01936f8e-7c1a-7b2e-9f3d-4a5b6c7d8e9f","timeout_seconds":1801}`, "timeout_seconds", "not between 1 and 1800"},
	} {
		t.Run(tc.args, func(t *testing.T) {
			_, err := checkArgs(tc.tool.specs, json.RawMessage(tc.args))
			if tc.problem == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var ae *ArgError
			if !errors.As(err, &ae) || !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("error %v is not an ArgError", err)
			}
			if ae.Field != tc.field || !strings.Contains(err.Error(), tc.problem) {
				t.Errorf("got field %q %q, want field %q containing %q", ae.Field, err, tc.field, tc.problem)
			}
		})
	}
}

func TestRemediateArgumentsNeedPlanOrTarget(t *testing.T) {
	for _, tc := range []struct {
		args  remediateArgs
		field string
	}{
		{remediateArgs{PlanID: "p"}, ""},
		{remediateArgs{ResourceType: "pod", Namespace: "a", ResourceName: "b"}, ""},
		{remediateArgs{}, "resource_type"},
		{remediateArgs{ResourceType: "pod"}, "namespace"},
		{remediateArgs{ResourceType: "pod", Namespace: "a"}, "resource_name"},
		{remediateArgs{PlanID: "p", ResourceName: "b"}, "plan_id"},
	} {
		err := tc.args.validate()
		got, _ := errorField(err)
		if (err == nil) != (tc.field == "") || got != tc.field {
			t.Errorf("%+v: error %v, want field %q", tc.args, err, tc.field)
		}
	}
}

func TestErrorClasses(t *testing.T) {
	for _, tc := range []struct {
		err     error
		outcome string
		status  int
	}{
		{nil, outcomeOK, 200},
		{argErr("x", "bad"), outcomeInvalid, 400},
		{fmt.Errorf("wrap: %w", ErrPlanNotFound), outcomeNotFound, 404},
		{ErrUnknownTool, outcomeNotFound, 404},
		{fmt.Errorf("x: %w", ErrDigestMismatch), outcomeConflict, 409},
		{ErrPlanExpired, outcomeConflict, 409},
		{ErrNotApproved, outcomeConflict, 409},
		{busErr("read", nats.ErrConnectionClosed), outcomeUnavailable, 503},
		{errors.New("boom"), outcomeInternal, 500},
	} {
		outcome, status := classify(tc.err)
		if outcome != tc.outcome || status != tc.status {
			t.Errorf("classify(%v) = %s %d, want %s %d", tc.err, outcome, status, tc.outcome, tc.status)
		}
	}
}

var (
	compiledMu sync.Mutex
	compiled   = map[string]*jsonschema.Schema{}
)

// schemaAccepts validates args the way mcp-go's WithInputSchemaValidation
// does: with santhosh-tekuri/jsonschema, missing arguments as {}.
func schemaAccepts(t testing.TB, tl *tool, args []byte) (bool, error) {
	t.Helper()
	compiledMu.Lock()
	sch, ok := compiled[tl.name]
	if !ok {
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(tl.inputSchema))
		if err != nil {
			compiledMu.Unlock()
			t.Fatal(err)
		}
		c := jsonschema.NewCompiler()
		url := "mem:///" + tl.name + ".json"
		if err := c.AddResource(url, doc); err != nil {
			compiledMu.Unlock()
			t.Fatal(err)
		}
		if sch, err = c.Compile(url); err != nil {
			compiledMu.Unlock()
			t.Fatalf("%s: input schema does not compile: %v", tl.name, err)
		}
		compiled[tl.name] = sch
	}
	compiledMu.Unlock()
	trimmed := bytes.TrimSpace(args)
	if len(trimmed) == 0 || string(trimmed) == "null" {
		trimmed = []byte("{}")
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(trimmed))
	if err != nil {
		return false, err
	}
	return sch.Validate(v) == nil, nil
}

// TestInputSchemasAgreeWithCheckArgs: what MCP clients are told (the
// schema, enforced by mcp-go) and what REST enforces (checkArgs) are the
// same rules.
func TestInputSchemasAgreeWithCheckArgs(t *testing.T) {
	tools := specsForTest(t)
	for _, seed := range argSeeds {
		for _, tl := range tools {
			assertParity(t, tl, []byte(seed))
		}
	}
}

func assertParity(t testing.TB, tl *tool, args []byte) {
	t.Helper()
	if !json.Valid(bytes.TrimSpace(args)) && len(bytes.TrimSpace(args)) > 0 {
		return // neither side sees invalid JSON: the transport rejects it first
	}
	schemaOK, err := schemaAccepts(t, tl, args)
	if err != nil {
		return
	}
	_, cerr := checkArgs(tl.specs, args)
	if schemaOK != (cerr == nil) {
		t.Errorf("%s %s: schema accepts=%t, checkArgs error=%v", tl.name, args, schemaOK, cerr)
	}
}

var argSeeds = []string{
	``, `null`, `{}`, `[]`, `"x"`, `{"namespace":"shop"}`, `{"namespace":""}`, `{"namespace":"Shop"}`,
	`{"limit":1}`, `{"limit":0}`, `{"limit":2.0}`, `{"limit":2.5}`, `{"limit":"2"}`, `{"limit":1000}`, `{"limit":1001}`,
	`{"issue_type":"Evicted"}`, `{"issue_type":"evicted"}`, `{"owner":"Deployment/web"}`, `{"owner":"web/x"}`,
	`{"plan_id":"01936f8e-7c1a-7b2e-9f3d-4a5b6c7d8e9f"}`, `{"plan_id":"01936f8e-7c1a-7b2e-9f3d-4a5b6c7d8e9f","digest":"sha256:` + strings.Repeat("a", 64) + `"}`,
	`{"plan_id":"01936f8e-7c1a-7b2e-9f3d-4a5b6c7d8e9f","digest":"sha256:` + strings.Repeat("A", 64) + `"}`,
	`{"resource_type":"deployment","namespace":"shop","resource_name":"web.v1"}`, `{"resource_type":"Pod","namespace":"shop","resource_name":"web-1"}`,
	`{"resource_type":"Pod","namespace":"shop","resource_name":"web_1"}`, `{"state":"proposed"}`, `{"state":"Proposed"}`,
	`{"timeout_seconds":30}`, `{"timeout_seconds":0}`, `{"reason":"é"}`, `{"cursor":"` + strings.Repeat("ü", 1024) + `"}`,
	`{"cursor":"` + strings.Repeat("ü", 1025) + `"}`, `{"x":null}`, `{"namespace":null}`,
}

// FuzzCheckArgs: no input crashes the checker, an accepted input decodes,
// and the schema and the checker agree on every input.
func FuzzCheckArgs(f *testing.F) {
	tools := specsForTest(f)
	for _, s := range argSeeds {
		for i := range tools {
			f.Add(uint8(i), []byte(s))
		}
	}
	f.Fuzz(func(t *testing.T, which uint8, args []byte) {
		tl := tools[int(which)%len(tools)]
		checked, err := checkArgs(tl.specs, args)
		if err == nil {
			var m map[string]any
			if derr := decodeArgs(checked, &m); derr != nil {
				t.Fatalf("accepted %q but it does not decode: %v", args, derr)
			}
		} else if !errors.Is(err, ErrInvalidArgument) {
			t.Fatalf("error %v is not an invalid argument", err)
		}
		assertParity(t, tl, args)
	})
}

// remediate_issue waits by default for the executor's verification window
// plus a minute, so a default call does not give up while the executor is
// still verifying.
func TestRemediateDefaultWaitCoversVerification(t *testing.T) {
	for _, tc := range []struct{ verify, want time.Duration }{
		{0, DefaultRemediateTimeout},
		{time.Minute, DefaultRemediateTimeout},
		{5 * time.Minute, 6 * time.Minute},
		{time.Hour, DefaultMaxRemediateTimeout},
	} {
		if got := remediateTimeout(tc.verify); got != tc.want {
			t.Errorf("verify_timeout %s: wait %s, want %s", tc.verify, got, tc.want)
		}
	}
}
