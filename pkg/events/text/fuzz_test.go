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
