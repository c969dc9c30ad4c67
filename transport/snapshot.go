package transport

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// Snapshot stream, after the frame of the MsgSnap message:
//
//	chunk*   uint32 length (1..chunk cap) | bytes
//	trailer  uint32 0 | uint64 total length | uint32 CRC-32C of all state bytes
//
// All integers big-endian.

// maxSnapshotChunk bounds a chunk announced by a sender.
const maxSnapshotChunk = 16 << 20

// SendSnapshot sends m (a MsgSnap) and the state that open returns to m.To in
// the background, then calls Raft.ReportSnapshot with the outcome. open is
// called once, in the background; its reader is closed when done.
func (t *Transport) SendSnapshot(m *raftpb.Message, open func() (io.ReadCloser, error)) {
	to := m.GetTo()
	p := t.peer(to)
	if p == nil || !t.enter() {
		t.log.Warn("cannot send snapshot: unknown peer or stopped", "to", fmt.Sprintf("%x", to))
		t.cfg.Raft.ReportUnreachable(to)
		t.cfg.Raft.ReportSnapshot(to, raft.SnapshotFailure)
		return
	}
	go func() {
		defer t.wg.Done()
		log := t.log.With("to", fmt.Sprintf("%x", to), "index", m.GetSnapshot().GetMetadata().GetIndex())
		n, err := t.sendSnapshot(p, m, open)
		if err != nil {
			log.Warn("snapshot send failed", "err", err)
			t.cfg.Raft.ReportUnreachable(to)
			t.cfg.Raft.ReportSnapshot(to, raft.SnapshotFailure)
			return
		}
		log.Info("snapshot sent", "bytes", n)
		t.cfg.Raft.ReportSnapshot(to, raft.SnapshotFinish)
	}()
}

func (t *Transport) sendSnapshot(p *peer, m *raftpb.Message, open func() (io.ReadCloser, error)) (int64, error) {
	head, err := appendFrame(nil, m, t.cfg.MaxFrameSize)
	if err != nil {
		return 0, err
	}
	state, err := open()
	if err != nil {
		return 0, fmt.Errorf("transport: open snapshot: %w", err)
	}
	defer state.Close()
	ctx, cancel := context.WithCancelCause(p.ctx)
	defer cancel(nil)
	p.mu.Lock()
	url := p.urls[p.urlIdx%len(p.urls)]
	p.mu.Unlock()

	pr, pw := io.Pipe()
	var written int64
	writeDone := make(chan error, 1)
	go func() {
		n, err := t.writeSnapshot(pw, head, state)
		written = n
		pw.CloseWithError(err)
		writeDone <- err
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+pathSnapshot, pr)
	if err != nil {
		pr.CloseWithError(err)
		<-writeDone
		return 0, err
	}
	t.setHeaders(req.Header, p.id)
	resp, err := t.snapClient.Do(req)
	// The receiver answers after the whole stream or on refusal: either way
	// the writer is done or must stop now.
	pr.CloseWithError(ErrStopped)
	werr := <-writeDone
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return 0, t.rejection(p.id, resp)
	}
	if werr != nil {
		return 0, werr
	}
	return written, nil
}

// writeSnapshot writes the message frame, the state in chunks and the trailer.
func (t *Transport) writeSnapshot(w io.Writer, head []byte, state io.Reader) (int64, error) {
	bw := bufio.NewWriterSize(w, 64<<10)
	if _, err := bw.Write(head); err != nil {
		return 0, err
	}
	buf := make([]byte, 4+t.cfg.SnapshotChunkSize)
	crc := crc32.New(castagnoli)
	var total int64
	for {
		n, rerr := io.ReadFull(state, buf[4:])
		if n > 0 {
			chunk := buf[4 : 4+n]
			crc.Write(chunk)
			total += int64(n)
			if t.corruptChunk != nil {
				t.corruptChunk(chunk)
			}
			binary.BigEndian.PutUint32(buf, uint32(n))
			if _, err := bw.Write(buf[:4+n]); err != nil {
				return total, err
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return total, fmt.Errorf("transport: read snapshot state: %w", rerr)
		}
	}
	var trailer [16]byte
	binary.BigEndian.PutUint64(trailer[4:], uint64(total))
	binary.BigEndian.PutUint32(trailer[12:], crc.Sum32())
	if _, err := bw.Write(trailer[:]); err != nil {
		return total, err
	}
	return total, bw.Flush()
}

// handleSnapshot receives a MsgSnap and its state, hands the state to the
// sink and, only once the sink has stored it and the checksum matched, the
// message to raft.
func (t *Transport) handleSnapshot(w http.ResponseWriter, r *http.Request) {
	from, ctx, release, ok := t.admit(w, r)
	if !ok {
		return
	}
	defer release()
	log := t.log.With("from", fmt.Sprintf("%x", from))
	br := bufio.NewReaderSize(r.Body, 64<<10)
	m, err := newFrameDecoder(br, t.cfg.MaxFrameSize).decode()
	if err == nil && m.GetType() != raftpb.MessageType_MsgSnap {
		err = fmt.Errorf("%w: %v on the snapshot endpoint", ErrBadRequest, m.GetType())
	}
	if err == nil {
		err = t.checkMessage(&raftpb.Message{To: m.To, From: m.From}, from)
	}
	if err == nil && t.cfg.Snapshots == nil {
		err = fmt.Errorf("%w: this member accepts no snapshots", ErrBadRequest)
	}
	if err != nil {
		log.Warn("rejected snapshot", "err", err)
		t.refuse(w, http.StatusBadRequest, rejectBad, err.Error())
		return
	}
	log = log.With("index", m.GetSnapshot().GetMetadata().GetIndex())
	sr := &snapshotReader{r: br}
	if err := t.receive(ctx, m, sr); err != nil {
		log.Error("snapshot not accepted", "err", err)
		t.refuse(w, http.StatusBadRequest, rejectBad, err.Error())
		return
	}
	if err := t.cfg.Raft.Process(ctx, m); err != nil {
		log.Error("raft refused snapshot message", "err", err)
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	log.Info("snapshot received", "bytes", sr.total)
	w.WriteHeader(http.StatusNoContent)
}

// receive runs the sink and checks that it consumed a verified stream.
func (t *Transport) receive(ctx context.Context, m *raftpb.Message, sr *snapshotReader) error {
	if err := t.cfg.Snapshots.ReceiveSnapshot(ctx, m, sr); err != nil {
		if sr.err != nil && !errors.Is(sr.err, io.EOF) && !errors.Is(err, sr.err) {
			return fmt.Errorf("%w (stream: %w)", err, sr.err)
		}
		return err
	}
	if !sr.verified {
		return ErrSnapshotIncomplete
	}
	return nil
}

// snapshotReader yields the state bytes of a snapshot stream and, at its end,
// io.EOF if the checksum matches or an error wrapping ErrSnapshotChecksum.
type snapshotReader struct {
	r         io.Reader
	remaining uint32 // bytes left in the current chunk
	crc       uint32
	total     uint64
	verified  bool  // the trailer was read and matched
	err       error // sticky
}

func (s *snapshotReader) Read(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	for s.remaining == 0 {
		if err := s.nextChunk(); err != nil {
			s.err = err
			return 0, err
		}
	}
	n, err := s.r.Read(p[:min(uint32(len(p)), s.remaining)])
	s.crc = crc32.Update(s.crc, castagnoli, p[:n])
	s.total += uint64(n)
	s.remaining -= uint32(n)
	if err == io.EOF && s.remaining > 0 {
		err = fmt.Errorf("%w: truncated chunk", ErrSnapshotCorrupt)
	} else if err == io.EOF {
		err = nil
	}
	if err != nil {
		s.err = err
	}
	return n, err
}

// nextChunk reads a chunk header; at the trailer it verifies the stream and
// returns io.EOF or the verification error.
func (s *snapshotReader) nextChunk() error {
	var hdr [4]byte
	if _, err := io.ReadFull(s.r, hdr[:]); err != nil {
		return fmt.Errorf("%w: truncated stream: %v", ErrSnapshotCorrupt, err)
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > maxSnapshotChunk {
		return fmt.Errorf("%w: chunk of %d bytes", ErrSnapshotCorrupt, n)
	}
	if n > 0 {
		s.remaining = n
		return nil
	}
	var tr [12]byte
	if _, err := io.ReadFull(s.r, tr[:]); err != nil {
		return fmt.Errorf("%w: truncated trailer: %v", ErrSnapshotCorrupt, err)
	}
	total, sum := binary.BigEndian.Uint64(tr[:8]), binary.BigEndian.Uint32(tr[8:])
	if total != s.total || sum != s.crc {
		return fmt.Errorf("%w: got %d bytes crc32c %08x, sender says %d bytes %08x",
			ErrSnapshotChecksum, s.total, s.crc, total, sum)
	}
	s.verified = true
	return io.EOF
}
