package mcpgateway

import (
	"context"

	"github.com/kaar-dev/kaar/pkg/events"
)

type userKey struct{}

// WithUser returns a context carrying the authenticated user of a request.
// Authentication middleware in front of Handler calls it; the gateway
// records the user as decided_by in the decisions it publishes.
func WithUser(ctx context.Context, user string) context.Context {
	return context.WithValue(ctx, userKey{}, user)
}

// UserFromContext returns the user set by WithUser.
func UserFromContext(ctx context.Context) (string, bool) {
	u, ok := ctx.Value(userKey{}).(string)
	return u, ok && u != ""
}

// user is who a call acts for: the authenticated user, else the
// configured default, else the anonymous name of the channel.
func (s *Service) user(ctx context.Context, via events.Via) string {
	if u, ok := UserFromContext(ctx); ok {
		return u
	}
	if s.cfg.DefaultUser != "" {
		return s.cfg.DefaultUser
	}
	if via == events.ViaREST {
		return AnonymousRESTUser
	}
	return AnonymousMCPUser
}
