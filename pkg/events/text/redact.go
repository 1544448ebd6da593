package text

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"
)

// Withheld replaces a line of cluster text that looks like it carries a
// credential.
const Withheld = "[line withheld: it looks like it contains a credential]"

// credentialRE matches lines that look like they carry a credential. The
// whole line is withheld: partial masking leaks too easily.
var credentialRE = regexp.MustCompile(`(?i)` + strings.Join([]string{
	`pass(word|wd)?["']?\s*[:=]`,
	`pwd["']?\s*[:=]`,
	`secret["']?\s*[:=]`,
	`token`,
	`api[_-]?key`,
	`access[_-]?key`,
	`authorization:\s*(bearer|basic)`,
	`\bbearer\s+[a-z0-9._~+/-]+`,
	`\b(AKIA|ASIA)[0-9A-Z]{16}\b`,
	`aws_secret_access_key`,
	`-----BEGIN [A-Z ]*PRIVATE KEY-----`,
	`credential`,
	`private[_-]?key`,
	`client[_-]?secret`,
	`[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@`, // user:password@ in a URL
	`\beyJ[a-z0-9_-]{8,}\.[a-z0-9_-]{8,}\.`,   // a JWT
	`\b(gh[pousr]_[a-z0-9]{20,}|xox[abposr]-[a-z0-9-]{10,}|glpat-[a-z0-9_-]{20})`, // GitHub, Slack, GitLab tokens
	`\bsk_(live|test)_[a-z0-9]{16,}`,                                              // Stripe keys
}, "|"))

// pemBegin and pemEnd delimit a PEM private key block: every line of it
// is withheld, not only the BEGIN line.
var (
	pemBegin = regexp.MustCompile(`-----BEGIN [A-Z ]*PRIVATE KEY( BLOCK)?-----`)
	pemEnd   = regexp.MustCompile(`-----END [A-Z ]*PRIVATE KEY( BLOCK)?-----`)
)

// Redact returns [Withheld] for a line that looks like it carries a
// credential, else the line unchanged. The line is matched as it is and
// without its escape sequences and control characters, so they can
// neither hide a credential in their payload nor split a keyword.
func Redact(line string) string {
	if matches(credentialRE, line) {
		return Withheld
	}
	return line
}

// RedactLines is [Redact] on consecutive lines, which also withholds
// every line of a private key block; lines that start inside one (an END
// with no BEGIN before it, as in a log tail) are withheld up to its END.
func RedactLines(lines []string) []string {
	out := make([]string, 0, len(lines))
	inKey := false
	isBegin := func(l string) bool { return matches(pemBegin, l) }
	isEnd := func(l string) bool { return matches(pemEnd, l) }
	if end := slices.IndexFunc(lines, isEnd); end >= 0 && !slices.ContainsFunc(lines[:end], isBegin) {
		inKey = true // the block began before the first line
	}
	for _, l := range lines {
		switch {
		case isBegin(l):
			inKey = !isEnd(l)
			out = append(out, Withheld)
		case inKey:
			inKey = !isEnd(l)
			out = append(out, Withheld)
		default:
			out = append(out, Redact(l))
		}
	}
	return out
}

// RedactText is [RedactLines] on the lines of s (a termination message,
// an annotation value), joined again with line feeds.
func RedactText(s string) string {
	if s == "" {
		return s
	}
	return strings.Join(RedactLines(strings.Split(lineBreaks.Replace(s), "\n")), "\n")
}

// matches reports whether re matches line as it is or as it shows.
func matches(re *regexp.Regexp, line string) bool {
	return re.MatchString(line) || re.MatchString(clean(prep(line), false))
}

// WithheldValue replaces a JSON string value that looks like a credential.
const WithheldValue = "[withheld: it looks like a credential]"

// RedactJSON returns raw (a patch or an object from the cluster, for
// display only) with every string that looks like a credential replaced
// by [WithheldValue]: an object's "value" when its "name" and value read
// together as one ("DB_PASSWORD" and "hunter2", as in an env var; the
// name stays), and any string that does alone. The result is compact JSON with sorted
// keys; raw that is not JSON is returned as it is.
func RedactJSON(raw []byte) []byte {
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return raw
	}
	out, err := json.Marshal(redactValue(v))
	if err != nil {
		return raw
	}
	return out
}

func redactValue(v any) any {
	switch x := v.(type) {
	case map[string]any:
		name, _ := x["name"].(string)
		_, pair := x["value"].(string)
		pair = pair && name != ""
		for k, c := range x {
			switch s, _ := c.(string); {
			case pair && k == "name":
				// the variable's name stays: it says what was withheld
			case pair && k == "value" && (Redact(name+"="+s) == Withheld || RedactText(s) != s):
				x[k] = WithheldValue
			default:
				x[k] = redactValue(c)
			}
		}
		return x
	case []any:
		for i, c := range x {
			x[i] = redactValue(c)
		}
		return x
	case string:
		if RedactText(x) != x {
			return WithheldValue
		}
	}
	return v
}
