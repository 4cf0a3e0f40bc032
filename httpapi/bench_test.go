package httpapi

import (
	"strings"
	"testing"
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
