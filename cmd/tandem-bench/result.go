//go:build unix

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Result is everything one run measured; -json writes it.
type Result struct {
	// Date is when the run started, RFC 3339, UTC.
	Date string `json:"date"`
	// Machine describes the machine the run shared with nothing else it
	// knows of (other work may have run on it).
	Machine Machine `json:"machine"`
	// Settings are the run's flags.
	Settings Settings `json:"settings"`
	// Tandem describes the Tandem cluster and its memory.
	Tandem TandemInfo `json:"tandem"`
	// Redis describes the Redis primary and replica and their memory, or
	// why Redis was skipped.
	Redis RedisInfo `json:"redis"`
	// Workloads holds each workload's runs, one per target.
	Workloads []*Workload `json:"workloads"`
	// Goals says which of Tandem's goals against Redis the run met.
	Goals []Goal `json:"goals"`
}

// Machine describes where the run ran.
type Machine struct {
	// CPUs is the number of logical CPUs.
	CPUs int `json:"cpus"`
	// CPUModel is the first model name in /proc/cpuinfo.
	CPUModel string `json:"cpu_model,omitempty"`
	// MemoryBytes is MemTotal of /proc/meminfo.
	MemoryBytes int64 `json:"memory_bytes,omitempty"`
	// OS is the operating system and, on Linux, the kernel release.
	OS string `json:"os"`
	// GoVersion is the toolchain tandem-bench was built with.
	GoVersion string `json:"go_version"`
	// LoadAvgStart and LoadAvgEnd are /proc/loadavg when the run started
	// and ended: the machine's 1, 5 and 15 minute load averages, which
	// say how much other work shared it.
	LoadAvgStart string `json:"loadavg_start,omitempty"`
	LoadAvgEnd   string `json:"loadavg_end,omitempty"`
}

// Settings are a run's flags.
type Settings struct {
	// Args are the command-line arguments.
	Args []string `json:"args"`
	// Sessions is how many sessions each target's clients spread over.
	Sessions int `json:"sessions"`
	// ValueBytes is the size of each session's attribute.
	ValueBytes int `json:"value_bytes"`
	// Clients is the number of closed-loop clients.
	Clients int `json:"clients"`
	// DurationSeconds is each measured run's length.
	DurationSeconds float64 `json:"duration_seconds"`
	// WarmupSeconds is the unmeasured load before each run.
	WarmupSeconds float64 `json:"warmup_seconds"`
	// OpTimeoutSeconds bounds each request.
	OpTimeoutSeconds float64 `json:"op_timeout_seconds"`
	// RedisTTLSeconds is the PX of every Redis SET, in seconds; 0 for none.
	RedisTTLSeconds float64 `json:"redis_ttl_seconds"`
	// Seed seeds the clients' choices.
	Seed uint64 `json:"seed"`
}

// ProcessInfo names one server process.
type ProcessInfo struct {
	// Name is the node's -name, or redis-primary / redis-replica.
	Name string `json:"name"`
	// PID is its process id.
	PID int `json:"pid"`
	// HTTP, Gossip and Peer are a Tandem node's addresses.
	HTTP   string `json:"http,omitempty"`
	Gossip string `json:"gossip,omitempty"`
	Peer   string `json:"peer,omitempty"`
	// Addr is a Redis process's address.
	Addr string `json:"addr,omitempty"`
}

// Memory is one process's resident memory around the loading of the
// sessions.
type Memory struct {
	// Process names the process.
	Process string `json:"process"`
	// RSSBefore and RSSAfter are VmRSS before and after the loading, bytes.
	RSSBefore int64 `json:"rss_before"`
	RSSAfter  int64 `json:"rss_after"`
	// Copies is how many session copies the process holds after it.
	Copies int `json:"copies"`
	// BytesPerCopy is (RSSAfter − RSSBefore) / Copies.
	BytesPerCopy float64 `json:"bytes_per_copy"`
}

// memoryOf returns a process's memory record.
func memoryOf(name string, before, after int64, copies int) Memory {
	m := Memory{Process: name, RSSBefore: before, RSSAfter: after, Copies: copies}
	if copies > 0 {
		m.BytesPerCopy = float64(after-before) / float64(copies)
	}
	return m
}

// perCopy returns the processes' memory growth over all their copies.
func perCopy(ms []Memory) float64 {
	var delta int64
	copies := 0
	for _, m := range ms {
		delta += m.RSSAfter - m.RSSBefore
		copies += m.Copies
	}
	if copies == 0 {
		return 0
	}
	return float64(delta) / float64(copies)
}

// TandemInfo describes the Tandem cluster of a run.
type TandemInfo struct {
	// Binary is the path of the node binary.
	Binary string `json:"binary"`
	// BinarySource says how it was found.
	BinarySource string `json:"binary_source"`
	// Version is what `tandem version` printed.
	Version string `json:"version"`
	// Commit is the source tree's commit when tandem-bench built the
	// binary, "-dirty" if tracked files had changes.
	Commit string `json:"commit,omitempty"`
	// Processes are the three `tandem serve` processes.
	Processes []ProcessInfo `json:"processes"`
	// LoadSeconds is how long loading the sessions took.
	LoadSeconds float64 `json:"load_seconds"`
	// Memory is each process's resident memory around the loading.
	Memory []Memory `json:"memory,omitempty"`
	// BytesPerCopy is the processes' memory growth over all their copies.
	BytesPerCopy float64 `json:"bytes_per_copy,omitempty"`
	// MemoryNote says why memory was not measured.
	MemoryNote string `json:"memory_note,omitempty"`
}

// RedisInfo describes the Redis primary and replica of a run.
type RedisInfo struct {
	// Skipped says why Redis was not measured; empty when it was.
	Skipped string `json:"skipped,omitempty"`
	// Binary is the path of redis-server.
	Binary string `json:"binary,omitempty"`
	// Version is what redis-server --version printed.
	Version string `json:"version,omitempty"`
	// Processes are the primary and the replica.
	Processes []ProcessInfo `json:"processes,omitempty"`
	// ValueBytes is the size of one stored session value.
	ValueBytes int `json:"value_bytes,omitempty"`
	// LoadSeconds is how long loading the sessions took.
	LoadSeconds float64 `json:"load_seconds,omitempty"`
	// Memory is each process's resident memory around the loading.
	Memory []Memory `json:"memory,omitempty"`
	// BytesPerCopy is the processes' memory growth over all their copies.
	BytesPerCopy float64 `json:"bytes_per_copy,omitempty"`
	// MemoryNote says why memory was not measured.
	MemoryNote string `json:"memory_note,omitempty"`
}

// Workload is one workload's runs.
type Workload struct {
	// Name is mix or writes.
	Name string `json:"name"`
	// ReadShare is the share of requests that are reads.
	ReadShare float64 `json:"read_share"`
	// Runs holds one run per target.
	Runs []*TargetRun `json:"runs"`
}

// TargetRun is one workload's measured run against one target.
type TargetRun struct {
	// Target names it: client, http, http-msgpack, embedded or redis.
	Target string `json:"target"`
	// Sessions is how many sessions its clients spread over.
	Sessions int `json:"sessions"`
	// Seconds is how long it ran, until the last client stopped.
	Seconds float64 `json:"seconds"`
	// All sums every request.
	All *OpStats `json:"all"`
	// Ops holds the figures per kind of request: read, write.
	Ops map[string]*OpStats `json:"ops"`
	// VsRedis compares a Tandem target with Redis in the same workload;
	// absent for Redis and when Redis was not measured.
	VsRedis *Ratios `json:"vs_redis,omitempty"`
}

// OpStats are the figures of one kind of request.
type OpStats struct {
	// Count is how many succeeded.
	Count int `json:"count"`
	// Errors is how many failed; FirstErrors says how, for the first few.
	Errors      int      `json:"errors"`
	FirstErrors []string `json:"first_errors,omitempty"`
	// PerSecond is Count over the run's Seconds.
	PerSecond float64 `json:"per_second"`
	// P50, P99, P999, Max and Mean are latencies of the successful ones,
	// in microseconds.
	P50  float64 `json:"p50_us"`
	P99  float64 `json:"p99_us"`
	P999 float64 `json:"p999_us"`
	Max  float64 `json:"max_us"`
	Mean float64 `json:"mean_us"`
}

// Ratios compare a Tandem target's run with Redis's run of the same
// workload: throughputs as Tandem ÷ Redis (above 1: Tandem serves more),
// latencies as Tandem ÷ Redis (below 1: Tandem answers sooner).
type Ratios struct {
	// Throughput compares every request per second.
	Throughput float64 `json:"throughput"`
	// ReadThroughput and WriteThroughput compare each kind; 0 when a side
	// has none.
	ReadThroughput  float64 `json:"read_throughput,omitempty"`
	WriteThroughput float64 `json:"write_throughput,omitempty"`
	// ReadP99 and WriteP99 compare the p99 latencies.
	ReadP99  float64 `json:"read_p99,omitempty"`
	WriteP99 float64 `json:"write_p99,omitempty"`
}

// Goal is one of Tandem's goals against Redis and whether the run met it.
type Goal struct {
	// Goal states it.
	Goal string `json:"goal"`
	// Measured is what the run measured, as text.
	Measured string `json:"measured"`
	// Met is whether it was met; absent when it could not be measured.
	Met *bool `json:"met,omitempty"`
}

// newResult returns the record of a run with options o.
func newResult(o options, args []string) *Result {
	r := &Result{
		Date:    time.Now().UTC().Format(time.RFC3339),
		Machine: machine(),
		Settings: Settings{
			Args: args, Sessions: o.sessions, ValueBytes: o.valueSize, Clients: o.clients,
			DurationSeconds: o.duration.Seconds(), WarmupSeconds: o.warmup.Seconds(), OpTimeoutSeconds: o.opTimeout.Seconds(),
			RedisTTLSeconds: o.redisTTL.Seconds(), Seed: o.seed,
		},
	}
	if r.Settings.Args == nil {
		r.Settings.Args = []string{}
	}
	for _, w := range o.workloads {
		r.Workloads = append(r.Workloads, &Workload{Name: w, ReadShare: readShare(w)})
	}
	if o.redisMode == redisOff {
		r.Redis.Skipped = "left out (-redis=off or not in -targets)"
	}
	return r
}

// machine describes this machine.
func machine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), OS: runtime.GOOS, GoVersion: runtime.Version()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.OS += " " + strings.TrimSpace(string(b))
	}
	m.LoadAvgStart = loadAvg()
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) == 3 && f[0] == "MemTotal:" && f[2] == "kB" {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				m.MemoryBytes = kb << 10
			}
		}
	}
	return m
}

// loadAvg returns the 1, 5 and 15 minute load averages of /proc/loadavg,
// or "".
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	if f := strings.Fields(string(b)); len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return ""
}

// add records a run of workload.
func (r *Result) add(workload string, run *TargetRun) {
	for _, w := range r.Workloads {
		if w.Name == workload {
			w.Runs = append(w.Runs, run)
		}
	}
}

// run returns the run of target in workload, or nil.
func (r *Result) run(workload, target string) *TargetRun {
	for _, w := range r.Workloads {
		if w.Name != workload {
			continue
		}
		for _, t := range w.Runs {
			if t.Target == target {
				return t
			}
		}
	}
	return nil
}

// finish computes the ratios to Redis, the memory per copy and the goals.
func (r *Result) finish() {
	r.Machine.LoadAvgEnd = loadAvg()
	r.Tandem.BytesPerCopy = perCopy(r.Tandem.Memory)
	r.Redis.BytesPerCopy = perCopy(r.Redis.Memory)
	for _, w := range r.Workloads {
		redis := r.run(w.Name, targetRedis)
		if redis == nil {
			continue
		}
		for _, t := range w.Runs {
			if t.Target != targetRedis {
				t.VsRedis = ratios(t, redis)
			}
		}
	}
	r.Goals = r.goals()
}

// ratios compares run t with Redis's run.
func ratios(t, redis *TargetRun) *Ratios {
	div := func(a, b float64) float64 {
		if a == 0 || b == 0 {
			return 0
		}
		return a / b
	}
	out := &Ratios{Throughput: div(t.All.PerSecond, redis.All.PerSecond)}
	if a, b := t.Ops["read"], redis.Ops["read"]; a != nil && b != nil {
		out.ReadThroughput, out.ReadP99 = div(a.PerSecond, b.PerSecond), div(a.P99, b.P99)
	}
	if a, b := t.Ops["write"], redis.Ops["write"]; a != nil && b != nil {
		out.WriteThroughput, out.WriteP99 = div(a.PerSecond, b.PerSecond), div(a.P99, b.P99)
	}
	return out
}

// goals says which goals the run met.
func (r *Result) goals() []Goal {
	var out []Goal
	verdict := func(goal string, ok bool, measured string) {
		out = append(out, Goal{Goal: goal, Measured: measured, Met: &ok})
	}
	unknown := func(goal, why string) { out = append(out, Goal{Goal: goal, Measured: why}) }
	throughput := func(target, workload string, want float64, label string) {
		goal := fmt.Sprintf("%s ≥ %.1f× Redis on %s", label, want, workloadLabel(workload))
		t := r.run(workload, target)
		switch {
		case t == nil:
			unknown(goal, target+" or "+workload+" left out")
		case t.VsRedis == nil:
			unknown(goal, "no Redis")
		default:
			verdict(goal, t.VsRedis.Throughput >= want, fmt.Sprintf("%.2f× (%.0f against %.0f ops/s)", t.VsRedis.Throughput, t.All.PerSecond, r.run(workload, targetRedis).All.PerSecond))
		}
	}
	throughput(targetClient, workloadMix, 1.1, "smart client")
	throughput(targetClient, workloadWrites, 1.1, "smart client")
	throughput(targetHTTP, workloadMix, 0.6, "HTTP (JSON)")
	throughput(targetHTTPMsgpack, workloadMix, 0.6, "HTTP (msgpack)")
	for _, target := range []string{targetClient, targetHTTP, targetHTTPMsgpack, targetEmbedded} {
		goal := fmt.Sprintf("%s: write p99 ≤ Redis's", target)
		var parts []string
		ok, measured := true, false
		for _, w := range r.Workloads {
			t := r.run(w.Name, target)
			if t == nil || t.VsRedis == nil || t.VsRedis.WriteP99 == 0 {
				continue
			}
			measured = true
			ok = ok && t.VsRedis.WriteP99 <= 1
			parts = append(parts, fmt.Sprintf("%s %.2f× (%s against %s)", w.Name, t.VsRedis.WriteP99, ms(t.Ops["write"].P99), ms(r.run(w.Name, targetRedis).Ops["write"].P99)))
		}
		if !measured {
			if r.run(workloadWrites, target) != nil || r.run(workloadMix, target) != nil {
				unknown(goal, "no Redis")
			}
			continue
		}
		verdict(goal, ok, strings.Join(parts, ", "))
	}
	goal := "≤ 1.3 KiB per 1 KiB session copy"
	switch {
	case len(r.Tandem.Memory) == 0:
		unknown(goal, r.Tandem.MemoryNote)
	case r.Tandem.BytesPerCopy <= 0:
		unknown(goal, "the processes' memory did not grow: too few sessions to tell")
	default:
		per := r.Tandem.BytesPerCopy / float64(r.Settings.ValueBytes) // KiB per KiB at 1 KiB sessions
		m := fmt.Sprintf("%.0f B per copy of a %d B session (%.2f×)", r.Tandem.BytesPerCopy, r.Settings.ValueBytes, per)
		if r.Redis.BytesPerCopy > 0 {
			m += fmt.Sprintf("; Redis %.0f B", r.Redis.BytesPerCopy)
		}
		verdict(goal, per <= 1.3, m)
	}
	return out
}

// workloadLabel names a workload in a sentence.
func workloadLabel(w string) string {
	if w == workloadMix {
		return "the mix"
	}
	return "writes"
}

// ms formats microseconds as milliseconds.
func ms(us float64) string { return fmt.Sprintf("%.2f ms", us/1000) }

// writeJSON writes r, indented, to path.
func (r *Result) writeJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode the result: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write the result: %w", err)
	}
	return nil
}

// print writes r as tables.
func (r *Result) print(w io.Writer) error {
	var b bytes.Buffer
	s := r.Settings
	fmt.Fprintf(&b, "tandem-bench %s: %d sessions of %d B, %d closed-loop clients, %gs per workload and target (after %gs warm-up)\n",
		r.Date, s.Sessions, s.ValueBytes, s.Clients, s.DurationSeconds, s.WarmupSeconds)
	m := r.Machine
	fmt.Fprintf(&b, "machine: %d CPUs (%s), %.0f GiB, %s, %s\n", m.CPUs, m.CPUModel, float64(m.MemoryBytes)/(1<<30), m.OS, m.GoVersion)
	fmt.Fprintf(&b, "         the load generator, the embedded node and the servers share it, with whatever else runs on it: a floor, not a ceiling\n")
	if m.LoadAvgStart != "" {
		fmt.Fprintf(&b, "         load average %s at the start, %s at the end\n", m.LoadAvgStart, m.LoadAvgEnd)
	}
	fmt.Fprintf(&b, "tandem:  %s, 3 processes (%s)\n", r.Tandem.Version, r.Tandem.BinarySource)
	if r.Tandem.Commit != "" {
		fmt.Fprintf(&b, "         at commit %s\n", r.Tandem.Commit)
	}
	if r.Redis.Skipped != "" {
		fmt.Fprintf(&b, "redis:   skipped: %s\n", r.Redis.Skipped)
	} else {
		fmt.Fprintf(&b, "redis:   %s, primary + replica, no persistence, WAIT 1 0 after every SET; values of %d B\n", r.Redis.Version, r.Redis.ValueBytes)
	}
	for _, wl := range r.Workloads {
		fmt.Fprintf(&b, "\n%s (%.0f %% reads)\n", wl.Name, 100*wl.ReadShare)
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "target\top\tops/s\tp50 ms\tp99 ms\tp99.9 ms\terrors\tops/s ÷ Redis\tp99 ÷ Redis\t")
		for _, t := range wl.Runs {
			rows := []string{"all", "read", "write"}
			for _, op := range rows {
				st := t.All
				if op != "all" {
					st = t.Ops[op]
				}
				if st == nil || (op != "all" && len(t.Ops) < 2) {
					continue
				}
				name := t.Target
				if op != "all" {
					name = ""
				}
				ratio, p99 := "", ""
				if v := t.VsRedis; v != nil {
					switch op {
					case "all":
						ratio = fmt.Sprintf("%.2f", v.Throughput)
					case "read":
						ratio, p99 = fmt.Sprintf("%.2f", v.ReadThroughput), fmt.Sprintf("%.2f", v.ReadP99)
					case "write":
						ratio, p99 = fmt.Sprintf("%.2f", v.WriteThroughput), fmt.Sprintf("%.2f", v.WriteP99)
					}
					if op == "all" && len(t.Ops) == 1 {
						for k := range t.Ops {
							if k == "write" {
								p99 = fmt.Sprintf("%.2f", v.WriteP99)
							} else {
								p99 = fmt.Sprintf("%.2f", v.ReadP99)
							}
						}
					}
				}
				fmt.Fprintf(tw, "%s\t%s\t%.0f\t%.3f\t%.3f\t%.3f\t%d\t%s\t%s\t\n", name, op, st.PerSecond, st.P50/1000, st.P99/1000, st.P999/1000, st.Errors, ratio, p99)
			}
		}
		tw.Flush()
	}
	fmt.Fprintf(&b, "\nresident memory per session copy: (VmRSS after loading − before) ÷ copies held\n")
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "process\tVmRSS before\tafter\tcopies\tper copy\t")
	for _, group := range []struct {
		name string
		ms   []Memory
		per  float64
		note string
	}{{"tandem", r.Tandem.Memory, r.Tandem.BytesPerCopy, r.Tandem.MemoryNote}, {"redis", r.Redis.Memory, r.Redis.BytesPerCopy, r.Redis.MemoryNote}} {
		if group.note != "" {
			fmt.Fprintf(tw, "%s\tnot measured: %s\t\t\t\t\n", group.name, group.note)
		}
		if len(group.ms) == 0 {
			continue
		}
		copies := 0
		for _, mm := range group.ms {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%.0f B\t\n", mm.Process, mib(mm.RSSBefore), mib(mm.RSSAfter), mm.Copies, mm.BytesPerCopy)
			copies += mm.Copies
		}
		fmt.Fprintf(tw, "%s, all\t\t\t%d\t%.0f B\t\n", group.name, copies, group.per)
	}
	tw.Flush()
	if s.Sessions < 5000 {
		fmt.Fprintf(&b, "(with %d sessions the growth is within the runtime's and allocator's noise)\n", s.Sessions)
	}
	fmt.Fprintf(&b, "\ngoals\n")
	for _, g := range r.Goals {
		v := "not measured"
		if g.Met != nil {
			v = "met"
			if !*g.Met {
				v = "MISSED"
			}
		}
		fmt.Fprintf(&b, "  %-45s %-12s %s\n", g.Goal, v, g.Measured)
	}
	_, err := w.Write(b.Bytes())
	return err
}

// mib formats bytes in MiB.
func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
