// Package mcpgateway is kaar's front door for AI assistants and scripts: the
// MCP server (streamable HTTP and stdio, built on mcp-go) and the REST
// compatibility API of the original server (GET /mcp/v1/tools,
// POST /mcp/v1/invoke/{tool}, GET /health), served from one tool registry.
//
// The gateway holds no Kubernetes credentials. Everything it does goes over
// the bus:
//
//   - analyze_cluster and get_incident ask the watcher
//     (kaar.<cluster>.svc.watcher.analyze) and summarize;
//   - generate_remediation_plan asks the planner (svc.planner.plan), which
//     stores the plan in the kaar_plans bucket;
//   - approve_remediation_plan and reject_remediation_plan read the plan
//     from kaar_plans and publish a Decision naming the plan id and digest on
//     the APPROVALS stream (Nats-Msg-Id = events.DecisionMsgID, so a repeated
//     approval is one message); the executor acts on it;
//   - remediate_issue and get_execution_status read kaar_plans and watch
//     kaar_executions until the executor's record is final.
//
// HTTP callers authenticate with bearer tokens whose role (read,
// approver, admin) bounds the tools they may call (auth.go); an MCP
// approval is confirmed by the client's user through elicitation when the
// client can ask (confirm.go). Incidents, plans and audit trails are also
// MCP resources, with two prompts (resources.go).
//
// Every tool validates its arguments twice: against its JSON input schema
// (mcp-go's WithInputSchemaValidation for MCP, the same compiled schema for
// REST), then with typed checks that name the argument and the allowed
// values. A bad request never reaches the bus as a mutation. Errors are
// classified once (invalid argument, not found, conflict, unavailable,
// internal) and rendered as an MCP isError result or an HTTP status with a
// JSON body.
package mcpgateway
