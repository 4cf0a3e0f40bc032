//go:build linux

package peer

import (
	"crypto/tls"
	"net"

	"golang.org/x/sys/unix"
)

// unacknowledged reports whether nc's kernel still holds bytes the remote
// kernel has not acknowledged (SIOCOUTQ: unsent plus unacknowledged), or
// cannot tell. Bytes it holds may be retransmitted and delivered later;
// acknowledged bytes have reached the remote's socket.
func unacknowledged(nc net.Conn) bool {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	tcp, ok := nc.(*net.TCPConn)
	if !ok {
		return true
	}
	raw, err := tcp.SyscallConn()
	if err != nil {
		return true
	}
	queued, qerr := 0, error(nil)
	if err := raw.Control(func(fd uintptr) { queued, qerr = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ) }); err != nil || qerr != nil {
		return true
	}
	return queued > 0
}
