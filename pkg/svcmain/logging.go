package svcmain

import (
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/kaar-dev/kaar/pkg/config"
)

// NewLogger builds the process logger from server.log_level, log_format and
// log_file. It never writes to stdout, which belongs to the MCP stdio
// transport when that is in use.
func NewLogger(c config.Server, stderr io.Writer) (*slog.Logger, func() error, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return nil, nil, fmt.Errorf("server.log_level: %w", err)
	}
	w, closeFn := stderr, func() error { return nil }
	if c.LogFile != "" {
		f, err := os.OpenFile(c.LogFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640)
		if err != nil {
			return nil, nil, fmt.Errorf("server.log_file: %w", err)
		}
		w, closeFn = f, f.Close
	}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewTextHandler(w, opts)
	if c.LogFormat == "json" {
		h = slog.NewJSONHandler(w, opts)
	}
	logger := slog.New(h)
	// Credential files others may read (config.LoadFile found them;
	// server.strict_file_permissions would have refused to start).
	for _, f := range c.FilePermissionWarnings() {
		logger.Warn("credential file is readable by others: chmod 600 it (640 with the service's group for the configuration file)",
			slog.String("key", f.Key), slog.String("file", f.Path), slog.String("mode", fmt.Sprintf("%04o", f.Mode.Perm())))
	}
	return logger, closeFn, nil
}
