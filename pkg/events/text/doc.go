// Package text renders cluster text (logs, events, termination messages,
// image strings, annotations: anything a workload or its author controls)
// for each surface kaar shows it on, and withholds what looks like a
// credential before it is stored or published.
//
// Cluster text stays data in the plan and on the bus; the surface renders
// it at the last moment, with the function made for that surface:
//
//   - [ForModel], [ModelLines] and [Fence] for MCP answers and the
//     elicitation dialog: quoted so nothing in it passes for kaar's own
//     words, under [ModelNotice], said once per answer;
//   - [ForTerminal] and [OneLine] for the CLI: escape sequences and control
//     characters removed, so the text cannot move the cursor, clear the
//     screen, set the window title, hide a hyperlink or reorder itself;
//   - [ForSlack] and [ForSlackCode] for Slack mrkdwn: no mention, link or
//     formatting survives;
//   - [ShellQuote] for the kubectl equivalent of a step, which people and
//     assistants run: every argument runs as shown.
//
// [Redact], [RedactLines] and [RedactText] withhold whole lines that look
// like they carry a credential; the watcher and the planner apply them
// where cluster text enters an event or a plan.
//
// Every renderer bounds its output's length. The package depends on the
// standard library only.
package text
