// Package watcher is kaar's detector: the first stage of the pipeline.
//
// It watches pods (and the ReplicaSets and Jobs that owner resolution
// needs) through client-go shared informers whose transform trims every
// object to the fields it reads, and the kubelet's Warning Failed events of
// pods: the cause of an image pull failure (not found, unauthorized,
// registry unavailable, rate limited) is only in them, and is remembered
// per pod once they are gone. A pure classifier ([Classify]) turns a pod
// and its evidence into zero or more issues; the pods of one controlling owner (Pod ->
// ReplicaSet -> Deployment, Pod -> Job -> CronJob, StatefulSet,
// DaemonSet, or the pod itself) that share a container and an issue type
// are one incident, identified by events.IncidentID.
//
// The first failing pod of an owner without an open incident is evaluated
// at once and announced as detected (no group wait by default: detection
// latency is one evaluation, and the classifier's grace periods keep
// blips out); every other pod event is coalesced per owner in a
// rate-limited work queue, so a 50-replica crash is one detected and one
// changed, not 50 announcements. Incidents follow Alertmanager's rule
// otherwise: re-announced as changed only when the cause class, pod count,
// exit code or severity changes (at most once per group interval), and
// announced as resolved once gone for the resolve wait. An optional group
// wait holds new incidents to announce their full pod count at once.
// Transitions go to the ISSUES stream (kaar.<cluster>.issue.<ns>.<type>)
// with Nats-Msg-Id events.IncidentMsgID; the last announcement of every
// incident is kept in the kaar_incidents bucket, so a restarted watcher
// neither repeats itself nor misses a resolution that happened while it
// was down.
//
// The watcher also answers kaar.<cluster>.svc.watcher.analyze (a nats
// micro service) from memory, never with a LIST against the API server.
//
// The watcher only reads the cluster (get, list, watch on pods,
// replicasets and jobs; list and watch on events, optional: without them
// image pull causes are less precise).
package watcher
