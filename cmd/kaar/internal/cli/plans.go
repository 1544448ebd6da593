package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"github.com/kaar-dev/kaar/pkg/svcmain"
	"io"
	"log/slog"
	"os"
	"os/user"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/config"
	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/kaar-dev/kaar/pkg/events/text"
)

const plansHelp = `Lists, shows, approves and rejects remediation plans on the bus of a running kaar
(--nats-url, default nats.url, else nats://127.0.0.1:4222).

  kaar plans list [--all]                 plans waiting for a decision (--all: every stored plan)
  kaar plans show PLAN                    the plan: evidence, steps, patches, kubectl equivalents
  kaar plans approve PLAN [--yes]         show the plan's changes, ask, then approve the digest shown
  kaar plans reject PLAN [--reason TEXT] [--yes]

Decisions name the CLI's bus credential (cli:<nats.user>, cli:kaar-cli for kaar
serve's cli seed, or the .creds name) and go through the bus like any other
(via cli); the executor checks them again. The OS user is noted in the reason.`

// busClient is the CLI's connection to the bus.
type busClient struct {
	cfg     config.Config
	nc      *nats.Conn
	js      jetstream.JetStream
	plans   *bus.PlanStore
	cluster string
	// identity is the bus credential's (busIdentity): who decides.
	identity string
}

// cliBus connects to the configured bus.
func cliBus(ctx context.Context, cf *commonFlags) (*busClient, error) {
	cfg, err := cf.load()
	if err != nil {
		return nil, err
	}
	url := cfg.NATS.URL
	if url == "" {
		url = "nats://127.0.0.1:4222"
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	opts := svcmain.ConnectOptions(cfg, "kaar-cli", slog.New(slog.DiscardHandler))
	opts.Extra = append(opts.Extra, nats.RetryOnFailedConnect(false))
	nc, err := bus.Connect(cctx, url, opts)
	if err != nil {
		return nil, fmt.Errorf("%w (is kaar serve running? set --nats-url)", err)
	}
	js, err := bus.NewJetStream(nc, cfg.NATS.JetStreamDomain)
	if err != nil {
		nc.Close()
		return nil, err
	}
	ps, err := bus.OpenPlanStore(cctx, js)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return &busClient{cfg: cfg, nc: nc, js: js, plans: ps, cluster: cfg.Kubernetes.ClusterName, identity: busIdentity(opts)}, nil
}

func (b *busClient) Close() { b.nc.Close() }

// parseArgs parses flags anywhere among the arguments ("approve ID --yes").
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// runPlans is "kaar plans".
func runPlans(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, plansHelp)
		return errors.New("plans: want list, show, approve or reject")
	}
	verb, args := args[0], args[1:]
	fs := newFlagSet("plans "+verb, plansHelp, stderr)
	var cf commonFlags
	cf.register(fs)
	all := fs.Bool("all", false, "list: every stored plan, not only those waiting for a decision")
	yes := fs.Bool("yes", false, "approve/reject: do not ask for confirmation (scripts)")
	reason := fs.String("reason", "", "approve/reject: why, for the audit trail")
	digest := fs.String("digest", "", "approve/reject: the digest you reviewed (default: the digest shown)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	needID := verb != "list"
	if needID && len(pos) != 1 || !needID && len(pos) != 0 {
		return fmt.Errorf("plans %s: wrong arguments %q (see kaar plans --help)", verb, pos)
	}
	switch verb {
	case "list", "show", "approve", "reject":
	default:
		return fmt.Errorf("plans: unknown verb %q: want list, show, approve or reject", verb)
	}
	b, err := cliBus(ctx, &cf)
	if err != nil {
		return err
	}
	defer b.Close()
	switch verb {
	case "list":
		return b.listPlans(ctx, stdout, *all)
	case "show":
		p, err := b.getPlan(ctx, pos[0])
		if err != nil {
			return err
		}
		writePlan(stdout, p, time.Now())
		return nil
	}
	kind := events.DecisionApproved
	if verb == "reject" {
		kind = events.DecisionRejected
	}
	return b.decide(ctx, pos[0], kind, *digest, *reason, *yes, stdin, stdout)
}

func (b *busClient) getPlan(ctx context.Context, id string) (events.Plan, error) {
	p, _, err := b.plans.Get(ctx, id)
	if errors.Is(err, bus.ErrPlanNotFound) {
		return p, fmt.Errorf("plan %s not found: it expired (its approval window passed) or never existed; see kaar plans list", id)
	}
	return p, err
}

func (b *busClient) listPlans(ctx context.Context, w io.Writer, all bool) error {
	stored, err := b.plans.List(ctx)
	if err != nil && !errors.Is(err, jetstream.ErrNoKeysFound) && len(stored) == 0 {
		return err
	}
	sort.Slice(stored, func(i, j int) bool { return stored[i].Plan.CreatedAt.Before(stored[j].Plan.CreatedAt) })
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PLAN\tSTATE\tRISK\tTARGET\tEXPIRES\tSUMMARY")
	n := 0
	for _, sp := range stored {
		p := sp.Plan
		if p.Cluster != b.cluster || (!all && p.State != events.PlanProposed) {
			continue
		}
		n++
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", p.ID, p.State, p.Risk, p.Target.String(), expiresIn(p, time.Now()), oneLine(p.Summary, 70))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if n == 0 {
		fmt.Fprintln(w, "(no plans waiting for a decision)")
	}
	return nil
}

func expiresIn(p events.Plan, now time.Time) string {
	if p.State != events.PlanProposed {
		return "-"
	}
	d := p.ExpiresAt.Sub(now)
	if d <= 0 {
		return "expired"
	}
	return "in " + d.Round(time.Second).String()
}

// oneLine renders cluster text for a terminal on one line of at most n
// bytes: escape sequences, controls and bidi overrides removed
// (text.OneLine), cut at a rune boundary.
func oneLine(s string, n int) string {
	s = text.OneLine(s)
	if len(s) > n {
		cut := n - len("…")
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

// writePlan prints a plan with its diff: every step's patch and kubectl
// equivalent.
func writePlan(w io.Writer, p events.Plan, now time.Time) {
	fmt.Fprintf(w, "Plan %s (%s)\n", p.ID, p.State)
	fmt.Fprintf(w, "  Target:   %s (resourceVersion %s)\n", p.Target.String(), p.TargetResourceVersion)
	fmt.Fprintf(w, "  Issue:    %s   Risk: %s   Expires: %s (%s)\n", p.Type, p.Risk, p.ExpiresAt.Local().Format(time.RFC3339), expiresIn(p, now))
	fmt.Fprintf(w, "  Digest:   %s\n", p.Digest)
	if p.IncidentID != "" {
		fmt.Fprintf(w, "  Incident: %s\n", p.IncidentID)
	}
	// Summaries, titles, notes, parameters and evidence quote the cluster
	// (image strings, messages, logs): text.OneLine keeps its escape
	// sequences and controls off the terminal.
	fmt.Fprintf(w, "  Summary:  %s\n", text.OneLine(p.Summary))
	if p.DiagnosticOnly {
		fmt.Fprintln(w, "  Diagnostic only: no step changes the cluster.")
	}
	for _, n := range p.Notes {
		fmt.Fprintf(w, "  Note: %s\n", text.OneLine(n))
	}
	if len(p.Evidence) > 0 {
		fmt.Fprintln(w, "\nEvidence:")
		for _, e := range p.Evidence {
			fmt.Fprintf(w, "  - %s (%s)\n", text.OneLine(e.Title), text.OneLine(e.Source))
			lines := e.Lines
			if len(lines) > 5 {
				lines = lines[len(lines)-5:]
			}
			for _, l := range lines {
				fmt.Fprintf(w, "      | %s\n", oneLine(l, 160))
			}
		}
	}
	fmt.Fprintln(w, "\nChanges:")
	for _, s := range p.Steps {
		mut := "read-only"
		if s.Mutating {
			mut = "changes " + s.Target.String()
		}
		fmt.Fprintf(w, "  %d. %s [%s, risk %s, %s]\n", s.Index+1, text.OneLine(s.Title), s.Action, s.Risk, mut)
		if len(s.Params) > 0 {
			keys := make([]string, 0, len(s.Params))
			for k := range s.Params {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				fmt.Fprintf(w, "       %s = %s\n", text.OneLine(k), text.OneLine(s.Params[k]))
			}
		}
		if len(s.Patch) > 0 {
			fmt.Fprintf(w, "       %s patch:\n", s.PatchType)
			// A rollback patch carries the whole pod template: env values
			// that look like credentials are withheld from the display
			// (the plan keeps them; the executor applies the patch).
			fmt.Fprintln(w, indent(text.ForTerminal(prettyJSON(text.RedactJSON(s.Patch))), "         "))
		}
		if s.Kubectl != "" {
			// Shell-quoted by the planner (text.ShellQuote): it runs as shown.
			fmt.Fprintf(w, "       $ %s\n", text.OneLine(s.Kubectl))
		}
		if s.Undo != "" {
			fmt.Fprintf(w, "       undo: %s\n", text.OneLine(s.Undo))
		}
	}
}

func prettyJSON(raw json.RawMessage) string {
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return string(raw)
	}
	b, _ := json.MarshalIndent(v, "", "  ")
	return string(b)
}

func indent(s, prefix string) string {
	return prefix + strings.ReplaceAll(s, "\n", "\n"+prefix)
}

// osUser names the person running the CLI.
func osUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	for _, k := range []string{"USER", "USERNAME", "LOGNAME"} {
		if v := os.Getenv(k); v != "" {
			return v
		}
	}
	return "unknown"
}

// decide shows the plan, asks (unless yes) and publishes the decision.
func (b *busClient) decide(ctx context.Context, id string, kind events.DecisionKind, digest, reason string, yes bool, stdin io.Reader, w io.Writer) error {
	verb := map[events.DecisionKind]string{events.DecisionApproved: "approve", events.DecisionRejected: "reject"}[kind]
	p, err := b.getPlan(ctx, id)
	if err != nil {
		return err
	}
	if p.Cluster != b.cluster {
		return fmt.Errorf("plan %s is of cluster %q, not %q (kubernetes.cluster_name)", p.ID, p.Cluster, b.cluster)
	}
	if digest == "" {
		digest = p.Digest
	} else if digest != p.Digest {
		return fmt.Errorf("%s plan %s: you reviewed digest %s but the plan is now %s: review it again with kaar plans show", verb, p.ID, digest, p.Digest)
	}
	if p.State != events.PlanProposed {
		return fmt.Errorf("%s plan %s: it is %s, not waiting for a decision", verb, p.ID, p.State)
	}
	if kind == events.DecisionApproved && p.DiagnosticOnly {
		return fmt.Errorf("approve plan %s: it is diagnostic-only: there is nothing to execute", p.ID)
	}
	if !time.Now().Before(p.ExpiresAt) {
		return fmt.Errorf("%s plan %s: its approval window ended at %s", verb, p.ID, p.ExpiresAt.Format(time.RFC3339))
	}
	// The credential decides; the OS user is only a note for the reader.
	by := b.identity
	if u := osUser(); reason == "" {
		reason = "decided with kaar plans by OS user " + u
	} else {
		reason += " (OS user " + u + ")"
	}
	writePlan(w, p, time.Now())
	if !yes {
		fmt.Fprintf(w, "\n%s plan %s (digest %s) as %s? [y/N] ", strings.ToUpper(verb[:1])+verb[1:], p.ID, p.Digest, by)
		line, _ := bufio.NewReader(stdin).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
			fmt.Fprintln(w, "Nothing decided.")
			return nil
		}
	}
	if !time.Now().Before(p.ExpiresAt) {
		return fmt.Errorf("%s plan %s: its approval window ended at %s, before you answered", verb, p.ID, p.ExpiresAt.Format(time.RFC3339))
	}
	d := events.Decision{PlanID: p.ID, Digest: digest, Decision: kind, DecidedBy: by, Via: events.ViaCLI, At: time.Now().UTC(), Reason: reason}
	signer, err := svcmain.Signer(b.cfg, svcmain.RoleCLI, slog.New(slog.DiscardHandler))
	if err != nil {
		return fmt.Errorf("%s plan %s: the CLI signs its decisions: %w", verb, p.ID, err)
	}
	signer.SignDecision(&d)
	subj, err := events.ApprovalSubject(b.cluster, p.ID)
	if err != nil {
		return err
	}
	env, err := events.New(kind.EventType(), events.SourceCLI, b.cluster, p.ID, d)
	if err != nil {
		return err
	}
	dup, err := bus.Publish(ctx, b.js, subj, env, events.SignedDecisionMsgID(d))
	if err != nil {
		return err
	}
	past := map[events.DecisionKind]string{events.DecisionApproved: "Approved", events.DecisionRejected: "Rejected"}[kind]
	fmt.Fprintf(w, "%s plan %s at digest %s as %s (via cli).", past, p.ID, digest, by)
	if dup {
		fmt.Fprint(w, " The same decision had already been sent: nothing new was published.")
	}
	if kind == events.DecisionApproved {
		fmt.Fprintf(w, " Follow it with: kaar audit %s", p.ID)
	}
	fmt.Fprintln(w)
	return nil
}
