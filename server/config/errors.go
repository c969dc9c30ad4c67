package config

import (
	"errors"
	"fmt"
	"strings"
)

var (
	// ErrHelp is returned by Parse after it printed the usage for --help.
	ErrHelp = errors.New("config: help requested")
	// ErrVersion is returned by Parse for --version; the caller prints the
	// version.
	ErrVersion = errors.New("config: version requested")
	// ErrInvalid is wrapped by every *Error: the configuration cannot be
	// used as given.
	ErrInvalid = errors.New("config: invalid configuration")
)

// Where a value came from, in Error.Source.
const (
	SourceFlag = "flag"
	SourceEnv  = "env"
	SourceFile = "file"
)

// Error is one problem with the configuration. It wraps ErrInvalid.
type Error struct {
	// Flag is the option's name without dashes ("heartbeat-interval"), or
	// "" for a problem not tied to one option (an unparsable file).
	Flag string
	// Source is SourceFlag, SourceEnv or SourceFile when a value could not
	// be read from that source, and "" for a problem found by Validate.
	Source string
	// Where names the value in its source: "flag --name",
	// "environment variable CAIRN_NAME", `config file "c.yaml" line 3 key "name"`.
	Where string
	// Msg says what is wrong and, where it can, how to fix it.
	Msg string
}

func (e *Error) Error() string {
	if e.Where == "" {
		return "config: " + e.Msg
	}
	return "config: " + e.Where + ": " + e.Msg
}

// Unwrap makes errors.Is(err, ErrInvalid) hold.
func (e *Error) Unwrap() error { return ErrInvalid }

// suggest returns ": did you mean X?" for the candidate X closest to s,
// or "" when none is close. Candidates carry prefix (like "--"), s does not;
// the prefix is left out of the comparison.
func suggest(s string, candidates []string, prefix string) string {
	best, bestDist := "", len(s)/3+2
	for _, c := range candidates {
		d := editDistance(strings.ToLower(s), strings.ToLower(strings.TrimPrefix(c, prefix)))
		if d < bestDist {
			best, bestDist = c, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(": did you mean %s?", best)
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
