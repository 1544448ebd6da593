package planner

import (
	"cmp"
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/kaar-dev/kaar/pkg/events/scheduling"
	"github.com/kaar-dev/kaar/pkg/events/text"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
)

// Storage: a claim that cannot be bound (PVCPending), a volume the
// kubelet cannot mount (FailedMount), and the volume causes of a Pending
// pod (a missing claim, a bound volume on nodes the pod cannot use). The
// plans are diagnostic by design: the fixes are a StorageClass, a
// PersistentVolume, a ConfigMap or Secret, or a claim created with other
// immutable fields, which are cluster objects, data or a person's choice,
// and the executor's catalogue has no step that creates or recreates them.

// KindPersistentVolumeClaim is the owner kind of a claim no pod uses.
const KindPersistentVolumeClaim = "PersistentVolumeClaim"

// Reasons of PVCPending and FailedMount, as the watcher classifies them.
const (
	storageClassMissing   = "storage_class_missing"
	storageNoClass        = "no_storage_class"
	storageProvisionFail  = "provisioning_failed"
	storageWaitProvision  = "waiting_for_provisioner"
	storageNoMatchingPV   = "no_matching_volume"
	storageClaimLost      = "claim_lost"
	mountMissingConfigMap = "missing_configmap"
	mountMissingSecret    = "missing_secret"
	mountMissingPVC       = "missing_pvc"
)

// annotationDefaultStorageClass marks the default StorageClass.
const annotationDefaultStorageClass = "storageclass.kubernetes.io/is-default-class"

// storageRead is what the planner read about the volumes of an incident.
type storageRead struct {
	// Claims are the claims the incident's pods (or its owner, a claim)
	// use, by name.
	Claims []claimRead
	// Classes are the cluster's StorageClasses, by name.
	Classes []storagev1.StorageClass
	// Mount is the kubelet's FailedMount message and what it names
	// (FailedMount only).
	Mount *mountRead
	// Errs say what could not be read: evidence too.
	Errs []string
}

// claimRead is one claim and what it is bound to.
type claimRead struct {
	Name string
	// Where is where the pod template names it ("volume data", "the
	// volumeClaimTemplate data"), "" for the incident's own claim.
	Where string
	// Claim is nil when it does not exist.
	Claim *corev1.PersistentVolumeClaim
	// Volume is the PersistentVolume it is bound to, nil for none.
	Volume *corev1.PersistentVolume
	// Events are the claim's events, newest first.
	Events []corev1.Event
}

// mountRead is a FailedMount message taken apart.
type mountRead struct {
	Message, Volume, Kind, Name string
}

var (
	mountVolumeRE  = regexp.MustCompile(`for volume "([^"]+)"`)
	mountMissingRE = regexp.MustCompile(`(?i)\b(configmap|secret|persistentvolumeclaims?) "([^"]+)" not found`)
)

// needsStorage says whether an incident's plan reads storage: claims and
// mounts, and Pending pods that wait for a volume.
func needsStorage(in planInput) bool {
	switch in.Incident.Type {
	case events.IssuePVCPending, events.IssueFailedMount:
		return true
	case events.IssuePending:
		return len(templateClaims(in)) > 0 || strings.Contains(in.Incident.Reason, "pvc") || in.Incident.Reason == "volume_node_affinity"
	}
	return false
}

// templateClaims are the claims the incident's pods use, with where the
// template names them: the failing pod's volumes (a StatefulSet's claims
// are named after the pod), else the template's, else a StatefulSet's
// volumeClaimTemplates for its first replica.
func templateClaims(in planInput) []claimRead {
	var out []claimRead
	seen := map[string]bool{}
	add := func(name, where string) {
		if name != "" && !seen[name] {
			seen[name] = true
			out = append(out, claimRead{Name: name, Where: where})
		}
	}
	volumes := func(spec *corev1.PodSpec, pod string) {
		for _, v := range spec.Volumes {
			switch {
			case v.PersistentVolumeClaim != nil:
				add(v.PersistentVolumeClaim.ClaimName, "volume "+v.Name)
			case v.Ephemeral != nil && pod != "":
				add(pod+"-"+v.Name, "ephemeral volume "+v.Name)
			}
		}
	}
	for i := range in.Pods {
		volumes(&in.Pods[i].Spec, in.Pods[i].Name)
	}
	if in.Pod != nil {
		volumes(&in.Pod.Spec, in.Pod.Name)
	}
	if len(out) > 0 {
		return out
	}
	if in.Owner.Spec != nil {
		volumes(in.Owner.Spec, "")
	}
	if sts := in.Owner.statefulSet(); sts != nil {
		for _, t := range sts.Spec.VolumeClaimTemplates {
			add(t.Name+"-"+sts.Name+"-0", "the volumeClaimTemplate "+t.Name)
		}
	}
	return out
}

// storage reads the claims of the incident (or the incident's own claim),
// their volumes and events, the StorageClasses, and the mount failure the
// pod's events report. Read failures are evidence, never an error.
func (r reader) storage(ctx context.Context, in planInput) *storageRead {
	s := &storageRead{}
	ns := in.Incident.Namespace
	claims := templateClaims(in)
	if pvc, ok := in.Owner.Object.(*corev1.PersistentVolumeClaim); ok {
		claims = []claimRead{{Name: pvc.Name, Claim: pvc}}
	}
	for i := range claims {
		if i == 10 {
			break
		}
		c := &claims[i]
		if c.Claim == nil {
			pvc, err := r.kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, c.Name, metav1.GetOptions{})
			switch {
			case apierrors.IsNotFound(err):
			case err != nil:
				s.Errs = append(s.Errs, readErr("persistentvolumeclaim "+c.Name, err))
			default:
				c.Claim = pvc
			}
		}
		if c.Claim != nil && c.Claim.Spec.VolumeName != "" {
			pv, err := r.kube.CoreV1().PersistentVolumes().Get(ctx, c.Claim.Spec.VolumeName, metav1.GetOptions{})
			if err != nil && !apierrors.IsNotFound(err) {
				s.Errs = append(s.Errs, readErr("persistentvolume "+c.Claim.Spec.VolumeName, err))
			} else if err == nil {
				c.Volume = pv
			}
		}
		if c.Claim != nil {
			evs, err := r.events(ctx, ns, []corev1.ObjectReference{{Kind: KindPersistentVolumeClaim, Name: c.Name}})
			if err != nil {
				s.Errs = append(s.Errs, readErr("events of persistentvolumeclaim "+c.Name, err))
			}
			c.Events = sortEvents(evs)
		}
		s.Claims = append(s.Claims, *c)
	}
	if in.Incident.Type != events.IssueFailedMount || in.Incident.Reason == mountMissingPVC {
		l, err := r.kube.StorageV1().StorageClasses().List(ctx, metav1.ListOptions{Limit: listLimit})
		if err != nil {
			s.Errs = append(s.Errs, readErr("storageclasses", err))
		} else {
			s.Classes = l.Items
			slices.SortFunc(s.Classes, func(a, b storagev1.StorageClass) int { return cmp.Compare(a.Name, b.Name) })
		}
	}
	if in.Incident.Type == events.IssueFailedMount {
		s.Mount = parseMount(in)
	}
	return s
}

// parseMount takes apart the kubelet's FailedMount message: the
// incident's, else the newest FailedMount event's.
func parseMount(in planInput) *mountRead {
	msg := ""
	for _, e := range sortEvents(in.Events) {
		if e.Reason == "FailedMount" && mountMissingRE.MatchString(e.Message) {
			msg = e.Message
			break
		}
	}
	if msg == "" {
		msg = in.Incident.Message
	}
	m := &mountRead{Message: msg}
	if sm := mountVolumeRE.FindStringSubmatch(msg); sm != nil {
		m.Volume = sm[1]
	}
	if sm := mountMissingRE.FindStringSubmatch(msg); sm != nil {
		m.Kind, m.Name = strings.TrimSuffix(strings.ToLower(sm[1]), "s"), sm[2]
	}
	return m
}

// statefulSet is the owner as a StatefulSet, nil for another kind.
func (w *workload) statefulSet() *appsv1.StatefulSet {
	sts, _ := w.Object.(*appsv1.StatefulSet)
	return sts
}

// defaultClassName is the default StorageClass, "" for none.
func (s *storageRead) defaultClassName() string {
	for _, c := range s.Classes {
		if c.Annotations[annotationDefaultStorageClass] == "true" {
			return c.Name
		}
	}
	return ""
}

func (s *storageRead) class(name string) *storagev1.StorageClass {
	for i := range s.Classes {
		if s.Classes[i].Name == name {
			return &s.Classes[i]
		}
	}
	return nil
}

// classNames lists the classes for a step: "standard (default), local".
func (s *storageRead) classNames() string {
	var out []string
	for _, c := range s.Classes {
		n := c.Name
		if c.Annotations[annotationDefaultStorageClass] == "true" {
			n += " (default)"
		}
		out = append(out, n)
	}
	return orNone(out)
}

// failing is the first claim that is not bound (the incident's claim),
// else the first claim.
func (s *storageRead) failing() *claimRead {
	for i := range s.Claims {
		if c := s.Claims[i].Claim; c != nil && c.Status.Phase != corev1.ClaimBound {
			return &s.Claims[i]
		}
	}
	if len(s.Claims) > 0 {
		return &s.Claims[0]
	}
	return nil
}

func claimClass(pvc *corev1.PersistentVolumeClaim) string {
	if pvc == nil || pvc.Spec.StorageClassName == nil {
		return ""
	}
	return *pvc.Spec.StorageClassName
}

// warning is the newest Warning event of a claim (the provisioner's
// message), "" for none.
func (c *claimRead) warning() string {
	for _, e := range c.Events {
		if e.Type == corev1.EventTypeWarning {
			return e.Reason + ": " + e.Message
		}
	}
	return ""
}

// claimWhere says where the owner's template names a claim: " (volume
// data of deployment/db)".
func (b *builder) claimWhere(c *claimRead) string {
	if c.Where == "" {
		return ""
	}
	return fmt.Sprintf(" (%s of %s)", c.Where, b.in.Owner.ref())
}

// pvcPendingSteps say why a claim is not bound and the ways out; kaar
// changes nothing.
func pvcPendingSteps(in planInput, b *builder, step stepFunc) []events.Step {
	s := in.Storage
	if s == nil {
		s = &storageRead{}
	}
	c := s.failing()
	if c == nil {
		return []events.Step{b.onOwner(step("A claim of "+in.Owner.ref()+" is not bound: the incident names it", "get", "pvc"))}
	}
	name, class := c.Name, claimClass(c.Claim)
	onClaim := func(st events.Step) events.Step {
		st.Target = events.ObjectRef{Kind: KindPersistentVolumeClaim, APIVersion: "v1", Namespace: in.Incident.Namespace, Name: name}
		if c.Claim != nil {
			st.Target.UID = string(c.Claim.UID)
		}
		return st
	}
	cstep := func(title string, args ...string) events.Step { return clusterWide(step(title), args...) }
	describe := onClaim(step(fmt.Sprintf("Read claim %s: its phase, class and the provisioner's events", name), "describe", "pvc", name))
	recreate := fmt.Sprintf("A claim's storageClassName cannot be changed: delete claim %s and create it again with the right class%s", name, b.claimWhere(c))
	if b.in.Owner.statefulSet() != nil {
		recreate = fmt.Sprintf("A claim's storageClassName cannot be changed, nor a StatefulSet's volumeClaimTemplates: fix the template (delete the StatefulSet with --cascade=orphan and create it again), then delete claim %s so that the controller creates it from the fixed template", name)
	}
	var out []events.Step
	switch in.Incident.Reason {
	case storageClassMissing:
		out = append(out, onClaim(cstep(fmt.Sprintf("Claim %s%s asks for StorageClass %s, which does not exist; the cluster's classes: %s", name, b.claimWhere(c), quote(class), s.classNames()),
			"get", "storageclass")))
		out = append(out, onClaim(step(fmt.Sprintf("Either create StorageClass %s (a cluster change for its owner), or use an existing class. %s", quote(class), recreate), "get", "pvc", name, "-o", "yaml")))
	case storageNoClass:
		what := "names no StorageClass and the cluster has no default one"
		if c.Claim != nil && c.Claim.Spec.StorageClassName != nil {
			what = `asks for a volume without a class (storageClassName: "")`
		}
		out = append(out, onClaim(cstep(fmt.Sprintf("Claim %s%s %s: it waits for a PersistentVolume created by hand; the cluster's classes: %s", name, b.claimWhere(c), what, s.classNames()),
			"get", "storageclass")))
		out = append(out, onClaim(cstep(fmt.Sprintf("Create a PersistentVolume that matches it (its size, access modes, no class), or give it a class: mark one StorageClass default (the PV controller then assigns it to claims without a class) or %s",
			strings.ToLower(recreate[:1])+recreate[1:]), "get", "pv")))
	case storageProvisionFail, storageWaitProvision:
		prov := "its provisioner"
		if sc := s.class(class); sc != nil {
			prov = "provisioner " + quote(sc.Provisioner)
		}
		what := "failed: " + quote(orNone(nonEmpty(c.warning())))
		if in.Incident.Reason == storageWaitProvision {
			what = "has not created its volume: is it installed and running (its CSI driver, its controller's pods)?"
		}
		out = append(out, onClaim(cstep(fmt.Sprintf("StorageClass %s of claim %s uses %s, which %s", quote(class), name, prov, what), "get", "csidrivers")))
		out = append(out, onClaim(cstep(fmt.Sprintf("Fix the provisioner (its logs say why: quota, permissions, zone, parameters of StorageClass %s); the claim binds once it provisions", quote(class)),
			"get", "storageclass", class, "-o", "yaml")))
	case storageNoMatchingPV:
		out = append(out, onClaim(cstep(fmt.Sprintf("StorageClass %s has no provisioner (kubernetes.io/no-provisioner): claim %s waits for a PersistentVolume of that class created by hand, on a node the pod can use", quote(class), name),
			"get", "pv", "-o", "custom-columns=NAME:.metadata.name,CLASS:.spec.storageClassName,CAPACITY:.spec.capacity.storage,STATUS:.status.phase,CLAIM:.spec.claimRef.name")))
	case storageClaimLost:
		pv := "its PersistentVolume"
		if c.Claim != nil && c.Claim.Spec.VolumeName != "" {
			pv = "PersistentVolume " + c.Claim.Spec.VolumeName
		}
		out = append(out, onClaim(cstep(fmt.Sprintf("Claim %s lost %s (deleted): its data is gone unless the volume can be restored from a backup or snapshot and bound again", name, pv), "get", "pv")))
	default:
		out = append(out, onClaim(step(fmt.Sprintf("Claim %s is not bound: its events say why", name), "describe", "pvc", name)))
		return out
	}
	return append(out, describe)
}

// clusterWide renders a step's command without a namespace: StorageClasses,
// PersistentVolumes and CSIDrivers are cluster-scoped.
func clusterWide(st events.Step, args ...string) events.Step {
	st.Kubectl = text.ShellQuote(append([]string{"kubectl"}, args...)...)
	return st
}

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

// failedMountSteps name the missing ConfigMap, Secret or claim and where
// the pod template mounts it.
func failedMountSteps(in planInput, b *builder, step stepFunc, describe []string) []events.Step {
	m := parseMount(in)
	if in.Storage != nil && in.Storage.Mount != nil {
		m = in.Storage.Mount
	}
	w := in.Owner
	if m.Name == "" {
		return []events.Step{step(fmt.Sprintf("The kubelet cannot mount a volume of %s: %s", w.ref(), quote(orNone(nonEmpty(m.Message)))), describe...)}
	}
	where := volumeRefs(w, m.Kind, m.Name)
	vol := quote(orUnknown(m.Volume))
	switch m.Kind {
	case "persistentvolumeclaim":
		return []events.Step{
			step(fmt.Sprintf("Claim %s, which volume %s of %s needs, does not exist in namespace %s%s", quote(m.Name), vol, w.ref(), in.Incident.Namespace, where), "get", "pvc", m.Name),
			b.ownerStep(step(fmt.Sprintf("Create claim %s (with a StorageClass that can provision it), or fix the claim name in the pod template of %s", quote(m.Name), w.ref()), "edit", w.ref())),
		}
	default:
		return []events.Step{
			step(fmt.Sprintf("%s %s, which volume %s of %s needs, does not exist in namespace %s%s: the containers are not created until it does",
				kindName(m.Kind), quote(m.Name), vol, w.ref(), in.Incident.Namespace, where), "get", m.Kind, m.Name),
			b.ownerStep(step(fmt.Sprintf("Create %s %s, or point volume %s of %s at an existing one (optional: true only if the application runs without it); the pods start once it is mountable",
				kindName(m.Kind), quote(m.Name), vol, w.ref()), "edit", w.ref())),
			step("Read the kubelet's mount errors", describe...),
		}
	}
}

// kindName spells a kind the kubelet writes in lower case.
func kindName(kind string) string {
	return cmp.Or(map[string]string{"configmap": "ConfigMap", "secret": "Secret", "persistentvolumeclaim": "PersistentVolumeClaim"}[kind], kind)
}

// volumeRefs lists the volumes of the pod template that name a
// ConfigMap, Secret or claim: " (volume cfg, projected volume all)".
func volumeRefs(w *workload, kind, name string) string {
	if w.Spec == nil {
		return ""
	}
	var refs []string
	for _, v := range w.Spec.Volumes {
		switch {
		case kind == "configmap" && v.ConfigMap != nil && v.ConfigMap.Name == name,
			kind == "secret" && v.Secret != nil && v.Secret.SecretName == name,
			kind == "persistentvolumeclaim" && v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == name:
			refs = append(refs, "volume "+v.Name)
		case v.Projected != nil:
			for _, src := range v.Projected.Sources {
				if kind == "configmap" && src.ConfigMap != nil && src.ConfigMap.Name == name || kind == "secret" && src.Secret != nil && src.Secret.Name == name {
					refs = append(refs, "projected volume "+v.Name)
					break
				}
			}
		}
	}
	if len(refs) == 0 {
		return ""
	}
	return " (the pod template's " + strings.Join(refs, ", ") + ")"
}

// volumeAffinityStep explains a bound volume whose node affinity the
// nodes do not match: each volume's terms, and which nodes match them.
func (b *builder) volumeAffinityStep(r scheduling.Report, c scheduling.Cause, step stepFunc) events.Step {
	ref := b.in.Owner.ref()
	cstep := func(title string, args ...string) events.Step { return clusterWide(step(title), args...) }
	var parts []string
	if s := b.in.Storage; s != nil {
		for _, cl := range s.Claims {
			pv := cl.Volume
			if pv == nil || pv.Spec.NodeAffinity == nil || pv.Spec.NodeAffinity.Required == nil {
				continue
			}
			var matching []string
			for _, n := range b.in.Nodes {
				if nodeMatches(&n, pv.Spec.NodeAffinity.Required) {
					matching = append(matching, n.Name)
				}
			}
			parts = append(parts, fmt.Sprintf("PersistentVolume %s of claim %s may only be used on nodes where %s; of the cluster's %s, %s",
				pv.Name, cl.Name, quote(nodeSelectorString(pv.Spec.NodeAffinity.Required)), plural(len(b.in.Nodes), "node"), matchingNodes(matching)))
		}
	}
	if len(parts) == 0 {
		return cstep(capitalize(fmt.Sprintf("%s outside the node affinity of the PersistentVolumes bound to the claims of %s (a zonal or local volume): run the pods where the volumes are, or provision with volumeBindingMode WaitForFirstConsumer",
			ofNodes(c, r, "is", "are"), ref)), "get", "pv")
	}
	return cstep(capitalize(fmt.Sprintf("%s outside the volumes' node affinity: %s. The pods of %s can only run where their volumes are: bring that node (or zone) back or add one there, or move the data to a volume the other nodes can use (kaar does not move data)",
		ofNodes(c, r, "is", "are"), strings.Join(parts, "; "), ref)), "get", "pv", "-o", "custom-columns=NAME:.metadata.name,CLAIM:.spec.claimRef.name,NODE_AFFINITY:.spec.nodeAffinity.required.nodeSelectorTerms")
}

func matchingNodes(names []string) string {
	switch len(names) {
	case 0:
		return "none matches"
	case 1:
		return "only " + names[0] + " matches (it refuses the pod for another reason)"
	}
	return strings.Join(names, ", ") + " match (they refuse the pod for other reasons)"
}

// nodeMatches evaluates a volume's required node affinity on a node
// (matchExpressions on labels, matchFields on metadata.name; the terms
// are ORed).
func nodeMatches(n *corev1.Node, sel *corev1.NodeSelector) bool {
	for _, t := range sel.NodeSelectorTerms {
		if termMatches(n, t) {
			return true
		}
	}
	return false
}

func termMatches(n *corev1.Node, t corev1.NodeSelectorTerm) bool {
	if len(t.MatchExpressions) == 0 && len(t.MatchFields) == 0 {
		return false
	}
	check := func(reqs []corev1.NodeSelectorRequirement, set labels.Set) bool {
		for _, e := range reqs {
			op := map[corev1.NodeSelectorOperator]selection.Operator{corev1.NodeSelectorOpIn: selection.In, corev1.NodeSelectorOpNotIn: selection.NotIn,
				corev1.NodeSelectorOpExists: selection.Exists, corev1.NodeSelectorOpDoesNotExist: selection.DoesNotExist,
				corev1.NodeSelectorOpGt: selection.GreaterThan, corev1.NodeSelectorOpLt: selection.LessThan}[e.Operator]
			req, err := labels.NewRequirement(e.Key, op, e.Values)
			if err != nil || !req.Matches(set) {
				return false
			}
		}
		return true
	}
	return check(t.MatchExpressions, n.Labels) && check(t.MatchFields, labels.Set{"metadata.name": n.Name})
}

// nodeSelectorString spells a node selector: "kubernetes.io/hostname in
// (node-7) or topology.kubernetes.io/zone in (a)".
func nodeSelectorString(sel *corev1.NodeSelector) string {
	var terms []string
	for _, t := range sel.NodeSelectorTerms {
		var reqs []string
		for _, e := range append(slices.Clone(t.MatchExpressions), t.MatchFields...) {
			r := e.Key + " " + strings.ToLower(string(e.Operator))
			if len(e.Values) > 0 {
				r += " (" + strings.Join(e.Values, ", ") + ")"
			}
			reqs = append(reqs, r)
		}
		terms = append(terms, strings.Join(reqs, " and "))
	}
	return strings.Join(terms, " or ")
}

// storageEvidence quotes the claims with their class, phase, volume and
// events, the StorageClasses, and the mount failure.
func storageEvidence(in planInput) events.Evidence {
	s := in.Storage
	var lines []string
	data := map[string]string{"claims": strconv.Itoa(len(s.Claims)), "storage_classes": strconv.Itoa(len(s.Classes))}
	if d := s.defaultClassName(); d != "" {
		data["default_storage_class"] = d
	}
	if m := s.Mount; m != nil {
		lines = append(lines, quote("kubelet: "+m.Message))
		if m.Name != "" {
			data["missing_kind"], data["missing_name"], data["volume"] = m.Kind, m.Name, m.Volume
			lines = append(lines, quote(fmt.Sprintf("%s %s, needed by volume %s%s: does not exist", kindName(m.Kind), m.Name, orUnknown(m.Volume), volumeRefs(in.Owner, m.Kind, m.Name))))
		}
	}
	for _, c := range s.Claims {
		lines = append(lines, claimLines(c)...)
	}
	if in.Incident.Type != events.IssueFailedMount || len(s.Classes) > 0 {
		var classes []string
		for _, c := range s.Classes {
			mode := "Immediate"
			if c.VolumeBindingMode != nil {
				mode = string(*c.VolumeBindingMode)
			}
			d := ""
			if c.Annotations[annotationDefaultStorageClass] == "true" {
				d = " (default)"
			}
			classes = append(classes, fmt.Sprintf("%s%s: %s, %s", c.Name, d, c.Provisioner, mode))
		}
		lines = append(lines, quote("storageclasses: "+orNone(classes)))
	}
	for _, e := range s.Errs {
		lines = append(lines, quote(e))
	}
	title := "What the pods' volumes need"
	if c := s.failing(); c != nil && in.Incident.Type != events.IssueFailedMount {
		title = fmt.Sprintf("Claim %s and the cluster's StorageClasses", c.Name)
	}
	return events.Evidence{Kind: events.EvidenceStorage, Title: title,
		Source: "persistentvolumeclaims, their persistentvolumes and events, storageclasses", Lines: lines, Data: data}
}

// claimLines quote a claim: its phase, class, size and volume, the
// volume's node affinity, its newest events.
func claimLines(c claimRead) []string {
	var lines []string
	where := ""
	if c.Where != "" {
		where = " (" + c.Where + ")"
	}
	if c.Claim == nil {
		lines = append(lines, quote(fmt.Sprintf("persistentvolumeclaim/%s%s: does not exist", c.Name, where)))
		return lines
	}
	class := claimClass(c.Claim)
	if c.Claim.Spec.StorageClassName == nil {
		class = "(none)"
	} else if class == "" {
		class = `""`
	}
	size := ""
	if q, ok := c.Claim.Spec.Resources.Requests[corev1.ResourceStorage]; ok {
		size = ", " + q.String()
	}
	line := fmt.Sprintf("persistentvolumeclaim/%s%s: %s, class %s%s", c.Name, where, cmp.Or(string(c.Claim.Status.Phase), "Pending"), class, size)
	if c.Claim.Spec.VolumeName != "" {
		line += ", volume " + c.Claim.Spec.VolumeName
	}
	lines = append(lines, quote(line))
	if pv := c.Volume; pv != nil && pv.Spec.NodeAffinity != nil && pv.Spec.NodeAffinity.Required != nil {
		lines = append(lines, quote(fmt.Sprintf("persistentvolume/%s node affinity: %s", pv.Name, nodeSelectorString(pv.Spec.NodeAffinity.Required))))
	}
	for i, e := range c.Events {
		if i == 3 {
			break
		}
		lines = append(lines, quote(fmt.Sprintf("event %s %s: %s", e.Type, e.Reason, e.Message)))
	}
	return lines
}
