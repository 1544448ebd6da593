package mcpgateway

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/mark3labs/mcp-go/mcp"
)

// hints are a tool's MCP annotations. mcp.NewTool's defaults (not
// read-only, destructive, not idempotent, open world) are wrong for most
// kaar tools, so every tool states all four.
type hints struct {
	readOnly, destructive, idempotent, openWorld bool
}

var (
	readOnlyHints = hints{readOnly: true, destructive: false, idempotent: true, openWorld: false}
)

// call is one invocation of a tool, whichever transport it came through.
type call struct {
	via events.Via
	// user is the authenticated user, or the configured or anonymous
	// default; recorded in decisions.
	user string
	// role bounds what the call may do (Service.identity).
	role Role
	// args are the checked arguments (checkArgs).
	args json.RawMessage
	// progress reports progress to the client when it asked for it; nil
	// otherwise. Best effort.
	progress func(progress, total float64, message string)
	// confirm is set for MCP calls: how an approval is confirmed by a
	// person (confirm.go).
	confirm *confirmation
}

func (c *call) report(progress, total float64, message string) {
	if c.progress != nil {
		c.progress(progress, total, message)
	}
}

// runFunc runs a tool: a structured result and a short text for people, or
// an error classified by errors.go.
type runFunc func(ctx context.Context, c *call) (result any, text string, err error)

// tool is one entry of the registry shared by MCP and REST.
type tool struct {
	name        string
	title       string
	description string
	specs       []argSpec
	hints       hints
	// role is the least role that may call the tool when the gateway
	// authenticates (auth.go).
	role         Role
	inputSchema  json.RawMessage
	outputSchema json.RawMessage
	run          runFunc
}

// validator is implemented by argument structs with rules that span
// several arguments.
type validator interface{ validate() error }

// defineTool builds a registry entry from a typed handler: the input schema
// from specs, the output schema from R.
func defineTool[A any, R any](name, title, description string, h hints, specs []argSpec,
	fn func(ctx context.Context, c *call, args A) (R, string, error)) (*tool, error) {
	out, err := jsonschema.For[R](&jsonschema.ForOptions{})
	if err != nil {
		return nil, fmt.Errorf("tool %s: output schema: %w", name, err)
	}
	out.Type, out.Types = "object", nil
	outJSON, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("tool %s: output schema: %w", name, err)
	}
	t := &tool{name: name, title: title, description: description, specs: specs, hints: h,
		inputSchema: inputSchema(specs), outputSchema: outJSON}
	t.run = func(ctx context.Context, c *call) (any, string, error) {
		var args A
		if err := decodeArgs(c.args, &args); err != nil {
			return nil, "", err
		}
		if v, ok := any(&args).(validator); ok {
			if err := v.validate(); err != nil {
				return nil, "", err
			}
		}
		res, text, err := fn(ctx, c, args)
		if err != nil {
			return nil, "", err
		}
		return res, text, nil
	}
	return t, nil
}

// mcpTool is the tool's MCP definition.
func (t *tool) mcpTool() mcp.Tool {
	return mcp.NewTool(t.name,
		mcp.WithToolTitle(t.title),
		mcp.WithDescription(t.description),
		func(m *mcp.Tool) {
			// NewTool pre-fills a structured input schema; a raw one must
			// replace it, not sit beside it.
			m.InputSchema = mcp.ToolInputSchema{}
			m.RawInputSchema = t.inputSchema
		},
		mcp.WithRawOutputSchema(t.outputSchema),
		mcp.WithTitleAnnotation(t.title),
		mcp.WithReadOnlyHintAnnotation(t.hints.readOnly),
		mcp.WithDestructiveHintAnnotation(t.hints.destructive),
		mcp.WithIdempotentHintAnnotation(t.hints.idempotent),
		mcp.WithOpenWorldHintAnnotation(t.hints.openWorld),
	)
}

// toolRoles are the tools that need more than RoleRead: asking the
// planner for a plan, deciding on one and following its execution. An
// assistant may call approve and reject, but decide then needs a
// person's confirmation (person.go).
var toolRoles = map[string]Role{
	"generate_remediation_plan": RoleAssistant,
	"approve_remediation_plan":  RoleAssistant,
	"reject_remediation_plan":   RoleAssistant,
	"remediate_issue":           RoleAssistant,
	"pause_remediation":         RoleAdmin,
	"resume_remediation":        RoleAdmin,
}

// registry builds every tool. The order is the listing order.
func (s *Service) registry() ([]*tool, error) {
	builders := []func() (*tool, error){
		s.analyzeTool,
		s.getIncidentTool,
		s.generatePlanTool,
		s.approveTool,
		s.remediateTool,
		s.testTool,
		s.listPlansTool,
		s.getPlanTool,
		s.rejectTool,
		s.executionStatusTool,
		s.auditTool,
		s.pauseTool,
		s.resumeTool,
	}
	out := make([]*tool, 0, len(builders))
	seen := map[string]bool{}
	for _, b := range builders {
		t, err := b()
		if err != nil {
			return nil, err
		}
		if seen[t.name] {
			return nil, fmt.Errorf("tool %s defined twice", t.name)
		}
		t.role = RoleRead
		if r, ok := toolRoles[t.name]; ok {
			t.role = r
		}
		seen[t.name] = true
		out = append(out, t)
	}
	return out, nil
}
