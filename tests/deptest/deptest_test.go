// Package deptest enforces the import direction that DESIGN.md describes:
// imports flow downward (api → server → raftnode/apply → mvcc/wal), storage
// packages never reach up into the server, the APIs or the client side, and
// the client side (client, ctl, web, cmd/cairnctl) never links the server.
package deptest

import (
	"bufio"
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/cairn-kv/cairn"

// rule forbids every package under one of from to depend, directly or
// transitively, on a package under one of forbidden.
type rule struct {
	name      string
	from      []string
	forbidden []string
}

var (
	serverSide = []string{"server", "api", "raftnode", "apply", "transport", "cmd/cairn"}
	clientSide = []string{"client", "ctl", "web", "cmd/cairnctl"}
	storage    = []string{"vfs", "wal", "backend", "snap", "mvcc", "lease", "auth", "v2store", "membership"}
)

func rules() []rule {
	return []rule{
		{"storage never imports the server, the APIs or the client side",
			storage, append(append([]string{}, serverSide...), clientSide...)},
		{"the client side never links the server or its storage",
			clientSide, append(append([]string{}, serverSide...), storage...)},
		{"raftnode, apply and transport never import the server or the APIs",
			[]string{"raftnode", "apply", "transport"}, []string{"server", "api", "cmd"}},
		{"the server never imports the APIs or a binary",
			[]string{"server"}, []string{"api", "cmd"}},
	}
}

// under reports whether pkg (a full import path) is the package rel or below it.
func under(pkg, rel string) bool {
	p := module + "/" + rel
	return pkg == p || strings.HasPrefix(pkg, p+"/")
}

func TestImportDirection(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps=false", "-f",
		`{{.ImportPath}}{{range .Deps}} {{.}}{{end}}`, module+"/...").Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("go list: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	checked := 0
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		pkg, deps := fields[0], fields[1:]
		for _, r := range rules() {
			for _, from := range r.from {
				if !under(pkg, from) {
					continue
				}
				// cmd/cairn must not match cmd/cairnctl: under() needs an exact
				// path segment, which it has.
				checked++
				for _, dep := range deps {
					for _, bad := range r.forbidden {
						if under(dep, bad) && !under(pkg, bad) {
							t.Errorf("%s: %s depends on %s", r.name, pkg, dep)
						}
					}
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if checked == 0 {
		t.Fatal("no package matched any rule: the rule table or the module path is stale")
	}
}

func TestUnder(t *testing.T) {
	cases := []struct {
		pkg, rel string
		want     bool
	}{
		{module + "/cmd/cairn", "cmd/cairn", true},
		{module + "/cmd/cairnctl", "cmd/cairn", false},
		{module + "/server/config", "server", true},
		{module + "/serverless", "server", false},
		{"example.com/server", "server", false},
	}
	for _, c := range cases {
		if got := under(c.pkg, c.rel); got != c.want {
			t.Errorf("under(%q, %q) = %v, want %v", c.pkg, c.rel, got, c.want)
		}
	}
}
