package bus

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Change is one declaration Provision created or repaired.
type Change struct {
	// Kind is "stream", "kv" or "consumer".
	Kind string
	// Name is the stream, bucket or "STREAM/consumer".
	Name string
	// Action is "created", "updated" or "deleted".
	Action string
	// Fields lists the configuration fields (JSON names) that differed,
	// for updates.
	Fields []string
	// Details says how each field differed and what was restored:
	// "sources removed [EVIL]", "max_age 1h0m0s -> 720h0m0s" (found ->
	// declared).
	Details []string
}

// String renders "updated stream APPROVALS: sources removed [EVIL]".
func (c Change) String() string {
	s := c.Action + " " + c.Kind + " " + c.Name
	if len(c.Details) > 0 {
		s += ": " + strings.Join(c.Details, "; ")
	}
	return s
}

// Summary lists what Provision changed; empty when everything was already
// as declared.
type Summary struct {
	Changes []Change
}

// Changed reports whether anything was created or updated.
func (s Summary) Changed() bool { return len(s.Changes) > 0 }

// String is one line for logs.
func (s Summary) String() string {
	if !s.Changed() {
		return "jetstream: no changes"
	}
	parts := make([]string, len(s.Changes))
	for i, c := range s.Changes {
		parts[i] = c.String()
	}
	return "jetstream: " + strings.Join(parts, "; ")
}

func (s *Summary) add(c *Change) {
	if c != nil {
		s.Changes = append(s.Changes, *c)
	}
}

// Provision declares every stream, bucket and durable consumer of kaar,
// creating what is missing and repairing what differs from the
// declaration. The whole configuration is compared, not only the fields
// kaar sets: an added source or mirror, a shorter retention, a lifted
// deny_delete, other limits, a consumer's filter or ack settings are
// each put back and reported in the Summary. It is idempotent: a second
// call with the same Config changes nothing and returns an empty Summary.
// What the server cannot change in place (storage, retention policy of
// some streams) makes it fail, naming the fields.
//
// Run it as the provisioner role ("kaar bus provision"): no service role
// may manage streams or consumers.
func Provision(ctx context.Context, js jetstream.JetStream, cfg Config) (Summary, error) {
	var sum Summary
	streams, err := Streams(cfg)
	if err != nil {
		return sum, err
	}
	buckets, _ := Buckets(cfg)
	consumers, _ := Consumers(cfg)

	// Buckets first: NOTIFY sources the other streams, so they must exist
	// before it, and buckets have no dependency.
	for _, b := range buckets {
		ch, err := ensureStream(ctx, js, BucketStream(b), "kv", b.Bucket)
		if err != nil {
			return sum, fmt.Errorf("provision kv %s: %w", b.Bucket, err)
		}
		sum.add(ch)
	}
	for _, want := range streams {
		ch, err := ensureStream(ctx, js, want, "stream", want.Name)
		if err != nil {
			return sum, fmt.Errorf("provision stream %s: %w", want.Name, err)
		}
		sum.add(ch)
	}
	for _, want := range consumers {
		ch, err := ensureConsumer(ctx, js, want)
		if err != nil {
			return sum, fmt.Errorf("provision consumer %s/%s: %w", want.Stream, want.Config.Durable, err)
		}
		sum.add(ch)
	}
	names := make([]string, 0, len(streams)+len(buckets))
	for _, st := range streams {
		names = append(names, st.Name)
	}
	for _, b := range buckets {
		names = append(names, "KV_"+b.Bucket)
	}
	for _, name := range names {
		chs, err := removeRelays(ctx, js, name)
		if err != nil {
			return sum, fmt.Errorf("provision stream %s: %w", name, err)
		}
		sum.Changes = append(sum.Changes, chs...)
	}
	return sum, nil
}

// removeRelays deletes the push consumers of a kaar stream that deliver
// anywhere but an inbox. A role allowed to create consumers on a stream
// (a key watch, an ordered read) could otherwise have the server deliver
// that stream's messages onto a subject the role may not publish to
// (another service's request endpoint; a stream's subject, where the
// delivery is stored once anything subscribes to that subject): the
// server does not check a consumer's deliver subject against its
// creator's permissions. kaar's own push consumers (key watches) deliver
// to their client's inbox.
func removeRelays(ctx context.Context, js jetstream.JetStream, stream string) ([]Change, error) {
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, err
	}
	var out []Change
	infos := st.ListConsumers(ctx)
	var relays []*jetstream.ConsumerInfo
	for ci := range infos.Info() {
		if d := ci.Config.DeliverSubject; d != "" && !strings.HasPrefix(d, "_INBOX") {
			relays = append(relays, ci)
		}
	}
	if err := infos.Err(); err != nil {
		return nil, err
	}
	for _, ci := range relays {
		if err := st.DeleteConsumer(ctx, ci.Name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return out, fmt.Errorf("delete consumer %s delivering to %s: %w", ci.Name, ci.Config.DeliverSubject, err)
		}
		out = append(out, Change{Kind: "consumer", Name: stream + "/" + ci.Name, Action: "deleted",
			Details: []string{"it delivered " + stream + " to " + ci.Config.DeliverSubject + " (a push consumer may deliver only to an inbox)"}})
	}
	return out, nil
}

// BucketStream is the stream configuration of a key-value bucket, as
// nats.go's CreateKeyValue builds it (jetstream/kv.go
// prepareKeyValueConfig), so that a bucket is declared and compared like
// any stream.
func BucketStream(kv jetstream.KeyValueConfig) jetstream.StreamConfig {
	history := int64(max(kv.History, 1))
	dup := 2 * time.Minute
	if kv.TTL > 0 && kv.TTL < dup {
		dup = kv.TTL
	}
	maxBytes, maxMsgSize := kv.MaxBytes, int32(kv.MaxValueSize)
	if maxBytes == 0 {
		maxBytes = -1
	}
	if maxMsgSize == 0 {
		maxMsgSize = -1
	}
	var compression jetstream.StoreCompression
	if kv.Compression {
		compression = jetstream.S2Compression
	}
	return jetstream.StreamConfig{
		Name:                   "KV_" + kv.Bucket,
		Description:            kv.Description,
		Subjects:               []string{"$KV." + kv.Bucket + ".>"},
		MaxMsgsPerSubject:      history,
		MaxBytes:               maxBytes,
		MaxAge:                 kv.TTL,
		MaxMsgSize:             maxMsgSize,
		Storage:                kv.Storage,
		Replicas:               max(kv.Replicas, 1),
		AllowRollup:            true,
		DenyDelete:             true,
		Duplicates:             dup,
		MaxMsgs:                -1,
		MaxConsumers:           -1,
		AllowDirect:            true,
		Compression:            compression,
		Discard:                jetstream.DiscardNew,
		AllowMsgTTL:            kv.LimitMarkerTTL > 0,
		SubjectDeleteMarkerTTL: kv.LimitMarkerTTL,
	}
}

// normalStream is want as the server stores it: the server's defaults
// for the limits kaar leaves unset.
func normalStream(c jetstream.StreamConfig) jetstream.StreamConfig {
	for _, p := range []*int64{&c.MaxMsgs, &c.MaxBytes, &c.MaxMsgsPerSubject} {
		if *p == 0 {
			*p = -1
		}
	}
	if c.MaxConsumers == 0 {
		c.MaxConsumers = -1
	}
	if c.MaxMsgSize == 0 {
		c.MaxMsgSize = -1
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.Duplicates == 0 {
		c.Duplicates = 2 * time.Minute
	}
	c.Metadata = userMetadata(c.Metadata)
	return c
}

// userMetadata drops the keys the server maintains (_nats.*: API level,
// server version).
func userMetadata(m map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		if !strings.HasPrefix(k, "_nats.") {
			out[k] = v
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// sourceKey identifies a source apart from its start position.
func sourceKey(s *jetstream.StreamSource) string {
	c := *s
	c.OptStartSeq, c.OptStartTime = 0, nil
	b, _ := json.Marshal(c)
	return string(b)
}

// sourceNames renders sources for a report: "AUDIT (kaar.prod.audit.>)".
func sourceNames(ss []*jetstream.StreamSource) []string {
	out := make([]string, 0, len(ss))
	for _, s := range ss {
		n := s.Name
		if s.FilterSubject != "" {
			n += " (" + s.FilterSubject + ")"
		}
		if s.External != nil {
			n += " (external " + s.External.APIPrefix + ")"
		}
		out = append(out, n)
	}
	return out
}

// withSourceStarts keeps the start positions of the sources have already
// has (they are where sourcing began, not configuration) and starts new
// ones after what their stream holds now.
func withSourceStarts(ctx context.Context, js jetstream.JetStream, want jetstream.StreamConfig, have []*jetstream.StreamSource) (jetstream.StreamConfig, error) {
	if len(want.Sources) == 0 {
		return want, nil
	}
	existing := map[string]*jetstream.StreamSource{}
	for _, s := range have {
		existing[sourceKey(s)] = s
	}
	out := make([]*jetstream.StreamSource, len(want.Sources))
	for i, s := range want.Sources {
		c := *s
		if h, ok := existing[sourceKey(s)]; ok {
			c.OptStartSeq, c.OptStartTime = h.OptStartSeq, h.OptStartTime
		} else if c.OptStartSeq == 0 && c.OptStartTime == nil && c.External == nil {
			st, err := js.Stream(ctx, c.Name)
			if err != nil {
				return want, fmt.Errorf("source stream %s: %w", c.Name, err)
			}
			c.OptStartSeq = st.CachedInfo().State.LastSeq + 1
		}
		out[i] = &c
	}
	want.Sources = out
	return want, nil
}

// durationFields are rendered as durations in reports.
var durationFields = map[string]bool{"max_age": true, "duplicate_window": true, "ack_wait": true,
	"subject_delete_marker_ttl": true, "inactive_threshold": true, "idle_heartbeat": true, "max_expires": true}

// configDiff compares two configurations of one type field by field (by
// their JSON form, so every field counts, including ones added to
// nats.go later) and describes each difference.
func configDiff(have, want any) (fields, details []string, err error) {
	h, err := jsonFields(have)
	if err != nil {
		return nil, nil, err
	}
	w, err := jsonFields(want)
	if err != nil {
		return nil, nil, err
	}
	keys := slices.Sorted(maps.Keys(h))
	for k := range w {
		if _, ok := h[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		hv, wv := h[k], w[k]
		if bytes.Equal(hv, wv) {
			continue
		}
		fields = append(fields, k)
		details = append(details, fmt.Sprintf("%s %s -> %s", k, render(k, hv), render(k, wv)))
	}
	return fields, details, nil
}

func jsonFields(v any) (map[string]json.RawMessage, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	return m, nil
}

func render(field string, v json.RawMessage) string {
	if v == nil {
		return "unset"
	}
	if durationFields[field] {
		var ns int64
		if json.Unmarshal(v, &ns) == nil {
			return time.Duration(ns).String()
		}
	}
	s := string(v)
	if len(s) > 120 {
		s = s[:117] + "..."
	}
	return s
}

func ensureStream(ctx context.Context, js jetstream.JetStream, want jetstream.StreamConfig, kind, name string) (*Change, error) {
	want = normalStream(want)
	st, err := js.Stream(ctx, want.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		if want, err = withSourceStarts(ctx, js, want, nil); err != nil {
			return nil, err
		}
		if _, err := js.CreateStream(ctx, want); err != nil {
			return nil, err
		}
		return &Change{Kind: kind, Name: name, Action: "created"}, nil
	}
	if err != nil {
		return nil, err
	}
	have := st.CachedInfo().Config
	have.Metadata = userMetadata(have.Metadata)
	if want, err = withSourceStarts(ctx, js, want, have.Sources); err != nil {
		return nil, err
	}
	// Where a clustered server placed the stream is its choice when kaar
	// names no placement (and moving it is not a repair).
	if want.Placement == nil {
		want.Placement = have.Placement
	}
	fields, details, err := configDiff(have, want)
	if err != nil {
		return nil, err
	}
	if len(fields) == 0 {
		return nil, nil
	}
	// Sources say which were added behind kaar's back.
	if i := slices.Index(fields, "sources"); i >= 0 {
		details[i] = describeSources(have.Sources, want.Sources)
	}
	if _, err := js.UpdateStream(ctx, want); err != nil {
		return nil, fmt.Errorf("%s differs from the declaration (%s) and the server refused to restore it: %w; remove the %s and run \"kaar bus provision\" again",
			want.Name, strings.Join(details, "; "), err, kind)
	}
	return &Change{Kind: kind, Name: name, Action: "updated", Fields: fields, Details: details}, nil
}

// describeSources is "sources removed [EVIL (>)], added [AUDIT]".
func describeSources(have, want []*jetstream.StreamSource) string {
	wk := map[string]bool{}
	for _, s := range want {
		wk[sourceKey(s)] = true
	}
	hk := map[string]bool{}
	for _, s := range have {
		hk[sourceKey(s)] = true
	}
	var removed, added []*jetstream.StreamSource
	for _, s := range have {
		if !wk[sourceKey(s)] {
			removed = append(removed, s)
		}
	}
	for _, s := range want {
		if !hk[sourceKey(s)] {
			added = append(added, s)
		}
	}
	var parts []string
	if len(removed) > 0 {
		parts = append(parts, fmt.Sprintf("sources removed [%s]", strings.Join(sourceNames(removed), ", ")))
	}
	if len(added) > 0 {
		parts = append(parts, fmt.Sprintf("sources added [%s]", strings.Join(sourceNames(added), ", ")))
	}
	if len(parts) == 0 {
		return "sources reordered"
	}
	return strings.Join(parts, ", ")
}

// normalConsumer is want as the server stores a durable pull consumer:
// the server's defaults for what kaar leaves unset.
func normalConsumer(c jetstream.ConsumerConfig) jetstream.ConsumerConfig {
	c.Name = c.Durable
	if c.AckWait == 0 {
		c.AckWait = 30 * time.Second
	}
	if c.MaxDeliver == 0 {
		c.MaxDeliver = -1
	}
	if c.MaxAckPending == 0 {
		c.MaxAckPending = 1000
	}
	if c.MaxWaiting == 0 {
		c.MaxWaiting = 512
	}
	if len(c.FilterSubjects) == 1 {
		c.FilterSubject, c.FilterSubjects = c.FilterSubjects[0], nil
	}
	c.Metadata = userMetadata(c.Metadata)
	return c
}

func ensureConsumer(ctx context.Context, js jetstream.JetStream, decl ConsumerDecl) (*Change, error) {
	name := decl.Stream + "/" + decl.Config.Durable
	want := normalConsumer(decl.Config)
	st, err := js.Stream(ctx, decl.Stream)
	if err != nil {
		return nil, err
	}
	c, err := st.Consumer(ctx, want.Durable)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		if _, err := st.CreateConsumer(ctx, want); err != nil {
			return nil, err
		}
		return &Change{Kind: "consumer", Name: name, Action: "created"}, nil
	}
	if err != nil {
		return nil, err
	}
	have := c.CachedInfo().Config
	have.Metadata = userMetadata(have.Metadata)
	fields, details, err := configDiff(have, want)
	if err != nil {
		return nil, err
	}
	if len(fields) == 0 {
		return nil, nil
	}
	if _, err := st.UpdateConsumer(ctx, want); err != nil {
		return nil, fmt.Errorf("consumer differs from the declaration (%s) and the server refused to restore it: %w; delete the consumer and run \"kaar bus provision\" again",
			strings.Join(details, "; "), err)
	}
	return &Change{Kind: "consumer", Name: name, Action: "updated", Fields: fields, Details: details}, nil
}
