//go:build unix && !linux

package serveproc

import "syscall"

// procAttr puts a node in its own process group, so a Ctrl-C at the
// terminal reaches only the command, which then stops the nodes.
func procAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
