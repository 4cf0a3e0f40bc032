package cluster

import (
	"bytes"
	"context"
	"log"
	"log/slog"
	"strings"
	"time"
)

// memberlistLevels maps memberlist's line prefixes to slog levels.
var memberlistLevels = []struct {
	prefix string
	level  slog.Level
}{
	{"[DEBUG]", slog.LevelDebug},
	{"[INFO]", slog.LevelInfo},
	{"[WARN]", slog.LevelWarn},
	{"[ERR]", slog.LevelError},
	{"[ERROR]", slog.LevelError},
}

// slogWriter is the io.Writer behind the *log.Logger handed to memberlist: it
// turns each line memberlist prints into an slog record at the level of the
// line's "[LEVEL]" prefix.
type slogWriter struct {
	handler slog.Handler
}

// newMemberlistLogger returns a *log.Logger for memberlist that emits through
// logger with attribute component=memberlist.
func newMemberlistLogger(logger *slog.Logger) *log.Logger {
	return log.New(slogWriter{handler: logger.With("component", "memberlist").Handler()}, "", 0)
}

// Write emits one memberlist log line; log.Logger calls it once per line.
func (w slogWriter) Write(p []byte) (int, error) {
	level, msg := parseMemberlistLine(string(bytes.TrimRight(p, "\r\n")))
	ctx := context.Background()
	if w.handler.Enabled(ctx, level) {
		// A zero PC: the caller here is log.Logger, which says nothing
		// useful about where memberlist logged from.
		_ = w.handler.Handle(ctx, slog.NewRecord(time.Now(), level, msg, 0))
	}
	return len(p), nil
}

// parseMemberlistLine splits a memberlist log line into its level and its
// message without the level prefix and the "memberlist: " prefix. Lines
// without a known prefix are logged at Info.
func parseMemberlistLine(line string) (slog.Level, string) {
	level := slog.LevelInfo
	for _, l := range memberlistLevels {
		if rest, ok := strings.CutPrefix(line, l.prefix); ok {
			level, line = l.level, rest
			break
		}
	}
	line = strings.TrimSpace(line)
	line = strings.TrimPrefix(line, "memberlist: ")
	return level, line
}
