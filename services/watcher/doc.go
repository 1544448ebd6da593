// Package watcher is kaar's detector: the first stage of the pipeline.
//
// It watches pods, the workload controllers (ReplicaSets, Deployments,
// StatefulSets, DaemonSets, Jobs) through client-go shared informers whose
// transform trims every object to the fields it reads, the kubelet's
// Warning Failed events of pods (the cause of an image pull failure: not
// found, unauthorized, registry unavailable, rate limited, is only in
// them, and is remembered per pod once they are gone) and the controllers'
// Warning FailedCreate events.
//
// What it detects, each an incident on the top owner (Pod -> ReplicaSet
// -> Deployment, Pod -> Job -> CronJob, StatefulSet, DaemonSet, or the pod
// itself):
//   - from pods ([Classify], a pure function of a pod and its evidence):
//     CrashLoopBackOff, ImagePullBackOff, OOMKilled, Pending
//     (unschedulable), Evicted, CreateContainerConfigError,
//     InitContainerFailing, NotReady, StuckTerminating; the pods of one
//     owner that share a container and an issue type are one incident;
//   - from the controllers, when no pod may show it ([ClassifyReplicaSet],
//     [ClassifyDeployment], [ClassifyStatefulSet], [ClassifyDaemonSet],
//     [ClassifyJob], [ClassifyJobRuns]): FailedCreate (the controller
//     cannot create its pods: a ResourceQuota exceeded or requiring limits,
//     a missing ServiceAccount, Pod Security admission, an admission
//     webhook that denies or cannot be reached, a LimitRange; from a
//     ReplicaSet's ReplicaFailure condition or the FailedCreate events of
//     the others), RolloutStuck (a Deployment past its progress deadline,
//     naming its revision and its pods' own incident; a StatefulSet or
//     DaemonSet rollout that has not advanced for [RolloutStallAfter],
//     [ClassifyStatefulSetRollout], [ClassifyDaemonSetRollout]) and
//     JobFailed (the latest finished run of a Job, or of a CronJob's Jobs,
//     failed: backoff limit, active deadline, pod failure policy);
//   - from CronJobs ([ClassifyCronJob]): CronJobNotScheduling, a run its
//     schedule called for that has not started (a previous run still
//     active under concurrencyPolicy Forbid, a missed starting deadline,
//     or a controller that does not start it); never a suspended one;
//   - from Ingresses, IngressClasses and the cached Services
//     ([ClassifyIngress]), on the Ingress: IngressUnavailable (a backend
//     Service or service port that does not exist, an ingressClassName
//     naming no IngressClass, or no class and no default one);
//   - from PersistentVolumeClaims, StorageClasses and their events
//     ([ClassifyClaim]): PVCPending (a claim that cannot be bound: its
//     class does not exist, no class and no default, provisioning failed
//     or not done, no volume for a class without provisioner, lost), on
//     the owner of the pods that wait for it (replacing their Pending) or
//     on the claim; and from the kubelet's FailedMount events (in
//     [Classify]): FailedMount, a volume whose ConfigMap, Secret or claim
//     does not exist;
//   - from Services, their EndpointSlices and the cached pods
//     ([ClassifyService]), on the Service: ServiceUnavailable (its
//     selector matches no pod, its targetPort no port of its pods, or none
//     of its pods is ready, after [ServiceGrace]); never an ExternalName
//     Service, one without selector, or one whose workloads are scaled to
//     zero.
//
// An owner's evaluation combines its pods' issues and its controllers',
// so both kinds share the tracker, the timing and the state below; an
// incident is identified by events.IncidentID.
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
// replicasets, deployments, statefulsets, daemonsets, jobs, services and
// endpointslices; list and
// watch on events, optional: without them image pull causes are less
// precise, and StatefulSets', DaemonSets' and Jobs' FailedCreate is not
// seen; ingresses, ingressclasses and cronjobs, optional too: without
// them those failures are not detected, and a CronJob's failed runs are
// still seen from its Jobs; horizontalpodautoscalers and, for a watcher of
// the whole cluster, nodes, optional too; with warnings on,
// poddisruptionbudgets and limitranges, optional too: without them
// PDBBlocksDrain and MissingResources are off; get and list on pods of
// metrics.k8s.io, optional too: without them MemoryNearLimit is off, and
// the trends' history is kept in the kaar_usage bucket). Node incidents are
// cluster-scoped: their namespace is events.ClusterScopeNamespace.
package watcher
