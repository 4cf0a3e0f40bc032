//go:build unix && !linux

package chaos

import "syscall"

// procAttr puts a node in its own process group, so a Ctrl-C at the
// terminal reaches only the harness, which then kills the nodes.
func procAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
