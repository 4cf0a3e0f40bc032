package cluster

import (
	"bytes"
	"encoding/base64"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testKey returns a key of n bytes, all b.
func testKey(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }

// withKeys sets a node's keyring.
func withKeys(keys ...[]byte) func(*Config) { return func(c *Config) { c.Keys = keys } }

// Keys are validated before anything starts: lengths, repeats, and
// SecretKey and Keys together.
func TestGossipKeyValidation(t *testing.T) {
	t.Parallel()
	k16, k24, k32 := testKey(1, 16), testKey(2, 24), testKey(3, 32)
	for _, tc := range []struct {
		name       string
		secret     []byte
		keys       [][]byte
		ok         bool
		invalidKey bool // the error also wraps ErrInvalidKey
	}{
		{name: "no keys", ok: true},
		{name: "secret key of 16", secret: k16, ok: true},
		{name: "secret key of 32", secret: k32, ok: true},
		{name: "keys of 16, 24 and 32", keys: [][]byte{k32, k16, k24}, ok: true},
		{name: "secret key of 7", secret: testKey(1, 7), invalidKey: true},
		{name: "secret key of 33", secret: testKey(1, 33), invalidKey: true},
		{name: "empty key in keys", keys: [][]byte{k16, {}}, invalidKey: true},
		{name: "key of 31 in keys", keys: [][]byte{k16, testKey(4, 31)}, invalidKey: true},
		{name: "repeated key", keys: [][]byte{k16, k32, k16}, invalidKey: true},
		{name: "secret key and keys", secret: k16, keys: [][]byte{k32}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig("v", &recorder{}, &syncBuffer{})
			cfg.SecretKey, cfg.Keys = tc.secret, tc.keys
			_, _, err := cfg.withDefaults().validate()
			switch {
			case tc.ok && err != nil:
				t.Fatalf("validate: %v", err)
			case !tc.ok && !errors.Is(err, errConfig):
				t.Fatalf("validate: %v, want a config error", err)
			case errors.Is(err, ErrInvalidKey) != tc.invalidKey:
				t.Fatalf("validate: %v; wraps ErrInvalidKey: %v, want %v", err, errors.Is(err, ErrInvalidKey), tc.invalidKey)
			}
		})
	}
}

func TestParseKeyFile(t *testing.T) {
	t.Parallel()
	k16, k32 := testKey(1, 16), testKey(2, 32)
	b64 := base64.StdEncoding.EncodeToString
	for _, tc := range []struct {
		name, file string
		want       [][]byte
		err        string // in the error, if not ""
	}{
		{name: "one key", file: b64(k32) + "\n", want: [][]byte{k32}},
		{name: "no final newline", file: b64(k32), want: [][]byte{k32}},
		{name: "comments, blanks, CRLF and spaces", file: "# rotated 2025-01-01\r\n\r\n  " + b64(k16) + "  \r\n# old\r\n" + b64(k32) + "\r\n", want: [][]byte{k16, k32}},
		{name: "empty", file: "", err: "no key in the file"},
		{name: "only comments", file: "# nothing\n\n", err: "no key in the file"},
		{name: "not base64", file: b64(k32) + "\n\nnot*base64\n", err: "line 3: cluster: invalid gossip key: not standard base64"},
		{name: "wrong length", file: "# c\n" + b64(testKey(3, 20)) + "\n", err: "line 2: cluster: invalid gossip key: must be 16, 24 or 32 bytes, got 20"},
		{name: "repeated", file: b64(k16) + "\n" + b64(k32) + "\n" + b64(k16) + "\n", err: "line 3: cluster: invalid gossip key: repeats the key on line 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseKeyFile([]byte(tc.file))
			if tc.err != "" {
				if !errors.Is(err, ErrInvalidKey) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want ErrInvalidKey with %q", err, tc.err)
				}
				return
			}
			if err != nil || !slices.EqualFunc(got, tc.want, bytes.Equal) {
				t.Fatalf("got %x, %v; want %x", got, err, tc.want)
			}
		})
	}
	// An error never quotes the key it could not use.
	secret := b64(testKey(9, 20))
	if _, err := ParseKeyFile([]byte(secret)); err == nil || strings.Contains(err.Error(), secret) {
		t.Fatalf("err = %v, must not quote the key", err)
	}
}

// Only a node that can open the cluster's messages and be opened by it
// joins: not one with another key, nor one with the cluster's key only as
// a secondary (it encrypts with its primary), nor one without a key; and
// a keyed node cannot join a cluster in the clear.
func TestWrongKeyCannotJoin(t *testing.T) {
	t.Parallel()
	k1, k2 := testKey(1, 32), testKey(2, 32)
	a := startWith(t, "a", withKeys(k1))
	for _, tc := range []struct {
		name string
		edit func(*Config)
	}{
		{"other-key", withKeys(k2)},
		{"key-as-secondary", withKeys(k2, k1)},
		{"no-key", func(*Config) {}},
	} {
		if _, err := tryStart(t, tc.name, tc.edit, a.Addr()); !errors.Is(err, ErrJoin) {
			t.Fatalf("%s: err = %v, want ErrJoin", tc.name, err)
		}
	}
	if names := ringNames(a.View()); !slices.Equal(names, []string{"a"}) {
		t.Fatalf("a sees %v, want only itself", names)
	}

	plain := startNode(t, "plain")
	if _, err := tryStart(t, "keyed", withKeys(k1), plain.Addr()); !errors.Is(err, ErrJoin) {
		t.Fatalf("keyed node into a cluster in the clear: err = %v, want ErrJoin", err)
	}

	// The cluster's key as primary, another beside it: joins.
	b := startWith(t, "b", withKeys(k1, k2), a.Addr())
	waitFor(t, converge, "a to see b", hasRing(a, "a", "b"))
	wantRing(t, b.View().Ring(), "a", "b")
}

func TestKeyringMethods(t *testing.T) {
	t.Parallel()
	k1, k2, k3 := testKey(1, 16), testKey(2, 24), testKey(3, 32)
	a := startWith(t, "a", func(c *Config) { c.SecretKey = k1 })

	wantKeys := func(primary []byte, all ...[]byte) {
		t.Helper()
		p, got := a.Keys()
		if !bytes.Equal(p, primary) || !slices.EqualFunc(got, all, bytes.Equal) {
			t.Fatalf("Keys() = %x, %x; want %x, %x", p, got, primary, all)
		}
	}
	wantKeys(k1, k1)
	for name, err := range map[string]error{
		"install a key of 7":          a.InstallKey(testKey(4, 7)),
		"use an unknown key":          a.UseKey(k2),
		"remove an unknown key":       a.RemoveKey(k2),
		"remove the primary":          a.RemoveKey(k1),
		"use a key of the wrong size": a.UseKey(nil),
	} {
		want := map[string]error{
			"install a key of 7":          ErrInvalidKey,
			"use an unknown key":          ErrUnknownKey,
			"remove an unknown key":       ErrUnknownKey,
			"remove the primary":          ErrPrimaryKey,
			"use a key of the wrong size": ErrInvalidKey,
		}[name]
		if !errors.Is(err, want) || !strings.HasPrefix(err.Error(), "cluster: a: ") {
			t.Errorf("%s: err = %v, want %v naming the node", name, err, want)
		}
	}
	wantKeys(k1, k1)

	// Installing copies the key: the caller may reuse its buffer.
	buf := bytes.Clone(k2)
	if err := a.InstallKey(buf); err != nil {
		t.Fatal(err)
	}
	buf[0] = 99
	if err := a.InstallKey(k2); err != nil { // again: nothing changes
		t.Fatal(err)
	}
	wantKeys(k1, k1, k2)
	if err := a.InstallKey(k3); err != nil {
		t.Fatal(err)
	}
	if err := a.UseKey(k2); err != nil {
		t.Fatal(err)
	}
	wantKeys(k2, k2, k1, k3)
	if err := a.RemoveKey(k1); err != nil { // one in the middle
		t.Fatal(err)
	}
	wantKeys(k2, k2, k3)

	// Keys returns copies.
	p, all := a.Keys()
	p[0], all[1][0] = 0, 0
	wantKeys(k2, k2, k3)

	// A node started in the clear has no keyring to rotate.
	plain := startNode(t, "plain")
	if err := plain.InstallKey(k1); !errors.Is(err, ErrNoEncryption) {
		t.Fatalf("install on a node in the clear: %v, want ErrNoEncryption", err)
	}
	if p, all := plain.Keys(); p != nil || all != nil {
		t.Fatalf("Keys() of a node in the clear = %x, %x", p, all)
	}

	// A closed node refuses.
	a.Close()
	if err := a.InstallKey(k1); err == nil || errors.Is(err, ErrInvalidKey) {
		t.Fatalf("install on a closed node: %v", err)
	}
}

// The key rotates across a running cluster, one step on every node at a
// time, and no node ever loses sight of another; afterwards the old key
// no longer gets a node in and the new one does.
func TestKeyRotationKeepsMembership(t *testing.T) {
	t.Parallel()
	oldKey, newKey := testKey(1, 32), testKey(2, 32)
	// Frequent state exchanges, so that each step is proven quickly.
	keyed := func(keys ...[]byte) func(*Config) {
		return func(c *Config) {
			c.Keys = keys
			c.PushPullInterval = 200 * time.Millisecond
		}
	}
	a := startWith(t, "a", keyed(oldKey))
	b := startWith(t, "b", keyed(oldKey), a.Addr())
	c := startWith(t, "c", keyed(oldKey), a.Addr())
	nodes := []*node{a, b, c}
	for _, n := range nodes {
		waitFor(t, converge, n.Name()+" to see a, b, c", hasRing(n, "a", "b", "c"))
	}

	// Watch every node's view throughout (d joins at the end): a member
	// lost for even one poll fails the test.
	var lost atomic.Value
	stop := make(chan struct{})
	var watching sync.WaitGroup
	watching.Add(1)
	go func() {
		defer watching.Done()
		for {
			for _, n := range nodes {
				names := ringNames(n.View())
				if !(slices.Contains(names, "a") && slices.Contains(names, "b") && slices.Contains(names, "c")) && lost.Load() == nil {
					lost.Store(n.Name() + " saw " + strings.Join(names, ","))
				}
			}
			select {
			case <-stop:
				return
			default:
			}
		}
	}()

	step := func(what string, op func(*Cluster) error) {
		t.Helper()
		for _, n := range nodes {
			if err := op(n.Cluster); err != nil {
				t.Fatalf("%s on %s: %v", what, n.Name(), err)
			}
		}
		for _, n := range nodes {
			// A push/pull with another node proves the step: wait for
			// each node to exchange state under it.
			waitPushPull(t, n)
		}
	}
	step("install the new key", func(c *Cluster) error { return c.InstallKey(newKey) })
	step("use the new key", func(c *Cluster) error { return c.UseKey(newKey) })
	step("remove the old key", func(c *Cluster) error { return c.RemoveKey(oldKey) })
	for _, n := range nodes {
		for _, line := range strings.Split(n.logs.String(), "\n") {
			if strings.Contains(line, "level=ERROR") && keyTrouble(line) {
				t.Fatalf("%s could not read gossip during the rotation: %s", n.Name(), line)
			}
		}
	}

	if _, err := tryStart(t, "old", keyed(oldKey), a.Addr()); !errors.Is(err, ErrJoin) {
		t.Fatalf("node with the old key: err = %v, want ErrJoin", err)
	}
	d := startWith(t, "d", keyed(newKey), b.Addr())
	for _, n := range append(nodes, d) {
		waitFor(t, converge, n.Name()+" to see a, b, c, d", hasRing(n, "a", "b", "c", "d"))
	}
	close(stop)
	watching.Wait()
	if l := lost.Load(); l != nil {
		t.Fatalf("membership broke during the rotation: %v", l)
	}
	for _, n := range nodes {
		p, all := n.Keys()
		if !bytes.Equal(p, newKey) || len(all) != 1 {
			t.Fatalf("%s holds %d keys, primary %s", n.Name(), len(all), KeyFingerprint(p))
		}
	}
}

// keyTrouble reports whether a memberlist error line says a message could
// not be encrypted, decrypted or exchanged.
func keyTrouble(line string) bool {
	for _, s := range []string{"crypt", "Push/Pull", "remote state", "push local state"} {
		if strings.Contains(line, s) {
			return true
		}
	}
	return false
}

// waitPushPull waits until n has completed a full state exchange with a
// peer since the call: memberlist exchanges state with one peer at a
// time, logging a line as it starts each, so the second start after the
// call follows a whole exchange (a failed one is logged as an error).
func waitPushPull(t *testing.T, n *node) {
	t.Helper()
	before := strings.Count(n.logs.String(), "Initiating push/pull sync")
	waitFor(t, converge, n.Name()+" to exchange state", func() bool {
		return strings.Count(n.logs.String(), "Initiating push/pull sync") >= before+2
	})
}
