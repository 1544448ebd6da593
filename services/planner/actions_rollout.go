package planner

import (
	"fmt"
	"strconv"

	"github.com/kaar-dev/kaar/pkg/events"
)

// rollback rolls a Deployment back to its last healthy revision.
func (b *builder) rollback(_ Strategy) (*candidate, string) {
	w := b.in.Owner
	if w.Deployment == nil {
		return nil, fmt.Sprintf("rollback is planned for Deployments only, not for %s", w.ref())
	}
	revs, current := rolloutHistory(w.Deployment, b.in.ReplicaSets)
	target, healthy, ok := rollbackTarget(revs, current)
	if !ok {
		return nil, fmt.Sprintf("%s has no revision older than %d in its rollout history", w.ref(), current)
	}
	tmpl := templateOf(target.RS)
	if sameTemplate(tmpl, *w.Template) {
		return nil, fmt.Sprintf("revision %d has the same pod template as the current one", target.Number)
	}
	c := b.containerName()
	img := imageOf(tmpl, c)
	title := fmt.Sprintf("Roll back %s to revision %d", w.ref(), target.Number)
	if img != "" && img != imageOf(*w.Template, c) {
		title += fmt.Sprintf(" (image %s)", img)
	}
	why := fmt.Sprintf("revision %d is the newest older revision with ready replicas (%d ready)", target.Number, target.RS.Status.ReadyReplicas)
	if !healthy {
		why = fmt.Sprintf("no older revision has ready replicas; revision %d is the previous one", target.Number)
	}
	notes := []string{"rollback: " + why}
	if cur := currentRS(revs, current); cur != nil && cur.Status.ReadyReplicas > 0 {
		notes = append(notes, fmt.Sprintf("rollback: %d pods of the current revision %d are ready, so the failure may not come from the rollout", cur.Status.ReadyReplicas, current))
	}
	return b.propose(ownerStep{
		action:  events.ActionRollback,
		title:   title,
		risk:    events.RiskMedium,
		params:  map[string]string{events.ParamRevision: strconv.FormatInt(target.Number, 10)},
		ops:     []patchOp{{Op: "replace", Path: w.TemplatePath, Value: tmpl}},
		undoOps: []patchOp{{Op: "replace", Path: w.TemplatePath, Value: w.Template}},
		undo: fmt.Sprintf("roll forward to revision %d's template again (the undo patch), or: %s", current,
			b.kubectl("rollout", "undo", w.ref(), fmt.Sprintf("--to-revision=%d", current))),
		kubectl:       b.kubectl("rollout", "undo", w.ref(), fmt.Sprintf("--to-revision=%d", target.Number)),
		preconditions: []string{fmt.Sprintf("replicaset/%s (revision %d) still exists", target.RS.Name, target.Number)},
		successCheck:  fmt.Sprintf("%s rolls out (observedGeneration caught up, updated = ready = desired replicas) and none of its pods fails for the verify window", w.ref()),
	}, fmt.Sprintf("%s since revision %d; roll back to revision %d.", problem(b.in), current, target.Number), notes...), ""
}

// lastGoodImage returns the image the container ran with in the last
// healthy (else previous) revision, and that revision.
func (b *builder) lastGoodImage(container string) (string, int64) {
	w := b.in.Owner
	if w.Deployment == nil {
		return "", 0
	}
	revs, current := rolloutHistory(w.Deployment, b.in.ReplicaSets)
	target, _, ok := rollbackTarget(revs, current)
	if !ok {
		return "", 0
	}
	return imageOf(target.RS.Spec.Template, container), target.Number
}

// setImage sets the failing container's image to the "image" parameter or
// to the last image that ran.
func (b *builder) setImage(st Strategy) (*candidate, string) {
	w := b.in.Owner
	if !w.TemplateMutable && !w.BarePod {
		return nil, fmt.Sprintf("the pod template of %s cannot be changed in place", w.ref())
	}
	idx, c, init := w.container(b.in.Incident.Container)
	if c == nil {
		return nil, b.noContainer()
	}
	img, from := st.Params[events.ParamImage], "the strategy's image parameter"
	if img == "" {
		var rev int64
		img, rev = b.lastGoodImage(c.Name)
		from = fmt.Sprintf("the image of revision %d, the last that ran", rev)
	}
	if img == "" {
		return nil, "no image parameter and no older revision to take the last image that ran from"
	}
	if img == c.Image {
		return nil, fmt.Sprintf("container %s already uses %s", c.Name, img)
	}
	path := w.containerPath(idx, init)
	nameTest := patchOp{Op: "test", Path: path + "/name", Value: c.Name}
	o := ownerStep{
		action:        events.ActionSetImage,
		title:         fmt.Sprintf("Set the image of container %s of %s to %s", c.Name, w.ref(), img),
		risk:          events.RiskMedium,
		params:        map[string]string{events.ParamContainer: c.Name, events.ParamImage: img},
		ops:           []patchOp{nameTest, {Op: "replace", Path: path + "/image", Value: img}},
		undo:          fmt.Sprintf("set the image back to %s: %s", c.Image, b.kubectl("set", "image", w.ref(), c.Name+"="+c.Image)),
		kubectl:       b.kubectl("set", "image", w.ref(), c.Name+"="+img),
		preconditions: []string{fmt.Sprintf("container %d of the pod spec is still named %s", idx, c.Name)},
		successCheck:  fmt.Sprintf("the new pods pull %s and run; %s becomes ready", img, w.ref()),
	}
	if undoable(w) {
		o.undoOps = []patchOp{nameTest, {Op: "replace", Path: path + "/image", Value: c.Image}}
	}
	return b.propose(o, fmt.Sprintf("%s; set the image of container %s back to %s.", problem(b.in), c.Name, img),
		"set_image: "+img+" is "+from), ""
}
