package events

import (
	"errors"
	"fmt"
	"testing"
)

func TestReplySuccess(t *testing.T) {
	body, code := EncodeReply(PlanResponse{Plan: samplePlan()}, nil)
	if code != "" {
		t.Fatalf("success reply has error code %q", code)
	}
	got, err := DecodeReply[PlanResponse](body, code)
	if err != nil {
		t.Fatalf("DecodeReply: %v", err)
	}
	if got.Plan.Digest != samplePlan().Digest {
		t.Fatal("plan lost in transit")
	}
}

func TestReplyValidatesResponse(t *testing.T) {
	p := samplePlan()
	p.Summary = ""
	body, _ := EncodeReply(PlanResponse{Plan: p}, nil)
	_, err := DecodeReply[PlanResponse](body, "")
	assertField(t, err, "reply.plan.summary")
}

func TestReplyErrors(t *testing.T) {
	cases := []struct {
		name      string
		err       error
		code      string
		field     string
		isInvalid bool
	}{
		{"validation error", fmt.Errorf("handle: %w", required("plan_id")), CodeInvalidArgument, "plan_id", true},
		{"typed reply", fmt.Errorf("lookup: %w", &ErrorReply{Code: CodeNotFound, Message: "no plan 42"}), CodeNotFound, "", false},
		{"plain error", errors.New("boom"), CodeInternal, "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body, code := EncodeReply(nil, tc.err)
			if code != tc.code {
				t.Fatalf("code %q, want %q", code, tc.code)
			}
			_, err := DecodeReply[PlanResponse](body, code)
			var er *ErrorReply
			if !errors.As(err, &er) {
				t.Fatalf("DecodeReply error %v is not an *ErrorReply", err)
			}
			if er.Code != tc.code || er.Field != tc.field || er.Message == "" {
				t.Fatalf("reply %+v", er)
			}
			if errors.Is(err, ErrInvalid) != tc.isInvalid {
				t.Fatalf("errors.Is(ErrInvalid) = %t", !tc.isInvalid)
			}
		})
	}
	// A non-JSON error body still yields an ErrorReply with the header code.
	_, err := DecodeReply[PlanResponse]([]byte("upstream exploded"), CodeUnavailable)
	var er *ErrorReply
	if !errors.As(err, &er) || er.Code != CodeUnavailable || er.Message != "upstream exploded" {
		t.Fatalf("got %v", err)
	}
}

func TestDecodeRequest(t *testing.T) {
	r, err := DecodeRequest[AnalyzeRequest]([]byte(`{"namespace":"shop","limit":5,"future":1}`))
	if err != nil || r.Namespace != "shop" || r.Limit != 5 {
		t.Fatalf("%+v %v", r, err)
	}
	_, err = DecodeRequest[AnalyzeRequest]([]byte(`{"limit":"five"}`))
	assertField(t, err, "request.limit")
	_, err = DecodeRequest[PlanRequest]([]byte(`{"namespace":"shop"}`))
	assertField(t, err, "kind")
}
