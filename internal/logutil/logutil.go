// Package logutil builds the structured loggers that cairn passes around and
// adapts them to the logging interface of go.etcd.io/raft.
//
// # What it owns
//
// New makes a *slog.Logger writing either logfmt-style text or one JSON
// object per line to an io.Writer, filtered at a minimum level. The caller
// owns the writer and the logger: nothing here is global, and a logger is
// handed to every component that logs (the server, raftnode, transport, ...).
//
// RaftLogger wraps a *slog.Logger in the raft.Logger interface so that the
// raft library logs through the same handler as the rest of the member. Pass
// the result in raft.Config.Logger; never call raft.SetLogger, which changes
// process-wide state.
//
// # Levels
//
// raft's levels map onto slog as follows:
//
//	Debug, Debugf     -> slog.LevelDebug
//	Info, Infof       -> slog.LevelInfo
//	Warning, Warningf -> slog.LevelWarn
//	Error, Errorf     -> slog.LevelError
//	Fatal, Fatalf     -> LevelFatal (ERROR+4), then the process exits with status 1
//	Panic, Panicf     -> LevelPanic (ERROR+8), then panic with the message
//
// Handlers made by New print LevelFatal and LevelPanic as "FATAL" and
// "PANIC"; other handlers print them as "ERROR+4" and "ERROR+8". Both are
// above slog.LevelError, so they are never filtered out by a level that keeps
// errors.
//
// Messages are formatted like the fmt package formats them (fmt.Sprint for
// the plain methods, fmt.Sprintf for the ...f methods), and only when the
// handler is enabled for the level, so disabled debug logging costs one
// Enabled call. The source position recorded (for handlers with AddSource)
// is the caller of the raft.Logger method, not this package.
//
// # Concurrency
//
// Loggers made here are safe for concurrent use as far as the underlying
// writer is: slog's built-in handlers serialize their writes, so an
// io.Writer that is not itself safe for concurrent use is still fine.
package logutil

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"time"

	"go.etcd.io/raft/v3"
)

// Levels above slog.LevelError used for raft's Fatal and Panic calls.
const (
	LevelFatal = slog.LevelError + 4
	LevelPanic = slog.LevelError + 8
)

// Log formats accepted by New.
const (
	FormatText = "text"
	FormatJSON = "json"
)

// ErrUnknownFormat is returned (wrapped) by New for a format other than
// FormatText or FormatJSON.
var ErrUnknownFormat = errors.New("logutil: unknown log format")

// New returns a logger that writes records at level or above to w, as text
// (format "text") or as one JSON object per line (format "json").
func New(w io.Writer, level slog.Level, format string) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: levelNames}
	switch format {
	case FormatText:
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case FormatJSON:
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("%w %q: want %q or %q", ErrUnknownFormat, format, FormatText, FormatJSON)
	}
}

// levelNames prints LevelFatal and LevelPanic by name.
func levelNames(groups []string, a slog.Attr) slog.Attr {
	if len(groups) != 0 || a.Key != slog.LevelKey {
		return a
	}
	lvl, ok := a.Value.Any().(slog.Level)
	if !ok {
		return a
	}
	switch lvl {
	case LevelFatal:
		a.Value = slog.StringValue("FATAL")
	case LevelPanic:
		a.Value = slog.StringValue("PANIC")
	}
	return a
}

// raftLogger adapts a *slog.Logger to raft.Logger. It holds no mutable state.
type raftLogger struct {
	l    *slog.Logger
	exit func(code int) // os.Exit outside tests
}

var _ raft.Logger = (*raftLogger)(nil)

// RaftLogger returns a raft.Logger that logs through l. Fatal and Fatalf
// exit the process with status 1 after logging; Panic and Panicf panic with
// the message after logging.
func RaftLogger(l *slog.Logger) raft.Logger {
	return newRaftLogger(l, os.Exit)
}

func newRaftLogger(l *slog.Logger, exit func(int)) *raftLogger {
	return &raftLogger{l: l, exit: exit}
}

// callerSkip is the number of frames between runtime.Callers and the code
// that called a raft.Logger method: Callers, log/logf, the method itself.
const callerSkip = 3

// log records fmt.Sprint(v...) at lvl and returns the message it built (or
// would have built). It must be called directly from a raft.Logger method.
func (r *raftLogger) log(lvl slog.Level, v []any) string {
	if lvl < LevelFatal && !r.l.Enabled(context.Background(), lvl) {
		return "" // Fatal and Panic need the message even when not logged
	}
	msg := fmt.Sprint(v...)
	r.emit(lvl, msg)
	return msg
}

// logf is log for the ...f methods.
func (r *raftLogger) logf(lvl slog.Level, format string, v []any) string {
	if lvl < LevelFatal && !r.l.Enabled(context.Background(), lvl) {
		return ""
	}
	msg := fmt.Sprintf(format, v...)
	r.emit(lvl, msg)
	return msg
}

// emit hands one record to the handler, with the position of the code that
// called the raft.Logger method.
func (r *raftLogger) emit(lvl slog.Level, msg string) {
	ctx := context.Background()
	if !r.l.Enabled(ctx, lvl) {
		return
	}
	var pcs [1]uintptr
	runtime.Callers(callerSkip+1, pcs[:]) // +1 for emit itself
	rec := slog.NewRecord(time.Now(), lvl, msg, pcs[0])
	_ = r.l.Handler().Handle(ctx, rec) // raft.Logger has no way to report a failed write
}

func (r *raftLogger) Debug(v ...any)                   { r.log(slog.LevelDebug, v) }
func (r *raftLogger) Debugf(format string, v ...any)   { r.logf(slog.LevelDebug, format, v) }
func (r *raftLogger) Info(v ...any)                    { r.log(slog.LevelInfo, v) }
func (r *raftLogger) Infof(format string, v ...any)    { r.logf(slog.LevelInfo, format, v) }
func (r *raftLogger) Warning(v ...any)                 { r.log(slog.LevelWarn, v) }
func (r *raftLogger) Warningf(format string, v ...any) { r.logf(slog.LevelWarn, format, v) }
func (r *raftLogger) Error(v ...any)                   { r.log(slog.LevelError, v) }
func (r *raftLogger) Errorf(format string, v ...any)   { r.logf(slog.LevelError, format, v) }

// Fatal logs at LevelFatal and exits with status 1.
func (r *raftLogger) Fatal(v ...any) {
	r.log(LevelFatal, v)
	r.exit(1)
}

// Fatalf logs at LevelFatal and exits with status 1.
func (r *raftLogger) Fatalf(format string, v ...any) {
	r.logf(LevelFatal, format, v)
	r.exit(1)
}

// Panic logs at LevelPanic and panics with the message.
func (r *raftLogger) Panic(v ...any) {
	panic(r.log(LevelPanic, v))
}

// Panicf logs at LevelPanic and panics with the message.
func (r *raftLogger) Panicf(format string, v ...any) {
	panic(r.logf(LevelPanic, format, v))
}
