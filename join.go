package tandem

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/tandem-io/tandem/cluster"
)

// ErrNameTaken is wrapped (with ErrInvalid) by the error Start returns when
// a live member of the cluster already has the node's name: it answers at
// another gossip address, which the error names along with the member. A
// node restarted under its name while its crashed incarnation is not yet
// declared dead is not refused (see Config.Join).
var ErrNameTaken = cluster.ErrNameTaken

// Waits between attempts to join while no seed answers: doubling from the
// first to the last.
const (
	joinRetryFirst = 250 * time.Millisecond
	joinRetryMax   = 2 * time.Second
)

// joinCluster starts membership, retrying while no seed answers, for up to
// timeout (default 30s) or until ctx ends. Each retry is logged on one
// line; the error it gives up with is one line naming every seed and why
// it failed. A name taken by a live member fails at once, wrapping
// ErrInvalid and ErrNameTaken; so do seeds with other ring settings
// (cluster.ErrRingMismatch).
func joinCluster(ctx context.Context, cc cluster.Config, timeout time.Duration, log *slog.Logger) (*cluster.Cluster, error) {
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	start := time.Now()
	deadline := start.Add(timeout)
	wait := joinRetryFirst
	for attempt := 1; ; attempt++ {
		members, err := cluster.Start(ctx, cc)
		switch {
		case err == nil:
			if attempt > 1 {
				log.Info("joined", "attempts", attempt, "after", time.Since(start).Round(time.Millisecond))
			}
			return members, nil
		case errors.Is(err, cluster.ErrNameTaken):
			return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
		case !errors.Is(err, cluster.ErrJoin) || errors.Is(err, cluster.ErrRingMismatch) || ctx.Err() != nil:
			return nil, err
		case !time.Now().Before(deadline):
			return nil, fmt.Errorf("gave up joining after %d attempts in %v: %w",
				attempt, time.Since(start).Round(time.Millisecond), err)
		}
		wait = min(wait, max(time.Until(deadline), time.Millisecond)).Round(time.Millisecond)
		log.Info("seeds not answering yet; retrying",
			"attempt", attempt, "seeds", strings.Join(cc.Seeds, ","), "retry_in", wait, "error", err.Error())
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(wait):
		}
		wait = min(2*wait, joinRetryMax)
	}
}
