package logutil

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
)

// record is one decoded JSON log line.
type record struct {
	Level  string `json:"level"`
	Msg    string `json:"msg"`
	Source struct {
		File string `json:"file"`
	} `json:"source"`
}

func decode(t *testing.T, buf *bytes.Buffer) []record {
	t.Helper()
	var out []record
	for line := range strings.SplitSeq(strings.TrimSpace(buf.String()), "\n") {
		if line == "" {
			continue
		}
		var r record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("bad log line %q: %v", line, err)
		}
		out = append(out, r)
	}
	return out
}

// newTestLogger returns an adapter over a JSON handler at level writing to
// the returned buffer, and a pointer to the last exit code (-1 if none).
func newTestLogger(t *testing.T, level slog.Level) (*raftLogger, *bytes.Buffer, *int) {
	t.Helper()
	var buf bytes.Buffer
	l, err := New(&buf, level, FormatJSON)
	if err != nil {
		t.Fatal(err)
	}
	code := -1
	return newRaftLogger(l, func(c int) { code = c }), &buf, &code
}

func TestRaftLoggerLevelMapping(t *testing.T) {
	cases := []struct {
		name      string
		call      func(r *raftLogger)
		wantLevel string
		wantMsg   string
		wantExit  int
		wantPanic bool
	}{
		{"Debug", func(r *raftLogger) { r.Debug("a", 1) }, "DEBUG", fmt.Sprint("a", 1), -1, false},
		{"Debugf", func(r *raftLogger) { r.Debugf("d=%d", 7) }, "DEBUG", "d=7", -1, false},
		{"Info", func(r *raftLogger) { r.Info("i", "x") }, "INFO", "ix", -1, false},
		{"Infof", func(r *raftLogger) { r.Infof("term %d", 3) }, "INFO", "term 3", -1, false},
		{"Warning", func(r *raftLogger) { r.Warning("w") }, "WARN", "w", -1, false},
		{"Warningf", func(r *raftLogger) { r.Warningf("w%s", "f") }, "WARN", "wf", -1, false},
		{"Error", func(r *raftLogger) { r.Error("e", 2) }, "ERROR", fmt.Sprint("e", 2), -1, false},
		{"Errorf", func(r *raftLogger) { r.Errorf("e%q", "q") }, "ERROR", `e"q"`, -1, false},
		{"Fatal", func(r *raftLogger) { r.Fatal("dead") }, "FATAL", "dead", 1, false},
		{"Fatalf", func(r *raftLogger) { r.Fatalf("dead %d", 9) }, "FATAL", "dead 9", 1, false},
		{"Panic", func(r *raftLogger) { r.Panic("boom") }, "PANIC", "boom", -1, true},
		{"Panicf", func(r *raftLogger) { r.Panicf("boom %d", 5) }, "PANIC", "boom 5", -1, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, buf, code := newTestLogger(t, slog.LevelDebug)
			var recovered any
			func() {
				defer func() { recovered = recover() }()
				tc.call(r)
			}()
			if tc.wantPanic {
				if recovered != tc.wantMsg {
					t.Errorf("panic value = %#v, want %q", recovered, tc.wantMsg)
				}
			} else if recovered != nil {
				t.Errorf("unexpected panic %v", recovered)
			}
			if *code != tc.wantExit {
				t.Errorf("exit code = %d, want %d", *code, tc.wantExit)
			}
			recs := decode(t, buf)
			if len(recs) != 1 {
				t.Fatalf("got %d records, want 1: %s", len(recs), buf)
			}
			if recs[0].Level != tc.wantLevel || recs[0].Msg != tc.wantMsg {
				t.Errorf("got level %s msg %q, want %s %q", recs[0].Level, recs[0].Msg, tc.wantLevel, tc.wantMsg)
			}
		})
	}
}

// countingStringer counts how often it is formatted.
type countingStringer struct{ n *int }

func (c countingStringer) String() string { *c.n++; return "s" }

func TestRaftLoggerFiltersBelowLevelWithoutFormatting(t *testing.T) {
	r, buf, _ := newTestLogger(t, slog.LevelWarn)
	n := 0
	s := countingStringer{&n}
	r.Debug(s)
	r.Debugf("%v", s)
	r.Info(s)
	r.Infof("%v", s)
	if buf.Len() != 0 || n != 0 {
		t.Fatalf("below-level calls wrote %q and formatted %d times", buf, n)
	}
	r.Warning(s)
	r.Error(s)
	if got := decode(t, buf); len(got) != 2 || n != 2 {
		t.Fatalf("got %d records and %d formats, want 2 and 2", len(got), n)
	}
}

func TestRaftLoggerFatalAndPanicAboveErrorLevel(t *testing.T) {
	// A handler set to a level above LevelPanic logs nothing, yet Fatal still
	// exits and Panic still panics with the message.
	r, buf, code := newTestLogger(t, LevelPanic+1)
	r.Fatalf("x %d", 1)
	if *code != 1 {
		t.Errorf("Fatalf did not exit: code %d", *code)
	}
	func() {
		defer func() {
			if v := recover(); v != "y 2" {
				t.Errorf("panic value %#v, want %q", v, "y 2")
			}
		}()
		r.Panicf("y %d", 2)
	}()
	if buf.Len() != 0 {
		t.Errorf("unexpected output %q", buf)
	}
}

func TestRaftLoggerSourceIsCaller(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{AddSource: true, Level: slog.LevelDebug}))
	r := RaftLogger(l)
	r.Infof("where")
	r.Warning("where")
	for _, rec := range decode(t, &buf) {
		if got := filepath.Base(rec.Source.File); got != "logutil_test.go" {
			t.Errorf("source file = %q, want logutil_test.go", rec.Source.File)
		}
	}
}

func TestNewFormats(t *testing.T) {
	var text, js bytes.Buffer
	tl, err := New(&text, slog.LevelInfo, FormatText)
	if err != nil {
		t.Fatal(err)
	}
	tl.Debug("hidden")
	tl.Info("shown", "k", "v")
	if s := text.String(); strings.Contains(s, "hidden") || !strings.Contains(s, "level=INFO") || !strings.Contains(s, "k=v") {
		t.Errorf("text output %q", s)
	}
	jl, err := New(&js, slog.LevelDebug, FormatJSON)
	if err != nil {
		t.Fatal(err)
	}
	jl.Debug("d")
	jl.Log(t.Context(), LevelFatal, "f")
	recs := decode(t, &js)
	if len(recs) != 2 || recs[0].Level != "DEBUG" || recs[1].Level != "FATAL" {
		t.Errorf("json records %+v", recs)
	}
}

func TestNewUnknownFormat(t *testing.T) {
	for _, f := range []string{"", "xml", "JSON"} {
		l, err := New(&bytes.Buffer{}, slog.LevelInfo, f)
		if !errors.Is(err, ErrUnknownFormat) || l != nil {
			t.Errorf("New(%q) = %v, %v; want ErrUnknownFormat", f, l, err)
		}
	}
}
