//go:build !linux

package sandbox

import "syscall"

// sysProcAttr puts each component in its own process group. Outside Linux
// there is no parent-death signal: a non-detached sandbox must be stopped
// with Down.
func sysProcAttr(detached bool) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// isOurProcess reports whether pid is alive. Without /proc the binary is
// not checked.
func isOurProcess(pid int, binary string) bool {
	return syscall.Kill(pid, 0) == nil
}
