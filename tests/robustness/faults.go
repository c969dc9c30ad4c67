package robustness

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/tests/framework"
)

// Fault names, usable in Scenario.Faults.
const (
	FaultKillRandom     = "kill-random"     // kill -9 a random member, restart it
	FaultKillLeader     = "kill-leader"     // kill -9 the leader, restart it
	FaultPauseRandom    = "pause-random"    // SIGSTOP a random member past the election timeout, SIGCONT
	FaultPauseLeader    = "pause-leader"    // the same for the leader
	FaultIsolateRandom  = "isolate-random"  // cut a random member from the others both ways
	FaultIsolateLeader  = "isolate-leader"  // the same for the leader
	FaultDeaf           = "deaf"            // drop every connection to a member (one direction)
	FaultBlackhole      = "blackhole"       // keep connections to a member open, discard their bytes
	FaultDelay          = "delay"           // delay all peer traffic
	FaultLeaderTransfer = "leader-transfer" // MoveLeader to a random follower
	FaultReplaceMember  = "replace-member"  // remove a follower, add a fresh member in its place
)

// AllFaults is every fault the harness injects.
var AllFaults = []string{
	FaultKillRandom, FaultKillLeader, FaultPauseRandom, FaultPauseLeader,
	FaultIsolateRandom, FaultIsolateLeader, FaultDeaf, FaultBlackhole, FaultDelay,
	FaultLeaderTransfer, FaultReplaceMember,
}

// injector injects faults into a running cluster from the test goroutine.
type injector struct {
	t       *testing.T
	c       *framework.Cluster
	rng     *rand.Rand
	log     func(format string, args ...any)
	nextIdx int // suffix of the next replacement member's name
}

func (f *injector) ids() map[*framework.Member]string {
	cli := f.c.Client()
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cli.MemberList(ctx)
	out := map[*framework.Member]string{}
	if err != nil {
		f.t.Fatalf("member list: %v", err)
	}
	for _, mm := range resp.Members {
		for _, m := range f.c.Members {
			if mm.Name == m.Name {
				out[m] = strconv.FormatUint(mm.ID, 16)
			}
		}
	}
	return out
}

func (f *injector) random() *framework.Member {
	var running []*framework.Member
	for _, m := range f.c.Members {
		if m.Running() {
			running = append(running, m)
		}
	}
	return running[f.rng.IntN(len(running))]
}

// hold is how long a fault lasts: past the 500 ms election timeout.
func (f *injector) hold() time.Duration {
	return 700*time.Millisecond + time.Duration(f.rng.IntN(1500))*time.Millisecond
}

// inject applies fault, keeps it for a while and undoes it.
func (f *injector) inject(fault string) {
	var target *framework.Member
	switch fault {
	case FaultKillLeader, FaultPauseLeader, FaultIsolateLeader, FaultLeaderTransfer:
		target = f.c.Leader()
	default:
		target = f.random()
	}
	f.log("fault %s on %s", fault, target.Name)
	switch fault {
	case FaultKillRandom, FaultKillLeader:
		f.c.Kill(target)
		time.Sleep(f.hold()) // the outage itself
		f.c.StartMember(target, "new")
	case FaultPauseRandom, FaultPauseLeader:
		f.c.Pause(target)
		time.Sleep(f.hold())
		f.c.Resume(target)
	case FaultIsolateRandom, FaultIsolateLeader:
		ids := f.ids()
		for _, m := range f.c.Members {
			if m == target {
				m.Proxy.Set(framework.ProxyRules{DropAll: true})
			} else if m.Proxy != nil {
				m.Proxy.Set(framework.ProxyRules{DropFrom: map[string]bool{ids[target]: true}})
			}
		}
		time.Sleep(f.hold())
		if fault == FaultIsolateLeader {
			f.expectNewLeader(target, ids[target])
		}
	case FaultDeaf:
		target.Proxy.Set(framework.ProxyRules{DropAll: true})
		time.Sleep(f.hold())
	case FaultBlackhole:
		target.Proxy.Set(framework.ProxyRules{BlackholeIn: true})
		time.Sleep(f.hold())
	case FaultDelay:
		d := time.Duration(20+f.rng.IntN(130)) * time.Millisecond
		for _, m := range f.c.Members {
			if m.Proxy != nil {
				m.Proxy.Set(framework.ProxyRules{Delay: d})
			}
		}
		time.Sleep(f.hold())
	case FaultLeaderTransfer:
		f.transfer(target)
	case FaultReplaceMember:
		f.replace()
	default:
		f.t.Fatalf("unknown fault %q", fault)
	}
	for _, m := range f.c.Members {
		if m.Proxy != nil {
			m.Proxy.Heal()
		}
	}
	f.waitHealthy()
}

// waitHealthy waits until every running member is healthy; if one is not
// within 30 s, every member gets SIGQUIT, so the logs (kept with the
// artifacts) hold both sides' goroutine stacks, and the test fails.
func (f *injector) waitHealthy() {
	deadline := time.Now().Add(30 * time.Second)
	for {
		var sick []*framework.Member
		for _, m := range f.c.Members {
			if m.Running() && !framework.Healthy(m.ClientURL) {
				sick = append(sick, m)
			}
		}
		if len(sick) == 0 {
			return
		}
		if time.Now().After(deadline) {
			f.logPeerCounters()
			f.c.QuitAll()
			f.t.Fatalf("%s not healthy within 30s (goroutine stacks in the logs)", sick[0].Name)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// logPeerCounters logs every running member's leader and per-peer message
// counters (from /metrics), the evidence of where raft messages stop.
func (f *injector) logPeerCounters() {
	cl := &http.Client{Timeout: 2 * time.Second}
	for _, m := range f.c.Members {
		if !m.Running() {
			continue
		}
		resp, err := cl.Get(m.ClientURL + "/metrics")
		if err != nil {
			f.log("%s: /metrics: %v", m.Name, err)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var lines []string
		for _, l := range strings.Split(string(body), "\n") {
			if strings.HasPrefix(l, "cairn_network_peer_") || strings.HasPrefix(l, "etcd_server_has_leader") {
				lines = append(lines, l)
			}
		}
		f.log("%s peer counters:\n%s", m.Name, strings.Join(lines, "\n"))
	}
}

func (f *injector) transfer(leader *framework.Member) {
	ids := f.ids()
	var others []*framework.Member
	for _, m := range f.c.Members {
		if m != leader && m.Running() {
			others = append(others, m)
		}
	}
	to := others[f.rng.IntN(len(others))]
	id, _ := strconv.ParseUint(ids[to], 16, 64)
	cli := f.c.Client(leader.ClientURL)
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := cli.MoveLeader(ctx, id); err != nil {
		f.log("move leader to %s: %v", to.Name, err)
	}
}

// replace removes a follower (its process exits on removal) and adds a new
// member with a fresh data directory on the same IP.
func (f *injector) replace() {
	leader := f.c.Leader()
	var followers []*framework.Member
	for _, m := range f.c.Members {
		if m != leader && m.Running() {
			followers = append(followers, m)
		}
	}
	victim := followers[f.rng.IntN(len(followers))]
	ids := f.ids()
	id, _ := strconv.ParseUint(ids[victim], 16, 64)
	cli := f.c.Client(leader.ClientURL)
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.MemberRemove(ctx, id); err != nil {
		f.t.Fatalf("remove %s: %v", victim.Name, err)
	}
	f.c.WaitExit(victim, 20*time.Second)
	f.c.RemoveStopped(victim)
	f.nextIdx++
	m := f.c.NewJoiningMember(fmt.Sprintf("r%d", f.nextIdx), victim.IP)
	framework.AddPeerProxy(f.t, m)
	if _, err := cli.MemberAdd(ctx, []string{m.PeerURL}); err != nil {
		f.t.Fatalf("add %s: %v", m.Name, err)
	}
	f.c.StartMember(m, "existing")
	f.log("replaced %s (%s) with %s", victim.Name, ids[victim], m.Name)
}

// expectNewLeader checks that the partition is real: the members other than
// the isolated leader elect another leader within 10 s.
func (f *injector) expectNewLeader(old *framework.Member, oldID string) {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, m := range f.c.Members {
			if m == old || !m.Running() {
				continue
			}
			cli := f.c.Client(m.ClientURL)
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			st, err := cli.Status(ctx, m.ClientURL)
			cancel()
			cli.Close()
			if err == nil && st.Leader != 0 && strconv.FormatUint(st.Leader, 16) != oldID {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	f.t.Errorf("isolating leader %s did not make the others elect another leader within 10s", old.Name)
}
