package transport

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// probeReply is the JSON body of the probe endpoint.
type probeReply struct {
	MemberID     string `json:"memberID"`  // hex
	ClusterID    string `json:"clusterID"` // hex
	TimeUnixNano int64  `json:"timeUnixNano"`
}

func (t *Transport) handleProbe(w http.ResponseWriter, r *http.Request) {
	if _, ok := t.checkRequest(w, r, true); !ok {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(probeReply{
		MemberID:     strconv.FormatUint(t.cfg.LocalID, 16),
		ClusterID:    strconv.FormatUint(t.cfg.ClusterID, 16),
		TimeUnixNano: t.cfg.Now().UnixNano(),
	})
}

// ProbeResult is what a probe learned about a peer.
type ProbeResult struct {
	MemberID    uint64
	RTT         time.Duration // round trip of the probe request
	ClockOffset time.Duration // peer clock minus ours, assuming a symmetric path
}

// Probe asks the member at url (a peer URL) for its ID and clock. It returns
// the round-trip time and the estimated offset of the peer's clock from ours
// (positive: the peer is ahead). A peer of another cluster refuses with a
// *RejectedError wrapping ErrClusterIDMismatch.
func (t *Transport) Probe(ctx context.Context, url string) (rtt, clockOffset time.Duration, err error) {
	r, err := t.ProbeMember(ctx, url)
	return r.RTT, r.ClockOffset, err
}

// ProbeMember is Probe that also returns the peer's member ID.
func (t *Transport) ProbeMember(ctx context.Context, url string) (ProbeResult, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+pathProbe, nil)
	if err != nil {
		return ProbeResult{}, fmt.Errorf("transport: probe %s: %w", url, err)
	}
	t.setHeaders(req.Header, 0)
	start := t.cfg.Now()
	resp, err := t.streamClient.Do(req)
	if err != nil {
		return ProbeResult{}, fmt.Errorf("transport: probe %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		id, _ := parseID(resp.Header, hdrMemberID, false)
		return ProbeResult{}, t.rejection(id, resp)
	}
	var rep probeReply
	err = json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&rep)
	end := t.cfg.Now()
	if err != nil {
		return ProbeResult{}, fmt.Errorf("%w: probe %s: bad reply: %v", ErrBadRequest, url, err)
	}
	id, err := strconv.ParseUint(rep.MemberID, 16, 64)
	if err != nil {
		return ProbeResult{}, fmt.Errorf("%w: probe %s: bad member ID %q", ErrBadRequest, url, rep.MemberID)
	}
	rtt := end.Sub(start)
	mid := start.Add(rtt / 2)
	return ProbeResult{MemberID: id, RTT: rtt, ClockOffset: time.Unix(0, rep.TimeUnixNano).Sub(mid)}, nil
}
