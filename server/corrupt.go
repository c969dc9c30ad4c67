package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/cairn-kv/cairn/mvcc"
)

// Corruption
//
// Damage on disk is found by checksums (WAL records, Pebble blocks): the
// backend reports Pebble's finds to onCorruption, which stops a running
// member; at start the failing read makes New fail.
//
// Silent divergence (a member whose state differs though every checksum
// holds, e.g. after a bug or an edit behind its back) is found by the
// periodic hash check: every --corrupt-check-time the leader hashes its
// store (HashKV at its current revision R) and asks every other member for
// HashKV at R through the peer port (GET hashKVPath?rev=R). Among the
// answers at the leader's (R, compact revision), the hash held by most
// members wins (a tie keeps the leader's); every member holding another
// hash gets a CORRUPT alarm, raised through raft. While a CORRUPT alarm is
// active the applier refuses, like etcd's, Put, DeleteRange, Txn,
// Compaction, LeaseGrant and LeaseRevoke with ErrCorrupt; reads keep
// working so an operator can inspect the cluster.

// ErrCorrupt refuses a request while a CORRUPT alarm is active.
var ErrCorrupt = errors.New("server: corrupt cluster")

// hashKVPath is the peer endpoint that answers HashKV at a revision.
const hashKVPath = "/cairn/hashkv"

// hashWaitLimit bounds how long a member waits to reach the revision the
// leader asks it to hash.
const hashWaitLimit = 2 * time.Second

// hashReport is one member's HashKV answer (or failure) in a check.
type hashReport struct {
	Member     uint64 `json:"member"`
	Hash       uint32 `json:"hash"`
	CompactRev int64  `json:"compact_revision"`
	HashRev    int64  `json:"hash_revision"`
	err        error
}

// divergent returns the members whose hash differs from the one most
// members hold at the leader's (revision, compact revision); a tie keeps
// the leader's hash. Reports that failed or hashed another revision or
// compaction point are not compared. The result is in report order.
func divergent(leader hashReport, peers []hashReport) []uint64 {
	all := append([]hashReport{leader}, peers...)
	counts := map[uint32]int{}
	var cmp []hashReport
	for _, r := range all {
		if r.err != nil || r.HashRev != leader.HashRev || r.CompactRev != leader.CompactRev {
			continue
		}
		cmp = append(cmp, r)
		counts[r.Hash]++
	}
	best := leader.Hash
	for _, r := range cmp {
		if counts[r.Hash] > counts[best] {
			best = r.Hash
		}
	}
	var out []uint64
	for _, r := range cmp {
		if r.Hash != best {
			out = append(out, r.Member)
		}
	}
	return out
}

// onCorruption stops a running member on damage found on disk; before
// Start the failing read makes New fail by itself.
func (s *Server) onCorruption(err error) {
	if s.started.Load() {
		s.fail(fmt.Errorf("server: the store is damaged; this member must not serve: %w", err))
	}
}

// startCorruptCheck marks the member started and runs the periodic hash
// check while it lives.
func (s *Server) startCorruptCheck() {
	s.started.Store(true)
	if s.cfg.CorruptCheckTime <= 0 {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(s.cfg.CorruptCheckTime)
		defer t.Stop()
		for {
			select {
			case <-s.stopc:
				return
			case <-t.C:
			}
			if !s.IsLeader() {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), s.requestTimeout())
			if err := s.checkHashes(ctx); err != nil {
				s.log.Warn("corruption check failed", "err", err)
			}
			cancel()
		}
	}()
}

// checkHashes compares every member's HashKV at the leader's revision and
// raises a CORRUPT alarm for each member that diverged.
func (s *Server) checkHashes(ctx context.Context) error {
	own, err := s.HashKV(ctx, 0)
	if err != nil {
		return err
	}
	leader := hashReport{Member: s.id, Hash: own.Hash, CompactRev: own.CompactRevision, HashRev: own.HashRevision}
	var peers []hashReport
	client := &http.Client{Timeout: hashWaitLimit + 2*time.Second}
	for _, m := range s.cluster.Members() {
		if m.ID == s.id {
			continue
		}
		r := s.peerHash(ctx, client, m.PeerURLs, leader.HashRev)
		r.Member = m.ID
		if r.err != nil {
			s.log.Debug("corruption check: no hash from a member", "member", fmt.Sprintf("%x", m.ID), "err", r.err)
		}
		peers = append(peers, r)
	}
	for _, id := range divergent(leader, peers) {
		s.log.Error("member state diverged: its hash differs from the majority's; raising the CORRUPT alarm",
			"member", fmt.Sprintf("%x", id), "revision", leader.HashRev, "compact-revision", leader.CompactRev)
		_, err := s.propose(ctx, &pb.InternalRaftRequest{Alarm: &pb.AlarmRequest{
			Action: pb.AlarmRequest_ACTIVATE, MemberID: id, Alarm: pb.AlarmType_CORRUPT,
		}})
		if err != nil {
			return fmt.Errorf("server: raise CORRUPT alarm for %x: %w", id, err)
		}
	}
	return nil
}

// peerHash asks one member, at any of its peer URLs, for HashKV at rev.
func (s *Server) peerHash(ctx context.Context, client *http.Client, urls []string, rev int64) hashReport {
	var errs []error
	for _, u := range urls {
		r, err := getHash(ctx, client, u+hashKVPath+"?rev="+strconv.FormatInt(rev, 10))
		if err == nil {
			return r
		}
		errs = append(errs, err)
	}
	return hashReport{err: errors.Join(errs...)}
}

func getHash(ctx context.Context, client *http.Client, url string) (hashReport, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return hashReport{}, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return hashReport{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return hashReport{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return hashReport{}, fmt.Errorf("%s: %s: %s", url, resp.Status, body)
	}
	var r hashReport
	if err := json.Unmarshal(body, &r); err != nil {
		return hashReport{}, fmt.Errorf("%s: %w", url, err)
	}
	return r, nil
}

// serveHashKV answers the leader's hash check: HashKV at ?rev=, once this
// member's store has reached it (waiting up to hashWaitLimit).
func (s *Server) serveHashKV(w http.ResponseWriter, r *http.Request) {
	rev, err := strconv.ParseInt(r.URL.Query().Get("rev"), 10, 64)
	if err != nil || rev <= 0 {
		http.Error(w, "bad rev", http.StatusBadRequest)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), hashWaitLimit)
	defer cancel()
	for s.storeRev() < rev {
		if err := s.waitApplied(ctx, s.AppliedIndex()+1); err != nil {
			http.Error(w, fmt.Sprintf("revision %d not reached: %v", rev, err), http.StatusServiceUnavailable)
			return
		}
	}
	out := hashReport{Member: s.id}
	err = s.withStore(func(kv *mvcc.Store) error {
		var err error
		out.Hash, out.CompactRev, out.HashRev, err = kv.HashKV(rev)
		return err
	})
	if err != nil {
		http.Error(w, err.Error(), http.StatusConflict)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

// storeRev is the store's revision, 0 while no store is open.
func (s *Server) storeRev() int64 {
	var rev int64
	_ = s.withStore(func(kv *mvcc.Store) error { rev = kv.Rev(); return nil })
	return rev
}

// corruptRefuses reports whether a CORRUPT alarm makes the applier refuse
// req (etcd's corrupt applier: every write, compaction and lease change).
func corruptRefuses(req *pb.InternalRaftRequest) bool {
	return req.Put != nil || req.DeleteRange != nil || req.Txn != nil || req.Compaction != nil ||
		req.LeaseGrant != nil || req.LeaseRevoke != nil
}
