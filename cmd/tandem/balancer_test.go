package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"text/template"
	"time"
)

// These end-to-end tests put real balancers (HAProxy, nginx) in front of
// real node processes. Without the programs they are skipped, unless
// TANDEM_E2E=1 (set by .ci/run, which installs them) makes them required.

// balancer is a running balancer process.
type balancer struct {
	url string
	cmd *exec.Cmd
}

// lookBalancer finds a balancer program or skips the test.
func lookBalancer(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		for _, dir := range []string{"/usr/sbin", "/usr/local/sbin"} {
			if _, e := os.Stat(filepath.Join(dir, name)); e == nil {
				return filepath.Join(dir, name)
			}
		}
		if os.Getenv("TANDEM_E2E") == "1" {
			t.Fatalf("%s is required for the end-to-end suite: %v", name, err)
		}
		t.Skipf("%s not installed", name)
	}
	return path
}

// startBalancer renders a config from testdata and starts the program.
func startBalancer(t *testing.T, program, tmpl string, procs []*proc, args func(cfg string) []string) *balancer {
	t.Helper()
	type server struct{ Name, Addr string }
	dir := t.TempDir()
	data := struct {
		Listen, Dir string
		Servers     []server
	}{Listen: fmt.Sprintf("127.0.0.1:%d", freePort(t)), Dir: dir}
	for _, p := range procs {
		data.Servers = append(data.Servers, server{p.name, p.http})
	}
	tp, err := template.ParseFiles(filepath.Join("..", "..", "testdata", tmpl))
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, strings.TrimSuffix(tmpl, ".tmpl"))
	f, err := os.Create(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := tp.Execute(f, data); err != nil {
		t.Fatal(err)
	}
	f.Close()
	cmd := exec.Command(program, args(cfg)...)
	cmd.Stderr = &prefixWriter{t: t, prefix: filepath.Base(program)}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	b := &balancer{url: "http://" + data.Listen, cmd: cmd}
	waitFor(t, 10*time.Second, filepath.Base(program)+" to answer", func() bool {
		status, _ := do("GET", b.url+"/livez", "", nil)
		return status == 200
	})
	return b
}

// throughBalancer writes sessions through the balancer, kills a node,
// keeps reading and writing through the balancer, restarts the node under
// its name and checks every session again.
func throughBalancer(t *testing.T, start func([]*proc) *balancer) {
	procs := startCluster(t, 3)
	b := start(procs)
	sessions := ids("balanced", 200)
	want := map[string]uint64{}
	for _, id := range sessions {
		var s sessionAnswer
		if _, err := do("PUT", b.url+"/v1/sessions/"+id, `{"principal":"u","attributes":{"n":1}}`, &s); err != nil {
			t.Fatal(err)
		}
		want[id] = s.Version
	}
	kill9(t, procs[0])
	// Every read through the balancer succeeds at once.
	for id, v := range want {
		var s sessionAnswer
		if _, err := do("GET", b.url+"/v1/sessions/"+id+"?touch=false", "", &s); err != nil || s.Version != v {
			t.Fatalf("read %s through the balancer after kill -9: v%d %v, want v%d", id, s.Version, err, v)
		}
	}
	// Writes succeed once membership has promoted the buddies.
	waitRing(t, procs[1:], 2)
	for _, id := range sessions {
		var s sessionAnswer
		if _, err := do("PATCH", b.url+"/v1/sessions/"+id, `{"n":2}`, &s); err != nil || s.Version != want[id]+1 {
			t.Fatalf("write %s through the balancer after failover: v%d %v", id, s.Version, err)
		}
		want[id] = s.Version
	}
	// The node returns under its name on its old HTTP address (the
	// balancer knows no other) and gets its sessions back.
	back := restartOnSameHTTP(t, procs[0], procs[1].gossip)
	waitRing(t, []*proc{back, procs[1], procs[2]}, 3)
	for round := range 2 { // round robin passes the returned node too
		for id, v := range want {
			var s sessionAnswer
			if _, err := do("GET", b.url+"/v1/sessions/"+id+"?touch=false", "", &s); err != nil || s.Version != v {
				t.Fatalf("round %d: read %s through the balancer after the node returned: v%d %v, want v%d", round, id, s.Version, err, v)
			}
		}
	}
}

// restartOnSameHTTP starts a node under old's name and HTTP address, with
// new gossip and peer ports, joining through join.
func restartOnSameHTTP(t *testing.T, old *proc, join string) *proc {
	t.Helper()
	p := &proc{name: old.name, http: old.http, gossip: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	p.cmd = exec.Command(os.Args[0], "serve", "-insecure", "-name", p.name, "-http", p.http, "-gossip", p.gossip,
		"-peer", "127.0.0.1:0", "-profile", "local", "-join", join, "-log-level", "warn")
	p.cmd.Env = append(os.Environ(), "TANDEM_TEST_AS_COMMAND=1")
	p.cmd.Stderr = &prefixWriter{t: t, prefix: p.name}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
	})
	return p
}

func TestBehindHAProxy(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	haproxy := lookBalancer(t, "haproxy")
	throughBalancer(t, func(procs []*proc) *balancer {
		return startBalancer(t, haproxy, "haproxy.cfg.tmpl", procs, func(cfg string) []string { return []string{"-db", "-f", cfg} })
	})
}

func TestBehindNginx(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	nginx := lookBalancer(t, "nginx")
	throughBalancer(t, func(procs []*proc) *balancer {
		return startBalancer(t, nginx, "nginx.conf.tmpl", procs, func(cfg string) []string {
			return []string{"-e", filepath.Join(filepath.Dir(cfg), "error.log"), "-c", cfg}
		})
	})
}
