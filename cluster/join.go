package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Joining: seeds, their names, and a name already in use.
//
// A seed (Config.Seeds) is one of
//
//   - an IP address with a port, "10.0.0.7:7946" or "[fd00::7]:7946";
//   - a host name with a port, "tandem-0.tandem.prod.svc:7946", which is
//     looked up (A and AAAA records) and stands for every address it has;
//   - a DNS SRV record, "dns+srv://_gossip._tcp.tandem.prod.svc.cluster.local"
//     (SRVScheme followed by the record's full name), which stands for every
//     address of every target it lists, each with the target's port. A
//     Kubernetes headless Service publishes one for each named port.
//
// A seed without a port gets this node's own gossip port. Names are
// resolved (through Config.Resolver) when Start joins, and again before
// every periodic re-join (Config.RejoinInterval), so a Service whose pods
// come and go keeps being followed; addresses equal to this node's own are
// skipped. A seed that does not resolve counts as one that does not answer.
//
// The name rule: a node must not take the name of a live member. When the
// seeds' state lists this node's name at another gossip address, with
// another boot id, memberlist reports a conflict; Start then probes that
// address, asking for the name (memberlist's ping, up to nameProbes times,
// each waiting ProbeTimeout). If it answers, a live member holds the name
// and Start fails with a NameTakenError (ErrNameTaken). If it does not, the
// entry is taken for an earlier incarnation of this node, crashed but not
// yet declared dead: Start succeeds, and the cluster takes the node back at
// its new address once the old one is declared dead (plus
// DeadNodeReclaimTime), as for any restart under the same name. A restart
// on the same address has no conflict at all. A live member that is paused,
// or whose gossip port is cut off, at the moment of the probe is
// indistinguishable from a dead one; memberlist then keeps logging the
// conflict, and the re-join loop logs a NameTakenError once the member
// answers again.

// SRVScheme prefixes a seed that names a DNS SRV record; see Config.Seeds.
const SRVScheme = "dns+srv://"

// Resolver looks up the host names and SRV records of seeds. *net.Resolver
// implements it; net.DefaultResolver is used when Config.Resolver is nil.
type Resolver interface {
	LookupHost(ctx context.Context, host string) ([]string, error)
	LookupSRV(ctx context.Context, service, proto, name string) (string, []*net.SRV, error)
}

// resolveTimeout bounds the lookups of one seed.
const resolveTimeout = 5 * time.Second

// nameProbes is how many probes the address of a conflicting entry for
// this node's name gets before it is taken for dead.
const nameProbes = 3

// maxConflicts bounds the conflicts recorded between two checks.
const maxConflicts = 16

// ErrNameTaken is wrapped by the error Start returns when this node's name
// belongs to a live member at another address (a NameTakenError).
var ErrNameTaken = errors.New("cluster: name taken by a live member")

// NameTakenError says which live member holds the name a node tried to
// start under. errors.Is(err, ErrNameTaken) holds for it.
type NameTakenError struct {
	Name   string // the name both claim
	Addr   string // the live member's gossip address, host:port
	BootID string // the live member's boot id ("" if its metadata was unreadable)
}

// Error names the member, its address and what to do.
func (e *NameTakenError) Error() string {
	boot := ""
	if e.BootID != "" {
		boot = " (boot id " + e.BootID + ")"
	}
	return fmt.Sprintf("%v: member %q is alive at gossip address %s%s and answers probes; start this node under another name, or stop that member first",
		ErrNameTaken, e.Name, e.Addr, boot)
}

// Is reports whether target is ErrNameTaken.
func (e *NameTakenError) Is(target error) bool { return target == ErrNameTaken }

// conflict is a node memberlist reported under this node's name at
// another gossip address.
type conflict struct {
	addr   string // host:port
	bootID string
}

// checkSeed checks the form of a configured seed, without resolving it.
func checkSeed(s string) error {
	if name, ok := strings.CutPrefix(s, SRVScheme); ok {
		if name == "" || strings.ContainsAny(name, "/: ") {
			return fmt.Errorf("want %s followed by a DNS name such as _gossip._tcp.tandem.default.svc.cluster.local", SRVScheme)
		}
		return nil
	}
	if strings.Contains(s, "://") {
		return fmt.Errorf("unknown scheme (want host:port, ip:port or %sNAME)", SRVScheme)
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		host, port = strings.Trim(s, "[]"), ""
	}
	if host == "" || strings.ContainsAny(host, " /") {
		return errors.New("want host:port, ip:port or " + SRVScheme + "NAME")
	}
	if port != "" {
		if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			return fmt.Errorf("bad port %q", port)
		}
	}
	return nil
}

// target is one gossip address a seed stands for.
type target struct {
	seed string // as configured
	addr string // ip:port, normalised as memberlist's Node.Address
}

// String names the address with its seed, when the seed is a name.
func (t target) String() string {
	if t.seed == t.addr {
		return "seed " + t.seed
	}
	return "seed " + t.seed + " (" + t.addr + ")"
}

// resolver returns the resolver seeds are looked up with.
func (c *Cluster) resolver() Resolver {
	if c.cfg.Resolver != nil {
		return c.cfg.Resolver
	}
	return net.DefaultResolver
}

// targets resolves every seed and returns the addresses to join, without
// this node's own and without repeats, and an error per seed that did not
// resolve.
func (c *Cluster) targets(ctx context.Context) ([]target, []error) {
	var out []target
	var errs []error
	seen := map[string]bool{c.addr: true}
	for _, seed := range c.cfg.Seeds {
		addrs, err := c.resolveSeed(ctx, seed)
		if err != nil {
			errs = append(errs, fmt.Errorf("seed %s: %w", seed, err))
			continue
		}
		for _, a := range addrs {
			if !seen[a] {
				seen[a] = true
				out = append(out, target{seed: seed, addr: a})
			}
		}
	}
	return out, errs
}

// resolveSeed returns the gossip addresses seed stands for, ip:port.
func (c *Cluster) resolveSeed(ctx context.Context, seed string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	if name, ok := strings.CutPrefix(seed, SRVScheme); ok {
		_, srvs, err := c.resolver().LookupSRV(ctx, "", "", name)
		if err != nil {
			return nil, fmt.Errorf("look up SRV record: %w", err)
		}
		var out []string
		var errs []error
		for _, srv := range srvs {
			if srv.Port == 0 {
				continue
			}
			addrs, err := c.lookupHost(ctx, strings.TrimSuffix(srv.Target, "."), strconv.Itoa(int(srv.Port)))
			if err != nil {
				errs = append(errs, err)
				continue
			}
			out = append(out, addrs...)
		}
		if len(out) == 0 {
			if len(errs) > 0 {
				return nil, fmt.Errorf("SRV targets: %w", oneLine(errors.Join(errs...)))
			}
			return nil, errors.New("SRV record lists no targets")
		}
		return out, nil
	}
	host, port, err := net.SplitHostPort(seed)
	if err != nil {
		host, port = strings.Trim(seed, "[]"), strconv.Itoa(int(c.port))
	}
	return c.lookupHost(ctx, host, port)
}

// lookupHost returns host's addresses with port, ip:port; an IP address
// is its own.
func (c *Cluster) lookupHost(ctx context.Context, host, port string) ([]string, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return []string{net.JoinHostPort(ip.Unmap().WithZone("").String(), port)}, nil
	}
	addrs, err := c.resolver().LookupHost(ctx, host)
	if err != nil {
		return nil, fmt.Errorf("look up %s: %w", host, err)
	}
	var out []string
	for _, a := range addrs {
		ip, err := netip.ParseAddr(a)
		if err != nil || ip.Zone() != "" {
			continue // not usable as a gossip address
		}
		out = append(out, net.JoinHostPort(ip.Unmap().String(), port))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("look up %s: no usable addresses in %v", host, addrs)
	}
	return out, nil
}

// joinSeeds resolves the seeds and joins each address in turn; it succeeds
// if one join does, or if the seeds stand for this node alone (it then
// starts a cluster). It returns how many addresses it joined. It returns
// early, with ctx's error, when ctx ends; the join under way then finishes
// on its own within TCPTimeout. The error, on one line, names every seed
// and why it failed.
func (c *Cluster) joinSeeds(ctx context.Context) (int, error) {
	type result struct {
		joined int
		errs   []error
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("%w: node %s: %w", ErrJoin, c.cfg.Name, err)
	}
	targets, resolveErrs := c.targets(ctx)
	if len(targets) == 0 && len(resolveErrs) == 0 {
		return 0, nil
	}
	stop := make(chan struct{})
	done := make(chan result, 1)
	go func() {
		var r result
		for _, t := range targets {
			select {
			case <-stop:
				done <- r
				return
			default:
			}
			if err := c.joinSeed(t); err != nil {
				r.errs = append(r.errs, err)
			} else {
				r.joined++
			}
		}
		done <- r
	}()

	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		close(stop)
		return 0, fmt.Errorf("%w: node %s: %w", ErrJoin, c.cfg.Name, ctx.Err())
	}
	errs := append(resolveErrs, r.errs...)
	if r.joined > 0 {
		for _, err := range errs {
			c.log.Warn("seed not joined", "error", err)
		}
		return r.joined, nil
	}
	return 0, fmt.Errorf("%w: node %s joined none of its seeds (%s): %w",
		ErrJoin, c.cfg.Name, strings.Join(c.cfg.Seeds, ", "), seedErrors(errs))
}

// joinSeed joins one address. If the join failed because the merge
// delegate refused the seed's cluster for its ring settings, the error
// wraps that refusal, and so ErrRingMismatch. The error is on one line.
func (c *Cluster) joinSeed(t target) error {
	c.del.beginJoin()
	_, err := c.ml.Join([]string{t.addr})
	mismatch := c.del.endJoin()
	if err == nil {
		return nil
	}
	// memberlist reports the delegate's error as text only. Our own join's
	// refusal is in that text; a refusal recorded meanwhile for another
	// node's join into ours is not, and is ignored.
	if mismatch != nil && strings.Contains(err.Error(), mismatch.Error()) {
		return fmt.Errorf("%v: %w", t, mismatch)
	}
	return fmt.Errorf("%v: %w", t, oneLine(err))
}

// seedErrors is the failures of several seeds, on one line.
type seedErrors []error

// Error joins the failures with "; ".
func (e seedErrors) Error() string {
	parts := make([]string, len(e))
	for i, err := range e {
		parts[i] = err.Error()
	}
	return strings.Join(parts, "; ")
}

// Unwrap returns the failures, for errors.Is and errors.As.
func (e seedErrors) Unwrap() []error { return e }

// lineError is an error whose text was put on one line; it unwraps to the
// original.
type lineError struct {
	msg string
	err error
}

func (e lineError) Error() string { return e.msg }
func (e lineError) Unwrap() error { return e.err }

// oneLine returns err with its text on one line: memberlist's multierror
// ("1 error occurred:\n\t* ...") and errors.Join put theirs on several.
func oneLine(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if !strings.ContainsAny(msg, "\r\n\t") {
		return err
	}
	var parts []error
	if multi, ok := err.(interface{ WrappedErrors() []error }); ok {
		parts = multi.WrappedErrors()
	} else if joined, ok := err.(interface{ Unwrap() []error }); ok {
		parts = joined.Unwrap()
	}
	if len(parts) > 0 {
		texts := make([]string, len(parts))
		for i, e := range parts {
			texts[i] = e.Error()
		}
		msg = strings.Join(texts, "; ")
	}
	return lineError{msg: strings.Join(strings.Fields(msg), " "), err: err}
}

// checkName looks at the nodes memberlist reported under this node's name
// at other addresses since the last check, and returns a NameTakenError
// for the first whose address answers a probe for the name (the rule is at
// the top of this file). Entries that do not answer are logged at level.
func (c *Cluster) checkName(ctx context.Context, quiet bool) error {
	conflicts := c.del.takeConflicts()
	slices.SortFunc(conflicts, func(a, b conflict) int { return strings.Compare(a.addr, b.addr) })
	for _, cf := range conflicts {
		if cf.bootID == c.bootID || cf.addr == c.addr {
			continue // this incarnation itself
		}
		answered, err := c.answers(ctx, cf.addr)
		if err != nil {
			return err
		}
		if answered {
			return &NameTakenError{Name: c.cfg.Name, Addr: cf.addr, BootID: cf.bootID}
		}
		log := c.log.Info
		if quiet {
			log = c.log.Debug
		}
		log("the cluster still lists this node's name at another address, but nothing answers there: taken for an earlier incarnation not yet declared dead",
			"addr", cf.addr, "boot_id", cf.bootID)
	}
	return nil
}

// answers reports whether a node under this node's name answers a probe at
// addr, trying nameProbes times.
func (c *Cluster) answers(ctx context.Context, addr string) (bool, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return false, nil // not an address memberlist could gossip with either
	}
	to := net.UDPAddrFromAddrPort(ap)
	for range nameProbes {
		if err := ctx.Err(); err != nil {
			return false, fmt.Errorf("%w: node %s: probe %s: %w", ErrJoin, c.cfg.Name, addr, err)
		}
		if _, err := c.ml.Ping(c.cfg.Name, to); err == nil {
			return true, nil
		}
	}
	return false, nil
}

// reportTaken reports whether taken was not logged yet, and records it.
// Only the re-join loop calls it.
func (c *Cluster) reportTaken(taken *NameTakenError) bool {
	key := conflict{addr: taken.Addr, bootID: taken.BootID}
	if c.takenSeen[key] {
		return false
	}
	if c.takenSeen == nil {
		c.takenSeen = map[conflict]bool{}
	}
	if len(c.takenSeen) < maxConflicts {
		c.takenSeen[key] = true
	}
	return true
}

// Joined reports whether Start joined other nodes through its seeds; false
// when it started a new cluster, having no seed but itself.
func (c *Cluster) Joined() bool { return c.joined > 0 }
