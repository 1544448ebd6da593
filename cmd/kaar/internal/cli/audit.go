package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kaar-dev/kaar/pkg/events"
)

const incidentsHelp = `Lists the cluster's open incidents from the bus (the last transition of each
incident on the ISSUES stream), worst first; --all includes resolved ones.
Failures are listed and warnings (what is about to fail: trends, capacity,
configuration risks) counted; --warnings lists the warnings with their
evidence instead.`

const auditHelp = `Prints the audit trail of one plan from the AUDIT stream: proposal, decisions
(who, via which channel), claim, every step, verification.`

// readStream calls fn with every envelope on the stream's subjects
// matching filter, oldest first. It reads message by message (a message
// get of the next match), not through a consumer: the cli role may read
// these streams but not create consumers on them.
func (b *busClient) readStream(ctx context.Context, stream, filter string, fn func(events.Envelope)) error {
	st, err := b.js.Stream(ctx, stream)
	if err != nil {
		return fmt.Errorf("open stream %s: %w", stream, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return err
	}
	if info.State.Msgs == 0 {
		return nil
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; {
		m, err := st.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(filter))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil // nothing more matches the filter
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", stream, err)
		}
		if env, err := events.Decode(m.Data); err == nil {
			fn(env)
		}
		seq = m.Sequence + 1
	}
	return nil
}

// runIncidents is "kaar incidents".
func runIncidents(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("incidents", incidentsHelp, stderr)
	var cf commonFlags
	cf.register(fs)
	all := fs.Bool("all", false, "include resolved incidents")
	warnings := fs.Bool("warnings", false, "list the warnings (nothing failed yet) with their evidence instead of the failures")
	if err := fs.Parse(args); err != nil {
		return err
	}
	b, err := cliBus(ctx, &cf)
	if err != nil {
		return err
	}
	defer b.Close()
	filter, err := events.IssueFilter(b.cluster)
	if err != nil {
		return err
	}
	latest := map[string]events.IncidentEvent{}
	err = b.readStream(ctx, events.StreamIssues, filter, func(env events.Envelope) {
		ev, err := events.DecodeData[events.IncidentEvent](env)
		if err != nil {
			return
		}
		if cur, ok := latest[ev.Incident.ID]; !ok || ev.Observation >= cur.Observation {
			latest[ev.Incident.ID] = ev
		}
	})
	if err != nil {
		return err
	}
	list := make([]events.IncidentEvent, 0, len(latest))
	unlisted := 0
	for _, ev := range latest {
		if !*all && ev.Transition == events.TransitionResolved {
			continue
		}
		if ev.Incident.Type.IsWarning() != *warnings {
			if !*warnings && ev.Transition != events.TransitionResolved {
				unlisted++
			}
			continue
		}
		list = append(list, ev)
	}
	sort.Slice(list, func(i, j int) bool {
		a, b := list[i].Incident, list[j].Incident
		if a.Severity.Rank() != b.Severity.Rank() {
			return a.Severity.Rank() < b.Severity.Rank()
		}
		return a.LastSeen.After(b.LastSeen)
	})
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	if *warnings {
		fmt.Fprintln(tw, "WARNING\tSTATE\tTYPE\tOBJECT\tCONTAINER\tREASON\tSINCE\tEVIDENCE")
	} else {
		fmt.Fprintln(tw, "INCIDENT\tSTATE\tSEVERITY\tTYPE\tWORKLOAD\tREASON\tPODS\tCOUNT\tLAST SEEN")
	}
	for _, ev := range list {
		in := ev.Incident
		if *warnings {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", in.ID, ev.Transition, in.Type,
				events.DisplayRef(in.Owner.Kind, in.Namespace, in.Owner.Name), oneLine(cmp.Or(in.Container, "-"), 40),
				oneLine(in.Reason, 60), in.FirstSeen.Local().Format(time.RFC3339), cmp.Or(in.Warning.Summary(), "-"))
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", in.ID, ev.Transition, in.Severity, in.Type,
			events.DisplayRef(in.Owner.Kind, in.Namespace, in.Owner.Name), oneLine(in.Reason, 60), in.PodCount, in.Count, in.LastSeen.Local().Format(time.RFC3339))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	switch {
	case len(list) == 0 && *warnings:
		fmt.Fprintln(stdout, "(no open warnings)")
	case len(list) == 0:
		fmt.Fprintln(stdout, "(no open incidents)")
	}
	if unlisted > 0 {
		fmt.Fprintf(stdout, "%d open warning(s), nothing failed yet: kaar incidents --warnings\n", unlisted)
	}
	return nil
}

// runAudit is "kaar audit PLAN".
func runAudit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("audit", auditHelp, stderr)
	var cf commonFlags
	cf.register(fs)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("audit: want one plan id: kaar audit PLAN")
	}
	b, err := cliBus(ctx, &cf)
	if err != nil {
		return err
	}
	defer b.Close()
	filter, err := events.AuditFilter(b.cluster)
	if err != nil {
		return err
	}
	var recs []events.AuditRecord
	err = b.readStream(ctx, events.StreamAudit, filter, func(env events.Envelope) {
		if env.Subject != pos[0] {
			return
		}
		if rec, err := events.DecodeData[events.AuditRecord](env); err == nil && rec.PlanID == pos[0] {
			recs = append(recs, rec)
		}
	})
	if err != nil {
		return err
	}
	if len(recs) == 0 {
		return fmt.Errorf("no audit records for plan %s", pos[0])
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tKIND\tACTOR\tVIA\tMESSAGE")
	for _, r := range recs {
		via := string(r.Via)
		if via == "" {
			via = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.At.Local().Format("2006-01-02 15:04:05"), r.Kind, oneLine(r.Actor, 60), via, oneLine(r.Message, 100))
	}
	return tw.Flush()
}
