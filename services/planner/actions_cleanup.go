package planner

import (
	"fmt"
	"strings"

	"github.com/kaar-dev/kaar/pkg/events"
)

// deleteEvicted deletes the owner's Failed/Evicted pods, at most MaxPods.
func (b *builder) deleteEvicted(_ Strategy) (*candidate, string) {
	pods := b.in.EvictedPods
	if len(pods) == 0 {
		return nil, "no evicted pod of " + b.in.Owner.ref() + " is left"
	}
	maxPods := b.in.Cfg.MaxPods
	if len(pods) > maxPods {
		return nil, fmt.Sprintf("refused: %s has %d evicted pods, more than remediation.max_pods (%d); delete them by hand: %s",
			b.in.Owner.ref(), len(pods), maxPods, b.kubectl("delete", "pods", "--field-selector=status.phase=Failed", "-l", selectorString(b.in.Owner)))
	}
	names := make([]string, len(pods))
	uids := make([]string, len(pods))
	for i, p := range pods {
		names[i], uids[i] = p.Name, string(p.UID)
	}
	// A delete, not a patch: no guard operation and no generation
	// precondition; each pod's uid is the delete's precondition.
	return b.propose(ownerStep{
		action:        events.ActionDeleteEvictedPods,
		title:         fmt.Sprintf("Delete the %s of %s", plural(len(pods), "evicted pod"), b.in.Owner.ref()),
		risk:          events.RiskLow,
		params:        map[string]string{"pods": strings.Join(names, ","), "uids": strings.Join(uids, ",")},
		kubectl:       b.kubectl(append([]string{"delete", "pod"}, names...)...),
		undo:          "nothing to undo: evicted pods do not run and their controller has replaced them",
		preconditions: []string{"each pod still has its uid (a delete precondition) and is still Failed with reason Evicted"},
		successCheck:  "the evicted pods are gone and " + b.in.Owner.ref() + " has its replicas ready",
	}, fmt.Sprintf("%s; delete the %s (cleanup: the controller already replaced them).", problem(b.in), plural(len(pods), "evicted pod")),
		"eviction is a node problem (memory or disk pressure): the evidence says which; set memory requests near real usage so the pods are not the first evicted"), ""
}

// selectorString renders the owner's selector for kubectl -l.
func selectorString(w *workload) string {
	if w.Selector == nil {
		return ""
	}
	if s, err := metaSelector(w); err == nil {
		return s.String()
	}
	return ""
}
