package events

import "testing"

func TestDisplayDropsTheClusterScopeToken(t *testing.T) {
	for _, tt := range []struct {
		ns, path, object, ref string
	}{
		{"shop", "shop/web", "Deployment shop/web", "Deployment/shop/web"},
		{ClusterScopeNamespace, "web", "Deployment web", "Deployment/web"},
		{"", "web", "Deployment web", "Deployment/web"},
	} {
		if got := DisplayPath(tt.ns, "web"); got != tt.path {
			t.Errorf("DisplayPath(%q) = %q, want %q", tt.ns, got, tt.path)
		}
		if got := DisplayObject("Deployment", tt.ns, "web"); got != tt.object {
			t.Errorf("DisplayObject(%q) = %q, want %q", tt.ns, got, tt.object)
		}
		if got := DisplayRef("Deployment", tt.ns, "web"); got != tt.ref {
			t.Errorf("DisplayRef(%q) = %q, want %q", tt.ns, got, tt.ref)
		}
	}
}
