//go:build failpoints

package failpoint

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Enabled reports whether this binary was built with the failpoints tag.
const Enabled = true

// hits counts the hits of each point since the process started. It is the
// package's only mutable state and exists only in failpoints builds: a
// crash point is by nature process-wide.
var hits sync.Map // name → *hitCounter

type hitCounter struct {
	mu sync.Mutex
	n  int // guarded by mu
}

// Hit makes the process die if CAIRNFP names this point and this is the
// hit it asks for.
func Hit(name string) {
	spec, ok := Lookup(os.Getenv(Env), name)
	if !ok {
		return
	}
	c, _ := hits.LoadOrStore(name, &hitCounter{})
	hc := c.(*hitCounter)
	hc.mu.Lock()
	hc.n++
	n := hc.n
	hc.mu.Unlock()
	if n != spec.N {
		return
	}
	fmt.Fprintf(os.Stderr, "failpoint: %s hit: %s\n", name, spec.Action)
	if spec.Action == "panic" {
		panic("failpoint: " + name)
	}
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // SIGKILL cannot be caught; wait for it
}

// Spec is one parsed entry of CAIRNFP.
type Spec struct {
	Action string // "kill" or "panic"
	N      int    // fire on the N-th hit
}

// Lookup finds name in a CAIRNFP value.
func Lookup(env, name string) (Spec, bool) {
	for _, item := range strings.Split(env, ",") {
		item = strings.TrimSpace(item)
		sp := Spec{Action: "kill", N: 1}
		if i := strings.LastIndexByte(item, '@'); i >= 0 {
			n, err := strconv.Atoi(item[i+1:])
			if err != nil || n < 1 {
				continue
			}
			sp.N, item = n, item[:i]
		}
		if i := strings.IndexByte(item, '='); i >= 0 {
			sp.Action, item = item[i+1:], item[:i]
		}
		if item == name && (sp.Action == "kill" || sp.Action == "panic") {
			return sp, true
		}
	}
	return Spec{}, false
}
