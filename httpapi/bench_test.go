package httpapi

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/tandem-io/tandem"
)

// BenchmarkJSONToMsgpack measures turning a JSON attribute value into the
// msgpack the engine stores, as every JSON write does.
func BenchmarkJSONToMsgpack(b *testing.B) {
	raw := []byte(`{"cart":["tea","milk","bread"],"theme":"dark","count":3,"note":"` + strings.Repeat("x", 900) + `"}`)
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if _, err := jsonToMsgpack(raw); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSessionAnswer measures writing a session answer, as every
// session request that succeeds does: the direct writer (writeSession)
// against the reflective one (writeSessionView), for a session with one
// 1 KiB string attribute, as tandem-bench's, and for one with a few small
// nested ones.
func BenchmarkSessionAnswer(b *testing.B) {
	sessions := map[string]*tandem.Session{
		"1KiB":  answerSession(map[string]msgpack.RawMessage{"v": mp(b, strings.Repeat("x", 1024))}, true),
		"small": answerSession(map[string]msgpack.RawMessage{"cart": mp(b, map[string]any{"tea": 1, "milk": []any{2, "oat"}}), "theme": mp(b, "dark"), "n": mp(b, 3)}, true),
	}
	writers := map[string]func(http.ResponseWriter, *http.Request, int, *tandem.Session){"direct": writeSession, "reflective": writeSessionView}
	for _, sname := range []string{"1KiB", "small"} {
		for _, ct := range []string{contentJSON, contentMsgpack} {
			for _, wname := range []string{"reflective", "direct"} {
				b.Run(sname+"/"+ct[len("application/"):]+"/"+wname, func(b *testing.B) {
					s, write := sessions[sname], writers[wname]
					r := httptest.NewRequest(http.MethodGet, "/v1/sessions/"+s.ID, nil)
					r.Header.Set("Accept", ct)
					w := &discardWriter{h: http.Header{}}
					b.ReportAllocs()
					for b.Loop() {
						clear(w.h)
						write(w, r, http.StatusOK, s)
					}
				})
			}
		}
	}
}

// discardWriter is a ResponseWriter that keeps nothing but its header.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(int)             {}
