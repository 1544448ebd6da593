package planner

import (
	"encoding/json"
	"fmt"
	"strings"
)

// patchOp is one RFC 6902 JSON patch operation.
type patchOp struct {
	Op    string
	Path  string
	Value any
}

// MarshalJSON writes {"op","path","value"}, without value for remove.
func (o patchOp) MarshalJSON() ([]byte, error) {
	if o.Op == "remove" {
		return json.Marshal(struct {
			Op   string `json:"op"`
			Path string `json:"path"`
		}{o.Op, o.Path})
	}
	return json.Marshal(struct {
		Op    string `json:"op"`
		Path  string `json:"path"`
		Value any    `json:"value"`
	}{o.Op, o.Path, o.Value})
}

// pointerEscape escapes one JSON pointer token (RFC 6901).
func pointerEscape(s string) string {
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(s)
}

// guardOp is the first operation of every mutating patch: it tests the
// object's generation (the resourceVersion for an object without one), so
// the patch fails instead of applying to a spec that changed since
// planning. after is how many spec changes the step itself makes: an undo
// patch tests the generation the step leaves behind.
func guardOp(w *workload, after int64) patchOp {
	if w.Generation > 0 {
		return patchOp{Op: "test", Path: "/metadata/generation", Value: w.Generation + after}
	}
	return patchOp{Op: "test", Path: "/metadata/resourceVersion", Value: w.ResourceVersion}
}

// encodePatch marshals operations; they hold only JSON-safe values.
func encodePatch(ops ...patchOp) json.RawMessage {
	b, err := json.Marshal(ops)
	if err != nil {
		panic(fmt.Sprintf("planner: encode patch: %v", err))
	}
	return b
}

// undoable reports whether an undo patch can guard on the generation the
// step leaves: only objects with a generation (a bare pod's
// resourceVersion after the step is unknown).
func undoable(w *workload) bool { return w.Generation > 0 }
