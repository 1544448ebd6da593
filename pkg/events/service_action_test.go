package events

import (
	"errors"
	"strings"
	"testing"
)

func serviceStep(a ActionType, params map[string]string) Step {
	return Step{Index: 0, Action: a, Title: "fix the service", Risk: RiskMedium, Mutating: true, Params: params,
		Target: ObjectRef{Kind: "Service", Namespace: "shop", Name: "web", APIVersion: "v1"}}
}

func TestServiceActionParams(t *testing.T) {
	sel := func(to, from string) map[string]string { return map[string]string{ParamSelector: to, ParamFrom: from} }
	port := func(p, to, from string) map[string]string {
		return map[string]string{ParamPort: p, ParamTargetPort: to, ParamFrom: from}
	}
	cases := []struct {
		name   string
		step   Step
		field  string // "" for valid
		detail string
	}{
		{"selector ok", serviceStep(ActionSetServiceSelector, sel("app=web,tier=front", "app=wbe,tier=front")), "", ""},
		{"selector with prefix", serviceStep(ActionSetServiceSelector, sel("app.kubernetes.io/name=web", "app.kubernetes.io/name=api")), "", ""},
		{"selector missing", serviceStep(ActionSetServiceSelector, sel("", "app=web")), "params.selector", "required"},
		{"from missing", serviceStep(ActionSetServiceSelector, sel("app=web", "")), "params.from", "required"},
		{"selector set-based", serviceStep(ActionSetServiceSelector, sel("app!=web", "app=x")), "params.selector", "label name"},
		{"selector in", serviceStep(ActionSetServiceSelector, sel("app in (web)", "app=x")), "params.selector", "not key=value"},
		{"selector repeated key", serviceStep(ActionSetServiceSelector, sel("app=web,app=api", "app=x")), "params.selector", "repeated"},
		{"selector hostile value", serviceStep(ActionSetServiceSelector, sel("app=web\x1b[2J", "app=x")), "params.selector", "label value"},
		{"selector value too long", serviceStep(ActionSetServiceSelector, sel("app="+strings.Repeat("a", 64), "app=x")), "params.selector", "label value"},
		{"selector on a deployment", func() Step {
			s := serviceStep(ActionSetServiceSelector, sel("app=web", "app=x"))
			s.Target.Kind = "Deployment"
			return s
		}(), "target.kind", "Service"},
		{"port ok numbers", serviceStep(ActionSetServiceTargetPort, port("80", "8080", "9090")), "", ""},
		{"port ok names", serviceStep(ActionSetServiceTargetPort, port("80", "http", "htpp")), "", ""},
		{"port missing", serviceStep(ActionSetServiceTargetPort, port("", "8080", "80")), "params.port", "port number"},
		{"port zero", serviceStep(ActionSetServiceTargetPort, port("0", "8080", "80")), "params.port", "1 to 65535"},
		{"port padded", serviceStep(ActionSetServiceTargetPort, port("080", "8080", "80")), "params.port", "port number"},
		{"target too high", serviceStep(ActionSetServiceTargetPort, port("80", "70000", "80")), "params.target_port", "1 to 65535"},
		{"target name upper case", serviceStep(ActionSetServiceTargetPort, port("80", "HTTP", "80")), "params.target_port", "port name"},
		{"target name too long", serviceStep(ActionSetServiceTargetPort, port("80", "a-very-long-port-name", "80")), "params.target_port", "at most 15"},
		{"target name no letter", serviceStep(ActionSetServiceTargetPort, port("80", "-", "80")), "params.target_port", "port name"},
		{"from missing", serviceStep(ActionSetServiceTargetPort, port("80", "8080", "")), "params.from", "port name"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.step.Validate()
			if c.field == "" {
				if err != nil {
					t.Fatalf("Validate() = %v", err)
				}
				return
			}
			var ve *ValidationError
			if !errors.As(err, &ve) || ve.Field != c.field || !strings.Contains(err.Error(), c.detail) {
				t.Fatalf("Validate() = %v, want field %s saying %q", err, c.field, c.detail)
			}
		})
	}
}

func TestServiceActionsAreMutatingCatalogueActions(t *testing.T) {
	for _, a := range []ActionType{ActionSetServiceSelector, ActionSetServiceTargetPort} {
		if err := a.Validate(); err != nil || !a.Mutating() || len(a.RequiredParams()) == 0 {
			t.Errorf("%s: Validate %v, Mutating %t, RequiredParams %v", a, err, a.Mutating(), a.RequiredParams())
		}
	}
}

// ParseSelector and ValidateTargetPort read params from the bus: they
// never panic, and what they accept is what a Service may carry.
func FuzzServiceParams(f *testing.F) {
	for _, s := range []string{"app=web", "app.kubernetes.io/name=web,tier=", "a=b,a=c", "app!=web", "=x", "http", "8080", "0", "HTTP", "a--b", "x/y/z=1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if m, err := ParseSelector(s); err == nil {
			if len(m) == 0 {
				t.Fatalf("%q accepted as an empty selector", s)
			}
			for k, v := range m {
				if strings.ContainsAny(k+v, ",= \x00\n!") {
					t.Fatalf("%q accepted with key %q value %q", s, k, v)
				}
			}
		}
		if err := ValidateTargetPort(s); err == nil && (s == "" || len(s) > 15 || strings.ContainsAny(s, " \x00\n/=,")) {
			t.Fatalf("targetPort %q accepted", s)
		}
	})
}
