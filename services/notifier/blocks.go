package notifier

import (
	"fmt"
	"strings"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/kaar-dev/kaar/pkg/events/text"
)

// Block is one Slack Block Kit block, as JSON.
type Block = map[string]any

// Action ids of the buttons.
const (
	ActionApprove = "kaar_approve"
	ActionReject  = "kaar_reject"
)

// buttonValue carries what the click approves: the plan and the digest
// the message showed.
func buttonValue(p *events.Plan) string { return p.ID + "|" + p.Digest }

func parseButtonValue(v string) (planID, digest string, ok bool) {
	planID, digest, ok = strings.Cut(v, "|")
	return planID, digest, ok && planID != "" && digest != ""
}

func mrkdwn(s string) Block { return Block{"type": "mrkdwn", "text": s} }

func section(s string) Block { return Block{"type": "section", "text": mrkdwn(truncate(s, 2900))} }

// escape makes untrusted text (messages, summaries, names) inert in
// mrkdwn prose: no mention, link or formatting survives (text.ForSlack).
func escape(s string) string { return text.ForSlack(s) }

// escapeCode makes untrusted text inert inside a `code span`, where it
// stays copyable (text.ForSlackCode).
func escapeCode(s string) string { return text.ForSlackCode(s) }

// truncate cuts s to at most n bytes at a rune boundary.
func truncate(s string, n int) string { return text.Truncate(s, n) }

// render is the message of a thread: pure, so tests check it directly.
func render(t *thread, now time.Time) (text string, blocks []Block) {
	in, p := t.Incident, t.Plan
	var title string
	switch {
	case in != nil:
		title = fmt.Sprintf("%s: %s", in.Type, events.DisplayObject(in.Owner.Kind, in.Namespace, in.Owner.Name))
	case p != nil:
		title = fmt.Sprintf("%s: %s", p.Type, events.DisplayObject(p.Target.Kind, p.Namespace, p.Target.Name))
	}
	icon := ":rotating_light:"
	if t.warning() {
		icon = ":warning:"
	}
	if t.Transition == events.TransitionResolved {
		icon, title = ":white_check_mark:", "Resolved: "+title
	}
	text = title
	blocks = append(blocks, Block{"type": "header", "text": Block{"type": "plain_text", "text": truncate(icon+" "+title, 150), "emoji": true}})
	if in != nil {
		cause := "*Cause:* `" + escapeCode(in.Reason) + "`"
		if in.Message != "" {
			cause += " " + escape(truncate(in.Message, 300))
		}
		fields := []Block{
			mrkdwn(fmt.Sprintf("*Cluster:* %s", escape(in.Cluster))),
			mrkdwn(fmt.Sprintf("*Severity:* %s", in.Severity)),
			mrkdwn(fmt.Sprintf("*Pods:* %d", in.PodCount)),
			mrkdwn(fmt.Sprintf("*Restarts:* %d", in.RestartCount)),
		}
		if in.Container != "" {
			fields = append(fields, mrkdwn("*Container:* "+escape(in.Container)))
		}
		if in.ExitCode != nil {
			fields = append(fields, mrkdwn(fmt.Sprintf("*Exit code:* %d", *in.ExitCode)))
		}
		blocks = append(blocks, section(cause), Block{"type": "section", "fields": fields},
			Block{"type": "context", "elements": []Block{mrkdwn(fmt.Sprintf("incident `%s` · first seen %s · seen %d times",
				in.ID, slackDate(in.FirstSeen, "{date_short_pretty} {time}"), in.Count))}})
	}
	if p != nil {
		blocks = append(blocks, Block{"type": "divider"})
		blocks = append(blocks, section(fmt.Sprintf("*Plan* `%s` · risk *%s*\n%s", p.ID, p.Risk, escape(p.Summary))))
		if ev := evidenceSummary(p.Evidence); ev != "" {
			blocks = append(blocks, section("*Evidence*\n"+ev))
		}
		blocks = append(blocks, section("*Steps*\n"+stepList(p)))
		blocks = append(blocks, Block{"type": "context", "elements": []Block{mrkdwn(statusLine(t, now))}})
		if t.Status == StatusProposed && !p.DiagnosticOnly && now.Before(p.ExpiresAt) {
			v := buttonValue(p)
			blocks = append(blocks, Block{"type": "actions", "block_id": "kaar_decision", "elements": []Block{
				{"type": "button", "action_id": ActionApprove, "style": "primary", "value": v,
					"text": Block{"type": "plain_text", "text": "Approve"},
					"confirm": Block{"title": Block{"type": "plain_text", "text": "Approve this plan?"},
						"text":    mrkdwn("kaar will run the steps above against " + escape(p.Target.String()) + "."),
						"confirm": Block{"type": "plain_text", "text": "Approve"}, "deny": Block{"type": "plain_text", "text": "Cancel"}}},
				{"type": "button", "action_id": ActionReject, "style": "danger", "value": v,
					"text": Block{"type": "plain_text", "text": "Reject"}},
			}})
		}
		text += " · plan " + string(t.Status)
	}
	return text, blocks
}

// slackDate renders t with Slack's date formatting, which clients show in
// the reader's time zone ({ago} counts down live).
func slackDate(t time.Time, format string) string {
	return fmt.Sprintf("<!date^%d^%s|%s>", t.Unix(), format, t.UTC().Format(time.RFC3339))
}

func evidenceSummary(ev []events.Evidence) string {
	var b strings.Builder
	for i, e := range ev {
		if i == 3 {
			fmt.Fprintf(&b, "• and %d more\n", len(ev)-3)
			break
		}
		fmt.Fprintf(&b, "• *%s* (%s)", escape(e.Title), escape(e.Source))
		if len(e.Lines) > 0 {
			fmt.Fprintf(&b, ": `%s`", escapeCode(truncate(strings.TrimSpace(e.Lines[len(e.Lines)-1]), 200)))
		}
		b.WriteString("\n")
	}
	return strings.TrimSpace(b.String())
}

func stepList(p *events.Plan) string {
	var b strings.Builder
	for _, s := range p.Steps {
		fmt.Fprintf(&b, "%d. %s (%s, risk %s)", s.Index+1, escape(s.Title), s.Action, s.Risk)
		if s.Kubectl != "" {
			fmt.Fprintf(&b, "\n     `%s`", escapeCode(truncate(s.Kubectl, 300)))
		}
		b.WriteString("\n")
	}
	return strings.TrimSpace(b.String())
}

func statusLine(t *thread, now time.Time) string {
	p := t.Plan
	switch t.Status {
	case StatusProposed:
		if p.DiagnosticOnly {
			return ":mag: Diagnostic only: nothing to approve."
		}
		if !now.Before(p.ExpiresAt) {
			return ":hourglass: Approval window ended " + slackDate(p.ExpiresAt, "{date_short_pretty} {time}") + "."
		}
		return ":hourglass_flowing_sand: Waiting for approval · expires " + slackDate(p.ExpiresAt, "{ago}") + " (digest `" + shortDigest(p.Digest) + "`)"
	case StatusDecisionSent:
		return fmt.Sprintf(":outbox_tray: Decision sent by %s via %s; waiting for the executor.", escape(t.DecidedBy), t.Via)
	case StatusApproved:
		return fmt.Sprintf(":white_check_mark: Approved by %s via %s.", escape(t.DecidedBy), t.Via)
	case StatusExecuting:
		return fmt.Sprintf(":gear: Executing (approved by %s via %s): %d of %d steps done.", escape(t.DecidedBy), t.Via, t.StepsDone, len(p.Steps))
	case StatusVerified:
		return fmt.Sprintf(":large_green_circle: Verified healthy (approved by %s via %s). %s", escape(t.DecidedBy), t.Via, escape(t.Detail))
	case StatusFailed:
		return ":red_circle: Failed: " + escape(t.Detail)
	case StatusRejected:
		return fmt.Sprintf(":no_entry: Rejected by %s via %s.", escape(t.DecidedBy), t.Via)
	case StatusExpired:
		return ":hourglass: Expired: the approval window passed without an approval."
	case StatusSuperseded:
		return ":arrows_counterclockwise: Superseded by a newer plan. " + escape(t.Detail)
	case StatusRefused:
		return ":no_entry_sign: Refused by the executor: " + escape(t.Detail)
	}
	return string(t.Status)
}

func shortDigest(d string) string {
	d = strings.TrimPrefix(d, events.DigestPrefix)
	if len(d) > 12 {
		d = d[:12]
	}
	return d
}
