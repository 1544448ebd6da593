package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/kaar-dev/kaar/pkg/svcmain"
)

// cliBusEnv is an embedded NATS with kaar's streams and a plan store, as a
// running "kaar serve" has.
type cliBusEnv struct {
	url   string
	js    jetstream.JetStream
	plans *bus.PlanStore
}

func newCLIBus(t *testing.T) *cliBusEnv {
	t.Helper()
	// The CLI's signing key lives in the state directory: the test's own.
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	ctx := context.Background()
	// The bus authenticates: the CLI finds its role's seed in the same
	// state directory, as with kaar serve.
	credDir, err := bus.DefaultCredentialsDir()
	if err != nil {
		t.Fatal(err)
	}
	creds, err := bus.LoadOrCreateCredentials(credDir)
	if err != nil {
		t.Fatal(err)
	}
	emb, err := bus.StartEmbedded(ctx, bus.EmbeddedOptions{Port: bus.RandomPort, Credentials: creds})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Shutdown)
	nc, err := emb.Connect(ctx, bus.ConnectOptions{Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	if _, err := bus.Provision(ctx, js, bus.Config{Clusters: []string{"default"}}); err != nil {
		t.Fatal(err)
	}
	ps, err := bus.OpenPlanStore(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	return &cliBusEnv{url: emb.ClientURL(), js: js, plans: ps}
}

func (e *cliBusEnv) plan(t *testing.T, name string) events.Plan {
	t.Helper()
	now := time.Now().UTC()
	target := events.ObjectRef{Kind: "Deployment", Namespace: "shop", Name: name, APIVersion: "apps/v1"}
	p := events.Plan{ID: uuid.NewString(), Cluster: "default", Namespace: "shop", Target: target, TargetResourceVersion: "7",
		Type: events.IssueImagePullBackOff, Summary: "Set the image of " + name + " back to nginx:1.27",
		Steps: []events.Step{{Index: 0, Action: events.ActionSetImage, Title: "Set image of container web", Target: target,
			Params:    map[string]string{events.ParamContainer: "web", events.ParamImage: "nginx:1.27"},
			PatchType: events.PatchStrategic, Patch: json.RawMessage(`{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"nginx:1.27"}]}}}}`),
			Kubectl: "kubectl set image deployment/" + name + " web=nginx:1.27 -n shop", Risk: events.RiskLow, Mutating: true}},
		Risk: events.RiskLow, State: events.PlanProposed, CreatedAt: now, ExpiresAt: now.Add(10 * time.Minute)}
	p.Seal()
	if _, err := e.plans.Create(context.Background(), p, 10*time.Minute); err != nil {
		t.Fatal(err)
	}
	return p
}

func (e *cliBusEnv) run(t *testing.T, stdin string, args ...string) (string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	args = append(args, "--nats-url", e.url)
	code := Main(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return out.String() + errb.String(), code
}

// cliKey is the public key of the CLI's signing key (created by the
// first approval in the test's own state directory).
func (e *cliBusEnv) cliKey(t *testing.T) string {
	t.Helper()
	s, err := svcmain.EnsureKey(filepath.Join(os.Getenv("XDG_STATE_HOME"), "kaar", "keys"), svcmain.RoleCLI, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s.PublicKey()
}

func (e *cliBusEnv) decisions(t *testing.T) []events.Decision {
	t.Helper()
	ctx := context.Background()
	st, err := e.js.Stream(ctx, events.StreamApprovals)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := st.Info(ctx)
	var out []events.Decision
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		env, err := events.Decode(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		d, err := events.DecodeData[events.Decision](env)
		if err != nil {
			t.Fatal(err)
		}
		// The CLI signs with the cli key of the installation's key
		// directory, the key the executor trusts for via cli.
		if err := events.VerifyDecision(d, []string{e.cliKey(t)}); err != nil {
			t.Fatalf("decision %d: %v", seq, err)
		}
		out = append(out, d)
	}
	return out
}

func TestPlansListShowApproveReject(t *testing.T) {
	e := newCLIBus(t)
	web := e.plan(t, "web")
	api := e.plan(t, "api")

	out, code := e.run(t, "", "plans", "list")
	if code != 0 || !strings.Contains(out, web.ID) || !strings.Contains(out, api.ID) || !strings.Contains(out, "Deployment/shop/web") {
		t.Fatalf("list (%d):\n%s", code, out)
	}
	out, code = e.run(t, "", "plans", "show", web.ID)
	for _, want := range []string{web.Digest, `"image": "nginx:1.27"`, "$ kubectl set image deployment/web web=nginx:1.27 -n shop", "strategic patch"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("show lacks %q (%d):\n%s", want, code, out)
		}
	}

	// Answering no publishes nothing.
	out, code = e.run(t, "n\n", "plans", "approve", web.ID)
	if code != 0 || !strings.Contains(out, "Nothing decided") || !strings.Contains(out, "kubectl set image") || !strings.Contains(out, "[y/N]") {
		t.Fatalf("approve, answered no (%d):\n%s", code, out)
	}
	if ds := e.decisions(t); len(ds) != 0 {
		t.Fatalf("declined approval published %+v", ds)
	}
	// Answering yes approves the digest shown, naming the bus credential
	// (kaar serve's cli seed), not the OS user, who is only noted.
	out, code = e.run(t, "y\n", "plans", "approve", web.ID)
	if code != 0 || !strings.Contains(out, "Approved plan "+web.ID) {
		t.Fatalf("approve (%d):\n%s", code, out)
	}
	ds := e.decisions(t)
	if len(ds) != 1 || ds[0].PlanID != web.ID || ds[0].Digest != web.Digest || ds[0].Via != events.ViaCLI ||
		ds[0].DecidedBy != "cli:kaar-cli" || ds[0].Decision != events.DecisionApproved || ds[0].Reason != "decided with kaar plans by OS user "+osUser() {
		t.Fatalf("decisions %+v", ds)
	}
	// --yes for scripts, flags after the id; reject with a reason.
	out, code = e.run(t, "", "plans", "reject", api.ID, "--yes", "--reason", "not now")
	if code != 0 || !strings.Contains(out, "Rejected plan "+api.ID) {
		t.Fatalf("reject (%d):\n%s", code, out)
	}
	ds = e.decisions(t)
	if len(ds) != 2 || ds[1].Decision != events.DecisionRejected || ds[1].Reason != "not now (OS user "+osUser()+")" || ds[1].Via != events.ViaCLI || ds[1].DecidedBy != "cli:kaar-cli" {
		t.Fatalf("decisions %+v", ds)
	}
	// A digest other than the plan's is refused.
	other := "sha256:" + strings.Repeat("0", 64)
	if out, code = e.run(t, "", "plans", "approve", web.ID, "--yes", "--digest", other); code == 0 || !strings.Contains(out, "review it again") {
		t.Fatalf("stale digest accepted (%d):\n%s", code, out)
	}
	if out, code = e.run(t, "", "plans", "show", uuid.NewString()); code == 0 || !strings.Contains(out, "not found") {
		t.Fatalf("unknown plan (%d):\n%s", code, out)
	}
	if len(e.decisions(t)) != 2 {
		t.Fatal("refused commands published a decision")
	}
}

func TestIncidentsAndAudit(t *testing.T) {
	e := newCLIBus(t)
	ctx := context.Background()
	p := e.plan(t, "web")
	now := time.Now().UTC()
	in := events.Incident{Cluster: "default", Namespace: "shop", Owner: events.ObjectRef{Kind: "Deployment", Namespace: "shop", Name: "web"},
		Container: "web", Type: events.IssueImagePullBackOff, Reason: "image_not_found", PodCount: 2, FirstSeen: now, LastSeen: now, Count: 4, Severity: events.SeverityHigh}
	in.ID = events.IncidentID(in.Cluster, in.Namespace, in.Owner.Kind, in.Owner.Name, in.Container, in.Type)
	for obs, tr := range []events.Transition{events.TransitionDetected, events.TransitionChanged} {
		env, err := events.New(tr.EventType(), events.SourceWatcher, "default", in.ID, events.IncidentEvent{Transition: tr, Incident: in, ObservedAt: now, Observation: int64(obs + 1)})
		if err != nil {
			t.Fatal(err)
		}
		subj, _ := events.IssueSubject("default", "shop", in.Type)
		if _, err := bus.Publish(ctx, e.js, subj, env, events.IncidentMsgID(in.ID, int64(obs+1))); err != nil {
			t.Fatal(err)
		}
	}
	out, code := e.run(t, "", "incidents")
	if code != 0 || strings.Count(out, in.ID) != 1 || !strings.Contains(out, "changed") || !strings.Contains(out, "image_not_found") {
		t.Fatalf("incidents (%d):\n%s", code, out)
	}
	for _, k := range []events.AuditKind{events.AuditPlanProposed, events.AuditApproved} {
		rec := events.AuditRecord{ID: uuid.NewString(), PlanID: p.ID, Kind: k, Actor: "alice", Via: events.ViaCLI, At: now, Message: "record " + string(k)}
		env, _ := events.New(k.EventType(), events.SourceExecutor, "default", p.ID, rec)
		subj, _ := events.AuditSubject("default", k)
		if _, err := bus.Publish(ctx, e.js, subj, env, events.AuditMsgID(rec.ID)); err != nil {
			t.Fatal(err)
		}
	}
	out, code = e.run(t, "", "audit", p.ID)
	if code != 0 || !strings.Contains(out, "plan_proposed") || !strings.Contains(out, "record approved") || strings.Index(out, "plan_proposed") > strings.Index(out, "record approved") {
		t.Fatalf("audit (%d):\n%s", code, out)
	}
	if out, code = e.run(t, "", "audit", uuid.NewString()); code == 0 || !strings.Contains(out, "no audit records") {
		t.Fatalf("audit of an unknown plan (%d):\n%s", code, out)
	}
}
