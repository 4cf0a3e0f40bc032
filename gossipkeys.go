package tandem

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/tandem-io/tandem/cluster"
)

// Gossip keys encrypt and authenticate membership gossip (Config.GossipKeys).
//
// Rotation is per node, and keeps the cluster serving throughout when done
// in three rounds, each finished on every node before the next begins:
//
//  1. InstallGossipKey(new) on every node: each can now read both keys.
//  2. UseGossipKey(new) on every node: each now writes with the new key,
//     which every other node can read.
//  3. RemoveGossipKey(old) on every node: nobody reads the old key any more.
//
// Make a node's key file (LoadGossipKeys) say the same — new key first —
// before it next restarts, or it comes back with the old key and cannot
// rejoin. A node started without keys has gossip in the clear and cannot
// switch encryption on at run time: restart the cluster with keys.

// Errors of gossip key rotation; test them with errors.Is. A key of the
// wrong length is ErrInvalid.
var (
	// ErrGossipKeyUnknown: the key is not installed on this node.
	ErrGossipKeyUnknown = cluster.ErrUnknownKey
	// ErrGossipKeyPrimary: the node's primary key cannot be removed; make
	// another key primary first.
	ErrGossipKeyPrimary = cluster.ErrPrimaryKey
	// ErrGossipUnencrypted: the node was started without gossip keys.
	ErrGossipUnencrypted = cluster.ErrNoEncryption
)

// maxKeyFileBytes bounds a gossip key file LoadGossipKeys reads.
const maxKeyFileBytes = 64 << 10

// gossipKeyError wraps err with ErrInvalid if it is about a malformed key.
func gossipKeyError(err error) error {
	if errors.Is(err, cluster.ErrInvalidKey) {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return err
}

// checkGossipKeys refuses SecretKey and GossipKeys together, keys of the
// wrong length and repeated keys, wrapping ErrInvalid.
func checkGossipKeys(secret []byte, keys [][]byte) error {
	if len(secret) > 0 && len(keys) > 0 {
		return fmt.Errorf("%w: set Config.SecretKey or Config.GossipKeys, not both", ErrInvalid)
	}
	if len(secret) > 0 {
		keys = [][]byte{secret}
	}
	for i, k := range keys {
		if err := cluster.ValidateKey(k); err != nil {
			return fmt.Errorf("%w: gossip key %d: %w", ErrInvalid, i+1, err)
		}
		for j := range i {
			if bytes.Equal(keys[j], k) {
				return fmt.Errorf("%w: gossip key %d repeats key %d", ErrInvalid, i+1, j+1)
			}
		}
	}
	return nil
}

// LoadGossipKeys reads a gossip key file for Config.GossipKeys: one
// standard-base64 key (16, 24 or 32 bytes) per line, the first the
// primary; blank lines and lines starting with # are ignored. `tandem
// certs` writes DIR/gossip.key in this format. Errors name the file and
// the line, wrap ErrInvalid for a malformed file, and never quote a key.
func LoadGossipKeys(path string) ([][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("tandem: load gossip keys: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("tandem: load gossip keys from %s: %w", path, err)
	}
	if len(data) > maxKeyFileBytes {
		return nil, fmt.Errorf("tandem: load gossip keys from %s: %w: larger than %d bytes", path, ErrInvalid, maxKeyFileBytes)
	}
	keys, err := cluster.ParseKeyFile(data)
	if err != nil {
		return nil, fmt.Errorf("tandem: load gossip keys from %s: %w", path, gossipKeyError(err))
	}
	return keys, nil
}

// ParseGossipKey decodes one gossip key written in standard base64, as in
// a key file, and checks its length. Its error wraps ErrInvalid and never
// quotes the input.
func ParseGossipKey(s string) ([]byte, error) {
	key, err := cluster.ParseKey(s)
	if err != nil {
		return nil, gossipKeyError(err)
	}
	return key, nil
}

// GossipKeyFingerprint names a gossip key without revealing it: the first
// 8 bytes of its SHA-256, in hex. Logs and the HTTP API show keys only by
// their fingerprints.
func GossipKeyFingerprint(key []byte) string { return cluster.KeyFingerprint(key) }

// InstallGossipKey adds key to this node's gossip keyring, so the node
// reads gossip encrypted with it; it still writes with its primary key.
// Installing a key twice does nothing. Rotation is per node: install the
// new key on every node, then make it primary on every node
// (UseGossipKey), then remove the old one from every node
// (RemoveGossipKey); the cluster serves throughout. The error wraps
// ErrInvalid for a key of the wrong length and ErrGossipUnencrypted on a
// node started without keys.
func (n *Node) InstallGossipKey(key []byte) error {
	if err := n.members.InstallKey(key); err != nil {
		return fmt.Errorf("tandem: %w", gossipKeyError(err))
	}
	return nil
}

// UseGossipKey makes an installed key this node's primary: the node writes
// all gossip with it from now on. Do it only once every node has installed
// the key (InstallGossipKey), or they cannot read this node and declare it
// dead. The error wraps ErrGossipKeyUnknown if the key is not installed.
func (n *Node) UseGossipKey(key []byte) error {
	if err := n.members.UseKey(key); err != nil {
		return fmt.Errorf("tandem: %w", gossipKeyError(err))
	}
	return nil
}

// RemoveGossipKey removes a key from this node's keyring, so the node no
// longer reads gossip encrypted with it. Do it once every node has made
// the new key primary (UseGossipKey). It refuses the primary key
// (ErrGossipKeyPrimary) and a key that is not installed
// (ErrGossipKeyUnknown).
func (n *Node) RemoveGossipKey(key []byte) error {
	if err := n.members.RemoveKey(key); err != nil {
		return fmt.Errorf("tandem: %w", gossipKeyError(err))
	}
	return nil
}

// GossipKeys returns copies of this node's gossip keys: the primary, and
// all of them with the primary first; both nil when its gossip is in the
// clear. Keys are secrets: show them by GossipKeyFingerprint.
func (n *Node) GossipKeys() (primary []byte, all [][]byte) { return n.members.Keys() }
