package planner

import (
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Plans of warnings, made on request only: MemoryNearLimit raises the
// limit before the OOM (the increase_memory step, sized from the
// forecast); every other warning, and MemoryNearLimit at the cap, is
// diagnostic with its evidence in words and the commands a person runs.
func init() { planCases = append(planCases, warningCases...) }

var diag2 = []events.ActionType{events.ActionDiagnostic, events.ActionDiagnostic}

var warningCases = []planCase{
	{name: "warning-memory-near-limit-raise", id: 200, workload: "warning:memory", typ: events.IssueMemoryNearLimit, container: "app",
		expect: expect{actions: []events.ActionType{events.ActionSetMemoryLimit}, risk: events.RiskLow,
			summary: []string{"230Mi of its 256Mi limit, growing 4Mi an hour, projected to reach it at 2026-11-27T07:00:00Z", "raise the 256Mi limit to 392Mi before the OOM"},
			notes:   []string{"sized from the forecast: 230Mi now, growing 4Mi an hour, is 326Mi after 24h; with 20% headroom the container needs 392Mi"},
			fields: []fieldCheck{
				eq("/type", "MemoryNearLimit"), eq("/steps/0/params/memory", "392Mi"), eq("/steps/0/params/memory_request", "196Mi"),
				has("/steps/0/title", "from 256Mi to 392Mi before it is reached (request from 128Mi to 196Mi)"),
				eq("/steps/0/kubectl", "kubectl -n apps set resources deployment/web -c app --limits=memory=392Mi --requests=memory=196Mi"),
				eq("/steps/0/patch/2/path", "/spec/template/spec/containers/0/resources/limits/memory"), eq("/steps/0/patch/2/value", "392Mi"),
				eq("/evidence/0/kind", "resources"),
				has("/evidence/0/lines/1", "memory_working_set: 230Mi of 256Mi (90%) over 6h"),
				has("/evidence/0/lines/2", "forecast: memory_working_set 230Mi now, growing 4Mi an hour (fit over 6h of 72 samples, R² 0.96): reaches 256Mi at 2026-11-27T07:00:00Z (in 6h19m)"),
				eq("/evidence/0/data/crosses_at", "2026-11-27T07:00:00Z"),
			}}},
	{name: "warning-memory-near-limit-steep-capped-by-factor", id: 201, workload: "warning:memory_steep", typ: events.IssueMemoryNearLimit, container: "app",
		expect: expect{actions: []events.ActionType{events.ActionSetMemoryLimit},
			notes:  []string{"more than remediation.memory_factor allows"},
			fields: []fieldCheck{eq("/steps/0/params/memory", "512Mi")}}},
	{name: "warning-memory-near-limit-at-cap-diagnostic", id: 202, workload: "warning:memory_at_cap", typ: events.IssueMemoryNearLimit, container: "app",
		expect: expect{actions: diag2, diagnosticOnly: true,
			notes: []string{"already at remediation.max_memory_limit (4Gi)"},
			fields: []fieldCheck{
				has("/steps/0/title", "grows toward its 4Gi limit"), eq("/steps/0/kubectl", "kubectl -n apps top pod web-7d9c-a --containers"),
				eq("/steps/1/kubectl", "kubectl -n apps set resources deployment/web -c app '--limits=memory=<new limit>'"),
			}}},
	{name: "warning-memory-near-limit-raised-since-diagnostic", id: 203, workload: "warning:memory_raised", typ: events.IssueMemoryNearLimit, container: "app",
		expect: expect{actions: diag2, diagnosticOnly: true,
			notes: []string{"is 512Mi, above the 256Mi the forecast was made against"}}},
	{name: "warning-quota-near-limit-diagnostic", id: 204, workload: "warning:quota", typ: events.IssueQuotaNearLimit,
		expect: expect{actions: diag3, diagnosticOnly: true, risk: events.RiskNone,
			notes: []string{"a policy object (ResourceQuota, LimitRange, PodDisruptionBudget)"},
			fields: []fieldCheck{
				eq("/target/kind", "ResourceQuota"), eq("/target_resource_version", "310"),
				eq("/steps/0/kubectl", "kubectl -n apps describe resourcequota compute"), eq("/steps/0/target/kind", "ResourceQuota"),
				eq("/steps/2/kubectl", "kubectl -n apps edit resourcequota compute"), has("/steps/2/title", "kaar never changes quotas"),
				has("/evidence/0/lines/1", "requests.memory: 3.8Gi of 4Gi (95%)"),
				eq("/evidence/1/kind", "policy"), has("/evidence/1/lines/1", "requests.memory: used 3892Mi of hard 4Gi"),
			}}},
	{name: "warning-node-nearly-full-diagnostic", id: 205, workload: "warning:node", typ: events.IssueNodeNearlyFull,
		expect: expect{actions: append(diag3, events.ActionDiagnostic), diagnosticOnly: true,
			notes: []string{"kaar never acts on nodes"},
			fields: []fieldCheck{
				eq("/namespace", events.ClusterScopeNamespace), eq("/steps/0/kubectl", "kubectl describe node kwok-node-3"),
				eq("/steps/1/kubectl", "kubectl top node kwok-node-3"), has("/evidence/0/lines/1", "cpu_requested: 3.8 cores of 4 cores (95%)"),
			}}},
	{name: "warning-limitrange-exceeds-quota-diagnostic", id: 206, workload: "warning:limitrange", typ: events.IssueLimitRangeExceedsQuota,
		expect: expect{actions: diag3, diagnosticOnly: true,
			fields: []fieldCheck{
				eq("/target/kind", "LimitRange"), eq("/steps/0/kubectl", "kubectl -n apps describe limitrange defaults"),
				has("/evidence/1/lines/0", "Container default limit memory: 2Gi"),
			}}},
	{name: "warning-missing-resources-diagnostic", id: 207, workload: "warning:resources", typ: events.IssueMissingResources, container: "app",
		expect: expect{actions: diag3, diagnosticOnly: true,
			notes: []string{"a value only the application's owner can choose"},
			fields: []fieldCheck{
				eq("/steps/1/kubectl", "kubectl -n apps top pod web-7d9c-a --containers"),
				eq("/steps/2/kubectl", "kubectl -n apps set resources deployment/web -c app '--requests=cpu=<cpu>,memory=<memory>' '--limits=memory=<limit>'"),
			}}},
	{name: "warning-missing-probes-diagnostic", id: 208, workload: "warning:probes", typ: events.IssueMissingProbes, container: "app",
		expect: expect{actions: diag2, diagnosticOnly: true,
			fields: []fieldCheck{
				eq("/steps/0/kubectl", "kubectl -n apps get deployment/web -o yaml"), has("/steps/0/title", "has no readiness probe"),
				has("/steps/1/title", "add a readinessProbe (when it may serve traffic) to container app: an httpGet on the application's health path at port http, or a tcpSocket on port http"),
				eq("/steps/1/kubectl", "kubectl -n apps edit deployment/web"),
			}}},
	{name: "warning-mutable-image-tag-diagnostic", id: 209, workload: "warning:image", typ: events.IssueMutableImageTag, container: "app",
		expect: expect{actions: diag2, diagnosticOnly: true,
			fields: []fieldCheck{
				has("/steps/0/title", "runs image web:latest"),
				eq("/steps/1/kubectl", "kubectl -n apps set image deployment/web app=web@sha256:4f1c0a9e2b7d3c5e6f8a9b0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e"),
			}}},
	{name: "warning-pdb-blocks-drain-diagnostic", id: 210, workload: "warning:pdb", typ: events.IssuePDBBlocksDrain,
		expect: expect{actions: diag3, diagnosticOnly: true,
			fields: []fieldCheck{
				eq("/target/kind", "PodDisruptionBudget"), eq("/target/api_version", "policy/v1"),
				eq("/steps/0/kubectl", "kubectl -n apps describe pdb web"),
				eq("/evidence/1/data/disruptions_allowed", "0"), has("/evidence/1/lines/0", "minAvailable 1, maxUnavailable -"),
			}}},
	{name: "warning-single-node-risk-diagnostic", id: 211, workload: "warning:spread", typ: events.IssueSingleNodeRisk,
		expect: expect{actions: diag2, diagnosticOnly: true,
			fields: []fieldCheck{eq("/steps/0/kubectl", "kubectl -n apps get pods -l app=web -o wide"), has("/steps/1/title", "topologySpreadConstraint on kubernetes.io/hostname")}}},
	{name: "warning-certificate-expiring-diagnostic", id: 212, workload: "warning:certificate", typ: events.IssueCertificateExpiring,
		expect: expect{actions: append(diag3, events.ActionDiagnostic), diagnosticOnly: true,
			notes: []string{"renewing a certificate is cert-manager's job"},
			fields: []fieldCheck{
				eq("/target/kind", "Certificate"), eq("/target/api_version", "cert-manager.io/v1"),
				eq("/steps/0/kubectl", "kubectl -n apps describe certificate web-tls"),
				eq("/steps/1/kubectl", "cmctl status certificate web-tls -n apps"), eq("/steps/3/kubectl", "cmctl renew web-tls -n apps"),
				has("/evidence/0/lines/1", "expires_in: 5 days"),
				has("/evidence/1/lines/2", "condition Ready=False"),
			}}},
	{name: "warning-recurring-restarts-diagnostic", id: 213, workload: "warning:restarts", typ: events.IssueRecurringRestarts, container: "app",
		expect: expect{actions: diag3, diagnosticOnly: true,
			fields: []fieldCheck{eq("/steps/0/kubectl", "kubectl -n apps logs web-7d9c-a -c app --previous"), has("/evidence/0/lines/1", "restarts: 6 over 12h")}}},
	{name: "warning-ready-replicas-dipping-diagnostic", id: 214, workload: "warning:dipping", typ: events.IssueReadyReplicasDipping,
		expect: expect{actions: diag3, diagnosticOnly: true,
			fields: []fieldCheck{eq("/steps/0/kubectl", "kubectl -n apps describe deployment/web")}}},
}

// warningInput is the input of a warning case (workload "warning:<what>"):
// Deployment apps/web with pod web-7d9c-a, or the quota, node,
// LimitRange, PDB or Certificate the warning is reported on, with the
// watcher's evidence.
func warningInput(t *testing.T, cfg Config, what string) planInput {
	t.Helper()
	dep := goldenDeploymentWithoutRequests()
	dep.Spec.Replicas = new(int32(2))
	app := &dep.Spec.Template.Spec.Containers[0]
	mi := func(n float64) float64 { return n * (1 << 20) }
	var in planInput
	workloadWarning := func(typ events.IssueType, reason, msg string, ev *events.WarningEvidence) {
		w, err := workloadOf(dep)
		if err != nil {
			t.Fatal(err)
		}
		pod := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-7d9c-a", Namespace: "apps", UID: "pod-a"},
			Spec: dep.Spec.Template.Spec,
			Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{Name: "app", Image: app.Image, RestartCount: 6, Ready: true,
				ImageID: "docker.io/library/web@sha256:4f1c0a9e2b7d3c5e6f8a9b0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e"}}}}
		inc := noPodIncident(w.Ref, typ, reason, msg)
		inc.Container = "app"
		inc.ID = events.IncidentID(testCluster, "apps", KindDeployment, "web", "app", typ)
		inc.Pods, inc.PodCount, inc.Warning = []string{pod.Name}, 1, ev
		in = planInput{Cfg: cfg, Owner: w, Incident: inc, Pods: []corev1.Pod{pod}, Now: goldenNow}
		in.Pod = &in.Pods[0]
	}
	memory := func(limit, current, slope float64) *events.WarningEvidence {
		return &events.WarningEvidence{
			Measurements: []events.Measurement{{Name: "memory_working_set", Value: current, Limit: limit, Unit: events.UnitBytes, WindowSeconds: 6 * 3600}},
			Forecast: &events.Forecast{Metric: "memory_working_set", Unit: events.UnitBytes, Current: current, Limit: limit, SlopePerHour: slope,
				CrossesAt: time.Date(2026, 11, 27, 7, 0, 0, 0, time.UTC), Confidence: 0.96, WindowSeconds: 6 * 3600, Samples: 72}}
	}
	setMemory := func(limit, request string) {
		app.Resources = corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse(limit)},
			Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse(request)}}
	}
	nonWorkload := func(obj any, typ events.IssueType, reason, msg string, ev *events.WarningEvidence) {
		w, err := workloadOf(obj)
		if err != nil {
			t.Fatal(err)
		}
		inc := noPodIncident(w.Ref, typ, reason, msg)
		inc.Warning = ev
		in = planInput{Cfg: cfg, Owner: w, Incident: inc, Now: goldenNow}
	}
	switch what {
	case "memory", "memory_steep", "memory_raised":
		setMemory("256Mi", "128Mi")
		slope := mi(4)
		if what == "memory_steep" {
			slope = mi(20)
		}
		if what == "memory_raised" {
			setMemory("512Mi", "128Mi")
		}
		workloadWarning(events.IssueMemoryNearLimit, "projected_oom",
			"container app: memory working set 230Mi of its 256Mi limit, growing 4Mi an hour; projected to reach the limit at 2026-11-27T07:00:00Z (R² 0.96)",
			memory(mi(256), mi(230), slope))
	case "memory_at_cap":
		setMemory("4Gi", "2Gi")
		workloadWarning(events.IssueMemoryNearLimit, "projected_oom", "container app: memory working set 3.8Gi of its 4Gi limit, growing",
			memory(mi(4096), mi(3900), mi(30)))
	case "resources":
		workloadWarning(events.IssueMissingResources, "no_memory_limit", "container app has no memory limit", nil)
	case "probes":
		app.Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}
		workloadWarning(events.IssueMissingProbes, "no_readiness_probe", "container app has no readiness probe", nil)
	case "image":
		app.Image = "web:latest"
		workloadWarning(events.IssueMutableImageTag, "latest_tag", "container app runs web:latest, a tag that moves", nil)
	case "spread":
		workloadWarning(events.IssueSingleNodeRisk, "no_spread", "2 replicas with no topology spread or anti-affinity on the hostname", nil)
	case "restarts":
		workloadWarning(events.IssueRecurringRestarts, "restarts_recurring", "container app restarted 6 times in 12h without crash-looping",
			&events.WarningEvidence{Measurements: []events.Measurement{{Name: "restarts", Value: 6, Unit: events.UnitCount, WindowSeconds: 12 * 3600}}})
	case "dipping":
		workloadWarning(events.IssueReadyReplicasDipping, "ready_replicas_dipping", "ready replicas fell below 2 four times in 6h",
			&events.WarningEvidence{Measurements: []events.Measurement{{Name: "ready_dips", Value: 4, Unit: events.UnitCount, WindowSeconds: 6 * 3600}}})
		in.Incident.Container, in.Incident.ID = "", events.IncidentID(testCluster, "apps", KindDeployment, "web", "", events.IssueReadyReplicasDipping)
	case "quota":
		q := &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Name: "compute", Namespace: "apps", UID: "quota-uid", ResourceVersion: "310"},
			Status: corev1.ResourceQuotaStatus{
				Hard: corev1.ResourceList{corev1.ResourceRequestsMemory: resource.MustParse("4Gi"), corev1.ResourceRequestsCPU: resource.MustParse("4")},
				Used: corev1.ResourceList{corev1.ResourceRequestsMemory: resource.MustParse("3892Mi"), corev1.ResourceRequestsCPU: resource.MustParse("1500m")}}}
		nonWorkload(q, events.IssueQuotaNearLimit, "near_limit", "resourcequota compute: requests.memory 3892Mi of 4Gi (95%)",
			&events.WarningEvidence{Measurements: []events.Measurement{{Name: "requests.memory", Value: mi(3892), Limit: mi(4096), Unit: events.UnitBytes}}})
	case "limitrange":
		lr := &corev1.LimitRange{ObjectMeta: metav1.ObjectMeta{Name: "defaults", Namespace: "apps", UID: "lr-uid", ResourceVersion: "311"},
			Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{{Type: corev1.LimitTypeContainer,
				Default: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("2Gi")}}}}}
		nonWorkload(lr, events.IssueLimitRangeExceedsQuota, "default_exceeds_quota", "limitrange defaults: a container's default memory limit 2Gi exceeds what quota compute has left (1Gi of limits.memory)",
			&events.WarningEvidence{Measurements: []events.Measurement{{Name: "limits.memory", Value: mi(2048), Limit: mi(1024), Unit: events.UnitBytes}}})
	case "pdb":
		pdb := &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "apps", UID: "pdb-uid", ResourceVersion: "312", Generation: 1},
			Spec:   policyv1.PodDisruptionBudgetSpec{MinAvailable: new(intstr.FromInt32(1)), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}},
			Status: policyv1.PodDisruptionBudgetStatus{ExpectedPods: 1, CurrentHealthy: 1, DesiredHealthy: 1, DisruptionsAllowed: 0}}
		nonWorkload(pdb, events.IssuePDBBlocksDrain, "zero_disruptions_allowed", "poddisruptionbudget web: minAvailable 1 of 1 pod: no disruption allowed",
			&events.WarningEvidence{Measurements: []events.Measurement{{Name: "disruptions_allowed", Value: 0, Unit: events.UnitCount}}})
	case "certificate":
		c := &certificate{ObjectMeta: metav1.ObjectMeta{Name: "web-tls", Namespace: "apps", UID: "cert-uid", ResourceVersion: "313", Generation: 2}}
		c.Spec.SecretName, c.Spec.IssuerRef.Kind, c.Spec.IssuerRef.Name = "web-tls", "ClusterIssuer", "letsencrypt"
		notAfter := metav1.NewTime(goldenNow.Add(5 * 24 * time.Hour))
		c.Status.NotAfter = &notAfter
		c.Status.Conditions = append(c.Status.Conditions, struct {
			Type    string `json:"type"`
			Status  string `json:"status"`
			Reason  string `json:"reason,omitempty"`
			Message string `json:"message,omitempty"`
		}{"Ready", "False", "Failed", "The certificate request has failed to complete and will be retried"})
		nonWorkload(c, events.IssueCertificateExpiring, "expires_soon", "certificate web-tls expires at 2026-12-02T00:41:00Z and is not being renewed",
			&events.WarningEvidence{Measurements: []events.Measurement{{Name: "expires_in", Value: 5 * 24 * 3600, Unit: events.UnitSeconds}}})
	case "node":
		in = nodeInput(t, cfg, "not_ready")
		n := in.Node.Node
		n.Status.Conditions[0] = corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", LastTransitionTime: nodeSince}
		n.Spec.Taints = nil
		inc := noPodIncident(in.Owner.Ref, events.IssueNodeNearlyFull, "cpu_requested", "node kwok-node-3: cpu requested 3.8 of 4 allocatable (95%)")
		inc.Namespace = events.ClusterScopeNamespace
		inc.ID = events.IncidentID(testCluster, inc.Namespace, KindNode, n.Name, "", events.IssueNodeNearlyFull)
		inc.Warning = &events.WarningEvidence{Measurements: []events.Measurement{{Name: "cpu_requested", Value: 3.8, Limit: 4, Unit: events.UnitCores}}}
		in.Incident = inc
	default:
		t.Fatalf("no warning input %q", what)
	}
	return in
}
