package sandbox

import (
	"errors"
	"fmt"
)

// Sentinel errors, for callers to test with errors.Is.
var (
	// ErrInvalidOptions: a field of Options (or a command flag) is invalid.
	ErrInvalidOptions = errors.New("invalid sandbox options")
	// ErrNoGo: the Go toolchain needed to build the binaries is missing.
	ErrNoGo = errors.New("go toolchain not found")
	// ErrBuild: building a control-plane binary failed.
	ErrBuild = errors.New("build failed")
	// ErrNotRunning: the state directory holds no running sandbox.
	ErrNotRunning = errors.New("sandbox not running")
	// ErrStart: a control-plane component did not start or become ready.
	ErrStart = errors.New("sandbox start failed")
	// ErrUnknownUser: a user that the sandbox did not create was asked for.
	ErrUnknownUser = errors.New("unknown sandbox user")
)

func errInvalid(allowed string) error {
	return fmt.Errorf("%w: must be %s", ErrInvalidOptions, allowed)
}
