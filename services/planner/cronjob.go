package planner

import (
	"fmt"
	"strings"

	"github.com/kaar-dev/kaar/pkg/events"
	batchv1 "k8s.io/api/batch/v1"
)

// A CronJob that stopped scheduling (CronJobNotScheduling): a run its
// schedule called for has not started. The plans are diagnostic: ending
// a run that is still active, or changing a schedule, is a person's
// decision (a run can have side effects, and so can ending one halfway).

// Reasons of a CronJobNotScheduling incident, as the watcher classifies it.
const (
	cronPreviousRunActive = "previous_run_active"
	cronMissedDeadline    = "missed_starting_deadline"
)

// activeRuns are the names of a CronJob's runs still active, from its
// status (the Jobs read when its status names none).
func activeRuns(cj *batchv1.CronJob, jobs []batchv1.Job) []string {
	var out []string
	for _, a := range cj.Status.Active {
		out = append(out, a.Name)
	}
	if len(out) > 0 {
		return out
	}
	for i := range jobs {
		if _, done := jobDone(&jobs[i]); !done {
			out = append(out, jobs[i].Name)
		}
	}
	return out
}

// jobDone reports a finished Job and whether it failed.
func jobDone(j *batchv1.Job) (failed, done bool) {
	if jobCondition(j, batchv1.JobFailed) != nil {
		return true, true
	}
	return false, jobCondition(j, batchv1.JobComplete) != nil
}

// cronJobSteps say why the CronJob did not start its runs and what a
// person can do; kaar changes nothing.
func cronJobSteps(in planInput, b *builder, step stepFunc) []events.Step {
	w := in.Owner
	ref := w.ref()
	var out []events.Step
	add := func(s events.Step) { out = append(out, b.onOwner(s)) }
	cj, _ := w.Object.(*batchv1.CronJob)
	if cj == nil {
		return []events.Step{b.onOwner(step("Inspect "+ref, "describe", ref))}
	}
	schedule := quote(cj.Spec.Schedule)
	switch in.Incident.Reason {
	case cronPreviousRunActive:
		runs := activeRuns(cj, in.Jobs)
		first := "<job>"
		if len(runs) > 0 {
			first = runs[0]
		}
		add(step(fmt.Sprintf("%s has concurrencyPolicy Forbid, and its run job/%s is still active: every run its schedule (%s) calls for is skipped until that one ends. Find why it does not finish (its pods, logs and events)",
			ref, strings.Join(runs, ", job/"), schedule), "describe", "job", first))
		add(step(fmt.Sprintf("If the run is stuck and ending it is safe, a person deletes it (its pods go with it) and the next scheduled run starts; set activeDeadlineSeconds in the job template of %s so that a stuck run cannot block the schedule for ever (kaar never ends a run)", ref),
			"delete", "job", first))
	case cronMissedDeadline:
		add(step(fmt.Sprintf("The cronjob controller did not start the run of %s within its startingDeadlineSeconds (%d s), so it skipped it: read the CronJob's events (MissSchedule, TooManyMissedTimes, FailedCreate)",
			ref, derefOr(cj.Spec.StartingDeadlineSeconds, 0)), "describe", ref))
		add(step("Check that kube-controller-manager runs and is not overloaded (its cronjob controller starts the runs); raise startingDeadlineSeconds if runs may start late",
			"get", "events", "--field-selector", "involvedObject.kind=CronJob,involvedObject.name="+w.Ref.Name))
	default: // missed_schedule
		add(step(fmt.Sprintf("No run of %s started though its schedule (%s) called for one: its Warning events say why (FailedCreate: a ResourceQuota, webhook or policy refuses its Jobs; TooManyMissedTimes: the controller was down)", ref, schedule),
			"describe", ref))
		add(step("Check that kube-controller-manager runs (its cronjob controller starts the runs): without it no CronJob of the cluster runs",
			"get", "events", "--field-selector", "involvedObject.kind=CronJob,involvedObject.name="+w.Ref.Name))
	}
	add(step(fmt.Sprintf("Compare with the last runs of %s (in the evidence, newest first)", ref), "get", "jobs", "--sort-by=.metadata.creationTimestamp"))
	return out
}
