package sandbox

import (
	"bytes"
	"fmt"
	"os"
	"syscall"
)

// sysProcAttr puts each component in its own process group (so a Ctrl-C
// in the terminal does not reach a detached sandbox) and, unless detached,
// has the kernel kill it when the process that started it dies.
func sysProcAttr(detached bool) *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Setpgid: true}
	if !detached {
		a.Pdeathsig = syscall.SIGKILL
	}
	return a
}

// isOurProcess reports whether pid runs binary (argv[0]) and is not a
// zombie, so that a recycled pid is never signalled.
func isOurProcess(pid int, binary string) bool {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	argv0, _, _ := bytes.Cut(cmdline, []byte{0})
	if string(argv0) != binary {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name: "pid (comm) S ...".
	if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
		return false
	}
	return true
}
