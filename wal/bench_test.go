package wal

import (
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/vfs"
)

// syncTimer is a vfs.FS that records how long each File.Sync takes.
type syncTimer struct {
	vfs.FS
	mu    sync.Mutex
	times []time.Duration // guarded by mu
}

type timedFile struct {
	vfs.File
	st *syncTimer
}

func (s *syncTimer) Create(name string) (vfs.File, error) {
	f, err := s.FS.Create(name)
	if err != nil {
		return nil, err
	}
	return timedFile{f, s}, nil
}

func (f timedFile) Sync() error {
	start := time.Now()
	err := f.File.Sync()
	f.st.mu.Lock()
	f.st.times = append(f.st.times, time.Since(start))
	f.st.mu.Unlock()
	return err
}

func (s *syncTimer) report(b *testing.B, elapsed time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.times) == 0 {
		return
	}
	t := slices.Clone(s.times)
	slices.Sort(t)
	b.ReportMetric(float64(len(t))/elapsed.Seconds(), "fsyncs/s")
	b.ReportMetric(float64(t[len(t)/2].Microseconds()), "p50-fsync-µs")
	b.ReportMetric(float64(t[len(t)*99/100].Microseconds()), "p99-fsync-µs")
}

// BenchmarkSave has N appenders each saving one ~100-byte entry per Save
// with mustSync, so concurrent Saves share fsyncs (group commit).
func BenchmarkSave(b *testing.B) {
	data := make([]byte, 100)
	for _, n := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("appenders=%d", n), func(b *testing.B) {
			st := &syncTimer{FS: vfs.Default()}
			w, err := Create(st, filepath.Join(b.TempDir(), "wal"), testMD, Options{})
			if err != nil {
				b.Fatal(err)
			}
			st.mu.Lock()
			st.times = nil // not the fsyncs of Create
			st.mu.Unlock()
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := next.Add(1)
						if i > int64(b.N) {
							return
						}
						e := &raftpb.Entry{Index: proto.Uint64(uint64(i)), Term: proto.Uint64(1), Type: raftpb.EntryNormal.Enum(), Data: data}
						if err := w.Save(nil, []*raftpb.Entry{e}, true); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "entries/s")
			st.report(b, elapsed)
			if err := w.Close(); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkRawFdatasync writes 100 bytes and fdatasyncs, on the same disk
// and with the same preallocation as the WAL: the floor for one Save.
func BenchmarkRawFdatasync(b *testing.B) {
	st := &syncTimer{FS: vfs.Default()}
	f, err := st.Create(filepath.Join(b.TempDir(), "raw"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := f.Preallocate(DefaultSegmentSize); err != nil {
		b.Fatal(err)
	}
	data := make([]byte, 100)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if _, err := f.WriteAt(data, int64(i*len(data))%DefaultSegmentSize); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
	}
	st.report(b, time.Since(start))
}

// BenchmarkEncodeEntry compares the WAL's compact entry encoding with
// protobuf for a typical small entry.
func BenchmarkEncodeEntry(b *testing.B) {
	e := &raftpb.Entry{Index: proto.Uint64(123456789), Term: proto.Uint64(42), Type: raftpb.EntryNormal.Enum(), Data: make([]byte, 100)}
	b.Run("compact", func(b *testing.B) {
		var buf []byte
		for b.Loop() {
			buf = encodeEntry(buf[:0], e)
		}
		b.ReportMetric(float64(len(buf)), "bytes/entry")
	})
	b.Run("proto", func(b *testing.B) {
		var buf []byte
		for b.Loop() {
			var err error
			if buf, err = (proto.MarshalOptions{}).MarshalAppend(buf[:0], e); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(buf)), "bytes/entry")
	})
	b.Run("decode-compact", func(b *testing.B) {
		p := encodeEntry(nil, e)
		for b.Loop() {
			if _, err := decodeEntry(p); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode-proto", func(b *testing.B) {
		p, _ := proto.Marshal(e)
		for b.Loop() {
			var d raftpb.Entry
			if err := proto.Unmarshal(p, &d); err != nil {
				b.Fatal(err)
			}
		}
	})
}
