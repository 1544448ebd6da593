// Package notifier tells people what kaar is doing and lets them answer.
//
// It reads the cluster's incident, plan and audit events from the bus
// (through a stream that sources ISSUES, PLAN_EVENTS and AUDIT, so every
// reader sees one order) and:
//
//   - posts one Slack message per incident (Block Kit: cause, evidence,
//     plan steps, risk, expiry, Approve/Reject buttons) and updates that
//     same message with chat.update as the plan moves (approved by whom,
//     executing, verified, expired). New posts and reminders follow
//     Alertmanager's rule: once per incident, again only on change,
//     resolution or after the repeat interval, and never in quiet hours;
//   - verifies Slack button clicks (v0 HMAC-SHA256 signature, 5 minute
//     window) and publishes the approval or rejection naming the Slack
//     user, if the user and channel are allowed; for clusters without
//     inbound HTTP the clicks can come over Slack Socket Mode instead (an
//     outbound WebSocket authenticated by the app token, no signature),
//     through the same checks;
//   - delivers every matching event to each configured webhook receiver
//     as a signed CloudEvents 1.0 JSON document, from a durable JetStream
//     consumer per receiver, in order and at least once;
//   - accepts decisions from other tools on a signed inbound webhook.
//
// Decisions go to kaar.<cluster>.approval.<plan> like those of the MCP
// gateway; the executor stays the authority that checks them.
package notifier
