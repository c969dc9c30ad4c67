package membership

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// Sentinel errors. Callers branch on them with errors.Is; the wrapped message
// names the member or URL concerned.
var (
	ErrIDRemoved          = errors.New("membership: member ID was removed and cannot be reused")
	ErrIDExists           = errors.New("membership: member ID already exists")
	ErrIDNotFound         = errors.New("membership: member ID not found")
	ErrIDZero             = errors.New("membership: member ID is zero")
	ErrPeerURLExists      = errors.New("membership: peer URL already used by another member")
	ErrNameExists         = errors.New("membership: member name already used by another member")
	ErrMemberNotLearner   = errors.New("membership: member is not a learner")
	ErrTooManyLearners    = errors.New("membership: too many learner members")
	ErrLastVoter          = errors.New("membership: cannot remove the last voting member")
	ErrBadURL             = errors.New("membership: invalid URL")
	ErrNoPeerURLs         = errors.New("membership: member has no peer URLs")
	ErrBadInitialCluster  = errors.New("membership: invalid initial cluster")
	ErrBadChange          = errors.New("membership: invalid change")
	ErrCorruptClusterData = errors.New("membership: corrupt cluster data")
)

// MaxLearners is how many learners a cluster may hold at once (as in etcd).
const MaxLearners = 1

// Member is one member of the cluster. Name and ClientURLs are empty until the
// member has started and published itself.
type Member struct {
	ID         uint64   `json:"id"`
	Name       string   `json:"name,omitempty"`
	PeerURLs   []string `json:"peerURLs"`
	ClientURLs []string `json:"clientURLs,omitempty"`
	IsLearner  bool     `json:"isLearner,omitempty"`
}

// clone returns a deep copy of m.
func (m Member) clone() Member {
	m.PeerURLs = slices.Clone(m.PeerURLs)
	m.ClientURLs = slices.Clone(m.ClientURLs)
	return m
}

// NamedURLs is one member of an initial cluster: its name and peer URLs.
type NamedURLs struct {
	Name string
	URLs []string
}

// ParseInitialCluster parses "name1=http://a:2380,name1=http://b:2380,name2=http://c:2380".
// A name may appear several times, once per URL. Names are returned in order
// of first appearance, each with its URLs in order of appearance. A URL may be
// used only once in the whole string.
func ParseInitialCluster(s string) ([]NamedURLs, error) {
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("%w: empty", ErrBadInitialCluster)
	}
	var out []NamedURLs
	index := map[string]int{}   // name -> position in out
	seen := map[string]string{} // url -> name
	for i, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		name, u, ok := strings.Cut(item, "=")
		name, u = strings.TrimSpace(name), strings.TrimSpace(u)
		switch {
		case !ok:
			return nil, fmt.Errorf("%w: entry %d %q: want name=URL", ErrBadInitialCluster, i+1, item)
		case name == "":
			return nil, fmt.Errorf("%w: entry %d %q: empty name", ErrBadInitialCluster, i+1, item)
		}
		if err := ValidateURL(u); err != nil {
			return nil, fmt.Errorf("%w: entry %d %q: %w", ErrBadInitialCluster, i+1, item, err)
		}
		if other, dup := seen[u]; dup {
			return nil, fmt.Errorf("%w: entry %d: URL %q already given for %q: %w",
				ErrBadInitialCluster, i+1, u, other, ErrPeerURLExists)
		}
		seen[u] = name
		j, ok := index[name]
		if !ok {
			j = len(out)
			index[name] = j
			out = append(out, NamedURLs{Name: name})
		}
		out[j].URLs = append(out[j].URLs, u)
	}
	return out, nil
}

// ValidateURL checks that s is an absolute http or https URL of the form
// scheme://host:port, with no user info, path, query or fragment.
func ValidateURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%w %q: %v", ErrBadURL, s, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%w %q: scheme must be http or https", ErrBadURL, s)
	}
	if u.User != nil || u.Opaque != "" || u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		return fmt.Errorf("%w %q: want scheme://host:port only", ErrBadURL, s)
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil || host == "" {
		return fmt.Errorf("%w %q: want host:port", ErrBadURL, s)
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return fmt.Errorf("%w %q: bad port", ErrBadURL, s)
	}
	return nil
}

// validateURLs checks every URL of a list and that none repeats.
func validateURLs(urls []string) error {
	for i, u := range urls {
		if err := ValidateURL(u); err != nil {
			return err
		}
		if slices.Contains(urls[:i], u) {
			return fmt.Errorf("%w %q: listed twice", ErrBadURL, u)
		}
	}
	return nil
}

// MemberID is the ID of a member of the initial cluster: a hash of its sorted
// peer URLs and the cluster token. Never zero.
func MemberID(token string, peerURLs []string) uint64 {
	return memberID(token, peerURLs, nil)
}

// RuntimeMemberID is the ID of a member added at runtime: like MemberID but
// also mixed with unique, a value the proposer picks (for example its clock
// in nanoseconds), so that re-adding the same URLs after a removal yields a
// new ID. Never zero.
func RuntimeMemberID(token string, peerURLs []string, unique uint64) uint64 {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], unique)
	return memberID(token, peerURLs, b[:])
}

func memberID(token string, peerURLs []string, unique []byte) uint64 {
	urls := slices.Clone(peerURLs)
	slices.Sort(urls)
	urls = slices.Compact(urls)
	h := sha256.New()
	h.Write([]byte("cairn member id v1"))
	writeField(h, []byte(token))
	for _, u := range urls {
		writeField(h, []byte(u))
	}
	if unique != nil {
		writeField(h, unique)
	}
	return nonZero(h.Sum(nil))
}

// ClusterID derives the cluster ID from the token and the IDs of the initial
// members (in any order). Never zero.
func ClusterID(token string, memberIDs []uint64) uint64 {
	ids := slices.Clone(memberIDs)
	slices.Sort(ids)
	h := sha256.New()
	h.Write([]byte("cairn cluster id v1"))
	writeField(h, []byte(token))
	var b [8]byte
	for _, id := range ids {
		binary.BigEndian.PutUint64(b[:], id)
		h.Write(b[:])
	}
	return nonZero(h.Sum(nil))
}

// writeField writes a length-prefixed field so that field boundaries cannot
// be shifted to produce the same hash from different inputs.
func writeField(h hash.Hash, b []byte) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(b)))
	h.Write(n[:])
	h.Write(b)
}

// nonZero returns the first eight bytes of sum as a big-endian integer,
// re-hashing in the (astronomically unlikely) case that they are all zero.
func nonZero(sum []byte) uint64 {
	for {
		if v := binary.BigEndian.Uint64(sum[:8]); v != 0 {
			return v
		}
		s := sha256.Sum256(sum)
		sum = s[:]
	}
}
