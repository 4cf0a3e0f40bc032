// Command tandem-autoscale measures what autoscaling costs a Tandem
// cluster under load, as an app fleet scales out and back in: it starts
// -from nodes on loopback, runs a session mix through them, adds -add
// nodes one after another, then removes those nodes one after another
// gracefully (Close: drain, then leave), and checks at the end that every
// acknowledged write is still there.
//
// For each change it prints:
//
//   - primaries moved: the share of partitions whose primary changed, and
//     the optimum 1/N for that change (a join to N members must move 1/N
//     of the primaries to the joiner; a leave from N+1 the leaver's
//     share, about 1/(N+1));
//   - restored: from the change (Start called, or Close called) until
//     every node is ready, serves by the same ring of exactly the members,
//     and has no hand-off left — every partition has its two copies again;
//   - requests, longest and failed: the session mix's requests answered
//     from the change until a second after its copies were restored (so
//     that requests it held up have finished), the longest any of them
//     took, and how many failed.
//
// The mix: -clients clients, each with its own -sessions sessions
// (so each session has one writer and its history is known exactly),
// 70 % reads and 30 % patches that increment a counter, each request
// through a node drawn at random among those serving (a joiner once it is
// ready, a leaver no longer once it is told to go, as a balancer would).
// A read that returns an older version or counter than the client's last
// acknowledged write is a lost write; so is a final read that differs.
//
//	tandem-autoscale -from 4 -add 8
//	tandem-autoscale -from 4 -add 8 -profile lan
//	tandem-autoscale -from 4 -add 8 -seats 5
//
// With -seats, every node leases from the agreed seats (Replica.Seats),
// and the table says which seats a node knew after each change.
//
// Every phase is bounded by -timeout and the tool stops by itself. It
// exits 1 if any request failed or any acknowledged write was lost.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/tandem-io/tandem"
	"github.com/tandem-io/tandem/cluster"
	"github.com/tandem-io/tandem/ring"
)

func main() {
	ctx := context.Background()
	res, err := run(ctx, os.Args[1:], os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tandem-autoscale:", err)
		os.Exit(2)
	}
	if !res.ok() {
		fmt.Fprintf(os.Stderr, "tandem-autoscale: FAIL: %d requests failed, %d acknowledged writes lost\n", res.failed, res.lost)
		os.Exit(1)
	}
}

// options are the command's flags.
type options struct {
	from, add         int
	clients, sessions int
	timeout           time.Duration
	profile           cluster.Profile
	seats             int // Replica.Seats of every node: 0 leases from every member
}

// settle is how long after each change the tool waits before the next,
// so that requests the change held up finish within it.
const settle = time.Second

// change is one membership change and what it cost.
type change struct {
	what      string  // "join node-5", "leave node-5"
	members   int     // members after the change
	moved     float64 // share of partitions whose primary changed
	optimum   float64 // the share a change to members must move
	restored  time.Duration
	longest   time.Duration // the longest any request waited, from the change until a second after
	requests  int64
	failedReq int64
	seats     string // with -seats: the seat config a node knew after the change, "v<version> <seats>"
}

// outcome is the run's verdict.
type outcome struct {
	changes      []change
	failed, lost int64
	requests     int64
	checked      int
}

func (o outcome) ok() bool { return o.failed == 0 && o.lost == 0 }

// run parses flags, scales the cluster out and in under the mix, and
// prints a table.
func run(ctx context.Context, args []string, out io.Writer) (outcome, error) {
	fs := flag.NewFlagSet("tandem-autoscale", flag.ContinueOnError)
	fs.SetOutput(out)
	var o options
	fs.IntVar(&o.from, "from", 4, "nodes the cluster starts with")
	fs.IntVar(&o.add, "add", 8, "nodes added one after another, then removed one after another")
	fs.IntVar(&o.clients, "clients", 8, "concurrent clients of the session mix")
	fs.IntVar(&o.sessions, "sessions", 64, "sessions per client")
	fs.DurationVar(&o.timeout, "timeout", time.Minute, "bound on each phase (start, each change, the final check)")
	profile := fs.String("profile", "local", "failure-detector timing of the nodes: lan (tandem serve's default) or local")
	fs.IntVar(&o.seats, "seats", 0, "EXPERIMENTAL: every node leases from up to this many agreed seats (Replica.Seats; docs/design/LEASES-AT-SCALE.md), so the seats change with the membership; 0 leases from every member")
	if err := fs.Parse(args); err != nil {
		return outcome{}, err
	}
	p, err := cluster.ProfileNamed(*profile)
	if err != nil {
		return outcome{}, err
	}
	o.profile = p
	if o.from < 2 || o.add < 1 || o.clients < 1 || o.sessions < 1 || o.timeout <= 0 || o.seats < 0 {
		return outcome{}, errors.New("-from ≥ 2, -add ≥ 1, -clients ≥ 1, -sessions ≥ 1, -timeout > 0, -seats ≥ 0")
	}
	return scale(ctx, o, out)
}

// scale runs the experiment.
func scale(ctx context.Context, o options, out io.Writer) (outcome, error) {
	var res outcome
	startCtx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	tune := func(_ int, cfg *tandem.Config) { o.profile.Apply(&cfg.Cluster); cfg.Replica.Seats = o.seats }
	nodes, err := tandem.StartLocal(startCtx, o.from, tune)
	if err != nil {
		return res, err
	}
	fl := &fleet{serving: nodes}
	defer fl.killAll()

	mix := startMix(ctx, fl, o.clients, o.sessions)
	mixStopped := false
	defer func() {
		if !mixStopped {
			mix.stop()
		}
	}()
	probes := partitionProbes()
	fmt.Fprintf(out, "%d nodes, %d clients × %d sessions, profile %s, seats %d\n", o.from, o.clients, o.sessions, o.profile.Name, o.seats)

	measure := func(what string, act func(context.Context) error) error {
		before := primaries(fl.any(), probes)
		req0, fail0 := mix.counts()
		mix.longest.Store(0)
		start := time.Now()
		cctx, cancel := context.WithTimeout(ctx, o.timeout)
		defer cancel()
		if err := act(cctx); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if err := tandem.WaitConverged(cctx, fl.all()); err != nil {
			return fmt.Errorf("%s: copies not restored: %w", what, err)
		}
		c := change{what: what, members: len(fl.all()), restored: time.Since(start)}
		// Requests the change held up finish after it: a second more, and
		// the longest of them is counted with this change.
		time.Sleep(settle)
		after := primaries(fl.any(), probes)
		for p := range after {
			if after[p] != before[p] {
				c.moved++
			}
		}
		c.moved /= float64(len(after))
		if st := fl.any().Status().Seats; st != nil {
			c.seats = fmt.Sprintf("v%d %v", st.Version, st.Seats)
		}
		c.optimum = 1 / float64(max(c.members, before.members()))
		req1, fail1 := mix.counts()
		c.requests, c.failedReq = req1-req0, fail1-fail0
		c.longest = time.Duration(mix.longest.Load())
		res.changes = append(res.changes, c)
		fmt.Fprintf(out, "%-14s %2d members: primaries moved %5.1f %% (optimum %4.1f %%), restored in %v, %d requests (longest %v), %d failed\n",
			what, c.members, 100*c.moved, 100*c.optimum, c.restored.Round(time.Millisecond), c.requests, c.longest.Round(time.Millisecond), c.failedReq)
		return nil
	}

	joined := []*tandem.Node{}
	for i := range o.add {
		name := fmt.Sprintf("node-%d", o.from+i+1)
		err := measure("join "+name, func(ctx context.Context) error {
			cfg := tandem.LocalConfig(name)
			o.profile.Apply(&cfg.Cluster)
			cfg.Replica.Seats = o.seats
			cfg.GossipAddr, cfg.PeerAddr = "127.0.0.1:0", "127.0.0.1:0"
			cfg.Join = []string{fl.any().GossipAddr()}
			n, err := tandem.Start(ctx, cfg)
			if err != nil {
				return err
			}
			fl.joining(n)
			joined = append(joined, n)
			for !n.Ready() {
				if ctx.Err() != nil {
					return fmt.Errorf("not ready: %w", ctx.Err())
				}
				time.Sleep(5 * time.Millisecond)
			}
			fl.serve(n) // a balancer sends it traffic once it is ready
			return nil
		})
		if err != nil {
			return res, err
		}
	}
	for i := len(joined) - 1; i >= 0; i-- {
		n := joined[i]
		err := measure("leave "+n.Name(), func(ctx context.Context) error {
			fl.retire(n) // the balancer stops sending it traffic first
			return n.Close(ctx)
		})
		if err != nil {
			return res, err
		}
	}

	mix.stop()
	mixStopped = true
	checkCtx, cancel2 := context.WithTimeout(ctx, o.timeout)
	defer cancel2()
	res.checked, err = mix.finalCheck(checkCtx, fl)
	if err != nil {
		return res, err
	}
	res.requests, res.failed = mix.counts()
	res.lost = mix.lost.Load()
	printTable(out, o, res)
	return res, nil
}

// printTable writes the changes as a Markdown table and the verdict.
func printTable(out io.Writer, o options, res outcome) {
	fmt.Fprintf(out, "\n%s; %d → %d → %d nodes; %d clients × %d sessions; profile %s; seats %d\n\n",
		time.Now().UTC().Format(time.RFC3339), o.from, o.from+o.add, o.from, o.clients, o.sessions, o.profile.Name, o.seats)
	seatsHead, seatsRule := "", ""
	if o.seats > 0 {
		seatsHead, seatsRule = " seats after |", "---|"
	}
	fmt.Fprintln(out, "| change | members after | primaries moved | optimum | copies restored after | requests (change + 1 s) | longest request | failed |"+seatsHead)
	fmt.Fprintln(out, "|---|---:|---:|---:|---:|---:|---:|---:|"+seatsRule)
	for _, c := range res.changes {
		seats := ""
		if o.seats > 0 {
			seats = " " + c.seats + " |"
		}
		fmt.Fprintf(out, "| %s | %d | %.1f %% | %.1f %% | %v | %d | %v | %d |%s\n", c.what, c.members, 100*c.moved, 100*c.optimum,
			c.restored.Round(time.Millisecond), c.requests, c.longest.Round(time.Millisecond), c.failedReq, seats)
	}
	verdict := "PASS"
	if !res.ok() {
		verdict = "FAIL"
	}
	fmt.Fprintf(out, "\n%s: %d requests, %d failed; %d sessions read back at the end, %d acknowledged writes lost\n",
		verdict, res.requests, res.failed, res.checked, res.lost)
}

// partitionProbes returns one session id per partition of the default
// ring, so the owners of every partition can be asked through the API.
func partitionProbes() []string {
	cfg := ring.DefaultConfig()
	probes := make([]string, cfg.Partitions)
	left := cfg.Partitions
	for i := 0; left > 0; i++ {
		id := fmt.Sprintf("autoscale-probe-%08d", i)
		if p := ring.PartitionOf(cfg, id); probes[p] == "" {
			probes[p] = id
			left--
		}
	}
	return probes
}

// placement is the primary of every partition, by name.
type placement []string

// members counts the distinct primaries.
func (pl placement) members() int {
	seen := map[string]bool{}
	for _, m := range pl {
		seen[m] = true
	}
	return len(seen)
}

// primaries reads the primary of every partition from n's ring.
func primaries(n *tandem.Node, probes []string) placement {
	out := make(placement, len(probes))
	for p, id := range probes {
		if primary, _, _, err := n.Owners(id); err == nil {
			out[p] = primary.Name
		}
	}
	return out
}

// fleet is the app fleet: the nodes serving traffic, and every node
// running.
type fleet struct {
	mu      sync.Mutex
	serving []*tandem.Node
	running []*tandem.Node // started but not yet serving, or retired but not yet closed
}

// any returns a serving node.
func (f *fleet) any() *tandem.Node {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.serving[rand.IntN(len(f.serving))]
}

// all returns every node that is, or is about to be, a member.
func (f *fleet) all() []*tandem.Node {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := append([]*tandem.Node{}, f.serving...)
	for _, n := range f.running {
		if !containsNode(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// joining records a node that started and is not yet ready.
func (f *fleet) joining(n *tandem.Node) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.running = append(f.running, n)
}

// serve sends traffic to n.
func (f *fleet) serve(n *tandem.Node) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.running = removeNode(f.running, n)
	f.serving = append(f.serving, n)
}

// retire stops sending traffic to n, which is about to leave: it is no
// member once it has closed, so all forgets it.
func (f *fleet) retire(n *tandem.Node) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.serving = removeNode(f.serving, n)
	f.running = removeNode(f.running, n)
}

// killAll stops every node left.
func (f *fleet) killAll() {
	for _, n := range f.all() {
		n.Kill()
	}
}

func containsNode(ns []*tandem.Node, n *tandem.Node) bool {
	for _, x := range ns {
		if x == n {
			return true
		}
	}
	return false
}

func removeNode(ns []*tandem.Node, n *tandem.Node) []*tandem.Node {
	out := ns[:0:0]
	for _, x := range ns {
		if x != n {
			out = append(out, x)
		}
	}
	return out
}

// acked is the last write a client saw acknowledged for one session.
type acked struct {
	version uint64
	counter int64
}

// sessionMix is the clients' load and their record of acknowledged
// writes.
type sessionMix struct {
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	clients  [][]acked // per client, per session
	requests atomic.Int64
	failed   atomic.Int64
	lost     atomic.Int64
	longest  atomic.Int64 // nanoseconds: the longest request since it was last reset
	logMu    sync.Mutex
	firstErr []string
}

// mixSessionID names session s of client c.
func mixSessionID(c, s int) string { return fmt.Sprintf("autoscale-c%02d-s%05d", c, s) }

// startMix starts the clients.
func startMix(ctx context.Context, fl *fleet, clients, sessions int) *sessionMix {
	ctx, cancel := context.WithCancel(ctx)
	m := &sessionMix{cancel: cancel, clients: make([][]acked, clients)}
	for c := range clients {
		m.clients[c] = make([]acked, sessions)
		m.wg.Go(func() { m.client(ctx, fl, c) })
	}
	return m
}

// client runs one client until ctx ends.
func (m *sessionMix) client(ctx context.Context, fl *fleet, c int) {
	rng := rand.New(rand.NewPCG(uint64(c), 42))
	state := m.clients[c]
	for ctx.Err() == nil {
		s := rng.IntN(len(state))
		id := mixSessionID(c, s)
		node := fl.any()
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		began := time.Now()
		if rng.IntN(10) < 3 || state[s].version == 0 {
			next := state[s].counter + 1
			v, _ := msgpack.Marshal(next)
			var got *tandem.Session
			var err error
			if state[s].version == 0 {
				got, err = node.Put(rctx, id, "", map[string][]byte{"n": v})
			} else {
				got, err = node.Patch(rctx, id, map[string][]byte{"n": v}, nil)
			}
			if ctx.Err() == nil {
				m.requests.Add(1)
				if err != nil {
					m.fail("patch %s via %s: %v", id, node.Name(), err)
				} else {
					state[s] = acked{version: got.Version, counter: next}
				}
			}
		} else {
			got, err := node.Get(rctx, id)
			if ctx.Err() == nil {
				m.requests.Add(1)
				if err != nil {
					m.fail("get %s via %s: %v", id, node.Name(), err)
				} else {
					m.compare(id, state[s], got)
				}
			}
		}
		cancel()
		for took := int64(time.Since(began)); ; {
			cur := m.longest.Load()
			if took <= cur || m.longest.CompareAndSwap(cur, took) {
				break
			}
		}
	}
}

// compare counts a lost write if s is older than the last acknowledged
// write a.
func (m *sessionMix) compare(id string, a acked, s *tandem.Session) {
	var n int64
	if s != nil {
		_ = msgpack.Unmarshal(s.Attributes["n"], &n)
	}
	if s == nil || s.Version < a.version || n < a.counter || s.Version == a.version && n != a.counter {
		m.lost.Add(1)
		var v uint64
		if s != nil {
			v = s.Version
		}
		m.note("lost write: %s read v%d n=%d, acknowledged v%d n=%d", id, v, n, a.version, a.counter)
	}
}

// fail counts a failed request.
func (m *sessionMix) fail(format string, args ...any) {
	m.failed.Add(1)
	m.note(format, args...)
}

// note keeps the first few problems for the report.
func (m *sessionMix) note(format string, args ...any) {
	m.logMu.Lock()
	defer m.logMu.Unlock()
	if len(m.firstErr) < 10 {
		m.firstErr = append(m.firstErr, fmt.Sprintf(format, args...))
		fmt.Fprintln(os.Stderr, "tandem-autoscale:", m.firstErr[len(m.firstErr)-1])
	}
}

// counts returns the requests answered so far and how many failed.
func (m *sessionMix) counts() (requests, failed int64) { return m.requests.Load(), m.failed.Load() }

// stop ends the clients and waits for them.
func (m *sessionMix) stop() {
	m.cancel()
	m.wg.Wait()
}

// finalCheck reads every session written back and compares it with its
// client's last acknowledged write; it returns how many it read.
func (m *sessionMix) finalCheck(ctx context.Context, fl *fleet) (int, error) {
	checked := 0
	for c, state := range m.clients {
		for s, a := range state {
			if a.version == 0 {
				continue
			}
			id := mixSessionID(c, s)
			got, err := fl.any().Get(ctx, id)
			if err != nil {
				return checked, fmt.Errorf("final read of %s: %w", id, err)
			}
			m.compare(id, a, got)
			checked++
		}
	}
	return checked, nil
}
