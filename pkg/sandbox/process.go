package sandbox

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// process is a component started by this program.
type process struct {
	ProcessState
	done chan struct{} // closed when the process has exited and been reaped
	err  error         // Wait's result, valid after done
	// args and detached are how it was started, to start it again
	// (Cluster.RestartAPIServer).
	args     []string
	detached bool
}

// startProcess starts binary with args, output appended to logPath.
func startProcess(name, binary string, args []string, logPath string, detached bool) (*process, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	defer func() { _ = logFile.Close() }() // the child has its own descriptor
	fmt.Fprintf(logFile, "==== %s: %s %q\n", time.Now().UTC().Format(time.RFC3339), binary, args)
	cmd := exec.Command(binary, args...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = sysProcAttr(detached)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{
		ProcessState: ProcessState{Name: name, PID: cmd.Process.Pid, Binary: binary, Log: logPath},
		done:         make(chan struct{}),
		args:         args,
		detached:     detached,
	}
	go func() { // reaps the child; owned by the process lifetime
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has exited.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stopProcesses stops the processes in reverse order: SIGTERM to each
// process group, then SIGKILL after grace. A pid that no longer runs its
// recorded binary is left alone.
func stopProcesses(ctx context.Context, procs []ProcessState, grace time.Duration, logger *slog.Logger) {
	for i := len(procs) - 1; i >= 0; i-- {
		stopProcess(ctx, procs[i], grace, logger)
	}
}

func stopProcess(ctx context.Context, p ProcessState, grace time.Duration, logger *slog.Logger) {
	if p.PID <= 0 || !isOurProcess(p.PID, p.Binary) {
		return
	}
	logger.Info("stopping sandbox process", slog.String("component", p.Name), slog.Int("pid", p.PID))
	_ = syscall.Kill(-p.PID, syscall.SIGTERM) // the process group: Setpgid made pgid == pid
	_ = syscall.Kill(p.PID, syscall.SIGTERM)
	if waitGone(ctx, p, grace) {
		return
	}
	logger.Warn("sandbox process ignored SIGTERM; killing", slog.String("component", p.Name), slog.Int("pid", p.PID))
	_ = syscall.Kill(-p.PID, syscall.SIGKILL)
	_ = syscall.Kill(p.PID, syscall.SIGKILL)
	waitGone(context.Background(), p, 5*time.Second)
}

// waitGone waits until p no longer runs, up to d.
func waitGone(ctx context.Context, p ProcessState, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if !isOurProcess(p.PID, p.Binary) {
			return true
		}
		select {
		case <-ctx.Done():
			return !isOurProcess(p.PID, p.Binary)
		case <-time.After(50 * time.Millisecond):
		}
	}
	return !isOurProcess(p.PID, p.Binary)
}

// logTail returns the last lines of a component's log, for error messages.
func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if len(b) > 64<<10 {
		b = b[len(b)-64<<10:]
	}
	return lastLines(string(b), n)
}
