//go:build unix

package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/tandem-io/tandem/cmd/internal/serveproc"
)

// sessionMix sends a steady, light session mix to a cluster: rate
// requests per second in all, 90 % reads and 10 % writes of 1,000
// sessions, each to the next node in turn. It is open-loop: a request
// that is slow does not slow the others, and at most 64 are in flight.
type sessionMix struct {
	cancel context.CancelFunc
	done   sync.WaitGroup

	mu               sync.Mutex
	requests, failed int
}

// mixSessions is how many sessions the mix spreads over.
const mixSessions = 1000

// startMix starts the mix; stop ends it.
func startMix(ctx context.Context, client *http.Client, procs []*serveproc.Proc, rate int) *sessionMix {
	ctx, cancel := context.WithCancel(ctx)
	m := &sessionMix{cancel: cancel}
	slots := make(chan struct{}, 64)
	m.done.Go(func() {
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			select {
			case slots <- struct{}{}:
			default:
				m.count(false) // 64 in flight: the cluster is not keeping up
				continue
			}
			m.done.Go(func() {
				defer func() { <-slots }()
				m.count(m.send(ctx, client, procs[i%len(procs)], i))
			})
		}
	})
	return m
}

// send sends request i of the mix to p and reports whether it was
// answered.
func (m *sessionMix) send(ctx context.Context, client *http.Client, p *serveproc.Proc, i int) bool {
	url := fmt.Sprintf("http://%s/v1/sessions/tandem-idle-mix-%06d", p.HTTP, (i*7919)%mixSessions)
	method, body := http.MethodGet, []byte(nil)
	if i%10 == 0 {
		method, body = http.MethodPut, []byte(fmt.Sprintf(`{"attributes":{"n":%d}}`, i))
	}
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return false
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		return ctx.Err() != nil // cut short by stop: not a failure
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode < 300 || method == http.MethodGet && resp.StatusCode == http.StatusNotFound
}

// count records one request.
func (m *sessionMix) count(ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.requests++
	if !ok {
		m.failed++
	}
}

// reset starts the counts again: the window begins.
func (m *sessionMix) reset() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.requests, m.failed = 0, 0
}

// counts returns the requests sent since reset and how many failed.
func (m *sessionMix) counts() (requests, failed int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.requests, m.failed
}

// stop ends the mix and waits for its requests.
func (m *sessionMix) stop() {
	m.cancel()
	m.done.Wait()
}
