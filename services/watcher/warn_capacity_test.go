package watcher

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes/fake"
)

func rl(kv ...string) corev1.ResourceList {
	out := corev1.ResourceList{}
	for i := 0; i < len(kv); i += 2 {
		out[corev1.ResourceName(kv[i])] = resource.MustParse(kv[i+1])
	}
	return out
}

func quota(name string, hard, used corev1.ResourceList) *corev1.ResourceQuota {
	return &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop"},
		Status: corev1.ResourceQuotaStatus{Hard: hard, Used: used}}
}

// validIncident checks that a warning's evidence is what events accepts.
func validEvidence(t *testing.T, iss ControllerIssue) {
	t.Helper()
	if iss.Warning == nil {
		t.Fatalf("%s without evidence", iss.Type)
	}
	if err := iss.Warning.Validate(); err != nil {
		t.Fatalf("%s evidence invalid: %v", iss.Type, err)
	}
}

func TestClassifyQuota(t *testing.T) {
	for name, tc := range map[string]struct {
		q          *corev1.ResourceQuota
		threshold  int
		reason     string
		msg        []string
		names      []string // measurements, in order
		notInMsg   []string
		wantNoWarn bool
	}{
		"95% of requests.memory": {
			q: quota("compute", rl("requests.memory", "1Gi", "pods", "10"), rl("requests.memory", "973Mi", "pods", "1")), threshold: 90,
			reason: "near_limit", names: []string{"requests.memory"},
			msg:      []string{"resourcequota compute is nearly used up: requests.memory 973Mi of 1Gi (95%, 51Mi left)"},
			notInMsg: []string{"pods 1 of 10"},
		},
		"50% is not a warning": {
			q:         quota("compute", rl("requests.memory", "1Gi"), rl("requests.memory", "512Mi")),
			threshold: 90, wantNoWarn: true,
		},
		"every resource over the threshold, fullest first": {
			q: quota("compute", rl("requests.cpu", "2", "pods", "10", "count/configmaps", "20", "limits.memory", "4Gi"),
				rl("requests.cpu", "1900m", "pods", "10", "count/configmaps", "3", "limits.memory", "3.8Gi")), threshold: 90,
			reason: "at_limit", names: []string{"pods", "limits.memory", "requests.cpu"},
			msg: []string{"resourcequota compute is used up: pods 10 of 10 (100%, none left), limits.memory 3.8Gi of 4Gi (95%, 204.8Mi left), requests.cpu 1.9 of 2 (95%, 100m left)"},
		},
		"a zero hard limit forbids, it is not full": {
			q:         quota("no-lb", rl("services.loadbalancers", "0"), rl("services.loadbalancers", "0")),
			threshold: 90, wantNoWarn: true,
		},
		"status not computed yet": {q: quota("new", nil, nil), threshold: 90, wantNoWarn: true},
		"a lower threshold": {
			q:         quota("objects", rl("count/secrets", "10"), rl("count/secrets", "6")),
			threshold: 60, reason: "near_limit", names: []string{"count/secrets"}, msg: []string{"count/secrets 6 of 10 (60%, 4 left)"},
		},
	} {
		t.Run(name, func(t *testing.T) {
			got := ClassifyQuota(tc.q, tc.threshold)
			if tc.wantNoWarn {
				if len(got) != 0 {
					t.Fatalf("got %+v, want none", got)
				}
				return
			}
			if len(got) != 1 || got[0].Type != events.IssueQuotaNearLimit || got[0].Reason != tc.reason {
				t.Fatalf("got %+v, want one QuotaNearLimit %s", got, tc.reason)
			}
			validEvidence(t, got[0])
			for _, m := range tc.msg {
				if !strings.Contains(got[0].Message, m) {
					t.Errorf("message %q lacks %q", got[0].Message, m)
				}
			}
			for _, m := range tc.notInMsg {
				if strings.Contains(got[0].Message, m) {
					t.Errorf("message %q names %q, under the threshold", got[0].Message, m)
				}
			}
			var names []string
			for _, m := range got[0].Warning.Measurements {
				names = append(names, m.Name)
			}
			if strings.Join(names, ",") != strings.Join(tc.names, ",") {
				t.Errorf("measurements %v, want %v", names, tc.names)
			}
		})
	}
	// The numbers of a measurement are in its unit.
	got := ClassifyQuota(quota("c", rl("requests.cpu", "2", "requests.memory", "1Gi"), rl("requests.cpu", "1900m", "requests.memory", "1000Mi")), 90)
	want := []events.Measurement{{Name: "requests.memory", Value: 1000 << 20, Limit: 1 << 30, Unit: events.UnitBytes},
		{Name: "requests.cpu", Value: 1.9, Limit: 2, Unit: events.UnitCores}}
	if len(got) != 1 || len(got[0].Warning.Measurements) != 2 || got[0].Warning.Measurements[0] != want[0] || got[0].Warning.Measurements[1] != want[1] {
		t.Fatalf("measurements = %+v, want %+v", got, want)
	}
}

func TestQuotaUnitAndMetricName(t *testing.T) {
	for in, want := range map[string]string{"requests.cpu": "cores", "cpu": "cores", "limits.memory": "bytes",
		"gold.storageclass.storage.k8s.io/requests.storage": "bytes", "requests.ephemeral-storage": "bytes",
		"hugepages-2Mi": "bytes", "pods": "count", "count/deployments.apps": "count", "requests.nvidia.com/gpu": "count"} {
		if got := quotaUnit(corev1.ResourceName(in)); got != want {
			t.Errorf("quotaUnit(%s) = %s, want %s", in, got, want)
		}
	}
	for in, want := range map[string]string{"requests.memory": "requests.memory", "hugepages-2Mi": "hugepages-2mi",
		"requests.example.com/Fancy Thing": "requests.example.com/fancy_thing"} {
		if got := metricName(in); got != want {
			t.Errorf("metricName(%s) = %s, want %s", in, got, want)
		}
	}
}

func node(name string, alloc corev1.ResourceList) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: corev1.NodeStatus{Allocatable: alloc}}
}

func TestClassifyNodeCapacity(t *testing.T) {
	n1 := node("n1", rl("cpu", "4", "memory", "8Gi", "pods", "110"))
	for name, tc := range map[string]struct {
		req    NodeRequested
		reason string
		msg    string
	}{
		"cpu at 92%": {NodeRequested{CPUMilli: 3700, MemoryBytes: 1 << 30, Pods: 12}, "cpu_requested",
			"node n1: pods request 3.7 of 4 cpu (92%); the next pod requesting more than 300m will not schedule here"},
		"memory first": {NodeRequested{CPUMilli: 3700, MemoryBytes: 7680 << 20, Pods: 12}, "memory_requested",
			"node n1: pods request 7.5Gi of 8Gi memory (93%), pods request 3.7 of 4 cpu (92%); the next pod requesting more than 512Mi of memory will not schedule here; the next pod requesting more than 300m will not schedule here"},
		"cpu all requested": {NodeRequested{CPUMilli: 4200, Pods: 3}, "cpu_requested",
			"node n1: pods request 4.2 of 4 cpu (105%); no pod requesting cpu will schedule here"},
		"pods": {NodeRequested{Pods: 108}, "pods_allocated", "node n1: 108 pods of 110 allocatable (98%); only 2 more pods fit here"},
	} {
		t.Run(name, func(t *testing.T) {
			got := ClassifyNodeCapacity(n1, tc.req, 90)
			if len(got) != 1 || got[0].Type != events.IssueNodeNearlyFull || got[0].Reason != tc.reason || got[0].Message != tc.msg ||
				got[0].PodCount != tc.req.Pods {
				t.Fatalf("got %+v\nwant %s %q", got, tc.reason, tc.msg)
			}
			validEvidence(t, got[0])
			if ms := got[0].Warning.Measurements; len(ms) != 3 || ms[0].Name != tc.reason {
				t.Errorf("measurements %+v: want all three, %s first", ms, tc.reason)
			}
		})
	}
	if got := ClassifyNodeCapacity(n1, NodeRequested{CPUMilli: 2000, MemoryBytes: 4 << 30, Pods: 50}, 90); len(got) != 0 {
		t.Errorf("a node half requested: %+v", got)
	}
	if got := ClassifyNodeCapacity(node("bare", nil), NodeRequested{CPUMilli: 2000, Pods: 50}, 90); len(got) != 0 {
		t.Errorf("a node without allocatable: %+v", got)
	}
}

func TestPodRequests(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	c := func(name, cpu, mem string) corev1.Container {
		return corev1.Container{Name: name, Resources: corev1.ResourceRequirements{Requests: rl("cpu", cpu, "memory", mem)}}
	}
	sidecar := c("proxy", "100m", "64Mi")
	sidecar.RestartPolicy = &always
	for name, tc := range map[string]struct {
		spec     corev1.PodSpec
		cpu, mem int64
	}{
		"containers add up": {corev1.PodSpec{Containers: []corev1.Container{c("a", "250m", "128Mi"), c("b", "500m", "256Mi")}}, 750, 384 << 20},
		"a big init container wins": {corev1.PodSpec{InitContainers: []corev1.Container{c("migrate", "2", "64Mi")},
			Containers: []corev1.Container{c("a", "250m", "128Mi")}}, 2000, 128 << 20},
		"sidecars run beside both": {corev1.PodSpec{InitContainers: []corev1.Container{sidecar, c("migrate", "1", "64Mi")},
			Containers: []corev1.Container{c("a", "250m", "128Mi")}}, 1100, 192 << 20},
		"overhead": {corev1.PodSpec{Containers: []corev1.Container{c("a", "250m", "128Mi")}, Overhead: rl("cpu", "50m", "memory", "10Mi")}, 300, 138 << 20},
		"pod-level requests": {corev1.PodSpec{Containers: []corev1.Container{c("a", "250m", "128Mi")},
			Resources: &corev1.ResourceRequirements{Requests: rl("cpu", "1")}}, 1000, 128 << 20},
		"no requests": {corev1.PodSpec{Containers: []corev1.Container{{Name: "a"}}}, 0, 0},
	} {
		t.Run(name, func(t *testing.T) {
			p := &corev1.Pod{Spec: tc.spec}
			// What the cache holds: the trimmed pod keeps the requests.
			trimmed := trimPod(p)
			for _, q := range []*corev1.Pod{p, trimmed} {
				if cpu, mem := podRequests(q); cpu != tc.cpu || mem != tc.mem {
					t.Fatalf("podRequests = %d m, %d B; want %d m, %d B", cpu, mem, tc.cpu, tc.mem)
				}
			}
		})
	}
	// Requests of other resources are not cached.
	p := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "a", Resources: corev1.ResourceRequirements{
		Requests: rl("cpu", "1", "nvidia.com/gpu", "1")}}}}}
	if r := trimPod(p).Spec.Containers[0].Resources; len(r.Requests) != 1 {
		t.Errorf("trimmed requests = %+v, want the cpu request only", r.Requests)
	}
}

func limitRange(name string, def, defReq corev1.ResourceList) *corev1.LimitRange {
	return &corev1.LimitRange{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop"},
		Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{
			{Type: corev1.LimitTypePod, Max: rl("memory", "64Gi")},
			{Type: corev1.LimitTypeContainer, Default: def, DefaultRequest: defReq}}}}
}

func TestClassifyLimitRange(t *testing.T) {
	for name, tc := range map[string]struct {
		lr     *corev1.LimitRange
		quotas []*corev1.ResourceQuota
		msg    []string
		names  []string
	}{
		"default limit above the quota's hard": {
			lr:     limitRange("defaults", rl("memory", "2Gi"), rl("memory", "256Mi")),
			quotas: []*corev1.ResourceQuota{quota("compute", rl("limits.memory", "1Gi"), rl("limits.memory", "0"))},
			msg:    []string{"limitrange defaults: the default memory limit 2Gi is more than resourcequota compute allows in all (limits.memory 1Gi); the next pod whose containers rely on these defaults is refused"},
			names:  []string{"default_limit.memory"},
		},
		"default request above what is left": {
			lr: limitRange("defaults", rl("cpu", "1"), rl("cpu", "500m")),
			quotas: []*corev1.ResourceQuota{quota("compute", rl("requests.cpu", "4", "limits.cpu", "8"),
				rl("requests.cpu", "3800m", "limits.cpu", "4"))},
			msg:   []string{"the default cpu request 500m is more than resourcequota compute has left of requests.cpu (3.8 of 4 used)"},
			names: []string{"default_request.cpu"},
		},
		"defaults that fit": {
			lr:     limitRange("defaults", rl("cpu", "1", "memory", "512Mi"), rl("cpu", "500m", "memory", "256Mi")),
			quotas: []*corev1.ResourceQuota{quota("compute", rl("requests.cpu", "4", "limits.memory", "4Gi"), rl("requests.cpu", "1", "limits.memory", "1Gi"))},
		},
		"no quota": {lr: limitRange("defaults", rl("memory", "2Gi"), nil)},
		"a scoped quota does not count every pod": {
			lr: limitRange("defaults", rl("memory", "2Gi"), nil),
			quotas: []*corev1.ResourceQuota{func() *corev1.ResourceQuota {
				q := quota("batch", rl("limits.memory", "1Gi"), nil)
				q.Spec.Scopes = []corev1.ResourceQuotaScope{corev1.ResourceQuotaScopeTerminating}
				return q
			}()},
		},
	} {
		t.Run(name, func(t *testing.T) {
			got := ClassifyLimitRange(tc.lr, tc.quotas)
			if len(tc.msg) == 0 {
				if len(got) != 0 {
					t.Fatalf("got %+v, want none", got)
				}
				return
			}
			if len(got) != 1 || got[0].Type != events.IssueLimitRangeExceedsQuota || got[0].Reason != "default_exceeds_quota" {
				t.Fatalf("got %+v", got)
			}
			validEvidence(t, got[0])
			for _, m := range tc.msg {
				if !strings.Contains(got[0].Message, m) {
					t.Errorf("message %q\nlacks %q", got[0].Message, m)
				}
			}
			var names []string
			for _, m := range got[0].Warning.Measurements {
				names = append(names, m.Name)
			}
			if strings.Join(names, ",") != strings.Join(tc.names, ",") {
				t.Errorf("measurements %v, want %v", names, tc.names)
			}
		})
	}
}

func TestClassifyCertificate(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	const horizon = 14 * 24 * time.Hour
	cert := func(notAfter time.Time, issuing string) *CertificateSummary {
		c := &CertificateSummary{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"}, SecretName: "web-tls",
			NotAfter: notAfter, RenewalTime: notAfter.Add(-30 * 24 * time.Hour),
			Ready: &CertificateCondition{Status: "True", Reason: "Ready", Message: "Certificate is up to date and has not expired"}}
		if issuing != "" {
			c.Issuing = &CertificateCondition{Status: issuing}
		}
		return c
	}
	got, recheck := ClassifyCertificate(cert(now.Add(5*24*time.Hour+22*time.Hour), ""), now, horizon)
	if len(got) != 1 || got[0].Reason != "expires_soon" || got[0].Type != events.IssueCertificateExpiring ||
		got[0].Message != "certificate web (secret web-tls) expires at 2026-12-12T10:00:00Z, in 5d 22h, and no renewal is under way (renewal was due at 2026-11-12T10:00:00Z)" {
		t.Fatalf("expiring: %+v", got)
	}
	validEvidence(t, got[0])
	if m := got[0].Warning.Measurements[0]; m.Name != "expires_in" || m.Value != (5*24+22)*3600 || m.Limit != horizon.Seconds() {
		t.Errorf("measurement %+v", m)
	}
	if !recheck.Equal(now.Add(5*24*time.Hour + 22*time.Hour)) {
		t.Errorf("recheck %s, want at expiry", recheck)
	}
	// Renewing: no warning.
	if got, _ := ClassifyCertificate(cert(now.Add(5*24*time.Hour), "True"), now, horizon); len(got) != 0 {
		t.Errorf("a renewal under way warned: %+v", got)
	}
	// Far from expiry: none, look again when it enters the horizon.
	got, recheck = ClassifyCertificate(cert(now.Add(60*24*time.Hour), ""), now, horizon)
	if len(got) != 0 || !recheck.Equal(now.Add(46*24*time.Hour)) {
		t.Errorf("60 days left: %+v, recheck %s", got, recheck)
	}
	// Expired, failing to renew.
	c := cert(now.Add(-2*time.Hour), "False")
	c.Ready = &CertificateCondition{Status: "False", Reason: "Expired", Message: "Certificate expired on Sun, 06 Dec 2026 10:00:00 UTC"}
	got, _ = ClassifyCertificate(c, now, horizon)
	if len(got) != 1 || got[0].Reason != "expired" || !strings.Contains(got[0].Message, "expired at 2026-12-06T10:00:00Z, 2h 0m ago") ||
		!strings.Contains(got[0].Message, "Ready False: Expired Certificate expired on") {
		t.Errorf("expired: %+v", got)
	}
	// Not issued yet: nothing to say.
	if got, _ := ClassifyCertificate(cert(time.Time{}, ""), now, horizon); len(got) != 0 {
		t.Errorf("unissued: %+v", got)
	}
}

// The transform keeps what the classifier reads of a Certificate and
// nothing of its spec but the secret's name.
func TestCertTransform(t *testing.T) {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
		"metadata": map[string]any{"name": "web", "namespace": "shop", "uid": "u1", "resourceVersion": "7",
			"annotations": map[string]any{"big": strings.Repeat("x", 4096)}},
		"spec": map[string]any{"secretName": "web-tls", "dnsNames": []any{"shop.example.com"}, "issuerRef": map[string]any{"name": "le"}},
		"status": map[string]any{"notAfter": "2026-12-12T10:00:00Z", "renewalTime": "2026-11-12T10:00:00Z",
			"conditions": []any{
				map[string]any{"type": "Ready", "status": "False", "reason": "Failed", "message": "order failed"},
				map[string]any{"type": "Issuing", "status": "False"},
			}},
	}}
	obj, err := certTransform(u)
	if err != nil {
		t.Fatal(err)
	}
	c, ok := obj.(*CertificateSummary)
	if !ok {
		t.Fatalf("transform returned %T", obj)
	}
	if c.Name != "web" || c.Namespace != "shop" || c.UID != "u1" || c.SecretName != "web-tls" || c.Annotations != nil ||
		!c.NotAfter.Equal(time.Date(2026, 12, 12, 10, 0, 0, 0, time.UTC)) || c.Ready == nil || c.Ready.Message != "order failed" ||
		c.Issuing == nil || c.Issuing.Status != "False" {
		t.Errorf("summary = %+v", c)
	}
	again, _ := certTransform(c)
	if again != obj {
		t.Error("transform is not idempotent")
	}
	if cp, ok := c.DeepCopyObject().(*CertificateSummary); !ok || cp == c || cp.Ready == c.Ready || cp.Name != c.Name {
		t.Errorf("DeepCopyObject = %+v", cp)
	}
}

func TestHPAAtMaxReplicasCarriesReplicas(t *testing.T) {
	since := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	h := &autoscalingv2.HorizontalPodAutoscaler{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{MaxReplicas: 5,
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{Kind: "Deployment", Name: "web"}},
		Status: autoscalingv2.HorizontalPodAutoscalerStatus{CurrentReplicas: 5, DesiredReplicas: 5,
			Conditions: []autoscalingv2.HorizontalPodAutoscalerCondition{{Type: autoscalingv2.ScalingLimited, Status: corev1.ConditionTrue,
				Reason: hpaReasonTooManyReplicas, LastTransitionTime: metav1.NewTime(since)}}}}
	got, _ := ClassifyHPA(h, since.Add(time.Hour), HPAOptions{})
	if len(got) != 1 || got[0].Type != events.IssueHPAAtMaxReplicas {
		t.Fatalf("got %+v", got)
	}
	validEvidence(t, got[0])
	want := events.Measurement{Name: "current_replicas", Value: 5, Limit: 5, Unit: events.UnitCount, WindowSeconds: 3600}
	if ms := got[0].Warning.Measurements; len(ms) != 1 || ms[0] != want {
		t.Errorf("measurements %+v, want %+v", ms, want)
	}
}

// The capacity handlers enqueue what may have changed: a pod bound to a
// node, moved or terminated enqueues its nodes, a status update does not;
// a node whose allocatable changed; a quota that warns, with the
// LimitRanges of its namespace that warn against it.
func TestCapacityHandlersEnqueueWhatMayHaveChanged(t *testing.T) {
	s, err := New(Config{Cluster: "unit", Debounce: time.Millisecond, Warnings: WarningOptions{Enabled: true}},
		Deps{NATS: embeddedBus(t, false), Kube: fake.NewClientset()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.queue.ShutDown)
	if !s.capacity.nodes || s.capacity.quotas == nil || s.capacity.limits == nil {
		t.Fatalf("a cluster-wide watcher with warnings on: node sums %t, quotas %v, limits %v", s.capacity.nodes, s.capacity.quotas, s.capacity.limits)
	}
	drain := func() []string {
		time.Sleep(50 * time.Millisecond) // the debounce (1ms), with room for a loaded machine
		var out []string
		for s.queue.Len() > 0 {
			k, _ := s.queue.Get()
			s.queue.Done(k)
			out = append(out, k.String())
		}
		slices.Sort(out)
		return out
	}
	pod := func(node string, phase corev1.PodPhase) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "shop"}, Spec: corev1.PodSpec{NodeName: node},
			Status: corev1.PodStatus{Phase: phase}}
	}
	n1, n2 := nodeKey("n1").String(), nodeKey("n2").String()
	for name, tc := range map[string]struct {
		old, cur *corev1.Pod
		want     []string
	}{
		"created on a node":                      {nil, pod("n1", corev1.PodPending), []string{n1}},
		"not bound yet":                          {nil, pod("", corev1.PodPending), nil},
		"bound":                                  {pod("", corev1.PodPending), pod("n1", corev1.PodPending), []string{n1}},
		"a status update":                        {pod("n1", corev1.PodPending), pod("n1", corev1.PodRunning), nil},
		"terminated":                             {pod("n1", corev1.PodRunning), pod("n1", corev1.PodSucceeded), []string{n1}},
		"a pod of the same name on another node": {pod("n1", corev1.PodRunning), pod("n2", corev1.PodRunning), []string{n1, n2}},
	} {
		t.Run(name, func(t *testing.T) {
			drain()
			var old any
			if tc.old != nil {
				old = tc.old
			}
			s.podNodeChanged(old, tc.cur)
			if got := drain(); !slices.Equal(got, tc.want) {
				t.Errorf("enqueued %v, want %v", got, tc.want)
			}
		})
	}

	drain()
	a, b := node("n1", rl("cpu", "4")), node("n1", rl("cpu", "4"))
	s.nodeAllocatableChanged(a, b)
	if got := drain(); len(got) != 0 {
		t.Errorf("same allocatable enqueued %v", got)
	}
	s.nodeAllocatableChanged(a, node("n1", rl("cpu", "8")))
	if got := drain(); !slices.Equal(got, []string{n1}) {
		t.Errorf("new allocatable enqueued %v", got)
	}

	lr := limitRange("defaults", rl("memory", "2Gi"), nil)
	if err := s.capacity.limits.GetIndexer().Add(lr); err != nil {
		t.Fatal(err)
	}
	full := quota("compute", rl("limits.memory", "1Gi"), rl("limits.memory", "1000Mi"))
	if err := s.capacity.quotas.GetIndexer().Add(full); err != nil {
		t.Fatal(err)
	}
	s.quotaChanged(nil, full)
	want := []string{ownerKey{Namespace: "shop", Kind: kindLimitRange, Name: "defaults"}.String(),
		ownerKey{Namespace: "shop", Kind: kindQuota, Name: "compute"}.String()}
	if got := drain(); !slices.Equal(got, want) {
		t.Errorf("a quota nearly used up enqueued %v, want %v", got, want)
	}
	idle := quota("idle", rl("pods", "10"), rl("pods", "1"))
	s.quotaChanged(nil, idle)
	if got := drain(); !slices.Equal(got, want[:1]) {
		t.Errorf("a quota far from full enqueued %v, want the LimitRange that warns only", got)
	}
}
