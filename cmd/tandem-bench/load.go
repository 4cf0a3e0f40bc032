//go:build unix

package main

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"time"
)

// worker is one load client's handle on a target: Read and Write act on
// session i of the target's sessions.
type worker interface {
	Read(ctx context.Context, i int) error
	Write(ctx context.Context, i int) error
	Close() error
}

// target is a system under load.
type target struct {
	name string
	// sessions is how many sessions Read and Write take, numbered from 0.
	sessions int
	// newWorker returns load client c's worker.
	newWorker func(ctx context.Context, c int) (worker, error)
	// profile, if not nil, begins CPU profiles of the measured run of a
	// workload lasting about d (profiler.start), and returns what ends
	// them.
	profile func(ctx context.Context, workload, target string, d time.Duration) func() error
}

// opSamples is what one load client recorded for one kind of request.
type opSamples struct {
	latencies []time.Duration
	errors    int
	firstErrs []string
}

// add records one request's outcome.
func (s *opSamples) add(d time.Duration, err error) {
	if err == nil {
		s.latencies = append(s.latencies, d)
		return
	}
	s.errors++
	if len(s.firstErrs) < 3 {
		s.firstErrs = append(s.firstErrs, err.Error())
	}
}

// merge adds o's samples to s.
func (s *opSamples) merge(o *opSamples) {
	s.latencies = append(s.latencies, o.latencies...)
	s.errors += o.errors
	for _, e := range o.firstErrs {
		if len(s.firstErrs) < 3 {
			s.firstErrs = append(s.firstErrs, e)
		}
	}
}

// runLoad drives t with o.clients closed-loop clients: a warm-up of
// o.warmup whose results are dropped, then the measured run of o.duration
// (at most o.maxOps requests). Each client draws sessions uniformly and
// makes a request a read with probability reads. A request that started
// before the end is waited for and counted; throughput divides by the time
// until the last client stopped.
func runLoad(ctx context.Context, t target, workload string, o options) (*TargetRun, error) {
	workers := make([]worker, 0, o.clients)
	defer func() {
		for _, w := range workers {
			_ = w.Close()
		}
	}()
	for c := range o.clients {
		w, err := t.newWorker(ctx, c)
		if err != nil {
			return nil, fmt.Errorf("%s: load client %d: %w", t.name, c, err)
		}
		workers = append(workers, w)
	}
	reads := readShare(workload)
	if o.warmup > 0 {
		if _, _, err := drive(ctx, workers, t.sessions, reads, o.warmup, o.maxOps, o.opTimeout, o.seed^0x5eed); err != nil {
			return nil, fmt.Errorf("%s %s warm-up: %w", t.name, workload, err)
		}
	}
	var endProfiles func() error
	if t.profile != nil {
		endProfiles = t.profile(ctx, workload, t.name, o.duration)
	}
	samples, elapsed, err := drive(ctx, workers, t.sessions, reads, o.duration, o.maxOps, o.opTimeout, o.seed)
	if endProfiles != nil {
		if perr := endProfiles(); perr != nil && err == nil {
			err = fmt.Errorf("-pprof: %w", perr)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", t.name, workload, err)
	}
	run := &TargetRun{Target: t.name, Sessions: t.sessions, Seconds: elapsed.Seconds(), Ops: map[string]*OpStats{}}
	var all opSamples
	for _, kind := range []string{"read", "write"} {
		s := samples[kind]
		if len(s.latencies) == 0 && s.errors == 0 {
			continue
		}
		run.Ops[kind] = statsOf(s, elapsed)
		all.merge(s)
	}
	run.All = statsOf(&all, elapsed)
	return run, nil
}

// drive runs the clients for d, at most maxOps requests in all, and
// returns their samples by kind and how long they ran.
func drive(ctx context.Context, workers []worker, sessions int, reads float64, d time.Duration, maxOps int, opTimeout time.Duration, seed uint64) (map[string]*opSamples, time.Duration, error) {
	perClient := max(1, maxOps/len(workers))
	total := map[string]*opSamples{"read": {}, "write": {}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(d)
	for c, w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, uint64(c)))
			local := map[string]*opSamples{"read": {}, "write": {}}
			for n := 0; n < perClient && ctx.Err() == nil && time.Now().Before(end); n++ {
				i := rng.IntN(sessions)
				kind, op := "write", w.Write
				if rng.Float64() < reads {
					kind, op = "read", w.Read
				}
				octx, cancel := context.WithTimeout(ctx, opTimeout)
				t0 := time.Now()
				err := op(octx, i)
				lat := time.Since(t0)
				cancel()
				if ctx.Err() != nil {
					break // interrupted: not a result
				}
				local[kind].add(lat, err)
			}
			mu.Lock()
			for k, s := range local {
				total[k].merge(s)
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	return total, time.Since(start), nil
}

// statsOf summarizes samples over elapsed.
func statsOf(s *opSamples, elapsed time.Duration) *OpStats {
	slices.Sort(s.latencies)
	st := &OpStats{Count: len(s.latencies), Errors: s.errors, FirstErrors: s.firstErrs}
	if elapsed > 0 {
		st.PerSecond = float64(len(s.latencies)) / elapsed.Seconds()
	}
	if len(s.latencies) > 0 {
		st.P50 = micros(percentile(s.latencies, 50))
		st.P99 = micros(percentile(s.latencies, 99))
		st.P999 = micros(percentile(s.latencies, 99.9))
		st.Max = micros(s.latencies[len(s.latencies)-1])
		var sum time.Duration
		for _, l := range s.latencies {
			sum += l
		}
		st.Mean = micros(sum / time.Duration(len(s.latencies)))
	}
	return st
}

// percentile returns the p-th percentile of sorted (nearest rank).
func percentile(sorted []time.Duration, p float64) time.Duration {
	rank := int(math.Ceil(p/100*float64(len(sorted)) - 1e-9)) // 99.9 % of 1000 is 999, not 999.0000000000001
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// micros returns d in microseconds.
func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// prefill runs write(ctx, i) once for every i in [0, n), with clients
// writers at once, each write bounded by opTimeout; the first error stops
// it.
func prefill(ctx context.Context, n, clients int, opTimeout time.Duration, write func(ctx context.Context, c, i int) error) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var once sync.Once
	var first error
	var wg sync.WaitGroup
	for c := range min(clients, n) {
		wg.Go(func() {
			for i := c; i < n && wctx.Err() == nil; i += clients {
				octx, ocancel := context.WithTimeout(wctx, opTimeout)
				err := write(octx, c, i)
				ocancel()
				if err != nil {
					once.Do(func() { first = fmt.Errorf("load session %d: %w", i, err); cancel() })
					return
				}
			}
		})
	}
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}
