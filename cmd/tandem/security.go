package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/tandem-io/tandem"
	"github.com/tandem-io/tandem/cmd/internal/material"
	"github.com/tandem-io/tandem/httpapi"
)

// securityFlags say where a node's security material is, or that it runs
// without any.
type securityFlags struct {
	certsDir                  string // the material `tandem certs` wrote
	caFile, certFile, keyFile string // override the peer and HTTP certificate files
	gossipKeyFile, tokensFile string // override the gossip key and token files
	httpPlain                 bool   // serve the HTTP API without TLS (behind a TLS-terminating proxy)
	insecure                  bool   // no TLS, no gossip encryption, no tokens
}

// register adds the security flags to fs.
func (f *securityFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.certsDir, "certs-dir", "", "directory written by `tandem certs`: ca.crt, NAME.crt, NAME.key, gossip.key and tokens")
	fs.StringVar(&f.caFile, "ca-file", "", "cluster CA certificate (default: CERTS-DIR/ca.crt)")
	fs.StringVar(&f.certFile, "cert-file", "", "this node's certificate, for the peer wire and the HTTP API (default: CERTS-DIR/NAME.crt)")
	fs.StringVar(&f.keyFile, "key-file", "", "this node's private key (default: CERTS-DIR/NAME.key)")
	fs.StringVar(&f.gossipKeyFile, "gossip-key-file", "", "gossip keys, one base64 key per line, the first the primary (default: CERTS-DIR/gossip.key)")
	fs.StringVar(&f.tokensFile, "tokens-file", "", "HTTP API bearer tokens, lines \"sessions TOKEN\" and \"admin TOKEN\" (default: CERTS-DIR/tokens)")
	fs.BoolVar(&f.httpPlain, "http-plain", false, "serve the HTTP API without TLS, for a TLS-terminating proxy in front of it; tokens are still required")
	fs.BoolVar(&f.insecure, "insecure", false, "run without TLS, gossip encryption or tokens: anyone who reaches a port can read and write every session (never in production)")
}

// security is a node's loaded material.
type security struct {
	peer       *tandem.PeerTLS
	gossipKeys [][]byte
	tokens     []httpapi.Token
	httpTLS    *tls.Config // nil: plain HTTP
	openHTTP   bool        // the HTTP API takes no tokens
}

// errNoMaterial explains how to make security material.
var errNoMaterial = errors.New("no security material: make it with `tandem certs -dir ./certs -nodes NAME,...` and start with -certs-dir ./certs, or pass -insecure to run without TLS, gossip encryption and tokens (not for production)")

// load reads node name's material. Without -insecure every part must be
// there: the peer certificate and CA, the gossip key and the tokens.
func (f *securityFlags) load(name string) (*security, error) {
	anyFile := f.certsDir != "" || f.caFile != "" || f.certFile != "" || f.keyFile != "" || f.gossipKeyFile != "" || f.tokensFile != ""
	if f.insecure {
		if anyFile {
			return nil, usageError{errors.New("-insecure and security material (-certs-dir or a -*-file flag) exclude each other")}
		}
		return &security{openHTTP: true}, nil
	}
	if !anyFile {
		return nil, usageError{errNoMaterial}
	}
	path := func(override, file string) string {
		if override != "" || f.certsDir == "" {
			return override
		}
		return filepath.Join(f.certsDir, file)
	}
	ca, cert, key := path(f.caFile, material.CACertFile), path(f.certFile, name+".crt"), path(f.keyFile, name+".key")
	gossip, tokens := path(f.gossipKeyFile, material.GossipFile), path(f.tokensFile, material.TokensFile)
	var missing []string
	for flagName, p := range map[string]string{"-ca-file": ca, "-cert-file": cert, "-key-file": key, "-gossip-key-file": gossip, "-tokens-file": tokens} {
		if p == "" {
			missing = append(missing, flagName)
		}
	}
	if len(missing) > 0 {
		return nil, usageError{fmt.Errorf("incomplete security material: set -certs-dir or %s (or pass -insecure)", strings.Join(slices.Sorted(slices.Values(missing)), ", "))}
	}
	s := &security{}
	var err error
	if s.peer, err = tandem.LoadPeerTLS(ca, cert, key); err != nil {
		return nil, fmt.Errorf("peer TLS: %w", err)
	}
	if s.gossipKeys, err = tandem.LoadGossipKeys(gossip); err != nil {
		return nil, fmt.Errorf("gossip keys: %w", err)
	}
	if s.tokens, err = loadTokens(tokens); err != nil {
		return nil, err
	}
	if !f.httpPlain {
		s.httpTLS = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{s.peer.Certificate}}
	}
	return s, nil
}

// loadTokens reads a tokens file.
func loadTokens(path string) ([]httpapi.Token, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("tokens: %w", err)
	}
	if info.Size() > 64<<10 {
		return nil, fmt.Errorf("tokens: %s is larger than 64 KiB", path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokens: %w", err)
	}
	parsed, err := material.ParseTokens(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var out []httpapi.Token
	for scope, value := range parsed {
		out = append(out, httpapi.Token{Scope: httpapi.Scope(scope), Value: value})
	}
	return out, nil
}

// apply puts the material into a node's config.
func (s *security) apply(cfg *tandem.Config) {
	cfg.PeerTLS, cfg.GossipKeys = s.peer, s.gossipKeys
}

// devSecurity makes throwaway material for the nodes of a dev cluster:
// their peer wire runs mutual TLS and their gossip is encrypted, as in
// production, while the HTTP API stays open and plain on loopback so the
// README's curl lines work as they are.
func devSecurity(names []string) (map[string]*security, error) {
	ca, err := material.NewCA("Tandem dev CA (throwaway)")
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	keys := [][]byte{material.NewGossipKey()}
	out := map[string]*security{}
	for _, name := range names {
		pair, err := ca.Issue(name, []string{"127.0.0.1", "::1", "localhost"})
		if err != nil {
			return nil, err
		}
		cert, err := tls.X509KeyPair(pair.CertPEM, pair.KeyPEM)
		if err != nil {
			return nil, fmt.Errorf("dev certificate for %s: %w", name, err)
		}
		out[name] = &security{peer: &tandem.PeerTLS{CA: pool, Certificate: cert}, gossipKeys: keys, openHTTP: true}
	}
	return out, nil
}
