//go:build unix && !linux

package main

import (
	"errors"
	"syscall"
)

// procAttr returns no attributes: process groups and the parent-death
// signal are set on Linux only.
func procAttr() *syscall.SysProcAttr { return nil }

// rss is known on Linux only (/proc/PID/status); elsewhere memory is not
// measured.
func rss(pid int) (int64, error) {
	return 0, errors.New("resident memory is read from /proc, on Linux only")
}
