//go:build linux

package serveproc

import "syscall"

// procAttr puts a node in its own process group, so a Ctrl-C at the
// terminal reaches only the command (which then stops the nodes), and has
// the kernel kill it if the command dies without doing so.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
