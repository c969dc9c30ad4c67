package robustness

import (
	"flag"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

var (
	flagRuns      = flag.Int("robustness.runs", 0, "randomized runs for TestRobustnessRandom (0: skip it)")
	flagDuration  = flag.Duration("robustness.duration", 20*time.Second, "traffic duration of each randomized run")
	flagSeed      = flag.Uint64("robustness.seed", 0, "seed of the first randomized run (0: from the clock)")
	flagExclude   = flag.String("robustness.exclude", "", "comma-separated fault kinds the randomized runs leave out")
	flagArtifacts = flag.String("robustness.artifacts", "", "directory for failing runs' artifacts (default $TMPDIR/cairn-robustness)")
)

// TestRobustness is the short mode: a few fixed scenarios covering every
// fault kind.
func TestRobustness(t *testing.T) {
	d := 12 * time.Second
	if testing.Short() {
		d = 8 * time.Second
	}
	for _, sc := range []Scenario{
		{Name: "kill", Seed: 1, Duration: d, Faults: []string{FaultKillRandom, FaultKillLeader}, SmallCache: true},
		{Name: "pause", Seed: 2, Duration: d, Faults: []string{FaultPauseRandom, FaultPauseLeader}},
		{Name: "partition", Seed: 3, Duration: d, Faults: []string{FaultIsolateRandom, FaultIsolateLeader, FaultDeaf, FaultBlackhole, FaultDelay}, SmallCache: true},
		{Name: "membership", Seed: 4, Duration: d, Faults: []string{FaultLeaderTransfer, FaultReplaceMember}},
	} {
		t.Run(sc.Name, func(t *testing.T) { Run(t, sc, *flagArtifacts) })
	}
}

// TestRobustnessRandom runs -robustness.runs scenarios with every fault
// kind, seeds counting up from -robustness.seed.
func TestRobustnessRandom(t *testing.T) {
	if *flagRuns == 0 {
		t.Skip("no -robustness.runs")
	}
	seed := *flagSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano()) % 1_000_000_000
	}
	var faults []string
	for _, f := range AllFaults {
		if !slices.Contains(strings.Split(*flagExclude, ","), f) {
			faults = append(faults, f)
		}
	}
	failed := 0
	for i := range *flagRuns {
		// Odd seeds run with the small cache.
		sc := Scenario{Name: "random", Seed: seed + uint64(i), Duration: *flagDuration, Faults: faults, SmallCache: (seed+uint64(i))%2 == 1}
		ok := t.Run(fmt.Sprintf("seed=%d", sc.Seed), func(t *testing.T) { Run(t, sc, *flagArtifacts) })
		if !ok {
			failed++
		}
	}
	t.Logf("randomized runs: %d, failed: %d, seeds %d..%d", *flagRuns, failed, seed, seed+uint64(*flagRuns)-1)
}

// TestRegressionBug1PausedMember is bug 1: after SIGSTOP/SIGCONT a member
// (often the old leader) heard nothing from the new leader and stayed
// without a leader: its stream handler blocked handing raft a proposal that
// a follower had forwarded before the pause. No proxies involved. Before the
// fix it failed about one run in three (seeds 2, 3 and 4 each failed at
// least once).
func TestRegressionBug1PausedMember(t *testing.T) {
	for i := range 4 {
		sc := Scenario{Name: "bug1", Seed: 2 + uint64(i), Duration: 12 * time.Second,
			Faults: []string{FaultPauseRandom, FaultPauseLeader}, DirectPeers: true}
		t.Run(fmt.Sprintf("seed=%d", sc.Seed), func(t *testing.T) { Run(t, sc, *flagArtifacts) })
	}
}
