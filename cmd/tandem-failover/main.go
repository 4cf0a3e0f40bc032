// Command tandem-failover measures what a node failure costs a Tandem
// cluster on this machine. Each trial starts a local cluster, writes
// sessions, crashes one node (its gossip and peer listeners vanish at once,
// as with kill -9) and measures:
//
//   - read gap: crash → first successful read of a session the dead node was
//     primary of (reads fall back to the buddy, so this is the cost of one
//     refused connection);
//
//   - read stall: the longest any one read of such a session waited, reads
//     made back to back through a survivor from the crash until the write
//     gap ends (a buddy answers for the dead primary only while it holds a
//     lease from it; between the lease's end and its promotion reads wait);
//
//   - write gap: crash → first successful write of such a session (the buddy
//     must be promoted, so this is failure detection plus one ring change);
//
//   - copies restored: crash → every survivor holds every partition it owns
//     (the new buddies have pulled their copies);
//
//   - rejoin to ready: a node started under the dead node's name, with empty
//     memory → it holds every partition it owns and reports ready;
//
//   - failback write stall: the longest any one write waited, writes made
//     back to back through a survivor from the rejoin until a second after
//     ready, to a session whose primary moves back to the returning node and
//     to one whose buddy does (owners wait until the previous owners have
//     the returning node in their ring, and it has pulled their copies).
//
//     tandem-failover -trials 20 -sessions 1000
//     tandem-failover -trials 1 -sessions 100000 -value-size 1024
//
// Every trial is bounded in time and the tool stops by itself.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/tandem-io/tandem"
	"github.com/tandem-io/tandem/cluster"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "tandem-failover:", err)
		os.Exit(1)
	}
}

// options are the command's flags.
type options struct {
	trials, nodes, sessions, valueSize int
	timeout                            time.Duration
	profile                            cluster.Profile
}

// run parses flags, runs the trials and prints the figures.
func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("tandem-failover", flag.ContinueOnError)
	var o options
	fs.IntVar(&o.trials, "trials", 10, "how many crashes to measure")
	fs.IntVar(&o.nodes, "nodes", 3, "cluster size")
	fs.IntVar(&o.sessions, "sessions", 1000, "sessions written before each crash")
	fs.IntVar(&o.valueSize, "value-size", 1024, "bytes of attribute payload per session")
	fs.DurationVar(&o.timeout, "timeout", 60*time.Second, "bound on each measured phase")
	profile := fs.String("profile", "local", "failure-detector timing of the nodes: lan (tandem serve's default) or local")
	if err := fs.Parse(args); err != nil {
		return err
	}
	p, err := cluster.ProfileNamed(*profile)
	if err != nil {
		return err
	}
	o.profile = p
	if o.trials < 1 || o.nodes < 2 || o.sessions < 1 {
		return errors.New("-trials ≥ 1, -nodes ≥ 2 and -sessions ≥ 1")
	}
	fig := map[string][]time.Duration{}
	for i := range o.trials {
		r, err := trial(ctx, o)
		if err != nil {
			return fmt.Errorf("trial %d: %w", i+1, err)
		}
		for k, v := range r {
			fig[k] = append(fig[k], v)
		}
		fmt.Fprintf(out, "trial %d: read gap %v, read stall %v, write gap %v, copies restored %v, rejoin to ready %v, failback write stall %v\n", i+1,
			r["read gap"].Round(time.Microsecond), r["read stall"].Round(time.Millisecond), r["write gap"].Round(time.Millisecond),
			r["copies restored"].Round(time.Millisecond), r["rejoin to ready"].Round(time.Millisecond), r["failback write stall"].Round(time.Millisecond))
	}
	fmt.Fprintf(out, "\nnodes=%d sessions=%d value=%dB trials=%d profile=%s\n", o.nodes, o.sessions, o.valueSize, o.trials, o.profile.Name)
	for _, k := range []string{"read gap", "read stall", "write gap", "copies restored", "rejoin to ready", "failback write stall"} {
		v := fig[k]
		slices.Sort(v)
		fmt.Fprintf(out, "%-20s p50=%v p99=%v max=%v\n", k, pct(v, 50), pct(v, 99), v[len(v)-1])
	}
	return nil
}

// pct returns the p-th percentile of sorted durations.
func pct(v []time.Duration, p float64) time.Duration {
	return v[int(float64(len(v)-1)*p/100)]
}

// trial runs one crash and rejoin and returns its figures.
func trial(ctx context.Context, o options) (map[string]time.Duration, error) {
	startCtx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	nodes, err := tandem.StartLocal(startCtx, o.nodes, func(_ int, cfg *tandem.Config) { o.profile.Apply(&cfg.Cluster) })
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, n := range nodes {
			n.Kill()
		}
	}()
	if err := fill(startCtx, nodes, o); err != nil {
		return nil, err
	}
	victim, survivors := nodes[0], nodes[1:]
	var probe, backedUp string // sessions the victim is primary and buddy of
	for i := range o.sessions {
		id := sessionID(i)
		p, b, _, err := victim.Owners(id)
		switch {
		case err != nil:
		case probe == "" && p.Name == victim.Name():
			probe = id
		case backedUp == "" && b.Name == victim.Name():
			backedUp = id
		}
	}
	if probe == "" || backedUp == "" {
		return nil, errors.New("the victim is primary or buddy of no session")
	}
	victimCfg := tandem.DefaultConfig(victim.Name())
	o.profile.Apply(&victimCfg.Cluster)
	victimCfg.GossipAddr, victimCfg.PeerAddr = "127.0.0.1:0", "127.0.0.1:0"
	victimCfg.Join = []string{survivors[0].GossipAddr()}

	r := map[string]time.Duration{}
	crash := time.Now()
	victim.Kill()
	until := func(name string, ok func() bool) error {
		deadline := crash.Add(o.timeout)
		for !ok() {
			if time.Now().After(deadline) {
				return fmt.Errorf("%s: not within %v", name, o.timeout)
			}
			time.Sleep(time.Millisecond)
		}
		r[name] = time.Since(crash)
		return nil
	}
	reader := survivors[0]
	stall := make(chan time.Duration, 1)
	writeDone := make(chan struct{})
	go func() {
		stall <- longestWait(ctx, writeDone, func(c context.Context) error {
			_, err := reader.Peek(c, probe)
			return err
		})
	}()
	defer func() {
		select {
		case <-writeDone:
		default:
			close(writeDone)
		}
	}()
	if err := until("read gap", func() bool {
		c, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		_, err := reader.Peek(c, probe)
		return err == nil
	}); err != nil {
		return nil, err
	}
	if err := until("write gap", func() bool {
		c, cancel := context.WithTimeout(ctx, 250*time.Millisecond)
		defer cancel()
		_, err := reader.Patch(c, probe, map[string][]byte{"after": {0xc3}}, nil)
		return err == nil
	}); err != nil {
		return nil, err
	}
	close(writeDone)
	r["read stall"] = <-stall
	if err := until("copies restored", func() bool {
		for _, s := range survivors {
			st := s.Status()
			if st.PendingHandoff > 0 || len(st.Partitions) != len(survivors) {
				return false
			}
		}
		return true
	}); err != nil {
		return nil, err
	}

	rejoinCtx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	writesDone := make(chan struct{})
	writeStall := make(chan time.Duration, 2)
	for _, id := range []string{probe, backedUp} {
		go func() {
			writeStall <- longestWait(ctx, writesDone, func(c context.Context) error {
				_, err := reader.Patch(c, id, map[string][]byte{"failback": {0xc3}}, nil)
				return err
			})
		}()
	}
	defer func() {
		select {
		case <-writesDone:
		default:
			close(writesDone)
		}
	}()
	start := time.Now()
	back, err := tandem.Start(rejoinCtx, victimCfg)
	if err != nil {
		return nil, fmt.Errorf("rejoin: %w", err)
	}
	nodes[0] = back
	for !back.Ready() {
		if rejoinCtx.Err() != nil {
			return nil, fmt.Errorf("rejoin to ready: not within %v", o.timeout)
		}
		time.Sleep(time.Millisecond)
	}
	r["rejoin to ready"] = time.Since(start)
	time.Sleep(time.Second) // ring changes settle on the survivors too
	close(writesDone)
	r["failback write stall"] = max(<-writeStall, <-writeStall)
	return r, nil
}

// longestWait runs try back to back, each call bounded by a second, until
// done is closed, and returns the longest time it took to succeed (a call
// that fails is retried, and its wait counts on).
func longestWait(ctx context.Context, done <-chan struct{}, try func(context.Context) error) time.Duration {
	var longest time.Duration
	start := time.Now()
	for {
		select {
		case <-done:
			return max(longest, time.Since(start))
		default:
		}
		c, cancel := context.WithTimeout(ctx, time.Second)
		err := try(c)
		cancel()
		if err == nil {
			longest = max(longest, time.Since(start))
			start = time.Now()
		}
	}
}

// sessionID names session i.
func sessionID(i int) string { return fmt.Sprintf("failover-session-%08d", i) }

// fill writes o.sessions sessions through the nodes, 16 writers at once.
func fill(ctx context.Context, nodes []*tandem.Node, o options) error {
	value, err := msgpack.Marshal(strings.Repeat("x", o.valueSize))
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := range 16 {
		wg.Go(func() {
			for i := w; i < o.sessions; i += 16 {
				if _, err := nodes[i%len(nodes)].Put(ctx, sessionID(i), "", map[string][]byte{"v": value}); err != nil {
					errs <- fmt.Errorf("fill %s: %w", sessionID(i), err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}
