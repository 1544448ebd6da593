package events

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Signatures prove origin; digests only prove integrity (anyone can
// recompute a SHA-256). The planner signs every plan's Digest, and every
// channel that takes a decision (the gateway for MCP and REST, the notifier
// for Slack and webhooks, the CLI, the executor's own auto-approval policy)
// signs the decision it publishes. The executor accepts a plan only when a
// trusted planner key signed it, and a decision only when a key trusted for
// its channel signed it: no one who can merely write to the bus can forge
// either.
//
// Keys are ed25519. A public key is written "ed25519:" followed by the
// standard base64 of its 32 bytes; a private key is a PKCS #8 PEM block
// ("PRIVATE KEY", as openssl genpkey -algorithm ed25519 writes it).

// PublicKeyPrefix starts every public key string.
const PublicKeyPrefix = "ed25519:"

// Domain separation: a plan signature can never pass for a decision's.
const (
	planSigContext     = "kaar plan signature v1\n"
	decisionSigContext = "kaar decision signature v1\n"
)

// Signature is an ed25519 signature and the public key that made it.
type Signature struct {
	// Key is the signer's public key ("ed25519:<base64>").
	Key string `json:"key"`
	// Sig is the standard base64 of the 64-byte signature.
	Sig string `json:"sig"`
}

// Signature errors; each matches ErrSignature with errors.Is.
var (
	// ErrSignature is matched by every signature error.
	ErrSignature = errors.New("signature")
	// ErrUnsigned: the plan or decision carries no signature.
	ErrUnsigned = fmt.Errorf("%w: unsigned", ErrSignature)
	// ErrUntrustedKey: signed by a key not trusted for this purpose.
	ErrUntrustedKey = fmt.Errorf("%w: key not trusted", ErrSignature)
	// ErrBadSignature: the signature does not verify (the content was
	// changed after signing, or it was made by another key).
	ErrBadSignature = fmt.Errorf("%w: does not verify", ErrSignature)
)

// Signer signs plans and decisions with one private key.
type Signer struct {
	priv ed25519.PrivateKey
	pub  string
}

// NewSigner wraps an ed25519 private key.
func NewSigner(priv ed25519.PrivateKey) (*Signer, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("ed25519 private key: %d bytes, want %d", len(priv), ed25519.PrivateKeySize)
	}
	pub, _ := priv.Public().(ed25519.PublicKey)
	return &Signer{priv: priv, pub: FormatPublicKey(pub)}, nil
}

// GenerateSigner makes a signer with a new random key.
func GenerateSigner() (*Signer, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate ed25519 key: %w", err)
	}
	return NewSigner(priv)
}

// ParseSignerPEM reads a PKCS #8 PEM ed25519 private key.
func ParseSignerPEM(b []byte) (*Signer, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New(`not a PEM "PRIVATE KEY" block (write one with: kaar keys generate, or openssl genpkey -algorithm ed25519)`)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse PKCS #8 private key: %w", err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("private key is %T, want ed25519", k)
	}
	return NewSigner(priv)
}

// MarshalPEM is the private key as a PKCS #8 PEM block.
func (s *Signer) MarshalPEM() []byte {
	der, err := x509.MarshalPKCS8PrivateKey(s.priv)
	if err != nil { // an ed25519 key always marshals
		panic(fmt.Sprintf("events: marshal ed25519 key: %v", err))
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// PublicKey is the signer's public key ("ed25519:<base64>").
func (s *Signer) PublicKey() string { return s.pub }

// FormatPublicKey writes an ed25519 public key as "ed25519:<base64>".
func FormatPublicKey(pub ed25519.PublicKey) string {
	return PublicKeyPrefix + base64.StdEncoding.EncodeToString(pub)
}

// ParsePublicKey reads "ed25519:<base64>".
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	b64, ok := strings.CutPrefix(s, PublicKeyPrefix)
	if !ok {
		return nil, fmt.Errorf("public key %q: want %s followed by the base64 of 32 bytes", s, PublicKeyPrefix)
	}
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("public key %q: want %s followed by the base64 of 32 bytes", s, PublicKeyPrefix)
	}
	return ed25519.PublicKey(b), nil
}

func (s *Signer) sign(context string, msg []byte) *Signature {
	sig := ed25519.Sign(s.priv, append([]byte(context), msg...))
	return &Signature{Key: s.pub, Sig: base64.StdEncoding.EncodeToString(sig)}
}

// SignPlan seals p (ComputeDigest) and signs its digest. Call it after the
// last change to anything the digest covers.
func (s *Signer) SignPlan(p *Plan) {
	p.Seal()
	p.Signature = s.sign(planSigContext, []byte(p.Digest))
}

// SignDecision signs d as it is (everything but the signature itself).
// Call it after the last change to d.
func (s *Signer) SignDecision(d *Decision) {
	d.Signature = s.sign(decisionSigContext, decisionBytes(*d))
}

// decisionBytes is the signed form of a decision: its JSON without the
// signature, with sorted keys.
func decisionBytes(d Decision) []byte {
	d.Signature = nil
	b, err := json.Marshal(d)
	if err != nil { // strings and a time: cannot fail
		panic(fmt.Sprintf("events: marshal decision: %v", err))
	}
	return canonicalJSON(b)
}

// verify checks sig over context+msg against the trusted keys.
func verify(sig *Signature, trusted []string, context string, msg []byte) error {
	if sig == nil || sig.Key == "" || sig.Sig == "" {
		return ErrUnsigned
	}
	if !slices.Contains(trusted, sig.Key) {
		return fmt.Errorf("%w: %s", ErrUntrustedKey, sig.Key)
	}
	pub, err := ParsePublicKey(sig.Key)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	raw, err := base64.StdEncoding.DecodeString(sig.Sig)
	if err != nil || !ed25519.Verify(pub, append([]byte(context), msg...), raw) {
		return fmt.Errorf("%w: by %s", ErrBadSignature, sig.Key)
	}
	return nil
}

// VerifyPlan checks that p's digest matches its content and that a key in
// trusted signed that digest. Errors match ErrSignature, or ErrInvalid for
// a digest that does not match.
func VerifyPlan(p Plan, trusted []string) error {
	if want := ComputeDigest(p); p.Digest != want {
		return fieldErr("digest", fmt.Sprintf("%q does not match the plan's content (%q)", p.Digest, want))
	}
	if err := verify(p.Signature, trusted, planSigContext, []byte(p.Digest)); err != nil {
		return fmt.Errorf("plan %s: %w", p.ID, err)
	}
	return nil
}

// VerifyDecision checks that a key in trusted signed d as it is.
func VerifyDecision(d Decision, trusted []string) error {
	if err := verify(d.Signature, trusted, decisionSigContext, decisionBytes(d)); err != nil {
		return fmt.Errorf("decision on plan %s via %s: %w", d.PlanID, d.Via, err)
	}
	return nil
}

// Trust is who the executor believes: the planner keys that may sign
// plans, and for each channel the keys that may sign its decisions.
type Trust struct {
	// Planners sign plans.
	Planners []string
	// Channels maps a channel to the keys that may sign decisions that
	// came through it. ViaAuto is trusted only when auto-approval is on,
	// and then only for the executor's own key.
	Channels map[Via][]string
}

// Add trusts keys for the given channels.
func (t *Trust) Add(keys []string, vias ...Via) {
	if t.Channels == nil {
		t.Channels = map[Via][]string{}
	}
	for _, v := range vias {
		for _, k := range keys {
			if !slices.Contains(t.Channels[v], k) {
				t.Channels[v] = append(t.Channels[v], k)
			}
		}
	}
}

// VerifyDecision checks d's signature against the keys trusted for d.Via.
func (t Trust) VerifyDecision(d Decision) error {
	return VerifyDecision(d, t.Channels[d.Via])
}

// VerifyPlan checks p's signature against the trusted planner keys.
func (t Trust) VerifyPlan(p Plan) error { return VerifyPlan(p, t.Planners) }

// Validate checks every key.
func (t Trust) Validate() error {
	for i, k := range t.Planners {
		if _, err := ParsePublicKey(k); err != nil {
			return fieldErr(fmt.Sprintf("planners[%d]", i), err.Error())
		}
	}
	for v, keys := range t.Channels {
		if err := v.Validate(); err != nil {
			return under("channels", err)
		}
		for i, k := range keys {
			if _, err := ParsePublicKey(k); err != nil {
				return fieldErr(fmt.Sprintf("channels.%s[%d]", v, i), err.Error())
			}
		}
	}
	return nil
}

// SignedDecisionMsgID is the Nats-Msg-Id a channel publishes d with:
// DecisionMsgID, followed by a fingerprint of the signing key. A repeated
// decision of one channel is still one message, while a decision
// published first under another key (a forger's, refused by the executor)
// cannot swallow the genuine one as a duplicate.
func SignedDecisionMsgID(d Decision) string {
	id := DecisionMsgID(d.PlanID, d.Digest, d.Decision)
	if d.Signature == nil {
		return id
	}
	sum := sha256.Sum256([]byte(d.Signature.Key))
	return id + "-" + hex.EncodeToString(sum[:6])
}
