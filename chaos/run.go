package chaos

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// Config configures a run.
type Config struct {
	// Binary is the tandem binary; empty builds one into ReportDir.
	Binary string
	// Nodes is the cluster size (default 5).
	Nodes int
	// MinMembers is the nodes' -min-members (default: none, tandem
	// serve's own; see ClusterConfig).
	MinMembers int
	// Seats is the nodes' -seats (default: none; see ClusterConfig).
	Seats int
	// Duration is how long the cluster is attacked under load (default
	// 60s). Healing, settling and the final reads come after it.
	Duration time.Duration
	// Seed reproduces the fault schedule and the workload's choices.
	Seed int64
	// Faults are the fault kinds to draw from (default AllFaults).
	Faults []FaultKind
	// MaxSkew bounds injected clock skew (default 2s).
	MaxSkew time.Duration
	// MaxFaults stops the nemesis after that many faults (0: no limit).
	MaxFaults int
	// Overlap, between 0 and 1, is the probability that a fault starts
	// without waiting for the cluster to be healthy: while the previous
	// one holds or recovers (overlap mode; see Nemesis.Run). Above zero it
	// also adds OverlapFaults to the default kinds. Zero (the default)
	// runs one fault at a time, each on a healthy cluster.
	Overlap float64
	// LinearizabilityTimeout bounds porcupine's search per session
	// (default 30s; see CheckConfig); a session past it fails the run.
	LinearizabilityTimeout time.Duration
	// Workload tunes the clients; its Seed is set from Seed.
	Workload WorkloadConfig
	// RecoverTimeout bounds each wait for the cluster to be healthy again
	// (default 30s).
	RecoverTimeout time.Duration
	// ReportDir receives the report, the history and the nodes' logs
	// (default: a new temporary directory).
	ReportDir string
	// NodeLogLevel is the nodes' -log-level (default "warn").
	NodeLogLevel string
	// Profile is the nodes' -profile (see ClusterConfig.Profile); empty
	// runs tandem serve's default.
	Profile string
	// Network is where the nodes run and how links are cut (see
	// ClusterConfig.Network): NetworkLoopback (the default) or
	// NetworkNetns.
	Network string
	// Logger receives progress (default: discard).
	Logger *slog.Logger
}

// withDefaults fills zero fields.
func (c Config) withDefaults() Config {
	if c.Nodes == 0 {
		c.Nodes = 5
	}
	if c.Duration == 0 {
		c.Duration = 60 * time.Second
	}
	c.Overlap = min(max(c.Overlap, 0), 1)
	if len(c.Faults) == 0 {
		c.Faults = AllFaults
		if c.Overlap > 0 {
			c.Faults = append(slices.Clone(AllFaults), OverlapFaults...)
		}
	}
	if c.MaxSkew == 0 {
		c.MaxSkew = 2 * time.Second
	}
	if c.RecoverTimeout == 0 {
		c.RecoverTimeout = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	c.Workload.Seed = c.Seed
	return c
}

// Run starts a cluster, attacks it under load for cfg.Duration, heals it,
// lets it settle, reads everything back, checks the history and writes
// the report to cfg.ReportDir. It returns the report whatever the verdict;
// an error means the run itself could not be carried out. Every node
// process is killed before Run returns.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg = cfg.withDefaults()
	log := cfg.Logger
	if cfg.ReportDir == "" {
		dir, err := os.MkdirTemp("", "tandem-chaos-")
		if err != nil {
			return nil, fmt.Errorf("chaos: run: %w", err)
		}
		cfg.ReportDir = dir
	}
	if err := os.MkdirAll(cfg.ReportDir, 0o755); err != nil {
		return nil, fmt.Errorf("chaos: run: %w", err)
	}
	if cfg.Binary == "" {
		log.Info("building tandem", "dir", cfg.ReportDir)
		bin, err := BuildBinary(ctx, cfg.ReportDir)
		if err != nil {
			return nil, fmt.Errorf("chaos: run: %w", err)
		}
		cfg.Binary = bin
	}
	started := time.Now()
	log.Info("starting cluster", "nodes", cfg.Nodes, "seed", cfg.Seed)
	c, err := StartCluster(ctx, ClusterConfig{Binary: cfg.Binary, Nodes: cfg.Nodes, MinMembers: cfg.MinMembers, Seats: cfg.Seats, Dir: filepath.Join(cfg.ReportDir, "nodes"),
		LogLevel: cfg.NodeLogLevel, Profile: cfg.Profile, Network: cfg.Network, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("chaos: run: %w", err)
	}
	defer c.Close()

	h := NewHistory()
	cfg.Network = c.Network()
	if cfg.Workload.Dial == nil {
		cfg.Workload.Dial = c.DialContext
	}
	w := NewWorkload(c.Nodes(), h, cfg.Workload)
	defer w.Close()
	sched := NewSchedule(cfg.Seed, ScheduleConfig{Nodes: cfg.Nodes, Kinds: cfg.Faults, MaxSkew: cfg.MaxSkew, Overlap: cfg.Overlap})
	nem := NewNemesis(c, sched, h, NemesisConfig{RecoverTimeout: cfg.RecoverTimeout, MaxFaults: cfg.MaxFaults, Overlap: cfg.Overlap > 0, Logger: log})
	// The nodes' reports of partitions lost with both owners, polled every
	// second until the copies have been read: a node's report holds only
	// its latest loss.
	losses := NewLossWatcher(c, h, time.Second)
	watch, stopWatch := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() { defer close(watched); losses.Run(watch) }()
	defer func() { stopWatch(); <-watched }()

	log.Info("attacking under load", "duration", cfg.Duration)
	attack, stop := context.WithTimeout(ctx, cfg.Duration)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); w.Run(attack) }()
	go func() { defer wg.Done(); nem.Run(attack) }()
	wg.Wait()
	stop()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("chaos: run interrupted: %w", err)
	}

	log.Info("healing and settling")
	warnings := heal(ctx, c, cfg.RecoverTimeout)
	events := nem.Events()
	var maxSkew time.Duration
	for _, e := range events {
		maxSkew = max(maxSkew, e.Fault.Skew, -e.Fault.Skew)
	}
	check := CheckConfig{MaxSkew: maxSkew, VisualizeDir: cfg.ReportDir, Faults: events, LinearizabilityTimeout: cfg.LinearizabilityTimeout}
	// Let every expiring session pass its deadline, so final reads check
	// that it is gone.
	if wait := w.LastExpiry() + 2*maxSkew + 2*time.Second - h.Since(time.Now()); wait > 0 {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("chaos: run interrupted: %w", ctx.Err())
		case <-time.After(wait):
		}
	}
	log.Info("reading back")
	fctx, cancel := context.WithTimeout(ctx, cfg.RecoverTimeout+30*time.Second)
	w.FinalReads(fctx)
	cancel()
	log.Info("reading the owners' copies")
	cctx, cancel := context.WithTimeout(ctx, cfg.RecoverTimeout+30*time.Second)
	warnings = append(warnings, w.ReadCopies(cctx)...)
	warnings = append(warnings, w.Warnings()...)
	cancel()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("chaos: run interrupted: %w", err)
	}
	stopWatch()
	<-watched
	losses.Poll(ctx)
	if added := losses.ReadLogs(c.Dir()); added > 0 {
		log.Warn("the nodes' logs report losses polling missed (a node went down right after it found them)", "reports", added)
	}
	check.Lost, check.Partitions = losses.Reports(), losses.Partitions()
	if len(check.Lost) > 0 {
		log.Warn("nodes reported partitions lost with both owners", "reports", len(check.Lost))
	}

	if n := c.RevokedExits(); n > 0 {
		warnings = append(warnings, fmt.Sprintf("the seats revoked nodes for good %d times: each exited (status %d) and was restarted as a new run", n, exitRevoked))
	}
	log.Info("checking", "ops", len(h.Ops()), "sessions", len(w.Sessions()))
	checking := time.Now()
	v := Check(h, check)
	log.Info("checked", "verdict", v.String(), "unknown", len(v.Unknown), "anomalies", len(v.Anomalies), "in", time.Since(checking).Round(time.Millisecond))
	rep := newReport(cfg, h, events, v, append(nem.Warnings(), warnings...), time.Since(started), maxSkew)
	rep.CheckTime = time.Since(checking)
	rep.Lost, rep.Partitions = check.Lost, check.Partitions
	rep.LostMetric, rep.LostLogLines = losses.MetricIncrements(), countLossLogLines(c.Dir())
	if err := WriteReport(cfg.ReportDir, rep, h); err != nil {
		return rep, fmt.Errorf("chaos: run: %w", err)
	}
	return rep, nil
}

// heal ends every fault: it thaws and restarts nodes, heals every link and
// resets every clock, then waits for the cluster to be healthy. It returns
// what went wrong, as warnings.
func heal(ctx context.Context, c *Cluster, timeout time.Duration) []string {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var warnings []string
	for i := range c.Size() {
		_ = c.Resume(i)
		if err := c.StartNode(ctx, i); err != nil {
			warnings = append(warnings, fmt.Sprintf("heal: %v", err))
		}
		if err := c.Heal(ctx, i); err != nil {
			warnings = append(warnings, fmt.Sprintf("heal: %v", err))
		}
		if err := c.SetClock(ctx, i, 0); err != nil {
			warnings = append(warnings, fmt.Sprintf("heal: %v", err))
		}
	}
	if err := c.WaitHealthy(ctx); err != nil {
		warnings = append(warnings, fmt.Sprintf("heal: cluster not healthy within %v after the attack", timeout))
	}
	return warnings
}
