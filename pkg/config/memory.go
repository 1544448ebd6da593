package config

import "fmt"

// server.memory_limit: the soft memory limit of a kaar process (Go's
// runtime/debug.SetMemoryLimit, what GOMEMLIMIT sets). Under it the
// garbage collector works harder instead of letting the heap grow to
// twice what is live, and returns freed memory to the system sooner: the
// watcher's caches at 10,000 pods stay well inside it (BENCHMARKS.md).
// It is soft: a process that needs more still gets it (at the price of
// more collection), so it is no replacement for a container limit.
const (
	// MemoryLimitAuto (the default): 90% of the container's memory limit
	// (its cgroup) when it has one, none otherwise.
	MemoryLimitAuto = "auto"
	// MemoryLimitOff: no soft limit (the Go runtime's default).
	MemoryLimitOff = "off"
)

// minMemoryLimit is the smallest explicit server.memory_limit: below it
// the collector would run all the time.
const minMemoryLimit = 32 << 20

// autoMemoryPercent is the share of the container's limit auto takes:
// the rest is for what the Go runtime does not count (the binary, thread
// stacks of cgo, the kernel's accounting).
const autoMemoryPercent = 90

// ValidateMemoryLimit checks a server.memory_limit value; its error names
// the key.
func ValidateMemoryLimit(v string) error {
	if v == MemoryLimitAuto || v == MemoryLimitOff {
		return nil
	}
	n, err := ParseQuantityBytes(v)
	if err != nil {
		return fieldErr("server.memory_limit", err.Error(), MemoryLimitAuto, MemoryLimitOff, "a size such as 96Mi")
	}
	if n < minMemoryLimit {
		return fieldErr("server.memory_limit", fmt.Sprintf("%s is below 32Mi: the collector would run all the time", v))
	}
	return nil
}

// SoftMemoryLimit is the soft memory limit in bytes that
// server.memory_limit gives a process whose container may use
// containerLimit bytes (0: it has no limit); 0 means none. It expects a
// validated configuration.
func (s Server) SoftMemoryLimit(containerLimit int64) int64 {
	switch s.MemoryLimit {
	case MemoryLimitOff:
		return 0
	case MemoryLimitAuto, "":
		return containerLimit / 100 * autoMemoryPercent
	}
	n, _ := ParseQuantityBytes(s.MemoryLimit)
	return n
}
