//go:build unix

package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/tandem-io/tandem"
)

// sessionID names session i of the sessions every target but the embedded
// node's shares.
func sessionID(i int) string { return fmt.Sprintf("bench-session-%08d", i) }

// principalOf names session i's user.
func principalOf(i int) string { return "user-" + strconv.Itoa(i) }

// payload is a session's content in each encoding the targets send.
type payload struct {
	value     string            // the attribute's value: valueSize bytes
	attrs     map[string][]byte // {"v": value}, msgpack-encoded, as Node.Put and Client.Put take it
	jsonValue []byte            // value as a JSON string
	rawValue  msgpack.RawMessage
}

// newPayload returns the content of every session: one attribute "v" of
// size bytes.
func newPayload(size int) (*payload, error) {
	p := &payload{value: string(bytes.Repeat([]byte{'x'}, size))}
	enc, err := msgpack.Marshal(p.value)
	if err != nil {
		return nil, fmt.Errorf("encode the payload: %w", err)
	}
	p.rawValue = enc
	p.attrs = map[string][]byte{"v": enc}
	p.jsonValue = strconv.AppendQuote(nil, p.value)
	return p, nil
}

// jsonBody returns the JSON body of a PUT of session i.
func (p *payload) jsonBody(i int) []byte {
	b := make([]byte, 0, len(p.jsonValue)+64)
	b = append(b, `{"principal":"`...)
	b = append(b, principalOf(i)...)
	b = append(b, `","attributes":{"v":`...)
	b = append(b, p.jsonValue...)
	return append(b, "}}"...)
}

// msgpackBody returns the msgpack body of a PUT of session i.
func (p *payload) msgpackBody(i int) ([]byte, error) {
	b, err := msgpack.Marshal(struct {
		Principal  string                        `msgpack:"principal"`
		Attributes map[string]msgpack.RawMessage `msgpack:"attributes"`
	}{principalOf(i), map[string]msgpack.RawMessage{"v": p.rawValue}})
	if err != nil {
		return nil, fmt.Errorf("encode the body of session %d: %w", i, err)
	}
	return b, nil
}

// measureTandem starts the three-process cluster, loads the sessions
// (reading the processes' memory before and after), and runs every
// workload against each Tandem target.
func measureTandem(ctx context.Context, o options, bin, dir string, res *Result, logf func(string, ...any)) error {
	p, err := newPayload(o.valueSize)
	if err != nil {
		return err
	}
	logf("starting 3 tandem serve processes")
	c, err := startCluster(ctx, bin, dir, 3, o.pprofDir != "")
	if err != nil {
		return err
	}
	defer c.stop()
	var prof *profiler
	if o.pprofDir != "" {
		if err := os.MkdirAll(o.pprofDir, 0o755); err != nil {
			return fmt.Errorf("-pprof: %w", err)
		}
		prof = &profiler{dir: o.pprofDir, procs: c.procs, http: &http.Client{}}
	}
	for _, pr := range c.procs {
		res.Tandem.Processes = append(res.Tandem.Processes, ProcessInfo{Name: pr.Name, PID: pr.PID, HTTP: pr.HTTP, Gossip: pr.Gossip, Peer: pr.Peer})
	}
	client, err := tandem.Dial(ctx, c.peers(), tandem.ClientConfig{RequestTimeout: o.opTimeout})
	if err != nil {
		return fmt.Errorf("dial the cluster: %w", err)
	}
	defer client.Close()

	// Memory: before and after loading the sessions.
	if err := wait(ctx, o.settle); err != nil {
		return err
	}
	var before []int64
	for _, pr := range c.procs {
		r, err := rss(pr.PID)
		if err != nil {
			res.Tandem.MemoryNote = err.Error()
			break
		}
		before = append(before, r)
	}
	logf("loading %d sessions of %d B into tandem through the smart client", o.sessions, o.valueSize)
	start := time.Now()
	err = prefill(ctx, o.sessions, o.clients, o.opTimeout, func(ctx context.Context, _, i int) error {
		_, err := client.Put(ctx, sessionID(i), principalOf(i), p.attrs)
		return err
	})
	if err != nil {
		return fmt.Errorf("load tandem: %w", err)
	}
	res.Tandem.LoadSeconds = time.Since(start).Seconds()
	if err := wait(ctx, o.settle); err != nil {
		return err
	}
	if len(before) == len(c.procs) {
		for i, pr := range c.procs {
			after, err := rss(pr.PID)
			if err != nil {
				return err
			}
			copies, err := c.copies(ctx, pr)
			if err != nil {
				return err
			}
			res.Tandem.Memory = append(res.Tandem.Memory, memoryOf(pr.Name, before[i], after, copies))
		}
	}

	httpClient := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: o.clients, MaxConnsPerHost: o.clients}}
	defer httpClient.CloseIdleConnections()
	var urls []string
	for _, pr := range c.procs {
		urls = append(urls, "http://"+pr.HTTP+"/v1/sessions/")
	}
	for _, name := range o.targets {
		var t target
		switch name {
		case targetClient:
			t = clientTarget(client, o.sessions, p)
		case targetHTTP, targetHTTPMsgpack:
			t = httpTarget(name, httpClient, urls, o.sessions, p, name == targetHTTPMsgpack, o.seed)
		default:
			continue // the embedded node below; Redis later
		}
		if prof != nil {
			t.profile = prof.start
		}
		if err := runWorkloads(ctx, t, o, res, logf); err != nil {
			return err
		}
	}
	if slices.Contains(o.targets, targetEmbedded) {
		return measureEmbedded(ctx, o, c, p, prof, res, logf)
	}
	return nil
}

// runWorkloads runs every workload against t and records the runs.
func runWorkloads(ctx context.Context, t target, o options, res *Result, logf func(string, ...any)) error {
	for _, w := range o.workloads {
		logf("%s: %s for %v", t.name, w, o.duration)
		run, err := runLoad(ctx, t, w, o)
		if err != nil {
			return err
		}
		res.add(w, run)
	}
	return nil
}

// clientTarget drives the cluster through the smart client, shared by
// every load client.
func clientTarget(client *tandem.Client, sessions int, p *payload) target {
	return target{name: targetClient, sessions: sessions, newWorker: func(context.Context, int) (worker, error) {
		return funcWorker{
			read: func(ctx context.Context, i int) error {
				_, err := client.Get(ctx, sessionID(i))
				return err
			},
			write: func(ctx context.Context, i int) error {
				_, err := client.Put(ctx, sessionID(i), principalOf(i), p.attrs)
				return err
			},
		}, nil
	}}
}

// funcWorker is a worker made of functions, with nothing to close.
type funcWorker struct {
	read, write func(ctx context.Context, i int) error
}

// Read reads session i.
func (w funcWorker) Read(ctx context.Context, i int) error { return w.read(ctx, i) }

// Write writes session i.
func (w funcWorker) Write(ctx context.Context, i int) error { return w.write(ctx, i) }

// Close does nothing.
func (funcWorker) Close() error { return nil }

// httpTarget drives the cluster through its HTTP API, each request to a
// random node, with JSON or msgpack bodies.
func httpTarget(name string, client *http.Client, urls []string, sessions int, p *payload, asMsgpack bool, seed uint64) target {
	contentType := "application/json"
	if asMsgpack {
		contentType = "application/msgpack"
	}
	return target{name: name, sessions: sessions, newWorker: func(_ context.Context, c int) (worker, error) {
		rng := rand.New(rand.NewPCG(seed, 1000+uint64(c)))
		node := func() string { return urls[rng.IntN(len(urls))] }
		return funcWorker{
			read: func(ctx context.Context, i int) error {
				return httpDo(ctx, client, http.MethodGet, node()+sessionID(i), contentType, nil)
			},
			write: func(ctx context.Context, i int) error {
				body := p.jsonBody(i)
				if asMsgpack {
					var err error
					if body, err = p.msgpackBody(i); err != nil {
						return err
					}
				}
				return httpDo(ctx, client, http.MethodPut, node()+sessionID(i), contentType, body)
			},
		}, nil
	}}
}

// httpDo sends one request, asking for answers of contentType, and drains
// the answer; anything but 200 or 201 is an error.
func httpDo(ctx context.Context, client *http.Client, method, url, contentType string, body []byte) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, url, err)
	}
	req.Header.Set("Accept", contentType)
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s %s: read the answer: %w", method, url, err)
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("%s %s: %s: %s", method, url, resp.Status, bytes.TrimSpace(b))
	}
	return nil
}

// measureEmbedded starts a node inside tandem-bench that joins the cluster,
// picks o.sessions session ids it is primary of, loads them through it and
// runs every workload through Node.Get and Node.Put.
func measureEmbedded(ctx context.Context, o options, c *tandemCluster, p *payload, prof *profiler, res *Result, logf func(string, ...any)) error {
	logf("embedded: starting a node in this process, joining the cluster as a fourth member")
	cfg := tandem.LocalConfig("bench-embedded") // -profile local, as the processes
	cfg.GossipAddr, cfg.PeerAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Join = []string{c.procs[0].Gossip}
	cfg.RequestTimeout = o.opTimeout
	node, err := tandem.Start(ctx, cfg)
	if err != nil {
		return fmt.Errorf("embedded: %w", err)
	}
	defer node.Kill() // the processes are killed too: nothing to hand over
	if err := waitEmbedded(ctx, node, c); err != nil {
		return err
	}
	// Sticky routing: only ids whose primary is this node, as a balancer
	// following the tandem_route cookie would send them here.
	var ids []string
	for i := 0; len(ids) < o.sessions && i < 64*o.sessions; i++ {
		primary, _, _, err := node.Owners(sessionID(i))
		if err != nil {
			return fmt.Errorf("embedded: owners of %s: %w", sessionID(i), err)
		}
		if primary.Name == node.Name() {
			ids = append(ids, sessionID(i))
		}
	}
	if len(ids) < o.sessions {
		return fmt.Errorf("embedded: found only %d sessions the embedded node is primary of among %d ids", len(ids), 64*o.sessions)
	}
	logf("embedded: loading the %d sessions it is primary of through it", len(ids))
	err = prefill(ctx, len(ids), o.clients, o.opTimeout, func(ctx context.Context, _, i int) error {
		_, err := node.Put(ctx, ids[i], principalOf(i), p.attrs)
		return err
	})
	if err != nil {
		return fmt.Errorf("embedded: %w", err)
	}
	t := target{name: targetEmbedded, sessions: len(ids), newWorker: func(context.Context, int) (worker, error) {
		return funcWorker{
			read: func(ctx context.Context, i int) error {
				_, err := node.Get(ctx, ids[i])
				return err
			},
			write: func(ctx context.Context, i int) error {
				_, err := node.Put(ctx, ids[i], principalOf(i), p.attrs)
				return err
			},
		}, nil
	}}
	if prof != nil {
		t.profile = prof.start
	}
	return runWorkloads(ctx, t, o, res, logf)
}

// waitEmbedded waits, at most 30 s, until the embedded node is ready and
// the processes serve by one ring of four members that it agrees with.
func waitEmbedded(ctx context.Context, node *tandem.Node, c *tandemCluster) error {
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for !node.Ready() {
		if err := wait(wctx, 20*time.Millisecond); err != nil {
			return fmt.Errorf("embedded: wait until ready: %w (%+v)", err, node.Readiness())
		}
	}
	// The processes agree with each other; the node must agree with them.
	for {
		load, err := c.waitConverged(wctx, 4, 30*time.Second)
		if err != nil {
			return fmt.Errorf("embedded: %w", err)
		}
		parts, _ := node.Partitions()
		mine := map[string]partitionLoad{}
		for _, po := range parts {
			l := mine[po.Primary]
			l.Primary++
			mine[po.Primary] = l
			l = mine[po.Buddy]
			l.Buddy++
			mine[po.Buddy] = l
		}
		if maps.Equal(mine, load) {
			break
		}
		if err := wait(wctx, 50*time.Millisecond); err != nil {
			return fmt.Errorf("embedded: its ring differs from the processes' (%v, theirs %v): %w", mine, load, err)
		}
	}
	return nil
}
