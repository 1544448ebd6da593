package main_test

import (
	"context"
	"log/slog"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/config"
	"github.com/kaar-dev/kaar/pkg/svcmain"
)

// roleJetStream connects to url as role, with the role's seed from the
// state directory that kaar serve and kaar nats use (as kaar's own
// commands do), and returns its JetStream: a test acts on the bus with a
// role's permissions only, like any client.
func roleJetStream(t testing.TB, url string, role bus.Role) jetstream.JetStream {
	t.Helper()
	nc, err := bus.Connect(context.Background(), url, svcmain.ConnectOptions(config.Default(), "kaar-"+string(role), slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatalf("connect as %s: %v", role, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}
