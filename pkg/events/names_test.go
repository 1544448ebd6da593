package events

import (
	"errors"
	"strings"
	"testing"
)

func TestClusterNames(t *testing.T) {
	for _, ok := range []string{"a", "prod", "prod-eu-1", "k3s_lab", "0", strings.Repeat("a", 63)} {
		if err := ValidateClusterName(ok); err != nil {
			t.Errorf("%q rejected: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "Prod", "prod.eu", "prod eu", "-prod", "prod-", "prod_", "a*", "a>", strings.Repeat("a", 64), "prød"} {
		err := ValidateClusterName(bad)
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%q accepted (%v)", bad, err)
		}
	}
}

func TestSubjects(t *testing.T) {
	must := func(s string, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	got := []string{
		must(IssueSubject("prod", "shop", IssueOOMKilled)),
		must(IssueFilter("prod")),
		must(ApprovalSubject("prod", testPlanID)),
		must(ApprovalFilter("prod")),
		must(AuditSubject("prod", AuditStepResult)),
		must(AuditFilter("prod")),
		must(PlanEventSubject("prod", PlanEventExpired)),
		must(PlanEventFilter("prod")),
		must(ServiceSubject("prod", ServiceWatcher, VerbAnalyze)),
		must(PlannerConsumer("prod")),
		must(ExecutorConsumer("prod")),
		must(PlanKey(testPlanID)),
		must(ExecutionKey(testPlanID)),
		must(IncidentStateKey("prod", "0123456789abcdef")),
		IncidentMsgID("0123456789abcdef", 3),
		DecisionMsgID(testPlanID, "sha256:abc", DecisionApproved),
		PlanEventMsgID(testPlanID, PlanEventProposed),
		AuditMsgID(testAudit),
	}
	want := []string{
		"kaar.prod.issue.shop.OOMKilled",
		"kaar.prod.issue.>",
		"kaar.prod.approval." + testPlanID,
		"kaar.prod.approval.>",
		"kaar.prod.audit.step_result",
		"kaar.prod.audit.>",
		"kaar.prod.plan.expired",
		"kaar.prod.plan.>",
		"kaar.prod.svc.watcher.analyze",
		"planner-prod",
		"executor-prod",
		testPlanID,
		testPlanID,
		"prod.0123456789abcdef",
		"incident-0123456789abcdef-3",
		"decision-" + testPlanID + "-abc-approved",
		"plan-" + testPlanID + "-proposed",
		"audit-" + testAudit,
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("name %d = %q, want %q", i, got[i], want[i])
		}
	}
	// Every concrete subject is matched by its stream's wildcard.
	for _, pair := range [][2]string{
		{got[0], IssueSubjectsAll}, {got[2], ApprovalSubjectsAll}, {got[4], AuditSubjectsAll},
		{got[6], PlanEventSubjectsAll}, {got[8], ServiceSubjectsAll},
	} {
		if !subjectMatches(pair[1], pair[0]) {
			t.Errorf("%s does not match %s", pair[0], pair[1])
		}
	}
}

// subjectMatches implements NATS wildcard matching for the test.
func subjectMatches(pattern, subject string) bool {
	p, s := strings.Split(pattern, "."), strings.Split(subject, ".")
	for i, tok := range p {
		if tok == ">" {
			return len(s) > i
		}
		if i >= len(s) || (tok != "*" && tok != s[i]) {
			return false
		}
	}
	return len(p) == len(s)
}

func TestSubjectsRejectBadTokens(t *testing.T) {
	cases := []struct {
		name  string
		err   error
		field string
	}{
		{"cluster", func() error { _, err := IssueSubject("Prod", "shop", IssuePending); return err }(), "cluster"},
		{"namespace dot", func() error { _, err := IssueSubject("prod", "a.b", IssuePending); return err }(), "namespace"},
		{"namespace wildcard", func() error { _, err := IssueSubject("prod", "*", IssuePending); return err }(), "namespace"},
		{"type", func() error { _, err := IssueSubject("prod", "shop", "x"); return err }(), "type"},
		{"plan id", func() error { _, err := ApprovalSubject("prod", "a.>"); return err }(), "plan_id"},
		{"audit kind", func() error { _, err := AuditSubject("prod", "x"); return err }(), "kind"},
		{"plan event", func() error { _, err := PlanEventSubject("prod", "x"); return err }(), "event"},
		{"service", func() error { _, err := ServiceSubject("prod", "", VerbPlan); return err }(), "service"},
		{"verb", func() error { _, err := ServiceSubject("prod", ServicePlanner, "a b"); return err }(), "verb"},
		{"consumer cluster", func() error { _, err := PlannerConsumer(""); return err }(), "cluster"},
		{"incident key", func() error { _, err := IncidentStateKey("prod", "nope"); return err }(), "incident_id"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { assertField(t, tc.err, tc.field) })
	}
}

func TestIncidentIDFrozen(t *testing.T) {
	// Frozen forever: this value identifies an open incident on the bus.
	if got := IncidentID("prod-eu", "shop", "Deployment", "web", "app", IssueCrashLoopBackOff); got != "08810f159074b605" {
		t.Fatalf("IncidentID = %s, want frozen 08810f159074b605", got)
	}
	if got := IncidentID("prod-eu", "shop", "Deployment", "web", "", IssuePending); len(got) != IncidentIDLen || validateIncidentID("id", got) != nil {
		t.Fatalf("IncidentID %q is not 16 lower-case hex characters", got)
	}
	// Every part matters, and parts cannot bleed into each other.
	base := []string{"c", "ns", "Deployment", "web", "app"}
	ids := map[string]bool{IncidentID(base[0], base[1], base[2], base[3], base[4], IssueOOMKilled): true}
	for i := range base {
		p := append([]string(nil), base...)
		p[i] += "x"
		id := IncidentID(p[0], p[1], p[2], p[3], p[4], IssueOOMKilled)
		if ids[id] {
			t.Errorf("changing part %d did not change the id", i)
		}
		ids[id] = true
	}
	if IncidentID("c", "ns", "Deployment", "web", "app", IssueOOMKilled) == IncidentID("c", "ns", "Deployment", "web", "app", IssueCrashLoopBackOff) {
		t.Error("type ignored")
	}
	if IncidentID("c", "nsa", "Deployment", "web", "", IssueOOMKilled) == IncidentID("c", "ns", "aDeployment", "web", "", IssueOOMKilled) {
		t.Error("parts bleed into each other")
	}
	if got := IncidentKey("c", "ns", "Deployment", "web", "app", IssueOOMKilled); got != "c/ns/Deployment/web/app/OOMKilled" {
		t.Errorf("IncidentKey = %q", got)
	}
}

func TestParseIssueType(t *testing.T) {
	cases := map[string]IssueType{
		"CrashLoopBackOff":              IssueCrashLoopBackOff,
		"crashloopbackoff":              IssueCrashLoopBackOff,
		"crash_loop_back_off":           IssueCrashLoopBackOff,
		" ImagePullBackOff ":            IssueImagePullBackOff,
		"ErrImagePull":                  IssueImagePullBackOff,
		"invalidimagename":              IssueImagePullBackOff,
		"oomkilled":                     IssueOOMKilled,
		"PENDING":                       IssuePending,
		"evicted":                       IssueEvicted,
		"create-container-config-error": IssueCreateContainerConfigError,
		"InitContainerFailing":          IssueInitContainerFailing,
		"notready":                      IssueNotReady,
		"stuck_terminating":             IssueStuckTerminating,
	}
	for in, want := range cases {
		got, err := ParseIssueType(in)
		if err != nil || got != want {
			t.Errorf("ParseIssueType(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "broken", "crash"} {
		_, err := ParseIssueType(bad)
		assertField(t, err, "type")
	}
	for _, it := range IssueTypes() {
		if err := it.DefaultSeverity().Validate(); err != nil {
			t.Errorf("%s: default severity %v", it, err)
		}
	}
	if IssueStuckTerminating.DefaultSeverity() != SeverityLow || IssueCrashLoopBackOff.DefaultSeverity() != SeverityHigh {
		t.Error("default severities changed")
	}
	if s, err := ParseSeverity("HIGH"); err != nil || s != SeverityHigh {
		t.Errorf("ParseSeverity: %q %v", s, err)
	}
	if SeverityCritical.Rank() >= SeverityLow.Rank() {
		t.Error("rank order")
	}
}

func TestActionMutating(t *testing.T) {
	for _, a := range ActionTypes() {
		want := a != ActionDiagnostic && a != ActionCheckLogs
		if a.Mutating() != want {
			t.Errorf("%s.Mutating() = %t", a, a.Mutating())
		}
	}
	if ActionType("x").Mutating() {
		t.Error("unknown action reported mutating")
	}
}
