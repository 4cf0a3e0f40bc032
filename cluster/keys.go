package cluster

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/hashicorp/memberlist"
)

// Gossip keys. With keys, every gossip message (UDP packets and TCP
// streams) is encrypted and authenticated with AES-GCM under the primary
// key; a message is accepted if any installed key opens it, and messages
// that none opens, or that are not encrypted, are dropped. Keys rotate
// without downtime, one step at a time on every node: InstallKey the new
// key on every node, then UseKey it on every node, then RemoveKey the old
// one from every node. Between the steps every node can open what every
// other sends.

// Errors of the gossip keyring; test them with errors.Is.
var (
	// ErrInvalidKey: a gossip key is not 16, 24 or 32 bytes, is not
	// base64, or is repeated.
	ErrInvalidKey = errors.New("cluster: invalid gossip key")
	// ErrUnknownKey: the key is not installed on this node.
	ErrUnknownKey = errors.New("cluster: gossip key not installed")
	// ErrPrimaryKey: the primary key cannot be removed; make another key
	// primary first.
	ErrPrimaryKey = errors.New("cluster: the primary gossip key cannot be removed")
	// ErrNoEncryption: the node was started without gossip keys, so it has
	// no keyring to rotate. Encryption is switched on by restarting the
	// nodes with keys.
	ErrNoEncryption = errors.New("cluster: gossip encryption is off on this node")
)

// ValidateKey checks that key can be a gossip key: 16, 24 or 32 bytes
// (AES-128, AES-192 or AES-256). Its error wraps ErrInvalidKey.
func ValidateKey(key []byte) error {
	switch len(key) {
	case 16, 24, 32:
		return nil
	}
	return fmt.Errorf("%w: must be 16, 24 or 32 bytes, got %d", ErrInvalidKey, len(key))
}

// KeyFingerprint names a key without revealing it: the first 8 bytes of
// its SHA-256, in hex (16 characters). Logs and the HTTP API show keys by
// their fingerprints only.
func KeyFingerprint(key []byte) string {
	sum := sha256.Sum256(key)
	return hex.EncodeToString(sum[:8])
}

// ParseKey decodes one gossip key written in standard base64 (as in a key
// file) and validates it. Its errors wrap ErrInvalidKey and never quote
// the input.
func ParseKey(s string) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("%w: not standard base64 (%v)", ErrInvalidKey, err)
	}
	if err := ValidateKey(key); err != nil {
		return nil, err
	}
	return key, nil
}

// ParseKeyFile reads a gossip key file: one standard-base64 key per line,
// the first the primary, the others installed for decryption only. Blank
// lines and lines starting with # are ignored; surrounding spaces and CRLF
// line ends are allowed. A line that is not base64, a key of the wrong
// length, a repeated key and a file without keys are errors that name the
// line and wrap ErrInvalidKey; they never quote a key. `tandem certs`
// writes DIR/gossip.key in this format.
func ParseKeyFile(data []byte) ([][]byte, error) {
	var keys [][]byte
	lineOf := map[string]int{}
	for i, line := range strings.Split(string(data), "\n") {
		text := strings.TrimSpace(line)
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		key, err := ParseKey(text)
		if err != nil {
			return nil, fmt.Errorf("gossip key file, line %d: %w", i+1, err)
		}
		if prev, ok := lineOf[string(key)]; ok {
			return nil, fmt.Errorf("gossip key file, line %d: %w: repeats the key on line %d", i+1, ErrInvalidKey, prev)
		}
		lineOf[string(key)] = i + 1
		keys = append(keys, key)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("gossip key file: %w: no key in the file", ErrInvalidKey)
	}
	return keys, nil
}

// gossipKeys returns the node's gossip keys, primary first: Keys, or
// SecretKey alone; none means gossip is not encrypted. It refuses both set,
// keys of the wrong length and repeated keys.
func (c Config) gossipKeys() ([][]byte, error) {
	keys := c.Keys
	if len(c.SecretKey) > 0 {
		if len(c.Keys) > 0 {
			return nil, fmt.Errorf("%w: set SecretKey or Keys, not both", errConfig)
		}
		keys = [][]byte{c.SecretKey}
	}
	for i, k := range keys {
		if err := ValidateKey(k); err != nil {
			return nil, fmt.Errorf("%w: gossip key %d: %w", errConfig, i+1, err)
		}
		for j := range i {
			if bytes.Equal(keys[j], k) {
				return nil, fmt.Errorf("%w: gossip key %d: %w: repeats key %d", errConfig, i+1, ErrInvalidKey, j+1)
			}
		}
	}
	return keys, nil
}

// newKeyring returns memberlist's keyring holding copies of keys, the first
// primary, or nil for no keys.
func newKeyring(keys [][]byte) (*memberlist.Keyring, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	others := make([][]byte, 0, len(keys)-1)
	for _, k := range keys[1:] {
		others = append(others, bytes.Clone(k))
	}
	kr, err := memberlist.NewKeyring(others, bytes.Clone(keys[0]))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidKey, err)
	}
	return kr, nil
}

// keyringOp runs op on the node's keyring under keyMu, so rotations and
// Keys never interleave; what memberlist does concurrently with the
// keyring (encrypting and decrypting) is guarded by the keyring's own
// lock. The error names the node and the step.
func (c *Cluster) keyringOp(step string, key []byte, op func(kr *memberlist.Keyring) error) error {
	c.keyMu.Lock()
	defer c.keyMu.Unlock()
	var err error
	switch {
	case c.closed.Load():
		err = errClosed
	case c.keyring == nil:
		err = ErrNoEncryption
	default:
		err = ValidateKey(key)
	}
	if err == nil {
		err = op(c.keyring)
	}
	if err != nil {
		return fmt.Errorf("cluster: %s: %s gossip key: %w", c.cfg.Name, step, err)
	}
	return nil
}

// installed reports whether kr holds key.
func installed(kr *memberlist.Keyring, key []byte) bool {
	for _, k := range kr.GetKeys() {
		if bytes.Equal(k, key) {
			return true
		}
	}
	return false
}

// InstallKey adds key to this node's gossip keyring: the node opens
// messages encrypted with it from now on, but goes on encrypting with its
// primary key. Installing a key already installed does nothing. It is the
// first step of a rotation, done on every node before any node makes the
// key primary. The error wraps ErrInvalidKey for a key of the wrong
// length, and ErrNoEncryption on a node started without keys.
func (c *Cluster) InstallKey(key []byte) error {
	return c.keyringOp("install", key, func(kr *memberlist.Keyring) error {
		if installed(kr, key) {
			return nil
		}
		if err := kr.AddKey(bytes.Clone(key)); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidKey, err)
		}
		c.log.Info("gossip key installed", "fingerprint", KeyFingerprint(key))
		return nil
	})
}

// UseKey makes an installed key the primary: this node encrypts
// everything it sends with it from now on. Every other node must have
// installed it first, or they can no longer read this node and will
// declare it dead. The error wraps ErrUnknownKey if the key is not
// installed.
func (c *Cluster) UseKey(key []byte) error {
	return c.keyringOp("use", key, func(kr *memberlist.Keyring) error {
		if !installed(kr, key) {
			return fmt.Errorf("%w (fingerprint %s)", ErrUnknownKey, KeyFingerprint(key))
		}
		if bytes.Equal(kr.GetPrimaryKey(), key) {
			return nil
		}
		if err := kr.UseKey(key); err != nil {
			return err
		}
		c.log.Info("gossip key made primary", "fingerprint", KeyFingerprint(key))
		return nil
	})
}

// RemoveKey removes a key from this node's keyring: the node no longer
// opens messages encrypted with it. It is the last step of a rotation,
// done once every node encrypts with the new key. It refuses the primary
// key (ErrPrimaryKey) and a key that is not installed (ErrUnknownKey).
func (c *Cluster) RemoveKey(key []byte) error {
	return c.keyringOp("remove", key, func(kr *memberlist.Keyring) error {
		primary := kr.GetPrimaryKey()
		switch {
		case bytes.Equal(primary, key):
			return fmt.Errorf("%w (fingerprint %s)", ErrPrimaryKey, KeyFingerprint(key))
		case !installed(kr, key):
			return fmt.Errorf("%w (fingerprint %s)", ErrUnknownKey, KeyFingerprint(key))
		}
		// memberlist's RemoveKey shifts the keys after the removed one
		// within the slice it hands to decryption (GetKeys) before it
		// swaps in a new one; re-installing the primary first gives the
		// keyring a fresh slice, so a decryption in flight goes on with
		// the old one untouched (except in the instant between the calls).
		if err := kr.UseKey(primary); err != nil {
			return err
		}
		if err := kr.RemoveKey(key); err != nil {
			return err
		}
		c.log.Info("gossip key removed", "fingerprint", KeyFingerprint(key))
		return nil
	})
}

// Keys returns copies of this node's gossip keys: the primary, and all of
// them with the primary first. Both are nil when gossip is not encrypted.
func (c *Cluster) Keys() (primary []byte, all [][]byte) {
	c.keyMu.Lock()
	defer c.keyMu.Unlock()
	if c.keyring == nil {
		return nil, nil
	}
	for _, k := range c.keyring.GetKeys() {
		all = append(all, bytes.Clone(k))
	}
	if len(all) == 0 {
		return nil, nil
	}
	return bytes.Clone(all[0]), all
}
