package planner

import (
	"fmt"
	"strconv"

	"github.com/kaar-dev/kaar/pkg/events"
)

// checkLogs is the non-mutating "read the previous logs" step.
func (b *builder) checkLogs() []events.Step {
	ref, pod := b.podRef()
	c := b.containerName()
	st := events.Step{Action: events.ActionCheckLogs, Risk: events.RiskNone, Target: ref,
		Title: fmt.Sprintf("Read the previous logs of container %s (quoted in the evidence when available)", c)}
	if c != "" {
		st.Params = map[string]string{events.ParamContainer: c}
	}
	if pod != "" {
		st.Kubectl = b.kubectl("logs", pod, "-c", c, "--previous", "--tail="+strconv.FormatInt(b.in.Cfg.LogTailLines, 10))
	}
	return []events.Step{st}
}

// checkImage is the non-mutating "is the image right" step.
func (b *builder) checkImage() []events.Step {
	_, c, _ := b.in.Owner.container(b.in.Incident.Container)
	ref, pod := b.podRef()
	st := events.Step{Action: events.ActionDiagnostic, Risk: events.RiskNone, Target: ref}
	if c != nil {
		st.Title = fmt.Sprintf("Check that image %s of container %s exists and that the registry lets the cluster pull it", c.Image, c.Name)
		st.Params = map[string]string{events.ParamContainer: c.Name, events.ParamImage: c.Image}
	} else {
		st.Title = "Check that the failing container's image exists and that the registry lets the cluster pull it"
	}
	if pod != "" {
		st.Kubectl = b.kubectl("describe", "pod", pod)
	}
	return []events.Step{st}
}
