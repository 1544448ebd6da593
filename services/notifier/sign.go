package notifier

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Headers of a signed kaar webhook request, outbound and inbound.
//
//	Kaar-Timestamp: 1767225600                 (Unix seconds)
//	Kaar-Signature: v1=<hex HMAC-SHA256(secret, timestamp + "." + body)>
//
// A receiver recomputes the HMAC over the raw body, compares in constant
// time, and refuses a timestamp more than 5 minutes from its clock.
const (
	HeaderTimestamp = "Kaar-Timestamp"
	HeaderSignature = "Kaar-Signature"
	// HeaderEventID is the CloudEvent id: the key to deduplicate on.
	HeaderEventID = "Kaar-Event-Id"
	// HeaderEventType is the CloudEvent type.
	HeaderEventType = "Kaar-Event-Type"
	// HeaderAttempt counts delivery attempts of this event (1, 2, ...).
	HeaderAttempt = "Kaar-Delivery-Attempt"

	signatureVersion = "v1"
)

// Slack request signing headers.
const (
	slackTimestampHeader = "X-Slack-Request-Timestamp"
	slackSignatureHeader = "X-Slack-Signature"
)

// Signature errors.
var (
	// ErrBadSignature: missing or wrong signature.
	ErrBadSignature = errors.New("bad signature")
	// ErrStaleRequest: the signed timestamp is outside the window (a
	// replay, or a clock far off).
	ErrStaleRequest = errors.New("request timestamp outside the allowed window")
)

// Sign returns the Kaar-Signature value of body sent at ts.
func Sign(secret string, ts int64, body []byte) string {
	return signatureVersion + "=" + mac(secret, strconv.FormatInt(ts, 10)+"."+string(body))
}

// VerifySignature checks a kaar-signed request.
func VerifySignature(secret, tsHeader, sigHeader string, body []byte, now time.Time, window time.Duration) error {
	ts, err := checkTimestamp(tsHeader, now, window)
	if err != nil {
		return err
	}
	return compareSig(sigHeader, Sign(secret, ts, body))
}

// VerifySlack checks Slack's v0 request signature: "v0=" + hex
// HMAC-SHA256 of "v0:<timestamp>:<body>" with the app's signing secret.
func VerifySlack(secret, tsHeader, sigHeader string, body []byte, now time.Time, window time.Duration) error {
	if _, err := checkTimestamp(tsHeader, now, window); err != nil {
		return err
	}
	return compareSig(sigHeader, SlackSignature(secret, tsHeader, body))
}

// SlackSignature is the X-Slack-Signature value of body sent at ts.
func SlackSignature(secret, ts string, body []byte) string {
	return "v0=" + mac(secret, "v0:"+ts+":"+string(body))
}

func mac(secret, msg string) string {
	h := hmac.New(sha256.New, []byte(secret))
	h.Write([]byte(msg))
	return hex.EncodeToString(h.Sum(nil))
}

func checkTimestamp(h string, now time.Time, window time.Duration) (int64, error) {
	ts, err := strconv.ParseInt(strings.TrimSpace(h), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: missing or malformed timestamp", ErrBadSignature)
	}
	if d := now.Sub(time.Unix(ts, 0)); d > window || d < -window {
		return 0, fmt.Errorf("%w: %s old", ErrStaleRequest, d.Round(time.Second))
	}
	return ts, nil
}

func compareSig(got, want string) error {
	if got == "" || !hmac.Equal([]byte(got), []byte(want)) {
		return ErrBadSignature
	}
	return nil
}
