package bus

import (
	"fmt"
	"slices"
	"strings"

	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/nats-io/nats-server/v2/server"
)

// Role is one identity on the bus. Each service connects as its own role
// and may publish and subscribe only to what that service uses
// (Role.Permissions); the provisioner alone declares streams, buckets and
// consumers. These definitions are the only source of kaar's NATS
// permissions: the embedded server of "kaar serve" enforces them and
// deploy/nats/kaar-permissions.conf is rendered from them
// (PermissionsConf).
type Role string

// The roles.
const (
	RoleWatcher    Role = "watcher"
	RolePlanner    Role = "planner"
	RoleExecutor   Role = "executor"
	RoleMCPGateway Role = "mcpgateway"
	RoleNotifier   Role = "notifier"
	// RoleCLI is "kaar plans approve|reject", "kaar incidents" and
	// "kaar audit": a person's commands.
	RoleCLI Role = "cli"
	// RoleMCPStdio is "kaar mcp --stdio": the gateway spawned by an MCP
	// client, with the gateway's permissions.
	RoleMCPStdio Role = "mcp-stdio"
	// RoleProvisioner declares streams, buckets and consumers
	// ("kaar bus provision") and uses nothing else.
	RoleProvisioner Role = "provisioner"
)

// Roles lists every role, services first.
func Roles() []Role {
	return []Role{RoleWatcher, RolePlanner, RoleExecutor, RoleMCPGateway, RoleNotifier, RoleCLI, RoleMCPStdio, RoleProvisioner}
}

// ParseRole returns the role named s.
func ParseRole(s string) (Role, error) {
	for _, r := range Roles() {
		if string(r) == s {
			return r, nil
		}
	}
	names := make([]string, 0, len(Roles()))
	for _, r := range Roles() {
		names = append(names, string(r))
	}
	return "", fmt.Errorf("unknown bus role %q (one of %s): %w", s, strings.Join(names, ", "), events.ErrInvalid)
}

// RoleOfService is the role a service command connects as: "kaar-executor"
// and "executor" are RoleExecutor. ok is false for other names.
func RoleOfService(name string) (Role, bool) {
	r, err := ParseRole(strings.TrimPrefix(name, "kaar-"))
	return r, err == nil
}

// User is the role's NATS user name in a server configuration
// ("kaar-watcher").
func (r Role) User() string { return "kaar-" + string(r) }

// InboxPrefix is where the role's replies arrive. Each role has its own,
// and may subscribe only there: no role reads the replies (JetStream API
// answers, pulled messages, KV watches) meant for another.
func (r Role) InboxPrefix() string { return "_INBOX_" + string(r) }

// Permissions are the subjects a role may publish and subscribe to (allow
// lists: everything else is refused).
type Permissions struct {
	Publish   []string
	Subscribe []string
	// Responds lets the role answer requests it received (its micro
	// service endpoints) on their reply subjects.
	Responds bool
}

// NotifyStream is the notifier's stream: it sources the notified
// cluster's subjects of ISSUES, PLAN_EVENTS and AUDIT, and holds the
// notifier's durable consumers (Slack, one per webhook receiver).
const NotifyStream = "NOTIFY"

// NotifyBucket holds the notifier's Slack message state.
const NotifyBucket = "kaar_notifier"

// grants accumulates a role's permissions.
type grants struct{ pub, sub []string }

func (g *grants) publish(s ...string)   { g.pub = append(g.pub, s...) }
func (g *grants) subscribe(s ...string) { g.sub = append(g.sub, s...) }

// kvRead: open a bucket (stream info) and get keys (direct or stored
// message get).
func (g *grants) kvRead(bucket string) {
	st := "KV_" + bucket
	g.publish("$JS.API.STREAM.INFO."+st, "$JS.API.DIRECT.GET."+st, "$JS.API.DIRECT.GET."+st+".>", "$JS.API.STREAM.MSG.GET."+st)
}

// kvWrite: put, create, update, delete and purge keys.
func (g *grants) kvWrite(bucket string) { g.publish("$KV." + bucket + ".>") }

// leaseWrite: create, renew and release the leases of one service
// (events.LeaseKey: "<service>.<cluster>"), not another's.
func (g *grants) leaseWrite(service string) {
	g.kvRead(events.BucketLeases)
	g.publish("$KV." + events.BucketLeases + "." + service + ".>")
}

// kvWatch: Watch, WatchAll and ListKeys (an ordered push consumer on the
// bucket's stream, with flow control, deleted when the watch stops). A
// bucket's stream has no durable consumer, so deleting consumers there
// touches only watches (another role's recreates itself when its
// heartbeats stop); a consumer created to relay the bucket elsewhere is
// deleted by provisioning (removeRelays).
func (g *grants) kvWatch(bucket string) {
	st := "KV_" + bucket
	g.publish("$JS.API.CONSUMER.CREATE."+st+".>", "$JS.API.CONSUMER.INFO."+st+".*", "$JS.API.CONSUMER.DELETE."+st+".*", "$JS.FC."+st+".>")
}

// durables: bind to and pull from the durable consumers the provisioner
// declared on a stream whose consumers all belong to this role, and ack.
// No consumer create, update or delete.
func (g *grants) durables(stream string) {
	g.publish("$JS.API.CONSUMER.INFO."+stream+".*", "$JS.API.CONSUMER.MSG.NEXT."+stream+".*", "$JS.ACK."+stream+".>")
}

// streamRead: read a stream's messages one by one (message get), no
// consumer.
func (g *grants) streamRead(stream string) {
	g.publish("$JS.API.STREAM.INFO."+stream, "$JS.API.STREAM.MSG.GET."+stream)
}

// ordered: ordered ephemeral consumers on a stream that has no durable
// consumer (AUDIT). Deleting them is left to the server (they expire when
// inactive): a role that may delete consumers there could delete another
// role's reads.
func (g *grants) ordered(stream string) {
	g.publish("$JS.API.STREAM.INFO."+stream, "$JS.API.CONSUMER.CREATE."+stream+".>", "$JS.API.CONSUMER.INFO."+stream+".*", "$JS.API.CONSUMER.MSG.NEXT."+stream+".*")
}

// serviceSubjects is kaar.*.svc.<service>.>.
func serviceSubjects(service string) string { return events.SubjectRoot + ".*.svc." + service + ".>" }

// microSubjects are the discovery subjects a micro service named
// kaar-<service> answers: $SRV.PING|INFO|STATS, alone, with its name, and
// with its name and id. Not $SRV.>: a service must not receive (and could
// answer) the requests meant for another. The verbs are spelled out: an
// allowed "$SRV.*" would also let a client subscribe to "$SRV.>" (the
// server matches a wildcard subscription against the allow list token by
// token, and "*" matches the token ">").
func microSubjects(service string) []string {
	name := "kaar-" + service
	var out []string
	for _, verb := range []string{"PING", "INFO", "STATS"} {
		out = append(out, "$SRV."+verb, "$SRV."+verb+"."+name, "$SRV."+verb+"."+name+".*")
	}
	return out
}

// Permissions returns the role's permissions. Cluster names are
// wildcards: one set of users serves every cluster on the bus.
func (r Role) Permissions() Permissions {
	var g grants
	responds := false
	g.publish("$JS.API.INFO")
	g.subscribe(r.InboxPrefix() + ".>")
	switch r {
	case RoleWatcher:
		g.publish(events.IssueSubjectsAll)
		// At start, the last announcements are read back from ISSUES
		// (one the previous watcher published but did not record). ISSUES
		// has the planners' durables, which a consumer create could
		// reach; a watcher can do no more harm to them than it can by
		// what it publishes there.
		g.ordered(events.StreamIssues)
		g.kvRead(events.BucketIncidents)
		g.kvWrite(events.BucketIncidents)
		g.kvWatch(events.BucketIncidents)
		g.kvRead(events.BucketUsage)
		g.kvWrite(events.BucketUsage)
		g.kvWatch(events.BucketUsage)
		g.leaseWrite(events.ServiceWatcher)
		g.subscribe(serviceSubjects(events.ServiceWatcher))
		g.subscribe(microSubjects(events.ServiceWatcher)...)
		responds = true
	case RolePlanner:
		g.publish(events.PlanEventSubjectsAll, events.AuditSubjectsAll, serviceSubjects(events.ServiceWatcher))
		g.kvRead(events.BucketPlans)
		g.kvWrite(events.BucketPlans)
		g.kvWatch(events.BucketPlans)
		g.durables(events.StreamIssues)
		g.subscribe(serviceSubjects(events.ServicePlanner))
		g.subscribe(microSubjects(events.ServicePlanner)...)
		responds = true
	case RoleExecutor:
		// kaar.*.approval.>: auto-approval by policy
		// (remediation.auto_approve) publishes ordinary decisions.
		g.publish(events.AuditSubjectsAll, events.ApprovalSubjectsAll, serviceSubjects(events.ServicePlanner))
		g.kvRead(events.BucketPlans)
		g.kvWrite(events.BucketPlans)
		g.kvRead(events.BucketExecutions)
		g.kvWrite(events.BucketExecutions)
		// The kill switch: read and watched, never written.
		g.kvRead(events.BucketControl)
		g.kvWatch(events.BucketControl)
		g.durables(events.StreamApprovals)
		g.durables(events.StreamPlanEvents)
		g.subscribe(serviceSubjects(events.ServiceExecutor))
		g.subscribe(microSubjects(events.ServiceExecutor)...)
		responds = true
	case RoleMCPGateway, RoleMCPStdio:
		// The gateway decides nothing itself: it publishes decisions,
		// asks the services, and reads plans, executions and the audit
		// trail. It alone writes the kill switch.
		g.publish(events.ApprovalSubjectsAll, serviceSubjects(events.ServiceWatcher), serviceSubjects(events.ServicePlanner),
			serviceSubjects(events.ServiceExecutor), "$SRV.>")
		g.kvRead(events.BucketPlans)
		g.kvWatch(events.BucketPlans)
		g.kvRead(events.BucketExecutions)
		g.kvWatch(events.BucketExecutions)
		g.kvRead(events.BucketControl)
		g.kvWrite(events.BucketControl)
		g.streamRead(events.StreamApprovals)
		g.ordered(events.StreamAudit)
	case RoleNotifier:
		// Decisions from Slack; plans read to show and check them; the
		// watcher asked for the open warnings' numbers of now (the
		// digest).
		g.publish(events.ApprovalSubjectsAll, serviceSubjects(events.ServiceWatcher))
		g.kvRead(events.BucketPlans)
		g.kvRead(NotifyBucket)
		g.kvWrite(NotifyBucket)
		g.kvWatch(NotifyBucket)
		g.leaseWrite("notifier")
		g.publish("$JS.API.STREAM.INFO." + NotifyStream)
		g.durables(NotifyStream)
	case RoleCLI:
		g.publish(events.ApprovalSubjectsAll)
		g.kvRead(events.BucketPlans)
		g.kvWatch(events.BucketPlans)
		g.streamRead(events.StreamIssues)
		g.streamRead(events.StreamAudit)
	case RoleProvisioner:
		g.publish("$JS.API.>")
	}
	for _, st := range r.streams() {
		g.publish("$JS.API.STREAM.INFO." + st)
	}
	return Permissions{Publish: dedup(g.pub), Subscribe: dedup(g.sub), Responds: responds}
}

// InDomain is p for a client whose JetStream is another server's domain
// (nats.jetstream_domain, a service on a leaf node): its JetStream API
// subjects are $JS.<domain>.API.* instead of $JS.API.*. An empty domain
// returns p.
func (p Permissions) InDomain(domain string) Permissions {
	if domain == "" {
		return p
	}
	out := Permissions{Subscribe: slices.Clone(p.Subscribe), Responds: p.Responds}
	for _, s := range p.Publish {
		if rest, ok := strings.CutPrefix(s, "$JS.API."); ok {
			s = "$JS." + domain + ".API." + rest
		}
		out.Publish = append(out.Publish, s)
	}
	return out
}

func dedup(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return slices.Compact(out)
}

// server is p in the embedded server's terms.
func (p Permissions) server() *server.Permissions {
	sp := &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: slices.Clone(p.Publish)},
		Subscribe: &server.SubjectPermission{Allow: slices.Clone(p.Subscribe)},
	}
	if p.Responds {
		sp.Response = &server.ResponsePermission{MaxMsgs: server.DEFAULT_ALLOW_RESPONSE_MAX_MSGS, Expires: server.DEFAULT_ALLOW_RESPONSE_EXPIRATION}
	}
	return sp
}

// PasswordEnv is the nats-server environment variable that holds a role's
// password in kaar-permissions.conf (KAAR_NATS_MCP_STDIO_PASSWORD).
func (r Role) PasswordEnv() string {
	return "KAAR_NATS_" + strings.ToUpper(strings.ReplaceAll(string(r), "-", "_")) + "_PASSWORD"
}

// PermissionsConf renders deploy/nats/kaar-permissions.conf: an
// authorization block with one user per role, its password read from the
// server's environment (Role.PasswordEnv), and Role.Permissions.
func PermissionsConf() string { return PermissionsConfInDomain("") }

// PermissionsConfInDomain is PermissionsConf for a leaf node whose
// clients use the JetStream of domain (Permissions.InDomain).
func PermissionsConfInDomain(domain string) string {
	var b strings.Builder
	b.WriteString(`# NATS authorization for a split kaar deployment: one user per role, each
# allowed only the subjects that role uses. GENERATED from pkg/bus/roles.go
# by "kaar bus permissions": do not edit; deploy/test checks that this file
# equals the Go definitions.
#
# No service may create, update, delete or purge a stream, nor create or
# delete a durable consumer: "kaar bus provision" declares them as
# kaar-provisioner, the only user with the JetStream management API
# ($JS.API.>). Services bind to what exists and pull from their own durable
# consumers. Each role receives its replies under its own inbox prefix
# (_INBOX_<role>), the only place it may subscribe besides its service
# endpoints.
#
# Include it from nats-server.conf:  include ./kaar-permissions.conf
# Passwords are read from the server's environment (KAAR_NATS_<ROLE>_PASSWORD,
# every one must be set): this file holds no secret. NATS parses the value:
# use letters and digits (openssl rand -hex 24), never digits only. Give each
# service its password through nats.password (or KAAR_NATS_PASSWORD) and
# nats.user = kaar-<role>.

authorization {
  users = [
`)
	if domain != "" {
		fmt.Fprintf(&b, "  # For a leaf node: JetStream API subjects in the domain %q.\n", domain)
	}
	for _, r := range Roles() {
		p := r.Permissions().InDomain(domain)
		fmt.Fprintf(&b, "    {\n      user: %s\n      password: $%s\n      permissions: {\n", r.User(), r.PasswordEnv())
		fmt.Fprintf(&b, "        publish: { allow: %s }\n", confList(p.Publish, "        "))
		fmt.Fprintf(&b, "        subscribe: { allow: %s }\n", confList(p.Subscribe, "        "))
		if p.Responds {
			b.WriteString("        allow_responses: true\n")
		}
		b.WriteString("      }\n    }\n")
	}
	b.WriteString("  ]\n}\n")
	return b.String()
}

// confList is a NATS configuration array, one subject a line.
func confList(s []string, indent string) string {
	var b strings.Builder
	b.WriteString("[\n")
	for _, v := range s {
		fmt.Fprintf(&b, "%s  %q,\n", indent, v)
	}
	b.WriteString(indent + "]")
	return b.String()
}
