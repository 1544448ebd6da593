package watcher

import (
	"cmp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/kaar-dev/kaar/pkg/events/text"
)

// Timing is when incident transitions are announced, after Alertmanager's
// group_wait, group_interval and resolve_timeout.
//
// By default a new incident is announced as detected as soon as its first
// pod is classified as failing (the classifier's own grace periods, such
// as the restart threshold and the pending grace, are what keep blips
// out): detection latency is the time to evaluate one owner, not a wait.
// The pods that join it later, and every other change, are announced as
// changed, at most once per group interval: a 50-replica crash is one
// detected and one changed, never 50 announcements.
type Timing struct {
	// GroupWait holds a new incident that long before it is announced as
	// detected, so that pods of one workload failing within it are one
	// announcement with their full pod count and a blip shorter than it
	// is never announced. Default 0: announced at once.
	GroupWait time.Duration
	// GroupInterval is the shortest time between two announcements of one
	// incident: changes in between are coalesced into one "changed".
	// Default 30s.
	GroupInterval time.Duration
	// ResolveWait is how long an announced incident must be gone before it
	// is announced as resolved, so that a flapping pod is not resolved
	// and detected again. Default 10s.
	ResolveWait time.Duration
}

// record is what the watcher keeps per announced incident in the
// kaar_incidents bucket (key events.IncidentStateKey): the last
// announcement. It survives restarts, so the next observation number is
// known and nothing announced is announced again.
type record struct {
	Observation int64             `json:"observation"`
	Transition  events.Transition `json:"transition"`
	PublishedAt time.Time         `json:"published_at"`
	Incident    events.Incident   `json:"incident"`
}

func (r *record) open() bool { return r != nil && r.Transition != events.TransitionResolved }

// announcement is a transition that is due: publish it, then commit it.
type announcement struct {
	Transition  events.Transition
	Observation int64
	Incident    events.Incident
	At          time.Time
}

// incidentState is the tracker's view of one incident.
type incidentState struct {
	owner     ownerKey
	cur       events.Incident // latest aggregate; LastSeen is the last time it was present
	present   bool
	firstSeen time.Time
	goneSince time.Time
	// seen is the restart count counted per pod, so Count grows by one per
	// pod that enters the incident and per restart of its container.
	seen map[string]int32
	// seed is set for an incident restored from the bucket: its first
	// observation fills seen without counting again.
	seed bool
	last *record // last announcement, nil when never announced
}

// podObs is one pod of an owner with its current issues.
type podObs struct {
	Name   string
	Chain  []events.ObjectRef
	Issues []PodIssue
}

// ctrlObs is one controller of an owner (the owner itself, or a
// ReplicaSet or Job it controls) with its current issues.
type ctrlObs struct {
	// Chain is the controller chain from this controller up to the owner
	// ([ReplicaSet, Deployment], [Job, CronJob], [StatefulSet]).
	Chain  []events.ObjectRef
	Issues []ControllerIssue
}

// tracker groups pod issues into incidents and decides which transitions
// are due. It does no I/O: the service publishes what Observe returns and
// then calls Commit. Observe for one owner must not run concurrently with
// itself (the work queue guarantees it); everything else is safe for
// concurrent use.
type tracker struct {
	cluster   string
	timing    Timing
	protected func(namespace string) bool

	mu        sync.RWMutex
	incidents map[string]*incidentState
	byOwner   map[ownerKey]map[string]*incidentState
	present   map[events.IssueType]int
}

func newTracker(cluster string, timing Timing, protected func(string) bool) *tracker {
	if protected == nil {
		protected = func(string) bool { return false }
	}
	return &tracker{
		cluster: cluster, timing: timing, protected: protected,
		incidents: map[string]*incidentState{},
		byOwner:   map[ownerKey]map[string]*incidentState{},
		present:   map[events.IssueType]int{},
	}
}

// group is the pods of one owner sharing a container and an issue type,
// or the controllers of one owner sharing a container (empty but for
// warnings) and an issue type (a controller's issue types are never a
// pod's).
type group struct {
	container string
	typ       events.IssueType
	pods      []podIssue
	ctrls     []ctrlIssue
	// note ends the message of a RolloutStuck incident: the incidents of
	// the pods it waits for.
	note string
}

type ctrlIssue struct {
	chain []events.ObjectRef
	issue ControllerIssue
}

type podIssue struct {
	pod   string
	chain []events.ObjectRef
	issue PodIssue
}

// Observe is ObserveOwner for an owner whose controllers have no issues.
func (t *tracker) Observe(owner events.ObjectRef, pods []podObs, now time.Time) ([]announcement, time.Time) {
	return t.ObserveOwner(owner, pods, nil, now)
}

// ObserveOwner records the current pods of owner (those without issues
// may be left out) and the issues of its controllers at time now, and
// returns the announcements due now and the next time something may
// become due without any new observation (zero when nothing is pending).
// An owner's incidents come from both: its pods' issues and its
// controllers' (a Deployment can be RolloutStuck because its pods crash).
func (t *tracker) ObserveOwner(owner events.ObjectRef, pods []podObs, ctrls []ctrlObs, now time.Time) ([]announcement, time.Time) {
	groups := groupObs(pods, ctrls)
	key := keyOf(owner)

	t.mu.Lock()
	defer t.mu.Unlock()
	states := t.byOwner[key]
	if states == nil {
		states = map[string]*incidentState{}
	}
	live := make(map[string]bool, len(groups))
	for _, g := range groups {
		id := events.IncidentID(t.cluster, key.Namespace, owner.Kind, owner.Name, g.container, g.typ)
		live[id] = true
		st := states[id]
		if st == nil {
			st = &incidentState{owner: key}
			states[id] = st
			t.incidents[id] = st
		}
		t.update(st, id, owner, g, now)
	}
	for id, st := range states {
		if live[id] {
			continue
		}
		if st.present {
			st.present = false
			st.goneSince = now
			t.present[st.cur.Type]--
		} else if st.goneSince.IsZero() {
			// Restored from the bucket and not seen since the restart.
			st.goneSince = now
		}
	}

	var due []announcement
	var next time.Time
	for id, st := range states {
		a, at := t.decide(st, now)
		if a != nil {
			due = append(due, *a)
		}
		if !at.IsZero() && (next.IsZero() || at.Before(next)) {
			next = at
		}
		if !st.present && st.last == nil {
			// Gone before it was ever announced: forget it.
			delete(states, id)
			delete(t.incidents, id)
		}
	}
	if len(states) == 0 {
		delete(t.byOwner, key)
	} else {
		t.byOwner[key] = states
	}
	slices.SortFunc(due, func(a, b announcement) int { return cmp.Compare(a.Incident.ID, b.Incident.ID) })
	return due, next
}

// update folds a group into an incident's state.
func (t *tracker) update(st *incidentState, id string, owner events.ObjectRef, g group, now time.Time) {
	t.begin(st, g, now)
	if len(g.pods) == 0 {
		t.updateController(st, id, owner, g, now)
		return
	}
	t.updatePods(st, id, owner, g, now)
}

// begin marks the incident present, starting a new episode when it was
// not open.
func (t *tracker) begin(st *incidentState, g group, now time.Time) {
	if !st.present {
		t.present[g.typ]++
		st.present = true
		st.goneSince = time.Time{}
		if !st.last.open() && !st.seed {
			// A new episode (never announced, or resolved before).
			st.firstSeen = now
			st.seen = map[string]int32{}
			st.cur.Count = 0
			st.cur.Reason = ""
		}
	}
}

// updateController folds a group of controller issues into an incident:
// one occurrence per episode, the pods counted by the controllers.
func (t *tracker) updateController(st *incidentState, id string, owner events.ObjectRef, g group, now time.Time) {
	st.seed = false
	rep := g.ctrls[0]
	podCount := 0
	for _, c := range g.ctrls {
		podCount += c.issue.PodCount
	}
	st.cur = events.Incident{
		ID:         id,
		Cluster:    t.cluster,
		Namespace:  keyOf(owner).Namespace,
		Owner:      owner,
		OwnerChain: rep.chain,
		Container:  g.container,
		Type:       g.typ,
		Reason:     rep.issue.Reason,
		Message:    incidentMessage(rep.issue.Message + g.note),
		PodCount:   podCount,
		FirstSeen:  st.firstSeen,
		LastSeen:   now,
		Count:      max(st.cur.Count, 1),
		Severity:   cmp.Or(rep.issue.Severity, g.typ.DefaultSeverity()),
		Protected:  t.protected(owner.Namespace),
		Warning:    rep.issue.Warning,
	}
}

// updatePods folds a group of pods into an incident.
func (t *tracker) updatePods(st *incidentState, id string, owner events.ObjectRef, g group, now time.Time) {
	if st.seen == nil {
		st.seen = map[string]int32{}
	}
	count := st.cur.Count
	inGroup := make(map[string]bool, len(g.pods))
	for _, p := range g.pods {
		inGroup[p.pod] = true
		prev, ok := st.seen[p.pod]
		switch {
		case st.seed:
		case !ok:
			count++
		case p.issue.RestartCount > prev:
			count += int64(p.issue.RestartCount - prev)
		}
		st.seen[p.pod] = p.issue.RestartCount
	}
	for name := range st.seen {
		if !inGroup[name] {
			delete(st.seen, name)
		}
	}
	if st.seed && count < int64(len(g.pods)) {
		count = int64(len(g.pods))
	}
	st.seed = false

	rep := representative(g.pods)
	reason := rep.issue.Reason
	if genericReason(reason) {
		// Keep a specific reason already known for this incident rather
		// than flap to "back-off" between two pull attempts.
		if prev := st.cur.Reason; prev != "" && !genericReason(prev) {
			reason = prev
		} else if st.last.open() && !genericReason(st.last.Incident.Reason) {
			reason = st.last.Incident.Reason
		}
	}
	names := make([]string, 0, min(len(g.pods), events.MaxIncidentPods))
	var restarts int32
	for i, p := range g.pods {
		if i < events.MaxIncidentPods {
			names = append(names, p.pod)
		}
		restarts = max(restarts, p.issue.RestartCount)
	}
	st.cur = events.Incident{
		ID:           id,
		Cluster:      t.cluster,
		Namespace:    owner.Namespace,
		Owner:        owner,
		OwnerChain:   rep.chain,
		Container:    g.container,
		Type:         g.typ,
		Reason:       reason,
		Message:      incidentMessage(rep.issue.Message),
		ExitCode:     rep.issue.ExitCode,
		RestartCount: restarts,
		Pods:         names,
		PodCount:     len(g.pods),
		FirstSeen:    st.firstSeen,
		LastSeen:     now,
		Count:        count,
		Severity:     g.typ.DefaultSeverity(),
		Protected:    t.protected(owner.Namespace),
	}
}

// decide returns the announcement due now for st, or when one may become
// due.
func (t *tracker) decide(st *incidentState, now time.Time) (*announcement, time.Time) {
	obs := int64(1)
	if st.last != nil {
		obs = st.last.Observation + 1
	}
	at := func(tr events.Transition, in events.Incident) *announcement {
		return &announcement{Transition: tr, Observation: obs, Incident: in, At: now}
	}
	switch {
	case st.present && !st.last.open():
		if due := st.firstSeen.Add(t.timing.GroupWait); now.Before(due) {
			return nil, due
		}
		return at(events.TransitionDetected, st.cur), time.Time{}
	case st.present:
		if !changed(st.last.Incident, st.cur) {
			return nil, time.Time{}
		}
		if due := st.last.PublishedAt.Add(t.timing.GroupInterval); now.Before(due) {
			return nil, due
		}
		return at(events.TransitionChanged, st.cur), time.Time{}
	case st.last.open():
		if due := st.goneSince.Add(t.timing.ResolveWait); now.Before(due) {
			return nil, due
		}
		in := st.cur
		in.Pods, in.PodCount = nil, 0
		return at(events.TransitionResolved, in), time.Time{}
	}
	return nil, time.Time{}
}

// changed reports a change worth announcing: the cause class, the pod
// count, the exit code or the severity. Restart counts, messages and
// timestamps alone are not, nor a warning's pod count (the pods on a
// nearly full node, a PDB's pods: its numbers, read when asked, not news).
func changed(a, b events.Incident) bool {
	return a.Reason != b.Reason || a.PodCount != b.PodCount && !b.Type.IsWarning() || a.Severity != b.Severity ||
		!equalPtr(a.ExitCode, b.ExitCode) || a.Protected != b.Protected
}

func equalPtr[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// Commit records that a was published.
func (t *tracker) Commit(a announcement) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.incidents[a.Incident.ID]
	if st == nil {
		return
	}
	st.last = &record{Observation: a.Observation, Transition: a.Transition, PublishedAt: a.At, Incident: a.Incident}
}

// Restore loads announcements kept in the bucket (before any Observe).
// Open ones become incidents that are not present until observed, so an
// owner without failing pods any more resolves them.
func (t *tracker) Restore(recs []record) []ownerKey {
	t.mu.Lock()
	defer t.mu.Unlock()
	var owners []ownerKey
	for i := range recs {
		r := recs[i]
		in := r.Incident
		key := keyOf(in.Owner)
		key.Namespace = in.Namespace
		// Not present until observed; Observe starts the resolve wait of
		// one that is not.
		st := &incidentState{owner: key, cur: in, last: &r, firstSeen: in.FirstSeen, seed: r.open()}
		if r.open() {
			owners = append(owners, key)
		}
		t.incidents[in.ID] = st
		if t.byOwner[key] == nil {
			t.byOwner[key] = map[string]*incidentState{}
		}
		t.byOwner[key][in.ID] = st
	}
	return owners
}

// Expire forgets resolved incidents announced before cutoff and returns
// their ids (their bucket keys can go: their observation numbers are past
// the stream's duplicate window).
func (t *tracker) Expire(cutoff time.Time) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var ids []string
	for id, st := range t.incidents {
		if st.present || st.last.open() || st.last == nil || !st.last.PublishedAt.Before(cutoff) {
			continue
		}
		ids = append(ids, id)
		delete(t.incidents, id)
		if m := t.byOwner[st.owner]; m != nil {
			delete(m, id)
			if len(m) == 0 {
				delete(t.byOwner, st.owner)
			}
		}
	}
	slices.Sort(ids)
	return ids
}

// Snapshot returns copies of the present incidents matching keep.
func (t *tracker) Snapshot(keep func(*events.Incident) bool) []events.Incident {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := make([]events.Incident, 0, 16)
	for _, st := range t.incidents {
		if st.present && (keep == nil || keep(&st.cur)) {
			out = append(out, st.cur)
		}
	}
	return out
}

// Counts returns the number of present incidents per type.
func (t *tracker) Counts() map[events.IssueType]int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := make(map[events.IssueType]int, len(t.present))
	for k, v := range t.present {
		out[k] = v
	}
	return out
}

// Open reports whether owner k has a failure incident that is present
// or announced and not resolved: a new failing pod of k can then only
// change an incident, not be the first news of one. Warnings do not
// count: a failure of an owner with only warnings open is news (most
// workloads carry a warning, such as MissingProbes, and would otherwise
// wait for the debounce).
func (t *tracker) Open(k ownerKey) bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	for _, st := range t.byOwner[k] {
		if st.cur.Type.IsWarning() {
			continue
		}
		if st.present || st.last.open() {
			return true
		}
	}
	return false
}

// OpenOf reports whether owner k has an incident of type typ that is
// present or announced and not resolved (a warning already given, which
// a capacity threshold then holds with slack).
func (t *tracker) OpenOf(k ownerKey, typ events.IssueType) bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	for _, st := range t.byOwner[k] {
		if st.cur.Type == typ && (st.present || st.last.open()) {
			return true
		}
	}
	return false
}

// Has reports whether the tracker holds incidents of owner k.
func (t *tracker) Has(k ownerKey) bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.byOwner[k]) > 0
}

// groupObs groups the issues of an owner's pods by container and type,
// pods sorted by name, and its controllers' issues by type, controllers in
// chain order (the owner's own issue first). A RolloutStuck group notes
// the pod incidents of the ReplicaSet it waits for.
func groupObs(pods []podObs, ctrls []ctrlObs) []group {
	groups := groupPods(pods)
	idx := map[[2]string]int{}
	for _, c := range ctrls {
		for _, iss := range c.Issues {
			k := [2]string{iss.Container, string(iss.Type)}
			i, ok := idx[k]
			if !ok {
				i = len(groups)
				idx[k] = i
				groups = append(groups, group{container: iss.Container, typ: iss.Type})
			}
			groups[i].ctrls = append(groups[i].ctrls, ctrlIssue{chain: c.Chain, issue: iss})
		}
	}
	for i := range groups {
		if len(groups[i].ctrls) > 0 && groups[i].typ == events.IssueRolloutStuck {
			groups[i].note = podIncidentsNote(groups, groups[i].ctrls[0].issue.ReplicaSet)
		}
	}
	return groups
}

// podIncidentsNote names the pod incidents of an owner whose pods belong
// to ReplicaSet rs (any of its pods when rs is unknown): "; see the
// CrashLoopBackOff incident of its pods".
func podIncidentsNote(groups []group, rs string) string {
	var types []string
	for _, g := range groups {
		if len(g.pods) == 0 {
			continue
		}
		if rs == "" || slices.ContainsFunc(g.pods, func(p podIssue) bool {
			return len(p.chain) > 0 && p.chain[0].Kind == "ReplicaSet" && p.chain[0].Name == rs
		}) {
			types = append(types, string(g.typ))
		}
	}
	if len(types) == 0 {
		return ""
	}
	slices.Sort(types)
	types = slices.Compact(types)
	word := "incident"
	if len(types) > 1 {
		word = "incidents"
	}
	return "; see the " + strings.Join(types, " and ") + " " + word + " of its pods"
}

// groupPods groups the issues of an owner's pods by container and type,
// pods sorted by name.
func groupPods(pods []podObs) []group {
	idx := map[[2]string]int{}
	var groups []group
	for _, p := range pods {
		for _, iss := range p.Issues {
			k := [2]string{iss.Container, string(iss.Type)}
			i, ok := idx[k]
			if !ok {
				i = len(groups)
				idx[k] = i
				groups = append(groups, group{container: iss.Container, typ: iss.Type})
			}
			groups[i].pods = append(groups[i].pods, podIssue{pod: p.Name, chain: p.Chain, issue: iss})
		}
	}
	for i := range groups {
		slices.SortFunc(groups[i].pods, func(a, b podIssue) int { return cmp.Compare(a.pod, b.pod) })
	}
	return groups
}

// representative picks the pod whose issue describes the group: one with
// the most common reason (a specific one before a generic one), the first
// by name among those.
func representative(pods []podIssue) podIssue {
	counts := map[string]int{}
	for _, p := range pods {
		counts[p.issue.Reason]++
	}
	best := pods[0]
	score := func(p podIssue) (int, int) {
		g := 1
		if genericReason(p.issue.Reason) {
			g = 0
		}
		return g, counts[p.issue.Reason]
	}
	for _, p := range pods[1:] {
		g1, c1 := score(p)
		g0, c0 := score(best)
		if g1 > g0 || g1 == g0 && c1 > c0 {
			best = p
		}
	}
	return best
}

// incidentMessage is the message an incident carries on the bus: cluster
// text (kubelet and scheduler messages quoting image strings, the
// application's termination message, whose credential lines crashIssue
// withholds) kept as data, but with escape sequences, control characters
// other than line breaks and tabs, and bidirectional overrides removed, so
// that no consumer (a webhook receiver's log, a terminal) meets them raw.
// Each surface still renders it with its own function of pkg/events/text.
// The kubelet's own messages are not redacted: "failed to fetch anonymous
// token: 401 Unauthorized" is the diagnosis, not a credential.
func incidentMessage(m string) string { return text.ForTerminal(m) }
