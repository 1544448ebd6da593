package watcher

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
)

// The HPA fixtures: metrics-api-unavailable and
// above-max-metrics-api-unavailable are recorded from the sandbox's real
// kube-controller-manager before it served a metrics API (a cluster
// without metrics-server, which the shared sandbox no longer is); the
// others are those objects with the conditions the controller writes in
// the other cases, in its own words: missing-request (metrics-server up, a
// container without a cpu request), at-max (a computed metric above
// maxReplicas: ScalingLimited TooManyReplicas), scaled-to-zero
// (ScalingDisabled). hpa_e2e_test.go sees these on the sandbox's real
// metrics.
var hpaNow = time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)

func loadHPA(t testing.TB, name string) *autoscalingv2.HorizontalPodAutoscaler {
	return loadJSON[autoscalingv2.HorizontalPodAutoscaler](t, filepath.Join("testdata", "hpas", name+".json"))
}

func TestClassifyHPA(t *testing.T) {
	opts := HPAOptions{Grace: 5 * time.Minute, AtMaxAfter: 10 * time.Minute}
	cases := []struct {
		fixture string
		typ     events.IssueType
		reason  string
		msg     []string
	}{
		{"metrics-api-unavailable", events.IssueHPAMetricsUnavailable, "metrics_api_unavailable",
			[]string{"horizontalpodautoscaler web cannot compute the replica count of deployment/web since 2026-12-06T09:48:09Z (FailedGetResourceMetric)",
				"unable to fetch metrics from resource metrics API", "it keeps 1 replica"}},
		{"above-max-metrics-api-unavailable", events.IssueHPAMetricsUnavailable, "metrics_api_unavailable",
			[]string{"of deployment/req", "it keeps 2 replicas"}},
		{"missing-request", events.IssueHPAMetricsUnavailable, "missing_request",
			[]string{"missing request for cpu in container app of Pod web-746b758dd9-556h5"}},
		{"at-max", events.IssueHPAAtMaxReplicas, "at_max_replicas",
			[]string{"has wanted more than its maxReplicas 3 for deployment/web since 2026-12-06T09:48:24Z (TooManyReplicas)", "deployment/web runs 3 replicas"}},
	}
	covered := map[string]bool{"scaled-to-zero": true}
	for _, c := range cases {
		covered[c.fixture] = true
		t.Run(c.fixture, func(t *testing.T) {
			h := loadHPA(t, c.fixture)
			for _, o := range []*autoscalingv2.HorizontalPodAutoscaler{h, trimHPA(h)} {
				got, _ := ClassifyHPA(o, hpaNow, opts)
				if len(got) != 1 || got[0].Type != c.typ || got[0].Reason != c.reason {
					t.Fatalf("issues = %+v, want one %s/%s", got, c.typ, c.reason)
				}
				for _, m := range c.msg {
					if !strings.Contains(got[0].Message, m) {
						t.Errorf("message %q lacks %q", got[0].Message, m)
					}
				}
				if !hpaFailing(o) {
					t.Error("hpaFailing is false")
				}
			}
			// Within the grace: nothing yet, a look again when it ends.
			early := h.CreationTimestamp.Add(30 * time.Second)
			if got, recheck := ClassifyHPA(h, early, opts); len(got) > 0 || recheck.IsZero() || !recheck.After(early) {
				t.Errorf("within the grace: %+v, recheck %s", got, recheck)
			}
		})
	}
	// The target scaled to zero on purpose: the controller disables
	// scaling, which is no incident.
	if z := loadHPA(t, "scaled-to-zero"); hpaFailing(z) {
		t.Error("scaled to zero is failing")
	} else if got, recheck := ClassifyHPA(z, hpaNow, opts); len(got) > 0 || !recheck.IsZero() {
		t.Errorf("scaled to zero: %+v, %s", got, recheck)
	}
	fixturesInTable(t, filepath.Join("testdata", "hpas"), covered)
}

func TestHPAMetricReason(t *testing.T) {
	for _, c := range []struct{ reason, msg, want string }{
		{"FailedGetResourceMetric", "the HPA was unable to compute the replica count: failed to get cpu utilization: unable to get metrics for resource cpu: no metrics returned from resource metrics API", "metric_unavailable"},
		{"FailedGetExternalMetric", "the HPA was unable to compute the replica count: unable to get external metric ns/queue/nil: unable to fetch metrics from external metrics API: the server could not find the requested resource (get queue.external.metrics.k8s.io)", "metrics_api_unavailable"},
		{"FailedGetPodsMetric", "the HPA was unable to compute the replica count: unable to get metric requests_per_second: unable to fetch metrics from custom metrics API: the server is currently unable to handle the request", "metrics_api_unavailable"},
		// No custom metrics adapter at all (the sandbox): client-go's
		// discovery of custom.metrics.k8s.io says so in its own words.
		{"FailedGetPodsMetric", "the HPA was unable to compute the replica count: unable to get metric requests_per_second: unable to fetch metrics from custom metrics API: no custom metrics API (custom.metrics.k8s.io) registered", "metrics_api_unavailable"},
		{"FailedGetObjectMetric", "the HPA was unable to compute the replica count: unable to get metric hits on Service ns/x: unable to fetch metrics from custom metrics API: no custom metrics API (custom.metrics.k8s.io) registered", "metrics_api_unavailable"},
		{"FailedGetContainerResourceMetric", "the HPA was unable to compute the replica count: failed to get cpu usage: did not receive metrics for targeted pods (pods might be unready)", "metric_unavailable"},
		{"InvalidSelector", "the HPA target's scale is missing a selector", "invalid_target"},
		// Two HPAs on one target (seen on the sandbox): the target is at
		// fault, not a metric.
		{"AmbiguousSelector", "pods by selector app=web are controlled by multiple HPAs: [ns/web ns/web-2]", "invalid_target"},
		{"FailedGetScale", `the HPA controller was unable to get the target's current scale: deployments/scale.apps "gone" not found`, "invalid_target"},
		{"InvalidMetricSourceType", "the HPA was unable to compute the replica count: invalid metric source type", "invalid_metric"},
	} {
		c2 := &autoscalingv2.HorizontalPodAutoscalerCondition{Reason: c.reason, Message: c.msg}
		if got := hpaMetricReason(c2); got != c.want {
			t.Errorf("%s %q: %s, want %s", c.reason, c.msg, got, c.want)
		}
	}
	// A target that is gone: AbleToScale False is the condition named.
	h := loadHPA(t, "metrics-api-unavailable")
	h.Status.Conditions[0].Status, h.Status.Conditions[0].Reason = "False", "FailedGetScale"
	h.Status.Conditions[0].Message = `the HPA controller was unable to get the target's current scale: deployments/scale.apps "web" not found`
	if got, _ := ClassifyHPA(h, hpaNow, HPAOptions{}); len(got) != 1 || got[0].Reason != "invalid_target" || !strings.Contains(got[0].Message, "(FailedGetScale)") {
		t.Errorf("target gone: %+v", got)
	}
}
