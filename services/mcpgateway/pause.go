package mcpgateway

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/events"
)

// PauseOut is the kill switch of the cluster's remediation.
type PauseOut struct {
	Cluster string    `json:"cluster"`
	Paused  bool      `json:"paused" jsonschema:"true while no new plan is executed"`
	By      string    `json:"by,omitempty" jsonschema:"who flipped the switch last"`
	Via     string    `json:"via,omitempty"`
	Reason  string    `json:"reason,omitempty"`
	At      time.Time `json:"at,omitzero"`
	Message string    `json:"message"`
}

type pauseArgs struct {
	Reason string `json:"reason"`
}

func (s *Service) pauseTool() (*tool, error) {
	return defineTool("pause_remediation", "Pause all remediation",
		"The kill switch: stop every new execution of remediation plans in this cluster until resume_remediation. "+
			"Approvals that arrive while paused are refused (reason paused) and recorded; executions already running "+
			"finish. The switch is stored on the bus, so every executor sees it at once and it survives restarts. "+
			"Needs the admin role.",
		hints{readOnly: false, destructive: false, idempotent: true, openWorld: false},
		[]argSpec{{name: "reason", typ: typeString, desc: "Why remediation is paused, shown to whoever finds it paused.", required: true, maxLen: 1000}},
		func(ctx context.Context, c *call, a pauseArgs) (PauseOut, string, error) {
			return s.setPause(ctx, c, true, a.Reason)
		})
}

func (s *Service) resumeTool() (*tool, error) {
	return defineTool("resume_remediation", "Resume remediation",
		"Switch the kill switch off: approved plans are executed again. Plans refused while paused stay refused; "+
			"approve their current plan again. Needs the admin role.",
		hints{readOnly: false, destructive: false, idempotent: true, openWorld: false},
		[]argSpec{{name: "reason", typ: typeString, desc: "Why remediation may run again, for the record.", maxLen: 1000}},
		func(ctx context.Context, c *call, a pauseArgs) (PauseOut, string, error) {
			return s.setPause(ctx, c, false, a.Reason)
		})
}

func (s *Service) setPause(ctx context.Context, c *call, paused bool, reason string) (PauseOut, string, error) {
	p := events.Pause{Paused: paused, By: c.user, Via: c.via, Reason: reason, At: s.now().UTC()}
	if err := bus.SetPause(ctx, s.js, s.cfg.Cluster, p); err != nil {
		return PauseOut{}, "", fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	s.log.Warn("kill switch set", slog.Bool("paused", paused), slog.String("by", p.By), slog.String("via", string(p.Via)), slog.String("reason", reason))
	out := PauseOut{Cluster: s.cfg.Cluster, Paused: paused, By: p.By, Via: string(p.Via), Reason: reason, At: p.At}
	if paused {
		out.Message = fmt.Sprintf("Remediation in cluster %s is paused by %s: no new plan is executed until resume_remediation.", s.cfg.Cluster, p.By)
	} else {
		out.Message = fmt.Sprintf("Remediation in cluster %s is running again (resumed by %s).", s.cfg.Cluster, p.By)
	}
	return out, out.Message, nil
}
