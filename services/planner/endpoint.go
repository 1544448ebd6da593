package planner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ServiceName is the micro service name of the planner.
const ServiceName = "kaar-planner"

// Version is the planner's micro service version.
const Version = "0.1.0"

// maxAnalyzePages bounds how many analyze pages the planner reads.
const maxAnalyzePages = 10

// normalizeKind validates a PlanRequest kind: one of events.OwnerKinds,
// in any case.
func normalizeKind(kind string) (string, error) {
	var allowed []string
	for _, k := range events.OwnerKinds() {
		if strings.EqualFold(k, strings.TrimSpace(kind)) {
			return k, nil
		}
		allowed = append(allowed, strings.ToLower(k))
	}
	return "", &events.ErrorReply{Code: events.CodeInvalidArgument, Field: "kind",
		Message: fmt.Sprintf("field \"kind\": unknown kind %q (allowed: %s)", kind, strings.Join(allowed, ", "))}
}

// microCodes maps kaar error codes to the numeric codes of the micro
// framework's error headers (shown by `nats micro` tooling and counted in
// the endpoint's stats).
var microCodes = map[string]string{
	events.CodeInvalidArgument:    "400",
	events.CodeNotFound:           "404",
	events.CodeConflict:           "409",
	events.CodeFailedPrecondition: "412",
	events.CodeUnavailable:        "503",
	events.CodeInternal:           "500",
}

// handlePlan serves one request of kaar.<cluster>.svc.planner.plan. It
// runs on its own goroutine, after the micro handler returned, so it
// answers on the reply subject directly rather than through the
// micro.Request (whose state the framework reads when the handler
// returns).
func (s *Service) handlePlan(ctx context.Context, data []byte, reply string) {
	resp, err := s.planRequest(ctx, data)
	if err != nil {
		if er := events.NewErrorReply("", err); er.Code == events.CodeInternal {
			s.log.Error("plan request failed", slog.Any("error", err))
		}
	}
	msg := replyMsg(reply, resp, err)
	if reply == "" {
		return // a publish, not a request: nobody waits for the answer
	}
	if perr := s.nc.PublishMsg(msg); perr != nil {
		s.log.Warn("plan reply failed", slog.Any("error", perr))
	}
}

// replyMsg builds a reply: the response's JSON, or an ErrorReply body with
// the Kaar-Error header (kaar's convention) and the micro framework's error
// headers (for its tooling).
func replyMsg(subject string, resp any, err error) *nats.Msg {
	body, code := events.EncodeReply(resp, err)
	msg := &nats.Msg{Subject: subject, Data: body, Header: nats.Header{}}
	if code != "" {
		var er events.ErrorReply
		_ = json.Unmarshal(body, &er)
		msg.Header.Set(events.HeaderError, code)
		msg.Header.Set(micro.ErrorCodeHeader, microCodes[code])
		msg.Header.Set(micro.ErrorHeader, er.Message)
	}
	return msg
}

// planRequest decodes, validates and answers one plan request.
func (s *Service) planRequest(ctx context.Context, data []byte) (events.PlanResponse, error) {
	r, err := events.DecodeRequest[events.PlanRequest](data)
	if err != nil {
		return events.PlanResponse{}, err
	}
	kind, err := normalizeKind(r.Kind)
	if err != nil {
		return events.PlanResponse{}, err
	}
	inc, err := s.findIncident(ctx, r, kind)
	if err != nil {
		return events.PlanResponse{}, err
	}
	p, err := s.planIncident(ctx, inc, sourceRequest, r.RequestedBy)
	if err != nil {
		return events.PlanResponse{}, replyErr(err)
	}
	return events.PlanResponse{Plan: p}, nil
}

// replyErr maps planning errors to reply codes.
func replyErr(err error) error {
	switch {
	case errors.Is(err, ErrTargetGone):
		return &events.ErrorReply{Code: events.CodeNotFound, Message: err.Error()}
	case errors.Is(err, ErrWatcherUnavailable):
		return &events.ErrorReply{Code: events.CodeUnavailable, Message: err.Error()}
	case errors.Is(err, ErrNoIncident):
		return &events.ErrorReply{Code: events.CodeNotFound, Message: err.Error()}
	case apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err):
		return &events.ErrorReply{Code: events.CodeFailedPrecondition, Message: err.Error()}
	}
	return err
}

// topOwner resolves the workload whose incident the request is about: a
// pod's or a Job's top controller (Pod -> ReplicaSet -> Deployment, Job ->
// CronJob, StatefulSet, DaemonSet), the kind itself otherwise.
func (s *Service) topOwner(ctx context.Context, ns, kind, name string) (string, string, error) {
	notFound := func(what string) error {
		return &events.ErrorReply{Code: events.CodeNotFound, Message: fmt.Sprintf("%s not found in namespace %s", what, ns)}
	}
	switch kind {
	case KindPod:
		p, err := s.kube.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return "", "", notFound("pod " + name)
		}
		if err != nil {
			return "", "", replyErr(fmt.Errorf("get pod %s/%s: %w", ns, name, err))
		}
		c := metav1.GetControllerOf(p)
		if c == nil {
			return KindPod, name, nil
		}
		return s.topOwner(ctx, ns, c.Kind, c.Name)
	case KindReplicaSet:
		rs, err := s.kube.AppsV1().ReplicaSets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return KindReplicaSet, name, nil // report the incident under the ReplicaSet, as the watcher would
		}
		if c := metav1.GetControllerOf(rs); c != nil && c.Kind == KindDeployment {
			return KindDeployment, c.Name, nil
		}
		return KindReplicaSet, name, nil
	case KindJob:
		j, err := s.kube.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return "", "", notFound("job " + name)
		}
		if err != nil {
			return "", "", replyErr(fmt.Errorf("get job %s/%s: %w", ns, name, err))
		}
		if c := metav1.GetControllerOf(j); c != nil && c.Kind == KindCronJob {
			return KindCronJob, c.Name, nil
		}
		return KindJob, name, nil
	}
	return kind, name, nil
}

// findIncident asks the watcher (svc.watcher.analyze) for the incident of
// the requested workload, rather than classifying pods again.
func (s *Service) findIncident(ctx context.Context, r events.PlanRequest, kind string) (events.Incident, error) {
	ownerKind, ownerName, err := s.topOwner(ctx, r.Namespace, kind, r.Name)
	if err != nil {
		return events.Incident{}, err
	}
	subject, err := events.ServiceSubject(s.cfg.Cluster, events.ServiceWatcher, events.VerbAnalyze)
	if err != nil {
		return events.Incident{}, err
	}
	areq := events.AnalyzeRequest{Namespace: r.Namespace, Type: r.IssueType, Owner: ownerKind + "/" + ownerName, Limit: events.MaxAnalyzeLimit}
	found, err := s.ownerIncidents(ctx, subject, areq, r, ownerKind, ownerName)
	if err != nil {
		return events.Incident{}, err
	}
	if len(found) == 0 && r.IssueType == "" {
		// Without a type the watcher lists failures only and counts the
		// warnings: a workload with no failure may have a warning to plan.
		areq.Class = events.ClassWarning
		if found, err = s.ownerIncidents(ctx, subject, areq, r, ownerKind, ownerName); err != nil {
			return events.Incident{}, err
		}
	}
	what := fmt.Sprintf("%s %s/%s", strings.ToLower(ownerKind), r.Namespace, ownerName)
	if ownerKind != kind || ownerName != r.Name {
		what += fmt.Sprintf(" (owner of %s %s)", strings.ToLower(kind), r.Name)
	}
	if len(found) == 0 {
		typ := ""
		if r.IssueType != "" {
			typ = " of type " + string(r.IssueType)
		}
		return events.Incident{}, &events.ErrorReply{Code: events.CodeNotFound,
			Message: fmt.Sprintf("the watcher knows no incident%s for %s: nothing to plan (it may be healthy, or not detected yet)", typ, what)}
	}
	// The watcher returns incidents worst first; for a pod request prefer
	// the incident that lists the pod.
	if kind == KindPod {
		if i := slices.IndexFunc(found, func(in events.Incident) bool { return slices.Contains(in.Pods, r.Name) }); i > 0 {
			found[0], found[i] = found[i], found[0]
		}
	}
	return found[0], nil
}

// ownerIncidents reads every page of the watcher's answer to areq and
// keeps the incidents of the requested owner (and type).
func (s *Service) ownerIncidents(ctx context.Context, subject string, areq events.AnalyzeRequest, r events.PlanRequest, ownerKind, ownerName string) ([]events.Incident, error) {
	var found []events.Incident
	for range maxAnalyzePages {
		resp, err := s.analyze(ctx, subject, areq)
		if err != nil {
			return nil, err
		}
		for _, in := range resp.Incidents {
			if in.Namespace == r.Namespace && in.Owner.Kind == ownerKind && in.Owner.Name == ownerName &&
				(r.IssueType == "" || in.Type == r.IssueType) {
				found = append(found, in)
			}
		}
		if resp.NextCursor == "" {
			break
		}
		areq.Cursor = resp.NextCursor
	}
	return found, nil
}

// analyze makes one analyze request to the watcher.
func (s *Service) analyze(ctx context.Context, subject string, areq events.AnalyzeRequest) (events.AnalyzeResponse, error) {
	body, err := json.Marshal(areq)
	if err != nil {
		return events.AnalyzeResponse{}, fmt.Errorf("encode analyze request: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.AnalyzeTimeout)
	defer cancel()
	msg, err := s.nc.RequestWithContext(ctx, subject, body)
	if errors.Is(err, nats.ErrNoResponders) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) {
		return events.AnalyzeResponse{}, &events.ErrorReply{Code: events.CodeUnavailable,
			Message: fmt.Sprintf("the watcher did not answer on %s (%v): %v", subject, err, ErrWatcherUnavailable)}
	}
	if err != nil {
		return events.AnalyzeResponse{}, fmt.Errorf("analyze request to %s: %w", subject, err)
	}
	resp, err := events.DecodeReply[events.AnalyzeResponse](msg.Data, msg.Header.Get(events.HeaderError))
	if err != nil {
		var er *events.ErrorReply
		if errors.As(err, &er) {
			return resp, &events.ErrorReply{Code: er.Code, Message: "watcher: " + er.Message, Field: er.Field}
		}
		return resp, &events.ErrorReply{Code: events.CodeUnavailable, Message: fmt.Sprintf("the watcher's analyze reply is invalid: %v", err)}
	}
	return resp, nil
}
