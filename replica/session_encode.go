package replica

import (
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// EncodeMsgpack encodes a session as msgpack's reflection does from its
// fields' tags (a map, fields in their order, omitempty ones left out
// when empty), with integers in their smallest form, as peer frames ask
// (peer's frame encoder uses compact integers), but without reflection:
// every read and every replica encodes a session, and that was the
// largest share of a node's time spent encoding replies
// (docs/BENCHMARKS.md, the profiles). The bytes decode to the same
// session (TestSessionEncodingMatchesReflection); DecodeMsgpack reads
// them by reflection.
func (s *Session) EncodeMsgpack(enc *msgpack.Encoder) error {
	if s == nil {
		return enc.EncodeNil()
	}
	fields := 7 // id, v, c, la, it, dl, hlc: always there
	for _, present := range [...]bool{s.Principal != "", len(s.Attributes) > 0, s.Writer != "", len(s.Recent) > 0, s.Deleted, s.Gen != 0, s.Forgot != 0} {
		if present {
			fields++
		}
	}
	w := fieldWriter{enc: enc}
	w.mapLen(fields)
	w.str("id", s.ID)
	if s.Principal != "" {
		w.str("pr", s.Principal)
	}
	if len(s.Attributes) > 0 {
		w.key("at")
		w.do(s.Attributes.EncodeMsgpack(enc))
	}
	w.uint("v", s.Version)
	w.time("c", s.Created)
	w.time("la", s.LastAccess)
	w.key("it")
	w.do(enc.EncodeInt(int64(s.IdleTimeout)))
	w.time("dl", s.Deadline)
	w.uint("hlc", s.Stamp)
	if s.Writer != "" {
		w.str("w", s.Writer)
	}
	if len(s.Recent) > 0 {
		w.key("rq")
		w.do(enc.EncodeArrayLen(len(s.Recent)))
		for _, a := range s.Recent {
			w.mapLen(2 + btoi(a.Hash != 0) + btoi(a.At != 0))
			w.str("r", a.Request)
			w.uint("v", a.Version)
			if a.Hash != 0 {
				w.uint("h", a.Hash)
			}
			if a.At != 0 {
				w.uint("at", a.At)
			}
		}
	}
	if s.Deleted {
		w.key("del")
		w.do(enc.EncodeBool(true))
	}
	if s.Gen != 0 {
		w.uint("gn", s.Gen)
	}
	if s.Forgot != 0 {
		w.uint("fg", s.Forgot)
	}
	return w.err
}

// fieldWriter writes a struct's fields to an encoder and keeps the first
// error.
type fieldWriter struct {
	enc *msgpack.Encoder
	err error
}

func (w *fieldWriter) do(err error) {
	if w.err == nil {
		w.err = err
	}
}

func (w *fieldWriter) mapLen(n int)   { w.do(w.enc.EncodeMapLen(n)) }
func (w *fieldWriter) key(tag string) { w.do(w.enc.EncodeString(tag)) }

func (w *fieldWriter) str(tag, v string) {
	w.key(tag)
	w.do(w.enc.EncodeString(v))
}

func (w *fieldWriter) uint(tag string, v uint64) {
	w.key(tag)
	w.do(w.enc.EncodeUint(v))
}

func (w *fieldWriter) time(tag string, v time.Time) {
	w.key(tag)
	w.do(w.enc.EncodeTime(v))
}

// btoi is 1 for true, 0 for false.
func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
