//go:build !linux

package chaos

import (
	"context"
	"errors"
	"net"
	"os/exec"
)

// errNoNetns says why a netns network cannot be made here.
var errNoNetns = errors.New("network namespaces exist on Linux only")

// NetnsAvailable reports whether this process can run a cluster in
// network namespaces: never, off Linux.
func NetnsAvailable() error { return errNoNetns }

// netnsNetwork is never made off Linux.
type netnsNetwork struct{}

func netnsNodeIP(int) string { return "" }

func newNetnsNetwork(context.Context, int) (*netnsNetwork, error) { return nil, errNoNetns }

func (n *netnsNetwork) command(int, string, ...string) *exec.Cmd { return nil }

func (n *netnsNetwork) drop(context.Context, int, int, bool) error { return errNoNetns }

func (n *netnsNetwork) heal(context.Context, int) error { return errNoNetns }

func (n *netnsNetwork) dial(context.Context, string, string) (net.Conn, error) {
	return nil, errNoNetns
}

func (n *netnsNetwork) dialNode(int) func(context.Context, string, string) (net.Conn, error) {
	return n.dial
}

func (n *netnsNetwork) close() {}
