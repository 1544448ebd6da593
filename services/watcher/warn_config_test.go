package watcher

import (
	"encoding/json"
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"
)

func allOn(events.IssueType) bool { return true }

func resources(limits, requests map[corev1.ResourceName]string) corev1.ResourceRequirements {
	list := func(m map[corev1.ResourceName]string) corev1.ResourceList {
		if m == nil {
			return nil
		}
		out := corev1.ResourceList{}
		for k, v := range m {
			out[k] = resource.MustParse(v)
		}
		return out
	}
	return corev1.ResourceRequirements{Limits: list(limits), Requests: list(requests)}
}

var httpProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8080)}}}

// safeContainer has everything the rules look for.
func safeContainer() corev1.Container {
	return corev1.Container{Name: "app", Image: "nginx:1.27", Ports: []corev1.ContainerPort{{ContainerPort: 8080}},
		Resources:      resources(map[corev1.ResourceName]string{"memory": "256Mi"}, map[corev1.ResourceName]string{"memory": "128Mi", "cpu": "100m"}),
		ReadinessProbe: httpProbe, LivenessProbe: httpProbe}
}

type risk struct{ typ, container, reason string }

func risksOf(issues []ControllerIssue) []risk {
	var out []risk
	for _, i := range issues {
		out = append(out, risk{string(i.Type), i.Container, i.Reason})
	}
	return out
}

func TestTemplateRisksPerContainer(t *testing.T) {
	bare := corev1.Container{Name: "app", Image: "nginx", Ports: []corev1.ContainerPort{{ContainerPort: 80}}}
	memDefaults := LimitDefaults{MemoryLimit: ptr(resource.MustParse("512Mi")), MemoryRequest: ptr(resource.MustParse("256Mi")), From: "defaults"}
	for name, tc := range map[string]struct {
		spec     corev1.PodSpec
		defaults LimitDefaults
		want     []risk
	}{
		"a safe container has none": {spec: corev1.PodSpec{Containers: []corev1.Container{safeContainer()}}},
		"a bare container has one of each type": {spec: corev1.PodSpec{Containers: []corev1.Container{bare}},
			want: []risk{{"MissingResources", "app", "no_memory_limit"}, {"MissingProbes", "app", "no_probes"}, {"MutableImageTag", "app", "no_tag"}}},
		"a memory limit alone is its request too (API defaulting)": {spec: corev1.PodSpec{Containers: []corev1.Container{func() corev1.Container {
			c := safeContainer()
			c.Resources = resources(map[corev1.ResourceName]string{"memory": "256Mi", "cpu": "1"}, nil)
			return c
		}()}}},
		"a memory request without a limit": {spec: corev1.PodSpec{Containers: []corev1.Container{func() corev1.Container {
			c := safeContainer()
			c.Resources = resources(nil, map[corev1.ResourceName]string{"memory": "128Mi", "cpu": "100m"})
			return c
		}()}}, want: []risk{{"MissingResources", "app", "no_memory_limit"}}},
		"no cpu request": {spec: corev1.PodSpec{Containers: []corev1.Container{func() corev1.Container {
			c := safeContainer()
			c.Resources = resources(map[corev1.ResourceName]string{"memory": "256Mi"}, nil)
			return c
		}()}}, want: []risk{{"MissingResources", "app", "no_cpu_request"}}},
		"a LimitRange default fills the memory limit and request": {spec: corev1.PodSpec{Containers: []corev1.Container{func() corev1.Container {
			c := safeContainer()
			c.Resources = resources(nil, map[corev1.ResourceName]string{"cpu": "100m"})
			return c
		}()}}, defaults: memDefaults},
		"a LimitRange without a cpu default leaves the cpu request missing": {spec: corev1.PodSpec{Containers: []corev1.Container{func() corev1.Container {
			c := safeContainer()
			c.Resources = corev1.ResourceRequirements{}
			return c
		}()}}, defaults: memDefaults, want: []risk{{"MissingResources", "app", "no_cpu_request"}}},
		"a default limit without a default request": {spec: corev1.PodSpec{Containers: []corev1.Container{func() corev1.Container {
			c := safeContainer()
			c.Resources = resources(nil, map[corev1.ResourceName]string{"cpu": "100m"})
			return c
		}()}}, defaults: LimitDefaults{MemoryLimit: ptr(resource.MustParse("512Mi"))}, want: []risk{{"MissingResources", "app", "no_memory_request"}}},
		"pod-level resources cover the containers": {spec: corev1.PodSpec{
			Resources: ptr(resources(map[corev1.ResourceName]string{"memory": "1Gi", "cpu": "1"}, nil)),
			Containers: []corev1.Container{func() corev1.Container {
				c := safeContainer()
				c.Resources = corev1.ResourceRequirements{}
				return c
			}()}}},
		"init containers: resources and images, not probes": {spec: corev1.PodSpec{
			InitContainers: []corev1.Container{{Name: "migrate", Image: "tools:latest"}},
			Containers:     []corev1.Container{safeContainer()}},
			want: []risk{{"MissingResources", "migrate", "no_memory_limit"}, {"MutableImageTag", "migrate", "latest_tag"}}},
		"a container serving no port needs no readiness probe": {spec: corev1.PodSpec{Containers: []corev1.Container{func() corev1.Container {
			c := safeContainer()
			c.Ports, c.ReadinessProbe = nil, nil
			return c
		}()}}},
		"nor declares a port nor has a probe": {spec: corev1.PodSpec{Containers: []corev1.Container{func() corev1.Container {
			c := safeContainer()
			c.Ports, c.ReadinessProbe, c.LivenessProbe = nil, nil, nil
			return c
		}()}}, want: []risk{{"MissingProbes", "app", "no_liveness_probe"}}},
		"no readiness probe": {spec: corev1.PodSpec{Containers: []corev1.Container{func() corev1.Container {
			c := safeContainer()
			c.ReadinessProbe = nil
			c.StartupProbe = httpProbe // not a readiness probe
			return c
		}()}}, want: []risk{{"MissingProbes", "app", "no_readiness_probe"}}},
		"no liveness probe": {spec: corev1.PodSpec{Containers: []corev1.Container{func() corev1.Container {
			c := safeContainer()
			c.LivenessProbe = nil
			return c
		}()}}, want: []risk{{"MissingProbes", "app", "no_liveness_probe"}}},
		"two containers, two incidents": {spec: corev1.PodSpec{Containers: []corev1.Container{safeContainer(), func() corev1.Container {
			c := safeContainer()
			c.Name, c.Image = "sidecar", "envoy:latest"
			return c
		}()}}, want: []risk{{"MutableImageTag", "sidecar", "latest_tag"}}},
	} {
		t.Run(name, func(t *testing.T) {
			got := risksOf(TemplateRisks("deployment web", &tc.spec, tc.defaults, true, allOn))
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("risks = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestTemplateRisksMessagesSayWhatIsMissingWithTheNumbers(t *testing.T) {
	c := safeContainer()
	c.Resources = resources(nil, map[corev1.ResourceName]string{"memory": "128Mi"})
	c.Image = "nginx:latest"
	c.LivenessProbe, c.ReadinessProbe = nil, nil
	issues := TemplateRisks("deployment web", &corev1.PodSpec{Containers: []corev1.Container{c}}, LimitDefaults{}, true, allOn)
	want := map[events.IssueType]string{
		events.IssueMissingResources: "deployment web: container app has no memory limit (it may use all of its node's memory; its request is 128Mi), nor a cpu request",
		events.IssueMissingProbes:    "deployment web: container app has neither a readiness nor a liveness probe (Services send it traffic as soon as it starts, ready or not, and a process that hangs is never restarted)",
		events.IssueMutableImageTag:  "deployment web: container app runs image nginx:latest, a tag that moves: a restart or a new node may run a different image than the one running now (pin a version or a digest)",
	}
	if len(issues) != len(want) {
		t.Fatalf("issues = %+v", issues)
	}
	for _, iss := range issues {
		if iss.Message != want[iss.Type] {
			t.Errorf("%s message\n got %q\nwant %q", iss.Type, iss.Message, want[iss.Type])
		}
	}
	if w := issues[0].Warning; w == nil || len(w.Measurements) != 1 || w.Measurements[0] != (events.Measurement{Name: "memory_request", Value: 128 << 20, Unit: events.UnitBytes}) {
		t.Errorf("MissingResources evidence = %+v, want the 128Mi request", w)
	}
	bare := corev1.Container{Name: "worker", Image: "registry:5000/worker"}
	issues = TemplateRisks("statefulset db", &corev1.PodSpec{Containers: []corev1.Container{bare}}, LimitDefaults{}, true, allOn)
	for _, iss := range issues {
		switch iss.Type {
		case events.IssueMissingResources:
			if want := "statefulset db: container worker has no memory limit (it may use all of its node's memory), nor a memory request nor a cpu request"; iss.Message != want || iss.Warning != nil {
				t.Errorf("message %q evidence %+v, want %q and no numbers", iss.Message, iss.Warning, want)
			}
		case events.IssueMissingProbes:
			if !strings.Contains(iss.Message, "it declares no port, so no readiness probe is expected") {
				t.Errorf("message %q", iss.Message)
			}
		case events.IssueMutableImageTag:
			if iss.Reason != reasonNoTag || !strings.Contains(iss.Message, "image registry:5000/worker with no tag, which pulls latest") {
				t.Errorf("%s %q", iss.Reason, iss.Message)
			}
		}
	}
}

func TestTemplateRisksOfTypesTurnedOff(t *testing.T) {
	spec := &corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx"}}}
	got := risksOf(TemplateRisks("deployment web", spec, LimitDefaults{}, true, func(t events.IssueType) bool { return t == events.IssueMutableImageTag }))
	if want := []risk{{"MutableImageTag", "app", "no_tag"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("risks = %v, want %v", got, want)
	}
}

func TestImageTag(t *testing.T) {
	for image, want := range map[string]struct {
		tag    string
		pinned bool
	}{
		"nginx":                        {"", false},
		"nginx:latest":                 {"latest", false},
		"nginx:1.27":                   {"1.27", false},
		"registry:5000/team/app":       {"", false},
		"registry:5000/team/app:2.1":   {"2.1", false},
		"nginx@sha256:0123456789abcde": {"", true},
		"nginx:latest@sha256:01234567": {"", true},
	} {
		tag, pinned := imageTag(image)
		if tag != want.tag || pinned != want.pinned {
			t.Errorf("imageTag(%q) = %q, %v; want %q, %v", image, tag, pinned, want.tag, want.pinned)
		}
	}
}

func TestLimitDefaultsOfNamespace(t *testing.T) {
	lr := func(name string, items ...corev1.LimitRangeItem) *corev1.LimitRange {
		return &corev1.LimitRange{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.LimitRangeSpec{Limits: items}}
	}
	d := limitDefaultsOf([]*corev1.LimitRange{
		lr("b-cpu", corev1.LimitRangeItem{Type: corev1.LimitTypeContainer, DefaultRequest: corev1.ResourceList{"cpu": resource.MustParse("250m")}}),
		lr("a-pods", corev1.LimitRangeItem{Type: corev1.LimitTypePod, Default: corev1.ResourceList{"memory": resource.MustParse("9Gi")}}),
		lr("c-memory", corev1.LimitRangeItem{Type: corev1.LimitTypeContainer, Default: corev1.ResourceList{"memory": resource.MustParse("512Mi")},
			DefaultRequest: corev1.ResourceList{"memory": resource.MustParse("256Mi"), "cpu": resource.MustParse("1")}}),
	})
	if d.MemoryLimit.String() != "512Mi" || d.MemoryRequest.String() != "256Mi" || d.CPURequest.String() != "250m" || d.From != "c-memory" {
		t.Errorf("defaults = %v %v %v from %s; want 512Mi, 256Mi, 250m (b-cpu before c-memory) from c-memory", d.MemoryLimit, d.MemoryRequest, d.CPURequest, d.From)
	}
	trimmed := trimLimitRange(lr("x", corev1.LimitRangeItem{Type: corev1.LimitTypeContainer,
		Max:     corev1.ResourceList{"memory": resource.MustParse("2Gi")},
		Default: corev1.ResourceList{"memory": resource.MustParse("1Gi"), "ephemeral-storage": resource.MustParse("1Gi")}},
		corev1.LimitRangeItem{Type: corev1.LimitTypePod, Max: corev1.ResourceList{"cpu": resource.MustParse("4")}}))
	if len(trimmed.Spec.Limits) != 1 || len(trimmed.Spec.Limits[0].Default) != 1 || trimmed.Spec.Limits[0].Max != nil {
		t.Errorf("trimmed LimitRange keeps %+v, want the container memory default only", trimmed.Spec.Limits)
	}
}

func spreadDeployment(replicas int32, mutate func(*corev1.PodTemplateSpec)) *appsv1.Deployment {
	d := testDeployment("web", replicas, nil, safeContainer())
	d.Generation, d.Status.ObservedGeneration = 2, 2
	d.Status.Replicas, d.Status.UpdatedReplicas, d.Status.ReadyReplicas = replicas, replicas, replicas
	if mutate != nil {
		mutate(&d.Spec.Template)
	}
	return d
}

func readyPod(name, node string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.PodSpec{NodeName: node},
		Status: corev1.PodStatus{Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}}
}

func TestSpreadRisk(t *testing.T) {
	own := &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}
	other := &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}}
	spread := func(key string, sel *metav1.LabelSelector) func(*corev1.PodTemplateSpec) {
		return func(t *corev1.PodTemplateSpec) {
			t.Spec.TopologySpreadConstraints = []corev1.TopologySpreadConstraint{{MaxSkew: 1, TopologyKey: key,
				WhenUnsatisfiable: corev1.ScheduleAnyway, LabelSelector: sel}}
		}
	}
	preferredAnti := func(sel *metav1.LabelSelector) func(*corev1.PodTemplateSpec) {
		return func(t *corev1.PodTemplateSpec) {
			t.Spec.Affinity = &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{
				{Weight: 100, PodAffinityTerm: corev1.PodAffinityTerm{TopologyKey: corev1.LabelHostname, LabelSelector: sel}}}}}
		}
	}
	requiredAnti := func(t *corev1.PodTemplateSpec) {
		t.Spec.Affinity = &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{
			{TopologyKey: corev1.LabelHostname, LabelSelector: own}}}}
	}
	apart := []*corev1.Pod{readyPod("a", "n1"), readyPod("b", "n2"), readyPod("c", "n1")}
	together := []*corev1.Pod{readyPod("a", "n1"), readyPod("b", "n1"), readyPod("c", "n1")}
	for name, tc := range map[string]struct {
		d      *appsv1.Deployment
		pods   []*corev1.Pod
		reason string
	}{
		"one replica":                             {d: spreadDeployment(1, nil)},
		"no spread":                               {d: spreadDeployment(3, nil), pods: apart, reason: reasonNoSpread},
		"spread on the hostname":                  {d: spreadDeployment(3, spread(corev1.LabelHostname, own)), pods: apart},
		"spread on zones only":                    {d: spreadDeployment(3, spread(corev1.LabelTopologyZone, own)), pods: apart, reason: reasonNoSpread},
		"spread counting another app's pods":      {d: spreadDeployment(3, spread(corev1.LabelHostname, other)), pods: apart, reason: reasonNoSpread},
		"spread without a selector":               {d: spreadDeployment(3, spread(corev1.LabelHostname, nil)), pods: apart, reason: reasonNoSpread},
		"preferred anti-affinity on the hostname": {d: spreadDeployment(3, preferredAnti(own)), pods: apart},
		"anti-affinity against another app":       {d: spreadDeployment(3, preferredAnti(other)), pods: apart, reason: reasonNoSpread},
		"required anti-affinity":                  {d: spreadDeployment(3, requiredAnti), pods: apart},
		"spread, yet all on one node":             {d: spreadDeployment(3, spread(corev1.LabelHostname, own)), pods: together, reason: reasonAllOnOneNode},
		"all on one node mid-rollout": {d: func() *appsv1.Deployment {
			d := spreadDeployment(3, spread(corev1.LabelHostname, own))
			d.Status.Replicas = 4
			return d
		}(), pods: together},
		"one ready pod": {d: spreadDeployment(3, spread(corev1.LabelHostname, own)), pods: []*corev1.Pod{readyPod("a", "n1"), {Spec: corev1.PodSpec{NodeName: "n1"}}}},
	} {
		t.Run(name, func(t *testing.T) {
			// The rules read the cached template summary.
			d := tc.d.DeepCopy()
			d.Spec.Template = templateSummary(d.Spec.Template)
			got := SpreadRisk(d, tc.pods)
			switch {
			case tc.reason == "" && got != nil:
				t.Errorf("SpreadRisk = %+v, want none", got)
			case tc.reason != "" && (got == nil || got.Reason != tc.reason || got.Type != events.IssueSingleNodeRisk):
				t.Errorf("SpreadRisk = %+v, want %s", got, tc.reason)
			}
		})
	}
	got := SpreadRisk(spreadDeployment(3, nil), together)
	if want := "deployment web: all 3 of its ready pods run on node n1 (of 3 replicas): one node failure or drain takes them all down"; got == nil || got.Message != want {
		t.Fatalf("SpreadRisk = %+v, want message %q", got, want)
	}
	if want := []events.Measurement{{Name: "replicas", Value: 3, Unit: events.UnitCount}, {Name: "ready_pods", Value: 3, Unit: events.UnitCount},
		{Name: "nodes", Value: 1, Unit: events.UnitCount}}; !reflect.DeepEqual(got.Warning.Measurements, want) {
		t.Errorf("measurements = %+v, want %+v", got.Warning.Measurements, want)
	}
	got = SpreadRisk(spreadDeployment(2, nil), apart[:2])
	if want := "deployment web: its 2 replicas may all land on one node: its pod template has no topology spread constraint and no pod anti-affinity on kubernetes.io/hostname (one node failure or drain could take them all down)"; got == nil || got.Message != want {
		t.Fatalf("SpreadRisk = %+v, want message %q", got, want)
	}
}

func testPDB(expected, healthy, allowed int32) *policyv1.PodDisruptionBudget {
	return &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", Generation: 1},
		Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: ptr(intstr.FromInt32(1))},
		Status: policyv1.PodDisruptionBudgetStatus{ObservedGeneration: 1, ExpectedPods: expected, CurrentHealthy: healthy,
			DesiredHealthy: expected - allowed, DisruptionsAllowed: allowed}}
}

func TestClassifyPDB(t *testing.T) {
	for name, tc := range map[string]struct {
		p     *policyv1.PodDisruptionBudget
		warns bool
	}{
		"one healthy pod, minAvailable 1": {testPDB(1, 1, 0), true},
		"one disruption allowed":          {testPDB(2, 2, 1), false},
		"a pod unhealthy":                 {testPDB(2, 1, 0), false},
		"no pods":                         {testPDB(0, 0, 0), false},
		"status of an older spec": {func() *policyv1.PodDisruptionBudget {
			p := testPDB(1, 1, 0)
			p.Generation = 2
			return p
		}(), false},
	} {
		t.Run(name, func(t *testing.T) {
			got := ClassifyPDB(tc.p)
			if (len(got) > 0) != tc.warns {
				t.Fatalf("ClassifyPDB = %+v, want warning %v", got, tc.warns)
			}
		})
	}
	p := testPDB(1, 1, 0)
	p.Spec = policyv1.PodDisruptionBudgetSpec{MaxUnavailable: ptr(intstr.FromInt32(0))}
	got := ClassifyPDB(trimPDB(p))
	want := "poddisruptionbudget web allows 0 disruptions while its pods are all healthy (1 of 1; maxUnavailable 0, so 1 must stay healthy): every node drain that would evict one of them stalls until the budget or the replica count changes"
	if len(got) != 1 || got[0].Reason != reasonZeroDisruptions || got[0].Message != want || got[0].PodCount != 1 {
		t.Fatalf("ClassifyPDB = %+v, want message %q", got, want)
	}
	if ms := got[0].Warning.Measurements; len(ms) != 4 || ms[0].Name != "disruptions_allowed" || ms[0].Value != 0 ||
		ms[1] != (events.Measurement{Name: "current_healthy", Value: 1, Limit: 1, Unit: events.UnitCount}) {
		t.Errorf("measurements = %+v", ms)
	}
}

// The summary the workload caches keep gives the rules what the whole
// template gives them, and summarising a summary changes nothing.
func TestTemplateSummaryKeepsWhatTheRulesRead(t *testing.T) {
	full := testDeployment("web", 3, map[string]string{"a": "b"}, safeContainer())
	full.Spec.Template.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "X", Value: strings.Repeat("x", 100)}}
	full.Spec.Template.Spec.Containers[0].Command = []string{"/bin/server", "--port=8080"}
	full.Spec.Template.Spec.InitContainers = []corev1.Container{{Name: "migrate", Image: "tools:latest",
		Resources: resources(map[corev1.ResourceName]string{"memory": "64Mi", "ephemeral-storage": "1Gi"}, nil)}}
	full.Spec.Template.Spec.Containers = append(full.Spec.Template.Spec.Containers, corev1.Container{Name: "sidecar", Image: "envoy"})
	full.Spec.Template.Spec.Volumes = []corev1.Volume{{Name: "data"}}
	full.Spec.Template.Spec.TopologySpreadConstraints = []corev1.TopologySpreadConstraint{
		{MaxSkew: 1, TopologyKey: corev1.LabelTopologyZone, WhenUnsatisfiable: corev1.DoNotSchedule},
		{MaxSkew: 1, TopologyKey: corev1.LabelHostname, WhenUnsatisfiable: corev1.ScheduleAnyway, LabelSelector: full.Spec.Selector}}
	got, _ := transform(full.DeepCopy())
	d := got.(*appsv1.Deployment)
	again, _ := transform(d.DeepCopy())
	if !reflect.DeepEqual(again, d) {
		t.Errorf("transform is not idempotent on the summary:\n%+v\n%+v", again.(*appsv1.Deployment).Spec.Template, d.Spec.Template)
	}
	s := d.Spec.Template.Spec
	if s.Containers[0].Env != nil || s.Containers[0].Command != nil || s.Volumes != nil || len(s.TopologySpreadConstraints) != 1 ||
		len(s.InitContainers[0].Resources.Limits) != 1 || d.Spec.Template.Annotations != nil || d.Spec.Template.Labels["app"] != "web" {
		t.Errorf("summary keeps more or less than the rules read: %+v", d.Spec.Template)
	}
	for _, defaults := range []LimitDefaults{{}, {MemoryLimit: ptr(resource.MustParse("1Gi"))}} {
		want := TemplateRisks("deployment web", &full.Spec.Template.Spec, defaults, true, allOn)
		if have := TemplateRisks("deployment web", &s, defaults, true, allOn); !reflect.DeepEqual(have, want) || len(want) == 0 {
			t.Errorf("risks of the summary\n%+v\nwant those of the template\n%+v", have, want)
		}
	}
	if (SpreadRisk(d, nil) == nil) != (SpreadRisk(full, nil) == nil) || SpreadRisk(d, nil) != nil {
		t.Errorf("the summary lost the hostname spread")
	}
}

// Configuration risks become valid warning incidents, one per container
// and type, on the workload.
func TestConfigRisksAreValidWarningIncidents(t *testing.T) {
	spec := &corev1.PodSpec{InitContainers: []corev1.Container{{Name: "migrate", Image: "tools"}},
		Containers: []corev1.Container{{Name: "app", Image: "nginx:latest", Ports: []corev1.ContainerPort{{ContainerPort: 80}},
			Resources: resources(nil, map[corev1.ResourceName]string{"memory": "128Mi", "cpu": "250m"})}}}
	issues := TemplateRisks("deployment payments-api", spec, LimitDefaults{}, true, allOn)
	issues = append(issues, *SpreadRisk(spreadDeployment(2, nil), nil))
	pdb := ClassifyPDB(testPDB(1, 1, 0))
	tr := newTracker("prod", Timing{GroupInterval: 30 * time.Second, ResolveWait: 10 * time.Second}, nil)
	due, _ := tr.ObserveOwner(payments, nil, []ctrlObs{{Chain: []events.ObjectRef{payments}, Issues: issues}}, t0)
	pdbRef := events.ObjectRef{Kind: kindPDB, APIVersion: "policy/v1", Namespace: "shop", Name: "web"}
	more, _ := tr.ObserveOwner(pdbRef, nil, []ctrlObs{{Chain: []events.ObjectRef{pdbRef}, Issues: pdb}}, t0)
	due = append(due, more...)
	if len(due) != len(issues)+1 {
		t.Fatalf("announced %d incidents, want %d: %s", len(due), len(issues)+1, fmt.Sprint(risksOf(issues)))
	}
	for _, a := range due {
		in := a.Incident
		if err := in.Validate(); err != nil {
			t.Errorf("%s %s %s: %v", in.Type, in.Container, in.Reason, err)
		}
		if in.Severity != events.SeverityWarning || !in.Type.IsWarning() {
			t.Errorf("%s: severity %s", in.ID, in.Severity)
		}
	}
}

// BenchmarkCachedWorkload measures what one Deployment costs in the
// watcher's cache with the template summary the configuration risks read,
// against its pod template's labels alone (what it kept before): B/object.
func BenchmarkCachedWorkload(b *testing.B) {
	d := testDeployment("web", 3, map[string]string{"prometheus.io/scrape": "true"}, safeContainer())
	c := &d.Spec.Template.Spec.Containers[0]
	c.Env = []corev1.EnvVar{{Name: "DATABASE_URL", Value: "postgres://db:5432/app"}, {Name: "LOG_LEVEL", Value: "info"}}
	c.Command = []string{"/bin/server", "--port=8080"}
	c.VolumeMounts = []corev1.VolumeMount{{Name: "config", MountPath: "/etc/app"}}
	sidecar := safeContainer()
	sidecar.Name, sidecar.Image = "proxy", "envoyproxy/envoy:v1.31.0"
	d.Spec.Template.Spec.Containers = append(d.Spec.Template.Spec.Containers, sidecar)
	d.Spec.Template.Spec.TopologySpreadConstraints = []corev1.TopologySpreadConstraint{
		{MaxSkew: 1, TopologyKey: corev1.LabelHostname, WhenUnsatisfiable: corev1.ScheduleAnyway, LabelSelector: d.Spec.Selector}}
	raw, err := json.Marshal(d)
	if err != nil {
		b.Fatal(err)
	}
	const n = 2000
	for _, mode := range []struct {
		name string
		trim func(corev1.PodTemplateSpec) corev1.PodTemplateSpec
	}{{"labels", templateLabels}, {"summary", templateSummary}} {
		b.Run(mode.name, func(b *testing.B) {
			var per float64
			for b.Loop() {
				kept := make([]any, 0, n)
				before := heapInUse()
				for i := range n {
					var o appsv1.Deployment
					if err := json.Unmarshal(raw, &o); err != nil {
						b.Fatal(err)
					}
					o.Name = fmt.Sprintf("web-%05d", i)
					t := trimDeployment(&o)
					t.Spec.Template = mode.trim(o.Spec.Template)
					kept = append(kept, t)
				}
				per = float64(heapInUse()-before) / n
				runtime.KeepAlive(kept)
			}
			b.ReportMetric(per, "B/deployment")
		})
	}
}

// The handlers evaluate a workload when it may have a risk and its risk
// inputs changed (not on every status update), and a budget when it
// blocks drains; nothing when warnings are off.
func TestRiskHandlersEnqueueWhatMayHaveChanged(t *testing.T) {
	newSvc := func(enabled bool) *Service {
		s, err := New(Config{Cluster: "unit", Debounce: time.Millisecond, Warnings: WarningOptions{Enabled: enabled}},
			Deps{NATS: embeddedBus(t, false), Kube: fake.NewClientset()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.queue.ShutDown)
		return s
	}
	drain := func(s *Service) []ownerKey {
		time.Sleep(20 * time.Millisecond) // the debounce
		var out []ownerKey
		for s.queue.Len() > 0 {
			k, _ := s.queue.Get()
			s.queue.Done(k)
			out = append(out, k)
		}
		return out
	}
	trimmed := func(d *appsv1.Deployment) *appsv1.Deployment {
		o, _ := transform(d)
		return o.(*appsv1.Deployment)
	}
	safe := trimmed(spreadDeployment(1, nil))
	safe.Namespace = "shop"
	risky := safe.DeepCopy()
	risky.Spec.Template.Spec.Containers[0].Image = "nginx:latest"
	web := ownerKey{Namespace: "shop", Kind: "Deployment", Name: "web"}

	s := newSvc(true)
	if s.risks == nil || len(s.warningSources) == 0 {
		t.Fatal("warnings on: no configuration risk source registered")
	}
	s.riskWorkloadChanged("Deployment", nil, safe)
	if got := drain(s); len(got) != 0 {
		t.Errorf("a safe Deployment enqueued %v", got)
	}
	s.riskWorkloadChanged("Deployment", nil, risky)
	if got := drain(s); !reflect.DeepEqual(got, []ownerKey{web}) {
		t.Errorf("a risky Deployment enqueued %v, want %v", got, web)
	}
	status := risky.DeepCopy()
	status.Status.ReadyReplicas, status.Status.AvailableReplicas = 0, 0
	s.riskWorkloadChanged("Deployment", risky, status)
	if got := drain(s); len(got) != 0 {
		t.Errorf("a status update that changes no risk input enqueued %v", got)
	}
	fixed := trimmed(spreadDeployment(1, nil))
	fixed.Namespace = "shop"
	s.tracker.ObserveOwner(events.ObjectRef{Kind: "Deployment", Namespace: "shop", Name: "web"}, nil,
		[]ctrlObs{{Chain: []events.ObjectRef{payments}, Issues: []ControllerIssue{{Type: events.IssueMutableImageTag, Reason: reasonLatestTag, Container: "app"}}}}, t0)
	s.riskWorkloadChanged("Deployment", risky, fixed)
	if got := drain(s); !reflect.DeepEqual(got, []ownerKey{web}) {
		t.Errorf("a fixed template of a Deployment with warnings enqueued %v, want %v", got, web)
	}
	s.pdbChanged(nil, trimPDB(testPDB(1, 1, 0)))
	s.pdbChanged(nil, &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "relaxed", Namespace: "shop"}})
	if got, want := drain(s), []ownerKey{{Namespace: "shop", Kind: kindPDB, Name: "web"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("budgets enqueued %v, want %v", got, want)
	}

	off := newSvc(false)
	if off.risks != nil || len(off.warningSources) != 0 {
		t.Error("warnings off: configuration risks set up")
	}
}
