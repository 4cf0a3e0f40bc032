//go:build linux

package chaos

import "syscall"

// procAttr puts a node in its own process group, so a Ctrl-C at the
// terminal reaches only the harness (which then kills the nodes), and has
// the kernel kill it if the harness dies without cleaning up.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
