package text

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ShellQuote renders a command line from its arguments so that a POSIX
// shell (bash, zsh) runs exactly these arguments: an argument of only
// letters, digits and @%+=:,./_- stays bare; any other is single-quoted;
// one with a control character, an invisible or non-printing character
// or invalid UTF-8 is ANSI-C quoted ($'…', every such character a visible
// escape), so the line shows everything it runs and nothing on it can
// start a new command, substitute one or redirect.
func ShellQuote(args ...string) string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = shellWord(a)
	}
	return strings.Join(out, " ")
}

func shellWord(a string) string {
	switch {
	case a == "":
		return "''"
	case bare(a):
		return a
	case !printable(a):
		return ansiC(a)
	}
	return "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
}

// bare reports an argument no shell expands or splits. A leading = is
// quoted: zsh expands =cmd to the command's path.
func bare(a string) bool {
	if a[0] == '=' {
		return false
	}
	for i := 0; i < len(a); i++ {
		c := a[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("@%+=:,./_-", c) >= 0) {
			return false
		}
	}
	return true
}

// printable reports valid UTF-8 of graphic characters and spaces only.
func printable(a string) bool {
	if !utf8.ValidString(a) {
		return false
	}
	for _, r := range a {
		if r != ' ' && (!unicode.IsGraphic(r) || isControl(r) || unicode.Is(unicode.Cf, r) || unicode.IsSpace(r)) {
			return false
		}
	}
	return true
}

// ansiC quotes a for bash and zsh's $'…' with every byte or character
// that does not print as an escape.
func ansiC(a string) string {
	var b strings.Builder
	b.WriteString("$'")
	for i := 0; i < len(a); {
		r, size := utf8.DecodeRuneInString(a[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, a[i])
		case r == '\\' || r == '\'':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x80 && (r < 0x20 || r == 0x7f):
			fmt.Fprintf(&b, `\x%02x`, r)
		case r == ' ' || unicode.IsGraphic(r) && !isControl(r) && !unicode.Is(unicode.Cf, r) && !unicode.IsSpace(r):
			b.WriteRune(r)
		case r <= 0xffff:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			fmt.Fprintf(&b, `\U%08x`, r)
		}
		i += size
	}
	b.WriteString("'")
	return b.String()
}
