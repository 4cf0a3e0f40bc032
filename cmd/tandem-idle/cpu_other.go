//go:build unix && !linux

package main

import "errors"

// errNoProc fails every CPU reading: they come from Linux's /proc.
var errNoProc = errors.New("CPU times are read from /proc, which only Linux has")

// clockTicks is Linux-only.
func clockTicks() (int, error) { return 0, errNoProc }

// processTicks is Linux-only.
func processTicks(int) (uint64, error) { return 0, errNoProc }

// machineTicks is Linux-only.
func machineTicks() (uint64, error) { return 0, errNoProc }
