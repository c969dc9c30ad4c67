package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/lease"
)

// Peer-port endpoints that a follower forwards lease requests to: POST with
// a protobuf LeaseTimeToLiveRequest body, answered with the protobuf
// response, and keep-alives in batches (leaseKeepAlivesPath, lease_batch.go).
// 404 means the lease is not found; 503 with leaseNotLeaderHeader means the
// member does not lead (any more).
const (
	leasePathPrefix      = "/leases/"
	leaseTimeToLivePath  = "/leases/timetolive"
	leaseNotLeaderHeader = "X-Cairn-Lease-Not-Leader"
	clusterIDHeader      = "X-Cairn-Cluster-ID"
	maxLeaseBodyBytes    = 1 << 30
)

// Leader duties: how often they run, and their rates (etcd's: 1000 revokes
// and 1000 checkpoints per second, checkpoints batched by 1000).
const (
	leaseTick              = 500 * time.Millisecond
	leaseRevokesPerTick    = 500
	leaseRevokeConcurrency = 16
	leaseCheckpointBatch   = 1000
)

// errRetryLeader means: no usable leader right now, wait and retry.
var errRetryLeader = errors.New("server: lease request needs the leader; retry")

// onLeader runs local on this member once it leads and decides expiry, or
// remote against the leader's peer URLs, retrying across leader changes
// until ctx (bounded by the request timeout) ends.
func (s *Server) onLeader(ctx context.Context, local func(context.Context) error, remote func(context.Context, []string) error) error {
	ctx, cancel := s.withRequestTimeout(ctx)
	defer cancel()
	for {
		changed := s.node.LeaderChanged()
		err := errRetryLeader
		switch leader := s.node.Leader(); leader {
		case 0:
		case s.id:
			err = s.onPrimary(ctx, changed, local)
		default:
			if m, ok := s.cluster.Member(leader); ok {
				err = remote(ctx, m.PeerURLs)
			}
		}
		if !errors.Is(err, errRetryLeader) {
			return err
		}
		select {
		case <-changed:
		case <-time.After(s.cfg.HeartbeatInterval):
		case <-ctx.Done():
			return s.proposalError(ctx, ctx.Err())
		case <-s.stopc:
			return ErrStopped
		}
	}
}

// onPrimary waits until this leader's lessor decides expiry, then runs f.
func (s *Server) onPrimary(ctx context.Context, changed <-chan struct{}, f func(context.Context) error) error {
	if primary, promoted := s.lease.lessor.Primary(); !primary {
		select {
		case <-promoted:
		case <-changed:
			return errRetryLeader
		case <-ctx.Done():
			return s.proposalError(ctx, ctx.Err())
		case <-s.stopc:
			return ErrStopped
		}
	}
	err := f(ctx)
	if errors.Is(err, lease.ErrNotPrimary) {
		return errRetryLeader
	}
	return err
}

// forwardLease posts req to path on the leader and decodes its answer.
func (s *Server) forwardLease(ctx context.Context, urls []string, path string, req, resp proto.Message) error {
	body, err := proto.Marshal(req)
	if err != nil {
		return err
	}
	var errs []error
	for _, u := range urls {
		b, err := s.postLease(ctx, u+path, body)
		if err == nil {
			return proto.Unmarshal(b, resp)
		}
		if errors.Is(err, lease.ErrLeaseNotFound) || errors.Is(err, errRetryLeader) {
			return err
		}
		errs = append(errs, err)
	}
	if ctx.Err() != nil {
		return s.proposalError(ctx, ctx.Err())
	}
	s.log.Debug("forwarding a lease request to the leader failed", "err", errors.Join(errs...))
	return errRetryLeader
}

// postLease posts body to url and returns the answer's body.
func (s *Server) postLease(ctx context.Context, url string, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/protobuf")
	req.Header.Set(clusterIDHeader, strconv.FormatUint(s.cluster.ID(), 16))
	hr, err := s.lease.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer hr.Body.Close()
	b, err := io.ReadAll(io.LimitReader(hr.Body, maxLeaseBodyBytes))
	if err != nil {
		return nil, err
	}
	switch {
	case hr.StatusCode == http.StatusOK:
		return b, nil
	case hr.StatusCode == http.StatusNotFound:
		return nil, lease.ErrLeaseNotFound
	case hr.Header.Get(leaseNotLeaderHeader) != "":
		return nil, errRetryLeader
	default:
		return nil, fmt.Errorf("server: %s: %s: %s", url, hr.Status, bytes.TrimSpace(b))
	}
}

// serveLease answers lease requests forwarded by followers; only the leader
// answers, it never forwards.
func (s *Server) serveLease(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if got := r.Header.Get(clusterIDHeader); got != strconv.FormatUint(s.cluster.ID(), 16) {
		http.Error(w, fmt.Sprintf("cluster ID mismatch: %q", got), http.StatusPreconditionFailed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	ctx, cancel := s.withRequestTimeout(r.Context())
	defer cancel()
	var b []byte
	switch r.URL.Path {
	case leaseKeepAlivesPath:
		b, err = s.serveKeepAlives(ctx, body)
	case leaseTimeToLivePath:
		b, err = s.serveTimeToLive(ctx, body)
	default:
		http.NotFound(w, r)
		return
	}
	writeLeaseAnswer(w, b, err)
}

func (s *Server) serveTimeToLive(ctx context.Context, body []byte) ([]byte, error) {
	req := &pb.LeaseTimeToLiveRequest{}
	if err := proto.Unmarshal(body, req); err != nil {
		return nil, err
	}
	if s.node.Leader() != s.id {
		return nil, errRetryLeader
	}
	var resp *pb.LeaseTimeToLiveResponse
	err := s.onPrimary(ctx, s.node.LeaderChanged(), func(ctx context.Context) (err error) {
		resp, err = s.timeToLiveLocal(ctx, req)
		return err
	})
	if err != nil {
		return nil, err
	}
	return proto.Marshal(resp)
}

func writeLeaseAnswer(w http.ResponseWriter, b []byte, err error) {
	switch {
	case errors.Is(err, lease.ErrLeaseNotFound):
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	case errors.Is(err, errRetryLeader):
		w.Header().Set(leaseNotLeaderHeader, "1")
		http.Error(w, "not the leader", http.StatusServiceUnavailable)
		return
	case err != nil:
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/protobuf")
	_, _ = w.Write(b)
}

// startLeases starts the leader duties: promotion, expiry, checkpoints.
func (s *Server) startLeases() {
	s.wg.Add(1)
	go s.leaseLoop()
}

// leaseLoop promotes the lessor when this member leads, demotes it when it
// stops leading, and on the leader revokes expired leases and records
// remaining TTLs every leaseTick.
func (s *Server) leaseLoop() {
	defer s.wg.Done()
	defer s.lease.client.CloseIdleConnections()
	tick := time.NewTicker(leaseTick)
	defer tick.Stop()
	var term uint64 // the term this member leads in with a promoted lessor; 0 if none
	for {
		changed := s.node.LeaderChanged()
		term = s.updateLeaseRole(term)
		select {
		case <-changed:
		case <-tick.C:
			if term != 0 {
				s.revokeExpired()
				s.checkpointLeases()
			}
		case <-s.stopc:
			s.lease.lessor.Demote()
			return
		}
	}
}

// updateLeaseRole promotes or demotes the lessor to match leadership. A new
// leader promotes only once it has applied every entry committed before its
// term (a linearizable read point), so it knows every lease and checkpoint.
func (s *Server) updateLeaseRole(term uint64) uint64 {
	l := s.lease.lessor
	if s.node.Leader() != s.id {
		if term != 0 {
			l.Demote()
			s.log.Info("lessor demoted")
		}
		return 0
	}
	cur := s.node.Term()
	if term == cur {
		return term
	}
	if term != 0 {
		l.Demote()
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.requestTimeout())
	err := s.LinearizableReadNotify(ctx)
	cancel()
	if err != nil || s.node.Leader() != s.id || s.node.Term() != cur {
		return 0
	}
	l.Promote(s.cfg.ElectionTimeout)
	s.log.Info("lessor promoted", "term", cur, "leases", len(l.Leases()))
	return cur
}

// revokeExpired proposes the revocation of expired leases, a bounded number
// per tick, a few at a time.
func (s *Server) revokeExpired() {
	ids := s.lease.lessor.Expired(leaseRevokesPerTick)
	if len(ids) == 0 {
		return
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, leaseRevokeConcurrency)
	for _, id := range ids {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), s.requestTimeout())
			defer cancel()
			_, err := s.LeaseRevoke(ctx, &pb.LeaseRevokeRequest{ID: id})
			if err != nil && !errors.Is(err, lease.ErrLeaseNotFound) {
				s.log.Warn("revoking an expired lease failed; will retry", "lease", fmt.Sprintf("%x", id), "err", err)
			}
		})
	}
	wg.Wait()
}

// checkpointLeases records the remaining TTLs that are due through raft.
func (s *Server) checkpointLeases() {
	l := s.lease.lessor
	cps := l.CheckpointsDue(leaseCheckpointBatch)
	if len(cps) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.requestTimeout())
	defer cancel()
	req := &pb.InternalRaftRequest{LeaseCheckpoint: &pb.LeaseCheckpointRequest{Checkpoints: cps}}
	if _, err := s.propose(ctx, req); err != nil {
		l.CheckpointFailed(cps)
		s.log.Debug("recording lease checkpoints failed; will retry", "leases", len(cps), "err", err)
	}
}
