package watcher

import (
	"strings"
	"testing"
	"unicode/utf8"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestTruncateCutsAtARuneBoundary(t *testing.T) {
	s := strings.Repeat("é", 10) // 2 bytes each
	for n := 0; n <= len(s); n++ {
		got := truncate(s, n)
		if !utf8.ValidString(got) {
			t.Errorf("truncate(%q, %d) = %q, not valid UTF-8", s, n, got)
		}
		if body := strings.TrimSuffix(got, "..."); len(body) > n || !strings.HasPrefix(s, body) {
			t.Errorf("truncate(%q, %d) = %q", s, n, got)
		}
	}
}

// A condition message is whatever wrote the status: the incident carries
// a bounded part of it.
func TestControllerConditionMessagesAreBounded(t *testing.T) {
	long := strings.Repeat("x", 10_000)
	replicas := int32(2)
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "apps"},
		Spec: appsv1.DeploymentSpec{Replicas: &replicas},
		Status: appsv1.DeploymentStatus{Conditions: []appsv1.DeploymentCondition{{Type: appsv1.DeploymentProgressing,
			Status: corev1.ConditionFalse, Reason: reasonProgressDeadlineExceeded, Message: long}}}}
	j := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "migrate", Namespace: "apps"},
		Status: batchv1.JobStatus{Failed: 3, Conditions: []batchv1.JobCondition{{Type: batchv1.JobFailed,
			Status: corev1.ConditionTrue, Reason: "BackoffLimitExceeded", Message: long}}}}
	issues := append(ClassifyDeployment(d), ClassifyJobRuns([]*batchv1.Job{j})...)
	if len(issues) != 2 {
		t.Fatalf("issues = %+v, want a RolloutStuck and a JobFailed", issues)
	}
	for _, iss := range issues {
		if len(iss.Message) > 1024 {
			t.Errorf("%s message is %d bytes, want at most 1024", iss.Type, len(iss.Message))
		}
	}
}
