package planner

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/kaar-dev/kaar/pkg/events"
)

// The crashed container's own words: a CrashLoopBackOff whose previous
// log says which environment variable or file is missing is explained
// by that line, in the plan's summary and first diagnostic step, not
// only in the quoted logs.

// logCause is the line of a crashed container's log that says why it
// exited, with what it names.
type logCause struct {
	// Line is the log line, already quoted (redacted, one line) as the
	// logs evidence quotes it.
	Line string
	// EnvVar is the environment variable the line says is missing or
	// empty, or "".
	EnvVar string
	// File is the path the line says does not exist, or "".
	File string
}

var (
	// An environment variable named as missing: "required environment
	// variable DATABASE_URL is not set", "DATABASE_URL must be set",
	// "missing env var API_KEY", "env: FOO: unbound variable".
	envVarNear = regexp.MustCompile(`(?i)(?:env(?:ironment)?(?:\s+var(?:iable)?)?|variable)s?\s*[:"'$]*\s*\$?\{?([A-Z][A-Z0-9_]{1,})\b`)
	envVarBare = regexp.MustCompile(`\$?\{?\b([A-Z][A-Z0-9]*_[A-Z0-9_]+|[A-Z]{3,})\b\}?:?\s*(?:is\s+)?(?:not set|unset|must be set|is required|required|is empty|empty|undefined|unbound variable|missing)`)
	envMissing = regexp.MustCompile(`(?i)not set|unset|must be set|required|is empty|undefined|unbound variable|missing|no value`)
	// A file named as missing: "open /etc/app/config.yaml: no such file
	// or directory", "config file /etc/x not found".
	fileMissing = regexp.MustCompile(`(/[^\s:'"(),;]+)['"]?:?\s*(?:\(os error 2\)\s*)?(?:no such file or directory|not found|does not exist|cannot find)`)
	fileBefore  = regexp.MustCompile(`(?i)(?:no such file or directory|not found|does not exist|cannot (?:open|find|read))[^/]*(/[^\s:'"(),;]+)`)
	// Words of a line that says why a program stops.
	causeWords = regexp.MustCompile(`(?i)\b(error|fatal|panic|exception|failed|failure|cannot|can't|could not|couldn't|unable|missing|not set|not found|no such file|undefined|required|invalid|denied|refused|traceback)\b`)
)

// findLogCause picks, among the lines of a crashed container's previous
// log (quoted, oldest first), the one that says why it exited: a line
// that names a missing environment variable or file first, else the last
// line with an error word. ok is false when no line says anything of the
// kind (a log that just stops).
func findLogCause(lines []string) (c logCause, ok bool) {
	best := -1
	for i := len(lines) - 1; i >= 0; i-- {
		l := lines[i]
		if l == "" || l == redactedLine {
			continue
		}
		cand := logCause{Line: l}
		if m := envVarNear.FindStringSubmatch(l); m != nil && envMissing.MatchString(l) {
			cand.EnvVar = m[1]
		} else if m := envVarBare.FindStringSubmatch(l); m != nil {
			cand.EnvVar = m[1]
		}
		if m := fileMissing.FindStringSubmatch(l); m != nil {
			cand.File = m[1]
		} else if m := fileBefore.FindStringSubmatch(l); m != nil {
			cand.File = m[1]
		}
		score := 0
		switch {
		case cand.EnvVar != "" || cand.File != "":
			score = 2
		case causeWords.MatchString(l):
			score = 1
		}
		if score > best && score > 0 {
			best, c = score, cand
		}
		if best == 2 {
			break // the newest line that names what is missing
		}
	}
	return c, best > 0
}

// crashLogCause is the log cause of a CrashLoopBackOff (or an init
// container's failure) from the previous logs the planner read.
func crashLogCause(in planInput) (logCause, bool) {
	if in.Logs == nil || in.Logs.Err != "" || len(in.Logs.Lines) == 0 {
		return logCause{}, false
	}
	switch in.Incident.Type {
	case events.IssueCrashLoopBackOff, events.IssueInitContainerFailing:
	default:
		return logCause{}, false
	}
	return findLogCause(in.Logs.Lines)
}

// logCauseClause is what the plan's summary says of the log: `its
// previous log says "..."`, or "".
func logCauseClause(in planInput) string {
	c, ok := crashLogCause(in)
	if !ok {
		return ""
	}
	return fmt.Sprintf("its previous log says %q", c.Line)
}

// logCauseStep is the first diagnostic step of a crash whose log says
// why: the line, and the change it calls for.
func logCauseStep(in planInput, b *builder, step stepFunc) (events.Step, bool) {
	c, ok := crashLogCause(in)
	if !ok {
		return events.Step{}, false
	}
	w := in.Owner
	ctr := b.containerName()
	_, pod := b.podRef()
	switch {
	case c.EnvVar != "":
		where := envSource(in, ctr, c.EnvVar)
		return step(fmt.Sprintf("Container %s exits because its log says %q: environment variable %s is missing or empty%s; set it in the pod template of %s (env, or envFrom a ConfigMap or Secret)",
			ctr, c.Line, c.EnvVar, where, w.ref()), "set", "env", w.ref(), "-c", ctr, "--list"), true
	case c.File != "":
		return step(fmt.Sprintf("Container %s exits because its log says %q: %s does not exist in the container; mount it (a ConfigMap or Secret volume), or point the application at a file that exists%s",
			ctr, c.Line, c.File, envPointing(in, ctr, c.File)), "get", w.ref(), "-o", "jsonpath={.spec.template.spec.volumes}"), true
	}
	return step(fmt.Sprintf("Container %s exits; its previous log ends with %q", ctr, c.Line), "logs", pod, "-c", ctr, "--previous"), true
}

// envSource says how the pod template sets the variable, if it does:
// " (the pod template sets it from configmap app-config key db-url)".
func envSource(in planInput, container, name string) string {
	_, c, _ := in.Owner.container(container)
	if c == nil {
		return ""
	}
	for _, e := range c.Env {
		if e.Name != name {
			continue
		}
		switch vf := e.ValueFrom; {
		case vf == nil && e.Value == "":
			return " (the pod template sets it to an empty value)"
		case vf == nil:
			return " (the pod template sets it, yet the application does not see it: check its spelling and the command)"
		case vf.ConfigMapKeyRef != nil:
			return fmt.Sprintf(" (the pod template sets it from configmap %s key %s)", vf.ConfigMapKeyRef.Name, vf.ConfigMapKeyRef.Key)
		case vf.SecretKeyRef != nil:
			return fmt.Sprintf(" (the pod template sets it from secret %s key %s)", vf.SecretKeyRef.Name, vf.SecretKeyRef.Key)
		}
		return " (the pod template sets it from a field or resource)"
	}
	if len(c.EnvFrom) > 0 {
		return " (the pod template does not set it; it may come from its envFrom sources)"
	}
	return " (the pod template does not set it)"
}

// envPointing names the environment variables whose value is the
// missing path: " (env CONFIG_PATH is /etc/payments/settings.yaml)".
func envPointing(in planInput, container, path string) string {
	_, c, _ := in.Owner.container(container)
	if c == nil {
		return ""
	}
	var refs []string
	for _, e := range c.Env {
		if e.ValueFrom == nil && e.Value != "" && strings.Contains(path, e.Value) {
			refs = append(refs, fmt.Sprintf("env %s is %s", e.Name, e.Value))
		}
	}
	if len(refs) == 0 {
		return ""
	}
	return " (" + strings.Join(refs, "; ") + ")"
}
