package watcher

import (
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/robfig/cron/v3"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// testCronJob runs at the top of every hour (schedule), last at last (nil:
// never), created a day before fixtureNow (01:00 UTC).
func testCronJob(schedule string, last *time.Time) *batchv1.CronJob {
	cj := &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Name: "report", Namespace: "ns",
		CreationTimestamp: metav1.NewTime(fixtureNow.Add(-24 * time.Hour))}, Spec: batchv1.CronJobSpec{Schedule: schedule}}
	if last != nil {
		cj.Status.LastScheduleTime = &metav1.Time{Time: *last}
	}
	return cj
}

func TestClassifyCronJob(t *testing.T) {
	at := func(d time.Duration) *time.Time { v := fixtureNow.Add(d); return &v }
	suspended := testCronJob("0 * * * *", at(-5*time.Hour))
	suspended.Spec.Suspend = new(bool)
	*suspended.Spec.Suspend = true
	forbid := testCronJob("*/10 * * * *", at(-30*time.Minute))
	forbid.Spec.ConcurrencyPolicy = batchv1.ForbidConcurrent
	forbid.Status.Active = []corev1.ObjectReference{{Kind: "Job", Name: "report-29412"}}
	deadline := testCronJob("0 * * * *", at(-2*time.Hour))
	secs := int64(60)
	deadline.Spec.StartingDeadlineSeconds = &secs
	tz := testCronJob("0 * * * *", at(-time.Hour))
	zone := "Europe/Paris"
	tz.Spec.TimeZone = &zone
	for name, tc := range map[string]struct {
		cj        *batchv1.CronJob
		now       time.Time
		reason    string
		inMessage string
		recheck   time.Time
		changed   time.Time // when its spec changed
	}{
		"just resumed":               {testCronJob("0 * * * *", at(-5*time.Hour)), fixtureNow, "", "", fixtureNow.Add(270 * time.Second), fixtureNow.Add(-30 * time.Second)},
		"resumed, still not started": {testCronJob("0 * * * *", at(-5*time.Hour)), fixtureNow, reasonMissedSchedule, "has not started 5 scheduled runs", time.Time{}, fixtureNow.Add(-10 * time.Minute)},
		"ran on time":                {testCronJob("0 * * * *", at(0)), fixtureNow.Add(30 * time.Minute), "", "", fixtureNow.Add(65 * time.Minute), time.Time{}},
		"late within the grace":      {testCronJob("0 * * * *", at(-time.Hour)), fixtureNow.Add(4 * time.Minute), "", "", fixtureNow.Add(5 * time.Minute), time.Time{}},
		"suspended on purpose":       {suspended, fixtureNow, "", "", time.Time{}, time.Time{}},
		"invalid schedule":           {testCronJob("every day", nil), fixtureNow, "", "", time.Time{}, time.Time{}},
		"in its time zone":           {tz, fixtureNow.Add(time.Minute), "", "", fixtureNow.Add(5 * time.Minute), time.Time{}},
		"minutely, grace capped":     {testCronJob("* * * * *", at(-3*time.Minute)), fixtureNow, reasonMissedSchedule, "has not started 3 scheduled runs since: its last run started at 2026-11-27T00:57:00Z, the latest due at 2026-11-27T01:00:00Z", time.Time{}, time.Time{}},
		"never ran":                  {testCronJob("0 * * * *", nil), fixtureNow, reasonMissedSchedule, "it was created at 2026-11-26T01:00:00Z and has never started a run", time.Time{}, time.Time{}},
		"previous run still runs":    {forbid, fixtureNow, reasonPreviousRunActive, "concurrencyPolicy Forbid skips every run while job report-29412 is still running", time.Time{}, time.Time{}},
		"starting deadline":          {deadline, fixtureNow.Add(10 * time.Minute), reasonMissedStartingDeadline, "no run started within its startingDeadlineSeconds (60 s)", time.Time{}, time.Time{}},
		"controller down":            {testCronJob("0 * * * *", at(-3*time.Hour)), fixtureNow.Add(10 * time.Minute), reasonMissedSchedule, "the cronjob controller did not start it", time.Time{}, time.Time{}},
	} {
		t.Run(name, func(t *testing.T) {
			got, recheck := ClassifyCronJob(tc.cj, tc.changed, tc.now, CronJobGrace)
			if !recheck.Equal(tc.recheck) {
				t.Errorf("recheck = %v, want %v", recheck, tc.recheck)
			}
			if tc.reason == "" {
				if len(got) != 0 {
					t.Errorf("issues = %+v, want none", got)
				}
				return
			}
			if len(got) != 1 || got[0].Type != events.IssueCronJobNotScheduling || got[0].Reason != tc.reason || !strings.Contains(got[0].Message, tc.inMessage) {
				t.Fatalf("issues = %+v\nwant reason %s, message with %q", got, tc.reason, tc.inMessage)
			}
			trimmed, _ := cronTransform(tc.cj)
			if again, _ := ClassifyCronJob(trimmed.(*batchv1.CronJob), tc.changed, tc.now, CronJobGrace); len(again) != 1 || again[0] != got[0] {
				t.Errorf("trimmed CronJob classifies as %+v", again)
			}
		})
	}
}

func TestCronJobMissedRunsAreCountedUpToABound(t *testing.T) {
	cj := testCronJob("* * * * *", nil)
	cj.CreationTimestamp = metav1.NewTime(fixtureNow.Add(-30 * 24 * time.Hour))
	got, _ := ClassifyCronJob(cj, time.Time{}, fixtureNow, CronJobGrace)
	if len(got) != 1 || !strings.Contains(got[0].Message, "more than 1000 scheduled runs") {
		t.Errorf("issues = %+v", got)
	}
}

func TestScheduledAtOrBefore(t *testing.T) {
	for spec, want := range map[string]time.Time{
		"* * * * *":      fixtureNow,                                     // 01:00 itself
		"30 * * * *":     fixtureNow.Add(-30 * time.Minute),              // 00:30
		"0 3 * * *":      fixtureNow.Add(-22 * time.Hour),                // 03:00 the day before
		"0 0 1 1 *":      time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),    // new year
		"0 0 29 2 *":     time.Time{},                                    // no 29 February within a year
		"3-59/7 * * * *": time.Date(2026, 11, 27, 0, 59, 0, 0, time.UTC), // 00:59
	} {
		sched, err := cron.ParseStandard(spec)
		if err != nil {
			t.Fatal(err)
		}
		if got := scheduledAtOrBefore(sched, fixtureNow.Add(30*time.Second)); !got.Equal(want) {
			t.Errorf("%s: %v, want %v", spec, got, want)
		}
	}
}

func TestCronWatchRemembersWhenTheSpecChanged(t *testing.T) {
	cw := &cronWatch{specs: map[types.UID]specMark{}}
	cj := testCronJob("* * * * *", nil)
	cj.UID, cj.Generation = "u", 1
	if got := cw.observe(cj, false, fixtureNow); !got.IsZero() {
		t.Errorf("first sight: changed %v, want zero (not known)", got)
	}
	if got := cw.observe(cj, false, fixtureNow.Add(time.Minute)); !got.IsZero() {
		t.Errorf("same generation: changed %v, want zero", got)
	}
	cj.Generation = 2 // resumed
	if got := cw.observe(cj, false, fixtureNow.Add(2*time.Minute)); !got.Equal(fixtureNow.Add(2 * time.Minute)) {
		t.Errorf("new generation: changed %v", got)
	}
	if got := cw.observe(cj, false, fixtureNow.Add(3*time.Minute)); !got.Equal(fixtureNow.Add(2 * time.Minute)) {
		t.Errorf("later: changed %v, want the change's time", got)
	}
	cw.observe(cj, true, fixtureNow)
	if len(cw.specs) != 0 {
		t.Errorf("deleted CronJob still remembered: %v", cw.specs)
	}
}

func TestCronJobThatCannotCreateItsJobsIsFailedCreateUntilARunStarts(t *testing.T) {
	msg := `Error creating job: jobs.batch "report-29412" is forbidden: exceeded quota: jobs, requested: count/jobs.batch=1, used: count/jobs.batch=0, limited: count/jobs.batch=0`
	ev := &corev1.Event{ObjectMeta: metav1.ObjectMeta{Namespace: "ns"}, Type: corev1.EventTypeWarning, Reason: "FailedCreate", Message: msg,
		InvolvedObject: corev1.ObjectReference{Kind: "CronJob", Name: "report", UID: "cj-uid"}, LastTimestamp: metav1.NewTime(fixtureNow)}
	ref, fc, ok := CreateFailureOf(ev)
	if !ok || ref.Kind != "CronJob" || ref.Namespace != "ns" {
		t.Fatalf("CreateFailureOf = %+v, %+v, %t", ref, fc, ok)
	}
	cj := testCronJob("* * * * *", nil)
	got := ClassifyCronJobCreate(cj, &fc)
	if len(got) != 1 || got[0].Type != events.IssueFailedCreate || got[0].Reason != "exceeded_quota" ||
		got[0].Message != "cronjob report cannot create its jobs: "+msg {
		t.Errorf("issues = %+v", got)
	}
	// The run before the one refused does not end it; the refused run
	// itself, retried once the quota allows it (its lastScheduleTime is
	// its scheduled time, before the report), or a later one, does; so
	// does a suspension.
	fc.At = fixtureNow.Add(700 * time.Millisecond) // the run of 01:00:00, refused
	cj.Status.LastScheduleTime = &metav1.Time{Time: fixtureNow.Add(-time.Minute)}
	if got := ClassifyCronJobCreate(cj, &fc); len(got) != 1 {
		t.Errorf("before the refused run: %+v, want the issue", got)
	}
	for _, last := range []time.Time{fixtureNow, fixtureNow.Add(time.Minute)} {
		cj.Status.LastScheduleTime = &metav1.Time{Time: last}
		if got := ClassifyCronJobCreate(cj, &fc); len(got) != 0 {
			t.Errorf("after the run of %s: %+v", last, got)
		}
	}
	cj.Status.LastScheduleTime = &metav1.Time{Time: fixtureNow.Add(-time.Minute)}
	suspend := true
	cj.Spec.Suspend = &suspend
	if got := ClassifyCronJobCreate(cj, &fc); len(got) != 0 {
		t.Errorf("suspended: %+v", got)
	}
	if got := ClassifyCronJobCreate(testCronJob("* * * * *", nil), nil); len(got) != 0 {
		t.Errorf("no report: %+v", got)
	}
}
