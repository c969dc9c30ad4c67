package robustness

import (
	"flag"
	"fmt"
	"testing"
	"time"
)

var (
	flagRuns      = flag.Int("robustness.runs", 0, "randomized runs for TestRobustnessRandom (0: skip it)")
	flagDuration  = flag.Duration("robustness.duration", 20*time.Second, "traffic duration of each randomized run")
	flagSeed      = flag.Uint64("robustness.seed", 0, "seed of the first randomized run (0: from the clock)")
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
		{Name: "kill", Seed: 1, Duration: d, Faults: []string{FaultKillRandom, FaultKillLeader}},
		{Name: "pause", Seed: 2, Duration: d, Faults: []string{FaultPauseRandom, FaultPauseLeader}},
		{Name: "partition", Seed: 3, Duration: d, Faults: []string{FaultIsolateRandom, FaultIsolateLeader, FaultDeaf, FaultBlackhole, FaultDelay}},
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
	failed := 0
	for i := range *flagRuns {
		sc := Scenario{Name: "random", Seed: seed + uint64(i), Duration: *flagDuration, Faults: AllFaults}
		ok := t.Run(fmt.Sprintf("seed=%d", sc.Seed), func(t *testing.T) { Run(t, sc, *flagArtifacts) })
		if !ok {
			failed++
		}
	}
	t.Logf("randomized runs: %d, failed: %d, seeds %d..%d", *flagRuns, failed, seed, seed+uint64(*flagRuns)-1)
}

// TestPauseDirect is the pause scenario without the peer proxies, to tell
// the proxy's part from cairn's when a pause leaves a member without a
// leader.
func TestPauseDirect(t *testing.T) {
	if *flagRuns == 0 {
		t.Skip("diagnostic: runs with -robustness.runs")
	}
	for i := range *flagRuns {
		sc := Scenario{Name: "pause-direct", Seed: *flagSeed + uint64(i), Duration: *flagDuration,
			Faults: []string{FaultPauseRandom, FaultPauseLeader}, DirectPeers: true}
		t.Run(fmt.Sprintf("seed=%d", sc.Seed), func(t *testing.T) { Run(t, sc, *flagArtifacts) })
	}
}
