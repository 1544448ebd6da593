package watcher

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/robfig/cron/v3"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// A CronJob that stopped scheduling: the cronjob controller records the
// time of the last run it started (status.lastScheduleTime); a run its
// schedule called for and that has not started well after its time is
// reported. The schedule is parsed with robfig/cron, the parser the
// cronjob controller itself uses, so both agree on every schedule.
// A CronJob suspended on purpose is never an incident. Failed runs are
// JobFailed, from the CronJob's Jobs (ClassifyJobRuns).

// CronJobGrace is how long after a scheduled time a run may still not
// have started before the CronJob is reported, at most one period of its
// schedule: the controller starts runs within seconds, and a minutely
// CronJob that skipped two runs in a row is as telling as an hourly one
// that skipped one by five minutes.
const CronJobGrace = 5 * time.Minute

// Reason classes of a CronJob that did not start a run.
const (
	reasonPreviousRunActive      = "previous_run_active"
	reasonMissedStartingDeadline = "missed_starting_deadline"
	reasonMissedSchedule         = "missed_schedule"
)

// cronJobTypes are the issue types ClassifyCronJob reports.
var cronJobTypes = map[events.IssueType]bool{events.IssueCronJobNotScheduling: true}

// maxMissedCounted bounds the scheduled times ClassifyCronJob counts (the
// controller itself stops counting at 100).
const maxMissedCounted = 1000

// cronSchedule parses a CronJob's schedule in its time zone, as the
// cronjob controller does.
func cronSchedule(cj *batchv1.CronJob) (cron.Schedule, error) {
	spec := cj.Spec.Schedule
	if tz := cj.Spec.TimeZone; tz != nil && *tz != "" && !strings.Contains(spec, "TZ=") {
		spec = "TZ=" + *tz + " " + spec
	}
	return cron.ParseStandard(spec)
}

// ClassifyCronJob says whether a CronJob missed a run at time now: the
// first scheduled time after its last run (after its creation when it
// never ran) is more than the grace (capped at one period of the
// schedule) in the past, counted from changed instead when its spec
// changed later (a CronJob resumed after a suspension gets its late run
// started by the controller, not reported; zero when not known). The cause, most specific first: its
// concurrencyPolicy Forbid while a run is still active, a
// startingDeadlineSeconds the controller missed, or nothing the CronJob
// says (the controller is down, or cannot create Jobs: its Warning events
// on the CronJob say why). A suspended CronJob, or one whose schedule
// does not parse (the controller reports that itself), is not an issue.
// It returns when to look again otherwise. A pure function of its
// arguments.
func ClassifyCronJob(cj *batchv1.CronJob, changed, now time.Time, grace time.Duration) ([]ControllerIssue, time.Time) {
	if cj == nil || cj.DeletionTimestamp != nil || cj.Spec.Suspend != nil && *cj.Spec.Suspend {
		return nil, time.Time{}
	}
	sched, err := cronSchedule(cj)
	if err != nil {
		return nil, time.Time{}
	}
	last, ran := cj.CreationTimestamp.Time, false
	if t := cj.Status.LastScheduleTime; t != nil && !t.IsZero() {
		last, ran = t.Time, true
	}
	next := sched.Next(last)
	if next.IsZero() {
		return nil, time.Time{}
	}
	wait := grace
	if period := sched.Next(next).Sub(next); period > 0 && period < wait {
		wait = period
	}
	if due := later(next, changed).Add(wait); now.Before(due) {
		return nil, due
	}
	missed, latest := 0, next
	for t := next; !t.IsZero() && !t.After(now) && missed < maxMissedCounted; t = sched.Next(t) {
		missed++
		latest = t
	}
	since := "it was created at " + last.UTC().Format(time.RFC3339) + " and has never started a run"
	if ran {
		since = "its last run started at " + last.UTC().Format(time.RFC3339)
	}
	runs := fmt.Sprintf("%d scheduled run", missed)
	if missed != 1 {
		runs += "s"
	}
	if missed == maxMissedCounted {
		runs = "more than " + runs
	}
	msg := fmt.Sprintf("cronjob %s (schedule %q) has not started %s since: %s, the latest due at %s", cj.Name, cj.Spec.Schedule, runs,
		since, latest.UTC().Format(time.RFC3339))
	reason := reasonMissedSchedule
	switch {
	case cj.Spec.ConcurrencyPolicy == batchv1.ForbidConcurrent && len(cj.Status.Active) > 0:
		reason = reasonPreviousRunActive
		names := make([]string, 0, len(cj.Status.Active))
		for _, a := range cj.Status.Active {
			names = append(names, a.Name)
		}
		slices.Sort(names)
		msg += "; concurrencyPolicy Forbid skips every run while job " + strings.Join(names, ", ") + " is still running"
	case cj.Spec.StartingDeadlineSeconds != nil && latest.Add(time.Duration(*cj.Spec.StartingDeadlineSeconds)*time.Second).Before(now):
		reason = reasonMissedStartingDeadline
		msg += fmt.Sprintf("; no run started within its startingDeadlineSeconds (%d s) of its time", *cj.Spec.StartingDeadlineSeconds)
	default:
		msg += "; the CronJob names no cause: the cronjob controller did not start it (not running, or it cannot create the Job: its Warning events on the CronJob say why)"
	}
	return []ControllerIssue{{Type: events.IssueCronJobNotScheduling, Reason: reason, Message: msg}}, time.Time{}
}

// ClassifyCronJobCreate reports a CronJob whose controller could not
// create its last Job (fc, its last Warning FailedCreate report, nil for
// none): a FailedCreate issue whose reason classes the API server's
// refusal (a ResourceQuota on count/jobs.batch, a webhook, ...), until a
// run starts after the report. A suspended CronJob is not an issue.
func ClassifyCronJobCreate(cj *batchv1.CronJob, fc *CreateFailure) []ControllerIssue {
	if cj == nil || fc == nil || cj.DeletionTimestamp != nil || cj.Spec.Suspend != nil && *cj.Spec.Suspend || createFailureOver(cj, fc) {
		return nil
	}
	return []ControllerIssue{{Type: events.IssueFailedCreate, Reason: FailedCreateReason(fc.Message),
		Message: "cronjob " + cj.Name + " cannot create its jobs: " + truncate(fc.Message, 1024)}}
}

// createFailureOver reports a create failure a run made history: the
// CronJob's last run is the one the report was about (the latest
// scheduled time at or before it: status.lastScheduleTime is a run's
// scheduled time, not when its Job was created, and the controller
// retries a refused run until it succeeds), or a later one.
func createFailureOver(cj *batchv1.CronJob, fc *CreateFailure) bool {
	last := cj.Status.LastScheduleTime
	if last == nil {
		return false
	}
	if sched, err := cronSchedule(cj); err == nil {
		if failed := scheduledAtOrBefore(sched, fc.At); !failed.IsZero() {
			return !last.Time.Before(failed)
		}
	}
	return last.After(fc.At)
}

// scheduledAtOrBefore is the latest time of sched at or before at (zero
// when there is none within a year), looking back a window at a time so
// that a minutely schedule costs a few dozen steps and a yearly one a few.
func scheduledAtOrBefore(sched cron.Schedule, at time.Time) time.Time {
	for _, window := range []time.Duration{time.Hour, 24 * time.Hour, 32 * 24 * time.Hour, 367 * 24 * time.Hour} {
		var latest time.Time
		for t, n := sched.Next(at.Add(-window)), 0; !t.IsZero() && !t.After(at) && n < maxMissedCounted; t, n = sched.Next(t), n+1 {
			latest = t
		}
		if !latest.IsZero() {
			return latest
		}
	}
	return time.Time{}
}

// cronWatch is the watcher's view of CronJobs, trimmed by cronTransform.
// Optional like the Ingresses: without the right to read CronJobs the
// watcher still reports their failed runs from their Jobs.
type cronWatch struct {
	factory  informers.SharedInformerFactory
	cronJobs cache.SharedIndexInformer

	mu sync.Mutex
	// specs is, per CronJob, the generation last seen and when it was
	// seen to change (zero for the first one seen).
	specs map[types.UID]specMark
}

type specMark struct {
	generation int64
	changed    time.Time
}

// observe records a CronJob's generation seen at now and returns when its
// spec last changed (zero when it has not since the watcher saw it
// first); a deleted one is forgotten.
func (cw *cronWatch) observe(cj *batchv1.CronJob, deleted bool, now time.Time) time.Time {
	cw.mu.Lock()
	defer cw.mu.Unlock()
	if deleted {
		delete(cw.specs, cj.UID)
		return time.Time{}
	}
	m, ok := cw.specs[cj.UID]
	switch {
	case !ok:
		m = specMark{generation: cj.Generation}
	case m.generation != cj.Generation:
		m = specMark{generation: cj.Generation, changed: now}
	}
	cw.specs[cj.UID] = m
	return m.changed
}

func newCronWatch(cs kubernetes.Interface, namespace string, resync time.Duration) *cronWatch {
	opts := []informers.SharedInformerOption{informers.WithTransform(cronTransform)}
	if namespace != "" {
		opts = append(opts, informers.WithNamespace(namespace))
	}
	f := informers.NewSharedInformerFactoryWithOptions(cs, resync, opts...)
	return &cronWatch{factory: f, cronJobs: f.Batch().V1().CronJobs().Informer(), specs: map[types.UID]specMark{}}
}

func (cw *cronWatch) start(ctx context.Context) { cw.factory.StartWithContext(ctx) }

func (cw *cronWatch) shutdown() { cw.factory.Shutdown() }

func (cw *cronWatch) synced() []cache.InformerSynced {
	return []cache.InformerSynced{cw.cronJobs.HasSynced}
}

// cronTransform keeps of a CronJob what ClassifyCronJob reads: its
// schedule, time zone, suspension, concurrency policy, starting deadline,
// last schedule time and active runs (their names).
func cronTransform(obj any) (any, error) {
	o, ok := obj.(*batchv1.CronJob)
	if !ok {
		return transform(obj)
	}
	if o == nil {
		return obj, nil
	}
	out := &batchv1.CronJob{TypeMeta: o.TypeMeta, ObjectMeta: trimMeta(o.ObjectMeta),
		Spec: batchv1.CronJobSpec{Schedule: o.Spec.Schedule, TimeZone: o.Spec.TimeZone, Suspend: o.Spec.Suspend,
			ConcurrencyPolicy: o.Spec.ConcurrencyPolicy, StartingDeadlineSeconds: o.Spec.StartingDeadlineSeconds},
		Status: batchv1.CronJobStatus{LastScheduleTime: o.Status.LastScheduleTime, LastSuccessfulTime: o.Status.LastSuccessfulTime}}
	if n := len(o.Status.Active); n > 0 {
		out.Status.Active = make([]corev1.ObjectReference, n)
		for i, a := range o.Status.Active {
			out.Status.Active[i] = corev1.ObjectReference{Kind: a.Kind, Name: a.Name}
		}
	}
	return out, nil
}

// watchCronJobs registers the CronJob handler; New calls it before
// anything runs.
func (s *Service) watchCronJobs(cs kubernetes.Interface) error {
	s.cron = newCronWatch(cs, s.cfg.Namespace, s.cfg.ResyncPeriod)
	fn := func(obj any, deleted bool) {
		m := objectOf(obj)
		if m == nil || !s.filter.watched(m.GetNamespace()) {
			return
		}
		if cj, ok := m.(*batchv1.CronJob); ok {
			s.cron.observe(cj, deleted, s.now())
			if deleted {
				s.creates.forget(cj.UID)
			}
		}
		s.queue.AddAfter(ownerKey{Namespace: m.GetNamespace(), Kind: "CronJob", Name: m.GetName()}, s.cfg.Debounce)
	}
	if _, err := s.cron.cronJobs.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { fn(obj, false) }, UpdateFunc: func(_, obj any) { fn(obj, false) }, DeleteFunc: func(obj any) { fn(obj, true) },
	}); err != nil {
		return fmt.Errorf("watcher: cronjob handler: %w", err)
	}
	return nil
}

// cronJobObs is the issues of CronJob k: its controller cannot create its
// Jobs, or it missed a run (not both: the create failure is the cause);
// otherwise it queues k again for when its next run would be late.
func (s *Service) cronJobObs(k ownerKey, now time.Time) (*batchv1.CronJob, []ControllerIssue) {
	cj := get[batchv1.CronJob](s.cron.cronJobs, k.Namespace, k.Name)
	if cj == nil {
		return nil, nil
	}
	fc := s.creates.get(cj.UID)
	if fc != nil && createFailureOver(cj, fc) {
		s.creates.clear(cj.UID, now)
		fc = nil
	}
	issues, recheck := ClassifyCronJob(cj, s.cron.observe(cj, false, now), now, s.cfg.cronGrace)
	if !recheck.IsZero() {
		s.queue.AddAfter(k, recheck.Sub(now)+10*time.Millisecond)
	}
	if created := ClassifyCronJobCreate(cj, fc); len(created) > 0 {
		issues = slices.DeleteFunc(issues, func(i ControllerIssue) bool { return i.Reason == reasonMissedSchedule })
		issues = append(created, issues...)
	}
	return cj, issues
}
