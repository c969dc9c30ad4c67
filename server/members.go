package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/membershippb"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/cairn-kv/cairn/membership"
	"github.com/cairn-kv/cairn/vfs"
	"github.com/cairn-kv/cairn/wal"
)

// ErrLearnerNotReady means a learner is too far behind to be promoted.
var ErrLearnerNotReady = errors.New("server: can only promote a learner member which is in sync with leader")

// membersPath is the peer-port endpoint that tells a joining member who is
// in the cluster.
const membersPath = "/members"

// memberList is the JSON body of GET /members on the peer port.
type memberList struct {
	ClusterID uint64              `json:"clusterID"`
	Members   []membership.Member `json:"members"`
}

func (s *Server) serveMembers(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Cairn-Cluster-ID", fmt.Sprintf("%x", s.cluster.ID()))
	_ = json.NewEncoder(w).Encode(memberList{ClusterID: s.cluster.ID(), Members: s.cluster.Members()})
}

// join prepares a member that was added to a running cluster.
func (s *Server) join(ctx context.Context) error {
	if s.be.AppliedIndex() != 0 {
		return fmt.Errorf("%w: %s holds a store but no WAL at %s: point --data-dir/--wal-dir at the right place, or remove the data dir to join afresh",
			ErrMisconfigured, s.cfg.DataDir, s.cfg.WALDir)
	}
	var mine []string
	for _, u := range s.cfg.InitialAdvertisePeerURLs {
		mine = append(mine, u.String())
	}
	slices.Sort(mine)
	list, err := s.findSelf(ctx, mine)
	if err != nil {
		return err
	}
	if s.cluster, err = membership.NewFromMembers(list.ClusterID, nil, nil); err != nil {
		return err
	}
	if err := s.saveCluster(); err != nil {
		return err
	}
	for _, m := range list.Members {
		if m.ID != s.id {
			s.joinPeers = append(s.joinPeers, m)
		}
	}
	s.wal, err = wal.Create(vfs.Default(), s.cfg.WALDir, wal.Metadata{ClusterID: list.ClusterID, MemberID: s.id}, s.walOptions())
	if err != nil {
		return err
	}
	s.raftStorage = raft.NewMemoryStorage()
	s.confState = &raftpb.ConfState{}
	s.log.Info("joining an existing cluster", "member", fmt.Sprintf("%x", s.id), "cluster", fmt.Sprintf("%x", list.ClusterID))
	return nil
}

// joinWait bounds how long a joining member looks for itself in the peers'
// member lists: a member add is answered once the leader applied it, and a
// follower asked first may not have applied it yet.
const joinWait = 10 * time.Second

// findSelf asks the other members in --initial-cluster for the member list
// until one lists a member with our peer URLs (mine, sorted), and sets s.id.
func (s *Server) findSelf(ctx context.Context, mine []string) (*memberList, error) {
	deadline := time.Now().Add(joinWait)
	for {
		list, err := s.fetchMembers(ctx, mine)
		if err == nil || time.Now().After(deadline) {
			return list, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// fetchMembers asks every other member in --initial-cluster for the member
// list and returns the first that lists our peer URLs, setting s.id.
func (s *Server) fetchMembers(ctx context.Context, mine []string) (*memberList, error) {
	client := &http.Client{Timeout: 2 * time.Second}
	var errs []error
	var clusterID uint64
	for _, m := range s.cfg.InitialCluster {
		if m.Name == s.cfg.Name {
			continue
		}
		for _, u := range m.PeerURLs {
			list, err := getMembers(ctx, client, u.String()+membersPath)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			clusterID = list.ClusterID
			for _, lm := range list.Members {
				if slices.Equal(slices.Sorted(slices.Values(lm.PeerURLs)), mine) {
					s.id = lm.ID
					return list, nil
				}
			}
		}
	}
	switch {
	case clusterID != 0:
		return nil, fmt.Errorf("%w: no member of cluster %x has peer URLs %v: add this member first (member add), then start it with --initial-cluster-state existing",
			ErrMisconfigured, clusterID, mine)
	case len(errs) == 0:
		return nil, fmt.Errorf("%w: --initial-cluster-state existing needs other members in --initial-cluster to ask for the member list", ErrMisconfigured)
	}
	return nil, fmt.Errorf("server: cannot fetch the member list from any peer in --initial-cluster: %w", errors.Join(errs...))
}

func getMembers(ctx context.Context, client *http.Client, url string) (*memberList, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	var list memberList
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&list); err != nil {
		return nil, fmt.Errorf("%s: %w", url, err)
	}
	if list.ClusterID == 0 || len(list.Members) == 0 {
		return nil, fmt.Errorf("%s: empty member list", url)
	}
	return &list, nil
}

// confChangeResult is what the applier hands a waiting member change.
type confChangeResult struct {
	members []membership.Member
	err     error
}

// AddMember adds a voting member or a learner with the given peer URLs and
// returns it with the resulting member list.
func (s *Server) AddMember(ctx context.Context, peerURLs []string, learner bool) (membership.Member, []membership.Member, error) {
	m := membership.Member{
		ID:       membership.RuntimeMemberID(s.cfg.InitialClusterToken, peerURLs, uint64(time.Now().UnixNano())),
		PeerURLs: slices.Clone(peerURLs),
	}
	t := membership.ChangeAddVoter
	if learner {
		t = membership.ChangeAddLearner
	}
	members, err := s.changeMembers(ctx, membership.Change{Type: t, Member: m})
	if err != nil {
		return membership.Member{}, nil, err
	}
	m.IsLearner = learner
	return m, members, nil
}

// RemoveMember removes a member.
func (s *Server) RemoveMember(ctx context.Context, id uint64) ([]membership.Member, error) {
	return s.changeMembers(ctx, membership.Change{Type: membership.ChangeRemove, Member: membership.Member{ID: id}})
}

// UpdateMember changes a member's peer URLs.
func (s *Server) UpdateMember(ctx context.Context, id uint64, peerURLs []string) ([]membership.Member, error) {
	m, ok := s.cluster.Member(id)
	if !ok {
		return nil, membership.ErrIDNotFound
	}
	m.PeerURLs = slices.Clone(peerURLs)
	return s.changeMembers(ctx, membership.Change{Type: membership.ChangeUpdatePeerURLs, Member: m})
}

// PromoteMember makes a learner a voting member, once it has caught up.
func (s *Server) PromoteMember(ctx context.Context, id uint64) ([]membership.Member, error) {
	m, ok := s.cluster.Member(id)
	if !ok {
		return nil, membership.ErrIDNotFound
	}
	if !m.IsLearner {
		return nil, membership.ErrMemberNotLearner
	}
	if err := s.learnerReady(id); err != nil {
		return nil, err
	}
	return s.changeMembers(ctx, membership.Change{Type: membership.ChangePromoteLearner, Member: m})
}

// learnerReady checks, on the leader, that the learner's log is within 10%
// of the leader's; on other members the check is left to the leader's view
// at the next attempt.
func (s *Server) learnerReady(id uint64) error {
	st := s.node.RaftStatus()
	if st.RaftState != raft.StateLeader {
		return nil
	}
	pr, ok := st.Progress[id]
	if !ok {
		return ErrLearnerNotReady
	}
	leaderMatch := st.Progress[s.id].Match
	if leaderMatch > 0 && float64(pr.Match) < 0.9*float64(leaderMatch) {
		return ErrLearnerNotReady
	}
	return nil
}

// changeMembers proposes a configuration change and waits for its outcome.
func (s *Server) changeMembers(ctx context.Context, ch membership.Change) ([]membership.Member, error) {
	if err := s.cluster.Validate(ch); err != nil {
		return nil, err
	}
	id := s.reqIDs.Next()
	cc, err := ch.ConfChange(id)
	if err != nil {
		return nil, err
	}
	ctx, cancel := s.withRequestTimeout(ctx)
	defer cancel()
	wch := s.waits.Register(id)
	if err := s.node.ProposeConfChange(ctx, cc); err != nil {
		s.waits.Cancel(id)
		return nil, s.proposalError(ctx, err)
	}
	select {
	case x := <-wch:
		r := x.(confChangeResult)
		return r.members, r.err
	case <-ctx.Done():
		s.waits.Cancel(id)
		return nil, s.proposalError(ctx, ctx.Err())
	case <-s.stopc:
		return nil, ErrStopped
	}
}

// publish records this member's name and client URLs in the member list,
// retrying until it succeeds or the server stops.
func (s *Server) publish() {
	defer s.wg.Done()
	var urls []string
	for _, u := range s.cfg.AdvertiseClientURLs {
		urls = append(urls, u.String())
	}
	req := &pb.InternalRaftRequest{ClusterMemberAttrSet: &membershippb.ClusterMemberAttrSetRequest{
		Member_ID:        s.id,
		MemberAttributes: &membershippb.Attributes{Name: s.cfg.Name, ClientUrls: urls},
	}}
	for {
		if m, ok := s.cluster.Member(s.id); ok && m.Name == s.cfg.Name && slices.Equal(m.ClientURLs, urls) {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.requestTimeout())
		_, err := s.propose(ctx, req)
		cancel()
		if err == nil {
			s.log.Info("published member attributes", "name", s.cfg.Name, "client-urls", urls)
			return
		}
		s.log.Debug("publishing member attributes failed; retrying", "err", err)
		select {
		case <-s.stopc:
			return
		case <-time.After(s.cfg.HeartbeatInterval * 5):
		}
	}
}
