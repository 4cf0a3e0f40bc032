//go:build unix

package main

// Redis is spoken in RESP over a net.Conn: the benchmark needs four
// commands (GET, SET, WAIT, and INFO/DBSIZE/PING to set up), one
// connection per load client, and SET with its WAIT sent in one write.
// A client library would add a connection pool between the load client
// and its connection, which WAIT (it counts the writes of its own
// connection) has to be kept away from, and a dependency of the whole
// module for one command's sake.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/tandem-io/tandem"
)

// findRedis returns the path of the redis-server binary name (a path or a
// name on PATH), checking that it runs.
func findRedis(ctx context.Context, name string) (string, error) {
	path, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("cannot run Redis: %w", err)
	}
	vctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := exec.CommandContext(vctx, path, "--version").Run(); err != nil {
		return "", fmt.Errorf("%s --version: %w", path, err)
	}
	return path, nil
}

// redisProc is one redis-server process.
type redisProc struct {
	name    string
	addr    string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{}
}

// startRedis starts redis-server on a free loopback port without
// persistence, as a replica of primary if that is not empty, and waits
// until it answers PING.
func startRedis(ctx context.Context, bin, dir, name, primary string) (*redisProc, error) {
	var errs []error
	for range 5 { // a port found free may be taken before redis binds it: try another
		port, err := freePort()
		if err != nil {
			return nil, fmt.Errorf("start %s: %w", name, err)
		}
		p, err := startRedisOn(ctx, bin, dir, name, primary, port)
		if err == nil {
			return p, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

// freePort returns a loopback TCP port free at the time of the call.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// startRedisOn starts redis-server on port and waits, at most 10 s, until
// it answers PING.
func startRedisOn(ctx context.Context, bin, dir, name, primary string, port int) (*redisProc, error) {
	wd := filepath.Join(dir, name)
	if err := os.MkdirAll(wd, 0o755); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &redisProc{name: name, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), logPath: filepath.Join(dir, name+".log"), done: make(chan struct{})}
	args := []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", wd, "--logfile", p.logPath, "--daemonize", "no"}
	if primary != "" {
		host, pport, _ := net.SplitHostPort(primary)
		args = append(args, "--replicaof", host, pport)
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.SysProcAttr = procAttr()
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		if c, err := dialRedis(wctx, p.addr); err == nil {
			_, err := c.do(wctx, cmd("PING"))
			c.Close()
			if err == nil {
				return p, nil
			}
		}
		select {
		case <-p.done:
			return nil, fmt.Errorf("start %s on port %d: it exited: %s", name, port, tail(p.logPath))
		case <-wctx.Done():
			p.kill()
			return nil, fmt.Errorf("start %s on port %d: no answer to PING: %w: %s", name, port, wctx.Err(), tail(p.logPath))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// kill kills the process and waits, at most 10 s, for it to exit.
func (p *redisProc) kill() {
	if p == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
	}
}

// measureRedis starts a Redis primary and replica, loads the sessions
// (reading both processes' memory before and after) and runs every
// workload against them.
func measureRedis(ctx context.Context, o options, bin, dir string, res *Result, logf func(string, ...any)) error {
	if out, err := exec.CommandContext(ctx, bin, "--version").Output(); err == nil {
		res.Redis.Version = strings.TrimSpace(string(out))
	}
	res.Redis.Binary = bin
	logf("starting redis-server primary and replica (%s)", res.Redis.Version)
	primary, err := startRedis(ctx, bin, dir, "redis-primary", "")
	if err != nil {
		return err
	}
	defer primary.kill()
	replica, err := startRedis(ctx, bin, dir, "redis-replica", primary.addr)
	if err != nil {
		return err
	}
	defer replica.kill()
	procs := []*redisProc{primary, replica}
	for _, p := range procs {
		res.Redis.Processes = append(res.Redis.Processes, ProcessInfo{Name: p.name, PID: p.cmd.Process.Pid, Addr: p.addr})
	}
	if err := waitReplicaOnline(ctx, primary.addr, replica.addr); err != nil {
		return err
	}
	p, err := newPayload(o.valueSize)
	if err != nil {
		return err
	}
	pool := make([]*redisConn, o.clients)
	defer func() {
		for _, c := range pool {
			if c != nil {
				c.Close()
			}
		}
	}()
	for i := range pool {
		if pool[i], err = dialRedis(ctx, primary.addr); err != nil {
			return err
		}
	}
	rt := &redisTarget{ttl: o.redisTTL, payload: p, started: time.Now()}

	if err := wait(ctx, o.settle); err != nil {
		return err
	}
	var before []int64
	for _, pr := range procs {
		r, err := rss(pr.cmd.Process.Pid)
		if err != nil {
			res.Redis.MemoryNote = err.Error()
			break
		}
		before = append(before, r)
	}
	logf("loading %d sessions of %d B into redis (SET, then one WAIT 1 0 per connection)", o.sessions, o.valueSize)
	start := time.Now()
	err = prefill(ctx, o.sessions, o.clients, o.opTimeout, func(ctx context.Context, c, i int) error {
		return rt.set(ctx, pool[c], i, false)
	})
	if err == nil {
		for _, c := range pool {
			if err = rt.waitReplica(ctx, c, o.opTimeout); err != nil {
				break
			}
		}
	}
	if err != nil {
		return fmt.Errorf("load redis: %w", err)
	}
	res.Redis.LoadSeconds = time.Since(start).Seconds()
	if v, err := rt.value(0, 1); err == nil {
		res.Redis.ValueBytes = len(v)
	}
	if err := wait(ctx, o.settle); err != nil {
		return err
	}
	if len(before) == len(procs) {
		for i, pr := range procs {
			after, err := rss(pr.cmd.Process.Pid)
			if err != nil {
				return err
			}
			keys, err := dbsize(ctx, pr.addr)
			if err != nil {
				return err
			}
			if keys != o.sessions {
				return fmt.Errorf("%s holds %d keys after loading %d sessions", pr.name, keys, o.sessions)
			}
			res.Redis.Memory = append(res.Redis.Memory, memoryOf(pr.name, before[i], after, keys))
		}
	}

	t := target{name: targetRedis, sessions: o.sessions, newWorker: func(_ context.Context, c int) (worker, error) {
		return redisWorker{t: rt, c: pool[c]}, nil // the pool closes the connections
	}}
	return runWorkloads(ctx, t, o, res, logf)
}

// waitReplicaOnline waits, at most 30 s, until the replica has synced with
// the primary and the primary counts it online.
func waitReplicaOnline(ctx context.Context, primary, replica string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	last := ""
	for {
		pinfo, perr := info(ctx, primary, "replication")
		rinfo, rerr := info(ctx, replica, "replication")
		switch {
		case perr != nil:
			last = perr.Error()
		case rerr != nil:
			last = rerr.Error()
		case strings.Contains(rinfo, "master_link_status:up") && strings.Contains(pinfo, "connected_slaves:1") && strings.Contains(pinfo, "state=online"):
			return nil
		default:
			last = "replica not online yet"
		}
		if err := wait(ctx, 50*time.Millisecond); err != nil {
			return fmt.Errorf("wait for the redis replica to sync: %w (last: %s)", err, last)
		}
	}
}

// info returns the INFO section of the Redis at addr.
func info(ctx context.Context, addr, section string) (string, error) {
	c, err := dialRedis(ctx, addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	r, err := c.do(ctx, cmd("INFO", section))
	if err != nil {
		return "", err
	}
	return string(r[0].bulk), nil
}

// dbsize returns how many keys the Redis at addr holds.
func dbsize(ctx context.Context, addr string) (int, error) {
	c, err := dialRedis(ctx, addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	r, err := c.do(ctx, cmd("DBSIZE"))
	if err != nil {
		return 0, err
	}
	return int(r[0].n), nil
}

// redisTarget holds what every Redis load client shares.
type redisTarget struct {
	ttl     time.Duration
	payload *payload
	started time.Time
}

// key returns the key of session i.
func redisKey(i int) string { return "session:" + sessionID(i) }

// value returns session i at version as a Go program would store it in
// Redis: tandem.Session, msgpack-encoded.
func (t *redisTarget) value(i int, version uint64) ([]byte, error) {
	b, err := msgpack.Marshal(&tandem.Session{
		ID:          sessionID(i),
		Principal:   principalOf(i),
		Attributes:  map[string]msgpack.RawMessage{"v": t.payload.rawValue},
		Version:     version,
		Created:     t.started,
		LastAccess:  time.Now(),
		IdleTimeout: t.ttl,
	})
	if err != nil {
		return nil, fmt.Errorf("encode session %d: %w", i, err)
	}
	return b, nil
}

// setCmd returns the SET of session i.
func (t *redisTarget) setCmd(i int) ([][]byte, error) {
	v, err := t.value(i, uint64(time.Since(t.started)))
	if err != nil {
		return nil, err
	}
	c := [][]byte{[]byte("SET"), []byte(redisKey(i)), v}
	if t.ttl > 0 {
		c = append(c, []byte("PX"), strconv.AppendInt(nil, t.ttl.Milliseconds(), 10))
	}
	return c, nil
}

// set writes session i on c; with replicate, WAIT 1 0 follows in the same
// write and an answer of no replica is an error.
func (t *redisTarget) set(ctx context.Context, c *redisConn, i int, replicate bool) error {
	set, err := t.setCmd(i)
	if err != nil {
		return err
	}
	cmds := [][][]byte{set}
	if replicate {
		cmds = append(cmds, cmd("WAIT", "1", "0"))
	}
	r, err := c.do(ctx, cmds...)
	if err != nil {
		return fmt.Errorf("SET %s: %w", redisKey(i), err)
	}
	if replicate && r[1].n < 1 {
		return fmt.Errorf("SET %s: WAIT 1 0 answered %d replicas", redisKey(i), r[1].n)
	}
	return nil
}

// waitReplica sends WAIT 1 0 on c, bounded by timeout.
func (t *redisTarget) waitReplica(ctx context.Context, c *redisConn, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	r, err := c.do(ctx, cmd("WAIT", "1", "0"))
	if err != nil {
		return fmt.Errorf("WAIT 1 0: %w", err)
	}
	if r[0].n < 1 {
		return fmt.Errorf("WAIT 1 0 answered %d replicas", r[0].n)
	}
	return nil
}

// redisWorker is one load client's connection to the primary.
type redisWorker struct {
	t *redisTarget
	c *redisConn
}

// Read GETs session i; a missing key is an error.
func (w redisWorker) Read(ctx context.Context, i int) error {
	r, err := w.c.do(ctx, cmd("GET", redisKey(i)))
	if err != nil {
		return fmt.Errorf("GET %s: %w", redisKey(i), err)
	}
	if r[0].null {
		return fmt.Errorf("GET %s: no such key", redisKey(i))
	}
	return nil
}

// Write SETs session i, then WAIT 1 0.
func (w redisWorker) Write(ctx context.Context, i int) error { return w.t.set(ctx, w.c, i, true) }

// Close leaves the connection to the pool that made it.
func (redisWorker) Close() error { return nil }

// cmd returns a command as RESP's array of bulk strings.
func cmd(args ...string) [][]byte {
	out := make([][]byte, len(args))
	for i, a := range args {
		out[i] = []byte(a)
	}
	return out
}

// redisConn is one RESP connection. After a failure other than an error
// reply (a timeout, a broken connection) it dials again before the next
// command. It is not safe for concurrent use.
type redisConn struct {
	addr   string
	conn   net.Conn
	r      *bufio.Reader
	w      *bufio.Writer
	broken bool
}

// dialRedis connects to the Redis at addr.
func dialRedis(ctx context.Context, addr string) (*redisConn, error) {
	c := &redisConn{addr: addr}
	if err := c.dial(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// dial opens the connection.
func (c *redisConn) dial(ctx context.Context) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", c.addr)
	if err != nil {
		return fmt.Errorf("dial redis %s: %w", c.addr, err)
	}
	c.conn, c.r, c.w, c.broken = conn, bufio.NewReaderSize(conn, 16<<10), bufio.NewWriterSize(conn, 16<<10), false
	return nil
}

// Close closes the connection.
func (c *redisConn) Close() error { return c.conn.Close() }

// reply is one RESP answer.
type reply struct {
	n    int64  // an integer reply
	bulk []byte // a bulk or simple string
	null bool   // a null bulk string or array
}

// errRedis is what an error reply wraps.
var errRedis = errors.New("redis")

// do sends cmds in one write and reads their replies, until ctx ends. An
// error reply is returned as an error wrapping errRedis.
func (c *redisConn) do(ctx context.Context, cmds ...[][]byte) (_ []reply, err error) {
	if c.broken {
		c.conn.Close()
		if err := c.dial(ctx); err != nil {
			return nil, err
		}
	}
	defer func() {
		if err != nil && !errors.Is(err, errRedis) {
			c.broken = true
		}
	}()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.conn.SetDeadline(dl)
	} else {
		_ = c.conn.SetDeadline(time.Time{})
	}
	conn := c.conn
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer func() {
		if !stop() {
			c.broken = true // the deadline may be set in the past after this returns
		}
	}()
	for _, args := range cmds {
		c.w.WriteByte('*')
		c.w.WriteString(strconv.Itoa(len(args)))
		c.w.WriteString("\r\n")
		for _, a := range args {
			c.w.WriteByte('$')
			c.w.WriteString(strconv.Itoa(len(a)))
			c.w.WriteString("\r\n")
			c.w.Write(a)
			c.w.WriteString("\r\n")
		}
	}
	if err := c.w.Flush(); err != nil {
		return nil, fmt.Errorf("send: %w", err)
	}
	out := make([]reply, len(cmds))
	var replyErr error
	for i := range cmds {
		r, err := c.read(0)
		if err != nil && !errors.Is(err, errRedis) {
			return nil, fmt.Errorf("read reply: %w", err)
		}
		if err != nil && replyErr == nil {
			replyErr = err
		}
		out[i] = r
	}
	return out, replyErr
}

// read reads one reply; depth bounds the nesting of arrays.
func (c *redisConn) read(depth int) (reply, error) {
	line, err := c.r.ReadSlice('\n')
	if err != nil {
		return reply{}, err
	}
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return reply{}, fmt.Errorf("malformed reply %q", line)
	}
	kind, body := line[0], string(line[1:len(line)-2])
	switch kind {
	case '+':
		return reply{bulk: []byte(body)}, nil
	case '-':
		return reply{}, fmt.Errorf("%w: %s", errRedis, body)
	case ':':
		n, err := strconv.ParseInt(body, 10, 64)
		if err != nil {
			return reply{}, fmt.Errorf("malformed integer reply %q", body)
		}
		return reply{n: n}, nil
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil || n < -1 || n > 512<<20 {
			return reply{}, fmt.Errorf("malformed bulk length %q", body)
		}
		if n == -1 {
			return reply{null: true}, nil
		}
		b := make([]byte, n+2)
		if _, err := io.ReadFull(c.r, b); err != nil {
			return reply{}, err
		}
		return reply{bulk: b[:n]}, nil
	case '*':
		n, err := strconv.Atoi(body)
		if err != nil || n < -1 || n > 1<<20 || depth > 8 {
			return reply{}, fmt.Errorf("malformed array length %q", body)
		}
		if n == -1 {
			return reply{null: true}, nil
		}
		for range n { // tandem-bench reads no array's elements
			if _, err := c.read(depth + 1); err != nil && !errors.Is(err, errRedis) {
				return reply{}, err
			}
		}
		return reply{n: int64(n)}, nil
	}
	return reply{}, fmt.Errorf("unknown reply type %q", kind)
}
