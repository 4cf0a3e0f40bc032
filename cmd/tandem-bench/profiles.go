package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sync"
	"time"
)

// profiler takes CPU profiles during each measured run against Tandem
// (-pprof): one of every node process, from the listener `tandem serve
// -pprof` opens, and one of this process, which runs the smart client,
// the HTTP clients and the embedded node. Files are named
// WORKLOAD-TARGET-PROCESS.pprof, for `go tool pprof`.
type profiler struct {
	dir   string
	procs []*tandemProc
	http  *http.Client
}

// start begins the profiles of the measured run of workload against
// target, lasting about d, and returns a function that ends this
// process's profile, waits for the nodes' and reports what failed.
func (p *profiler) start(ctx context.Context, workload, target string, d time.Duration) func() error {
	name := func(process string) string {
		return filepath.Join(p.dir, fmt.Sprintf("%s-%s-%s.pprof", workload, target, process))
	}
	seconds := max(1, int(math.Ceil(d.Seconds())))
	var wg sync.WaitGroup
	errs := make([]error, len(p.procs)+1)
	for i, pr := range p.procs {
		wg.Go(func() {
			errs[i] = p.fetch(ctx, fmt.Sprintf("%sprofile?seconds=%d", pr.Profiles, seconds), name(pr.Name))
		})
	}
	own, err := os.Create(name("bench"))
	if err == nil {
		if err = pprof.StartCPUProfile(own); err != nil {
			own.Close()
			own = nil
		}
	}
	errs[len(p.procs)] = err
	return func() error {
		if own != nil {
			pprof.StopCPUProfile()
			errs[len(p.procs)] = own.Close()
		}
		wg.Wait()
		return errors.Join(errs...)
	}
}

// fetch saves the profile at url to path.
func (p *profiler) fetch(ctx context.Context, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := p.http.Do(req)
	if err != nil {
		return fmt.Errorf("profile %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("profile %s: %s: %s", url, resp.Status, body)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("profile %s: %w", url, err)
	}
	return f.Close()
}
