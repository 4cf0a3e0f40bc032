//go:build unix

package chaos

import (
	"os"
	"syscall"
)

// Signals the nemesis sends to node processes.
var (
	sigPause  os.Signal = syscall.SIGSTOP
	sigResume os.Signal = syscall.SIGCONT
	sigTerm   os.Signal = syscall.SIGTERM
)
