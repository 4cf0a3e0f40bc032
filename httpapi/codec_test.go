package httpapi

import (
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// An answer that cannot be encoded in the negotiated type is a 406 in
// JSON that names that type, not always JSON.
func TestWriteValueNamesTheTypeItCannotEncode(t *testing.T) {
	for _, tc := range []struct {
		accept, names string
		v             any
	}{
		{"application/msgpack", "application/msgpack", map[string]any{"c": make(chan int)}},
		{"application/json", "application/json", map[string]any{"c": make(chan int)}},
		{"", "application/json", map[string]any{"f": math.NaN()}},
	} {
		r := httptest.NewRequest(http.MethodGet, "/v1/cluster", nil)
		if tc.accept != "" {
			r.Header.Set("Accept", tc.accept)
		}
		w := httptest.NewRecorder()
		w.Header().Set("ETag", `"7"`)
		writeValue(w, r, http.StatusOK, tc.v)
		var e errorBody
		if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || w.Code != http.StatusNotAcceptable || e.Code != "not_acceptable" ||
			!strings.HasPrefix(e.Error, "cannot encode the answer as "+tc.names+":") ||
			w.Header().Get("Content-Type") != contentJSON || w.Header().Get("ETag") != "" {
			t.Errorf("Accept %q: %d %v %s", tc.accept, w.Code, w.Header(), w.Body.Bytes())
		}
	}
	r := httptest.NewRequest(http.MethodGet, "/v1/cluster", nil)
	r.Header.Set("Accept", "application/msgpack")
	w := httptest.NewRecorder()
	if writeValue(w, r, http.StatusOK, map[string]any{"f": math.NaN()}); w.Code != http.StatusOK || w.Header().Get("Content-Type") != contentMsgpack {
		t.Errorf("NaN in msgpack: %d %v", w.Code, w.Header())
	}
}
