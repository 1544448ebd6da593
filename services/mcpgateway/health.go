package mcpgateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// probedServices are the services the gateway depends on, with the verb
// each must serve for this cluster.
var probedServices = []struct{ service, verb string }{
	{events.ServiceWatcher, events.VerbAnalyze},
	{events.ServicePlanner, events.VerbPlan},
	{events.ServiceExecutor, events.VerbStatus},
}

type noArgs struct{}

func (s *Service) testTool() (*tool, error) {
	return defineTool("test", "Test kaar",
		"Check that kaar is working: the bus connection (NATS and JetStream, the plans and executions buckets), "+
			"which services answer for this cluster (kaar-watcher, kaar-planner, kaar-executor, through their NATS "+
			"micro INFO endpoint), the cluster name and the gateway version. Takes no arguments.",
		readOnlyHints, nil,
		func(ctx context.Context, _ *call, _ noArgs) (TestOut, string, error) {
			out := s.selfTest(ctx)
			return out, testText(out), nil
		})
}

// selfTest probes the bus and every service concurrently.
func (s *Service) selfTest(ctx context.Context) TestOut {
	out := TestOut{Cluster: s.cfg.Cluster, Version: s.cfg.Version,
		Bus: s.busStatus(ctx), Services: make([]ServiceStatusOut, len(probedServices))}
	if !out.Bus.Connected {
		out.Status = "down"
		for i, p := range probedServices {
			subj, _ := events.ServiceSubject(s.cfg.Cluster, p.service, p.verb)
			out.Services[i] = ServiceStatusOut{Name: "kaar-" + p.service, Endpoint: subj, Error: "bus not connected"}
		}
		return out
	}
	var wg sync.WaitGroup
	for i, p := range probedServices {
		wg.Go(func() { out.Services[i] = s.probeService(ctx, p.service, p.verb) })
	}
	wg.Wait()
	out.Status = "ok"
	for _, svc := range out.Services {
		if !svc.Up {
			out.Status = "degraded"
		}
	}
	if !out.Bus.JetStream || slices.Contains(mapsValues(out.Bus.Buckets), false) {
		out.Status = "degraded"
	}
	return out
}

func mapsValues(m map[string]bool) []bool {
	out := make([]bool, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// busStatus reports the connection and JetStream.
func (s *Service) busStatus(ctx context.Context) BusStatusOut {
	st := BusStatusOut{Connected: s.nc.IsConnected(), Buckets: map[string]bool{}}
	if !st.Connected {
		st.Error = "not connected: " + s.nc.Status().String()
		return st
	}
	st.Server = s.nc.ConnectedUrlRedacted()
	if rtt, err := s.nc.RTT(); err == nil {
		st.RTTMillis = float64(rtt.Microseconds()) / 1000
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ProbeTimeout)
	defer cancel()
	if _, err := s.js.AccountInfo(ctx); err != nil {
		st.Error = "jetstream: " + err.Error()
		return st
	}
	st.JetStream = true
	for _, b := range []string{events.BucketPlans, events.BucketExecutions} {
		_, err := s.js.KeyValue(ctx, b)
		st.Buckets[b] = err == nil
		if err != nil && st.Error == "" {
			st.Error = fmt.Sprintf("bucket %s: %v", b, err)
		}
	}
	return st
}

// probeService sends a micro INFO request for kaar-<service> and collects
// the answers for ProbeTimeout, stopping at the first instance that serves
// this cluster's endpoint (several clusters may share one bus).
func (s *Service) probeService(ctx context.Context, service, verb string) ServiceStatusOut {
	name := "kaar-" + service
	want, _ := events.ServiceSubject(s.cfg.Cluster, service, verb)
	st := ServiceStatusOut{Name: name, Endpoint: want}
	subj, err := micro.ControlSubject(micro.InfoVerb, name, "")
	if err != nil {
		st.Error = err.Error()
		return st
	}
	inbox := s.nc.NewRespInbox()
	sub, err := s.nc.SubscribeSync(inbox)
	if err != nil {
		st.Error = err.Error()
		return st
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := s.nc.PublishRequest(subj, inbox, nil); err != nil {
		st.Error = err.Error()
		return st
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ProbeTimeout)
	defer cancel()
	var other *micro.Info
	for {
		msg, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			break
		}
		if len(msg.Data) == 0 && msg.Header.Get("Status") == "503" {
			break // no responders
		}
		var info micro.Info
		if err := json.Unmarshal(msg.Data, &info); err != nil {
			continue
		}
		st.Instances++
		if slices.ContainsFunc(info.Endpoints, func(e micro.EndpointInfo) bool { return e.Subject == want }) {
			st.Up, st.Version, st.InstanceID = true, info.Version, info.ID
			st.Endpoints = endpointSubjects(info)
			return st
		}
		other = &info
	}
	switch {
	case other != nil:
		st.Version, st.InstanceID, st.Endpoints = other.Version, other.ID, endpointSubjects(*other)
		st.Error = fmt.Sprintf("%d instance(s) answered, none serves %s (another cluster?)", st.Instances, want)
	case errors.Is(ctx.Err(), context.Canceled):
		st.Error = "probe cancelled"
	default:
		st.Error = fmt.Sprintf("no instance answered %s within %s", subj, s.cfg.ProbeTimeout)
	}
	return st
}

func endpointSubjects(info micro.Info) []string {
	out := make([]string, 0, len(info.Endpoints))
	for _, e := range info.Endpoints {
		out = append(out, e.Subject)
	}
	return out
}

func testText(out TestOut) string {
	var b strings.Builder
	fmt.Fprintf(&b, "kaar %s: %s (cluster %s)\n", out.Version, out.Status, out.Cluster)
	if out.Bus.Connected {
		fmt.Fprintf(&b, "bus: connected to %s, rtt %.1fms, jetstream %t", out.Bus.Server, out.Bus.RTTMillis, out.Bus.JetStream)
	} else {
		b.WriteString("bus: NOT connected")
	}
	if out.Bus.Error != "" {
		b.WriteString(" (" + out.Bus.Error + ")")
	}
	for _, svc := range out.Services {
		if svc.Up {
			fmt.Fprintf(&b, "\n%s: up (version %s)", svc.Name, svc.Version)
		} else {
			fmt.Fprintf(&b, "\n%s: DOWN (%s)", svc.Name, svc.Error)
		}
	}
	return b.String()
}

// HealthOut is the body of GET /health.
type HealthOut struct {
	Status  string `json:"status"`
	Cluster string `json:"cluster"`
	Version string `json:"version"`
	Bus     string `json:"bus"`
	Tools   int    `json:"tools"`
	Time    string `json:"time"`
}

// health is cheap: the connection state and one round trip to the server.
func (s *Service) health() (HealthOut, bool) {
	h := HealthOut{Status: "ok", Cluster: s.cfg.Cluster, Version: s.cfg.Version, Bus: "connected",
		Tools: len(s.tools), Time: s.now().UTC().Format(time.RFC3339)}
	ok := s.nc.IsConnected()
	if ok {
		if err := s.nc.FlushTimeout(s.cfg.ProbeTimeout); err != nil {
			ok = false
		}
	}
	if !ok {
		h.Status, h.Bus = "unavailable", s.nc.Status().String()
		if s.nc.Status() == nats.CONNECTED {
			h.Bus = "not answering"
		}
	}
	return h, ok
}
