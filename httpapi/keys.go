package httpapi

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/tandem-io/tandem"
)

// Gossip key rotation, for operators. Each endpoint acts on the node it is
// sent to: rotate by installing the new key on every node, then making it
// primary on every node, then removing the old one from every node. Keys
// travel only into the node (POST and PUT bodies), never out: answers name
// keys by fingerprint (tandem.GossipKeyFingerprint).
//
//	GET    /v1/cluster/keys                 the node's keys, as fingerprints
//	POST   /v1/cluster/keys                 {"key": "<base64>"}: install
//	PUT    /v1/cluster/keys/primary         {"key": "<base64>"} or
//	                                        {"fingerprint": "<hex>"}: make primary
//	DELETE /v1/cluster/keys/{fingerprint}   remove (not the primary)
//
// Each answers the node's keys after the change, as GET does.

// maxKeyBodyBytes bounds the body of a key request.
const maxKeyBodyBytes = 4 << 10

// keysView answers every key endpoint.
type keysView struct {
	// Node names the node answering.
	Node string `json:"node" msgpack:"node"`
	// Encrypted says whether the node's gossip is encrypted at all.
	Encrypted bool `json:"encrypted" msgpack:"encrypted"`
	// Primary is the fingerprint of the key the node encrypts with.
	Primary string `json:"primary,omitempty" msgpack:"primary,omitempty"`
	// Keys are the fingerprints of every key the node decrypts with,
	// primary first.
	Keys []string `json:"keys" msgpack:"keys"`
}

// keyBody is the body of POST /v1/cluster/keys and PUT
// /v1/cluster/keys/primary.
type keyBody struct {
	// Key is the key in standard base64.
	Key string `json:"key"`
	// Fingerprint names an installed key (PUT only).
	Fingerprint string `json:"fingerprint"`
}

// routeKeys registers the key endpoints.
func (h *Handler) routeKeys() {
	h.route("/v1/cluster/keys", ScopeAdmin, map[string]http.HandlerFunc{http.MethodGet: h.listKeys, http.MethodPost: h.installKey})
	h.route("/v1/cluster/keys/primary", ScopeAdmin, map[string]http.HandlerFunc{http.MethodPut: h.useKey})
	h.route("/v1/cluster/keys/{fingerprint}", ScopeAdmin, map[string]http.HandlerFunc{http.MethodDelete: h.removeKey})
}

// keys returns the node's keys as fingerprints.
func (h *Handler) keys() keysView {
	primary, all := h.node.GossipKeys()
	v := keysView{Node: h.node.Name(), Encrypted: primary != nil, Keys: []string{}}
	if primary != nil {
		v.Primary = tandem.GossipKeyFingerprint(primary)
	}
	for _, k := range all {
		v.Keys = append(v.Keys, tandem.GossipKeyFingerprint(k))
	}
	return v
}

// listKeys handles GET /v1/cluster/keys.
func (h *Handler) listKeys(w http.ResponseWriter, r *http.Request) {
	writeValue(w, r, http.StatusOK, h.keys())
}

// installKey handles POST /v1/cluster/keys: install {"key": base64}.
func (h *Handler) installKey(w http.ResponseWriter, r *http.Request) {
	body, ok := readKeyBody(w, r)
	if !ok {
		return
	}
	if body.Key == "" || body.Fingerprint != "" {
		writeError(w, r, http.StatusBadRequest, "invalid_body", `the body must be {"key": "<base64>"}`)
		return
	}
	key, ok := parseKey(w, r, body.Key)
	if !ok {
		return
	}
	h.keyChange(w, r, "install", key, h.node.InstallGossipKey)
}

// useKey handles PUT /v1/cluster/keys/primary: make the key given by value
// or by fingerprint the primary.
func (h *Handler) useKey(w http.ResponseWriter, r *http.Request) {
	body, ok := readKeyBody(w, r)
	if !ok {
		return
	}
	var key []byte
	switch {
	case (body.Key == "") == (body.Fingerprint == ""):
		writeError(w, r, http.StatusBadRequest, "invalid_body", `the body must be {"key": "<base64>"} or {"fingerprint": "<hex>"}`)
		return
	case body.Key != "":
		if key, ok = parseKey(w, r, body.Key); !ok {
			return
		}
	default:
		if key, ok = h.keyByFingerprint(w, r, body.Fingerprint); !ok {
			return
		}
	}
	h.keyChange(w, r, "use", key, h.node.UseGossipKey)
}

// removeKey handles DELETE /v1/cluster/keys/{fingerprint}.
func (h *Handler) removeKey(w http.ResponseWriter, r *http.Request) {
	key, ok := h.keyByFingerprint(w, r, r.PathValue("fingerprint"))
	if !ok {
		return
	}
	h.keyChange(w, r, "remove", key, h.node.RemoveGossipKey)
}

// keyChange applies change to key and answers the node's keys, or the
// error.
func (h *Handler) keyChange(w http.ResponseWriter, r *http.Request, what string, key []byte, change func([]byte) error) {
	if err := change(key); err != nil {
		h.keyFail(w, r, err)
		return
	}
	h.log.Info("gossip key changed", "change", what, "fingerprint", tandem.GossipKeyFingerprint(key))
	writeValue(w, r, http.StatusOK, h.keys())
}

// keyFail answers a failed key change.
func (h *Handler) keyFail(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, tandem.ErrInvalid):
		writeError(w, r, http.StatusBadRequest, "invalid_key", err.Error())
	case errors.Is(err, tandem.ErrGossipKeyUnknown):
		writeError(w, r, http.StatusNotFound, "unknown_key", err.Error())
	case errors.Is(err, tandem.ErrGossipKeyPrimary):
		writeError(w, r, http.StatusConflict, "primary_key", err.Error())
	case errors.Is(err, tandem.ErrGossipUnencrypted):
		writeError(w, r, http.StatusConflict, "gossip_unencrypted", err.Error())
	default:
		h.log.Warn("gossip key change failed", "method", r.Method, "path", r.URL.Path, "err", err)
		writeError(w, r, http.StatusInternalServerError, "internal", err.Error())
	}
}

// keyByFingerprint returns the installed key fp names, or answers 400 for
// a malformed fingerprint and 404 for one no installed key has.
func (h *Handler) keyByFingerprint(w http.ResponseWriter, r *http.Request, fp string) ([]byte, bool) {
	fp = strings.ToLower(fp)
	if b, err := hex.DecodeString(fp); err != nil || len(b) != 8 {
		writeError(w, r, http.StatusBadRequest, "invalid_fingerprint", "a key fingerprint is 16 hex digits, as GET /v1/cluster/keys lists them")
		return nil, false
	}
	primary, all := h.node.GossipKeys()
	if primary == nil {
		h.keyFail(w, r, fmt.Errorf("%s: %w", h.node.Name(), tandem.ErrGossipUnencrypted))
		return nil, false
	}
	for _, k := range all {
		if tandem.GossipKeyFingerprint(k) == fp {
			return k, true
		}
	}
	writeError(w, r, http.StatusNotFound, "unknown_key", fmt.Sprintf("no gossip key with fingerprint %s is installed on %s", fp, h.node.Name()))
	return nil, false
}

// parseKey decodes a base64 key from a body, or answers 400.
func parseKey(w http.ResponseWriter, r *http.Request, s string) ([]byte, bool) {
	key, err := tandem.ParseGossipKey(s)
	if err != nil {
		writeError(w, r, http.StatusBadRequest, "invalid_key", err.Error())
		return nil, false
	}
	return key, true
}

// readKeyBody decodes a key request's JSON body, at most maxKeyBodyBytes,
// refusing unknown fields and anything after the object.
func readKeyBody(w http.ResponseWriter, r *http.Request) (keyBody, bool) {
	var body keyBody
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, _ := mime.ParseMediaType(ct); mt != contentJSON {
			writeError(w, r, http.StatusUnsupportedMediaType, "unsupported_media_type", "a key request's body is JSON (application/json)")
			return body, false
		}
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxKeyBodyBytes))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		writeError(w, r, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("body exceeds %d bytes", maxKeyBodyBytes))
		return body, false
	case err != nil:
		writeError(w, r, http.StatusBadRequest, "invalid_body", fmt.Sprintf("read body: %v", err))
		return body, false
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		writeError(w, r, http.StatusBadRequest, "invalid_body", fmt.Sprintf("decode JSON body: %v", err))
		return body, false
	}
	if dec.More() {
		writeError(w, r, http.StatusBadRequest, "invalid_body", "decode JSON body: data after the value")
		return body, false
	}
	return body, true
}
