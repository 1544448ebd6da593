package executor

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"

	"github.com/kaar-dev/kaar/pkg/events"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The Service actions of the catalogue (set_service_selector,
// set_service_target_port). A Service has no generation, so its patch is
// guarded by the resourceVersion the plan was made at, and it must test
// the field it replaces before replacing it: the executor re-derives
// both from the patch itself, as for every other action, and checks the
// patch against the step's params (what the approver read). The undo
// patch cannot know the resourceVersion the step leaves: its guard is a
// test of the value the step wrote, so it never overwrites a later
// change of the field.

const (
	selectorPath = "/spec/selector"
)

// servicePortPath matches /spec/ports/<i>/targetPort and /spec/ports/<i>/port.
var servicePortPath = regexp.MustCompile(`^/spec/ports/(0|[1-9][0-9]{0,2})/(targetPort|port)$`)

func isServiceAction(a events.ActionType) bool {
	return a == events.ActionSetServiceSelector || a == events.ActionSetServiceTargetPort
}

// checkServiceStep checks a Service step: on the plan's target, a
// Service; a JSON patch guarded by the resourceVersion that tests the
// field and replaces it with the params' value; an undo patch that puts
// back the params' "from" only while the field holds what the step wrote.
func checkServiceStep(p events.Plan, target, ref events.ObjectRef, st events.Step) error {
	if err := sameObject(ref, target); err != nil {
		return err
	}
	if target.Kind != kindService {
		return fmt.Errorf("action %s is not planned for a %s (only %s)", st.Action, target.Kind, kindService)
	}
	if err := st.Validate(); err != nil {
		return err
	}
	if st.PatchType != events.PatchJSON {
		return fmt.Errorf("patch_type %q: only JSON patches are executed (a merge or strategic patch cannot be guarded)", st.PatchType)
	}
	if len(st.Patch) == 0 || len(st.UndoPatch) == 0 {
		return errors.New("patch and undo_patch: required: a Service step is applied and reverted only by its planned patches")
	}
	w, err := newServiceWrite(st)
	if err != nil {
		return err
	}
	fwd, err := parseOps(st.Patch)
	if err != nil {
		return fmt.Errorf("patch: %w", err)
	}
	var rv string
	if g := fwd[0]; g.Op != "test" || g.Path != resourceVersionPath || json.Unmarshal(g.Value, &rv) != nil || rv != p.TargetResourceVersion {
		return fmt.Errorf("patch: first operation must be {\"op\":\"test\",\"path\":%q,\"value\":%q} (target_resource_version), not %s %s %s",
			resourceVersionPath, p.TargetResourceVersion, g.Op, g.Path, g.Value)
	}
	if err := w.check(fwd[1:], w.from, w.to); err != nil {
		return fmt.Errorf("patch: %w", err)
	}
	undo, err := parseOps(st.UndoPatch)
	if err != nil {
		return fmt.Errorf("undo_patch: %w", err)
	}
	if g := undo[0]; g.Op != "test" || g.Path != w.path || !sameJSON(g.Value, w.to) {
		return fmt.Errorf("undo_patch: first operation must test %s = %s (what the step writes), not %s %s %s", w.path, w.to, g.Op, g.Path, g.Value)
	}
	if err := w.check(undo, w.to, w.from); err != nil {
		return fmt.Errorf("undo_patch: %w", err)
	}
	return nil
}

// serviceWrite is the one field a Service step replaces, from what to
// what, as its params say.
type serviceWrite struct {
	action   events.ActionType
	path     string          // /spec/selector or /spec/ports/<i>/targetPort
	portPath string          // /spec/ports/<i>/port, for a targetPort
	port     json.RawMessage // the port number the step's port must have
	from, to json.RawMessage
}

func newServiceWrite(st events.Step) (serviceWrite, error) {
	w := serviceWrite{action: st.Action}
	switch st.Action {
	case events.ActionSetServiceSelector:
		from, err := events.ParseSelector(st.Params[events.ParamFrom])
		if err != nil {
			return w, fmt.Errorf("params.from: %w", err)
		}
		to, err := events.ParseSelector(st.Params[events.ParamSelector])
		if err != nil {
			return w, fmt.Errorf("params.selector: %w", err)
		}
		// Only values change: a key added, removed or renamed would make
		// the Service select pods the rule did not look at.
		if !slices.Equal(slices.Sorted(maps.Keys(from)), slices.Sorted(maps.Keys(to))) {
			return w, fmt.Errorf("params.selector %q has other keys than params.from %q: a selector fix changes values only", st.Params[events.ParamSelector], st.Params[events.ParamFrom])
		}
		if maps.Equal(from, to) {
			return w, errors.New("params.selector equals params.from: nothing to change")
		}
		w.path, w.from, w.to = selectorPath, mustJSON(from), mustJSON(to)
	case events.ActionSetServiceTargetPort:
		w.port = json.RawMessage(st.Params[events.ParamPort]) // validated: a port number
		w.from, w.to = portJSON(st.Params[events.ParamFrom]), portJSON(st.Params[events.ParamTargetPort])
		if sameJSON(w.from, w.to) {
			return w, errors.New("params.target_port equals params.from: nothing to change")
		}
	}
	return w, nil
}

// check checks the operations after the guard: exactly one writing
// operation, a replace of the step's field with want, preceded by a test
// of that field with have (and, for a targetPort, of its port's number);
// other tests only read and are allowed.
func (w *serviceWrite) check(ops []patchOp, have, want json.RawMessage) error {
	var tested, portTested, replaced bool
	for i, op := range ops {
		if op.Op == "test" {
			if w.action == events.ActionSetServiceTargetPort && w.path == "" {
				if m := servicePortPath.FindStringSubmatch(op.Path); m != nil {
					w.path, w.portPath = "/spec/ports/"+m[1]+"/targetPort", "/spec/ports/"+m[1]+"/port"
				}
			}
			switch {
			case op.Path == w.path && sameJSON(op.Value, have):
				tested = true
			case op.Path == w.portPath && sameJSON(op.Value, w.port):
				portTested = true
			}
			continue
		}
		if replaced || op.Op != "replace" || op.Path != w.path || w.path == "" {
			return fmt.Errorf("operation %d (%s %s): %s replaces %s only, once", i, op.Op, op.Path, w.action, w.allowed())
		}
		if !sameJSON(op.Value, want) {
			return fmt.Errorf("operation %d (%s %s): value %s is not the params' %s", i, op.Op, op.Path, op.Value, want)
		}
		if !tested || (w.portPath != "" && !portTested) {
			return fmt.Errorf("operation %d (%s %s): not preceded by a test of %s = %s%s", i, op.Op, op.Path, w.path, have, w.portTest())
		}
		replaced = true
	}
	if !replaced {
		return fmt.Errorf("no replace of %s", w.allowed())
	}
	return nil
}

func (w *serviceWrite) allowed() string {
	if w.action == events.ActionSetServiceSelector {
		return selectorPath
	}
	if w.path != "" {
		return w.path
	}
	return "/spec/ports/<i>/targetPort"
}

func (w *serviceWrite) portTest() string {
	if w.portPath == "" {
		return ""
	}
	return fmt.Sprintf(" and of %s = %s", w.portPath, w.port)
}

// portJSON is a targetPort param as JSON: a number or a name.
func portJSON(s string) json.RawMessage {
	if n, err := strconv.Atoi(s); err == nil {
		return mustJSON(intstr.FromInt32(int32(n))) // validated: at most 65535
	}
	return mustJSON(intstr.FromString(s))
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("executor: encode %T: %v", v, err))
	}
	return b
}

// sameJSON compares two JSON values canonically (object keys in any
// order; "80" and 80 differ, as for the API server's test operation).
func sameJSON(a, b json.RawMessage) bool {
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return false
	}
	ca, _ := json.Marshal(va)
	cb, _ := json.Marshal(vb)
	return bytes.Equal(ca, cb)
}

// serviceGuard reports whether the first operation of a Service patch is
// one of its guards: the resourceVersion test of a step's patch, or the
// test of a Service field an undo patch starts with.
func serviceGuard(op patchOp) bool {
	return op.Op == "test" && (op.Path == resourceVersionPath || op.Path == selectorPath ||
		servicePortPath.MatchString(op.Path) && op.Path[len(op.Path)-len("targetPort"):] == "targetPort")
}

// resourceVersionTest returns the value of a JSON patch's first test of
// /metadata/resourceVersion.
func resourceVersionTest(patch []byte) (string, bool) {
	ops, err := parseOps(patch)
	if err != nil {
		return "", false
	}
	for _, op := range ops {
		var rv string
		if op.Op == "test" && op.Path == resourceVersionPath && json.Unmarshal(op.Value, &rv) == nil {
			return rv, true
		}
	}
	return "", false
}

// writesAsTests turns the replace and add operations of a JSON patch
// into tests of the values they write: a patch that passes on the
// server finds the object as the original patch left it.
func writesAsTests(patch []byte) ([]byte, error) {
	ops, err := parseOps(patch)
	if err != nil {
		return nil, err
	}
	var tests []map[string]json.RawMessage
	for _, op := range ops {
		if op.Op != "replace" && op.Op != "add" {
			continue
		}
		tests = append(tests, map[string]json.RawMessage{"op": mustJSON("test"), "path": mustJSON(op.Path), "value": op.Value})
	}
	if len(tests) == 0 {
		return nil, errors.New("the patch writes nothing")
	}
	return json.Marshal(tests)
}
