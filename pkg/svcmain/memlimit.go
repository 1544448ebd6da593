package svcmain

import (
	"log/slog"
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/kaar-dev/kaar/pkg/config"
)

// ApplyMemoryLimit sets this process's soft memory limit from
// server.memory_limit (config/memory.go), once, at start: Run and kaar
// serve call it. GOMEMLIMIT in the environment wins: the Go runtime has
// applied it already.
func ApplyMemoryLimit(cfg config.Server, logger *slog.Logger) {
	if v := os.Getenv("GOMEMLIMIT"); v != "" {
		logger.Info("soft memory limit from GOMEMLIMIT", slog.String("gomemlimit", v))
		return
	}
	container := cgroupMemoryLimit(os.ReadFile)
	limit := cfg.SoftMemoryLimit(container)
	if limit <= 0 {
		return
	}
	debug.SetMemoryLimit(limit)
	logger.Info("soft memory limit", slog.String("server.memory_limit", cfg.MemoryLimit), slog.Int64("bytes", limit),
		slog.Int64("container_limit_bytes", container))
}

// cgroupMemoryLimit is the memory limit of this process's cgroup (v2
// memory.max, else v1 memory.limit_in_bytes), 0 when there is none or it
// cannot be read.
func cgroupMemoryLimit(read func(string) ([]byte, error)) int64 {
	for _, path := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		b, err := read(path)
		if err != nil {
			continue
		}
		v := strings.TrimSpace(string(b))
		n, err := strconv.ParseInt(v, 10, 64)
		// "max" (v2) and v1's "no limit" (a page-rounded MaxInt64) mean none.
		if err != nil || n <= 0 || n >= math.MaxInt64/2 {
			return 0
		}
		return n
	}
	return 0
}
