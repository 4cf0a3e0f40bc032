//go:build linux

package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// atClkTck is the ELF auxiliary vector's entry for the kernel's clock
// ticks per second (AT_CLKTCK in elf.h), what sysconf(_SC_CLK_TCK) and
// `getconf CLK_TCK` read.
const atClkTck = 17

// clockTicks returns the unit of /proc's CPU times, in ticks per second:
// the kernel's USER_HZ, from the auxiliary vector, else 100 (USER_HZ on
// every architecture Go supports on Linux).
func clockTicks() (int, error) {
	if auxv, err := unix.Auxv(); err == nil {
		for _, kv := range auxv {
			if kv[0] == atClkTck && kv[1] > 0 {
				return int(kv[1]), nil
			}
		}
	}
	return 100, nil
}

// processTicks returns the CPU time process pid has used, all its threads
// in user and kernel mode (utime plus stime of /proc/PID/stat), in clock
// ticks.
func processTicks(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStat(b)
}

// parseStat reads utime and stime, fields 14 and 15, from a
// /proc/PID/stat line. The command name, field 2, is in parentheses and
// may hold spaces and parentheses itself, so fields are counted from the
// last ')'.
func parseStat(b []byte) (uint64, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed stat line %q", b)
	}
	f := bytes.Fields(b[i+1:]) // f[0] is field 3, the state
	if len(f) < 13 {
		return 0, fmt.Errorf("malformed stat line %q", b)
	}
	utime, err := strconv.ParseUint(string(f[11]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("utime: %w", err)
	}
	stime, err := strconv.ParseUint(string(f[12]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stime: %w", err)
	}
	return utime + stime, nil
}

// machineTicks returns the CPU time every CPU of the machine has spent
// busy (user, nice, system, irq, softirq and steal of /proc/stat's cpu
// line), in clock ticks.
func machineTicks() (uint64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	return parseProcStat(b)
}

// parseProcStat sums the busy fields of /proc/stat's first line.
func parseProcStat(b []byte) (uint64, error) {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := bytes.Fields(line)
	if len(f) < 9 || string(f[0]) != "cpu" {
		return 0, fmt.Errorf("malformed /proc/stat line %q", line)
	}
	var busy uint64
	for _, i := range []int{1, 2, 3, 6, 7, 8} { // user nice system [idle iowait] irq softirq steal
		v, err := strconv.ParseUint(string(f[i]), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat field %d: %w", i, err)
		}
		busy += v
	}
	return busy, nil
}
