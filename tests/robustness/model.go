package robustness

import (
	"fmt"
	"sort"

	"github.com/anishathalye/porcupine"
)

// OpKind is the kind of a recorded KV operation.
type OpKind string

// The operations the traffic issues. Every one touches a single key, so the
// history partitions by key.
const (
	OpPut    OpKind = "put"
	OpGet    OpKind = "get"
	OpDelete OpKind = "delete"
	OpTxn    OpKind = "txn" // if Cmp(key) then put(key, Value) else get(key)
)

// CmpKind is what a txn compares on its key.
type CmpKind string

// Compare targets (always "=").
const (
	CmpValue   CmpKind = "value"
	CmpVersion CmpKind = "version"
	CmpModRev  CmpKind = "mod"
)

// Input is one operation's request.
type Input struct {
	Kind     OpKind
	Key      string
	Value    string // put, txn then-branch
	Cmp      CmpKind
	CmpValue string
	CmpNum   int64
}

// Output is one operation's response. Unknown means the client got an error
// on a write, so it may or may not have been applied.
type Output struct {
	Unknown   bool
	Rev       int64 // header revision
	Exists    bool  // get, txn else-branch
	Value     string
	Version   int64
	ModRev    int64
	Deleted   int64
	Succeeded bool
}

// keyState is the model's state of one key. ModRev 0 means the key's
// modification revision is not known yet (the write that made it was
// unacknowledged); a read teaches it.
type keyState struct {
	Exists  bool
	Value   string
	Version int64
	ModRev  int64
}

// cmpResult: 1 true, 0 false, -1 cannot tell (mod revision unknown).
func (s keyState) cmpResult(in Input) int {
	b := func(v bool) int {
		if v {
			return 1
		}
		return 0
	}
	switch in.Cmp {
	case CmpValue:
		return b(s.Exists && s.Value == in.CmpValue)
	case CmpVersion:
		return b(s.Version == in.CmpNum)
	default:
		if !s.Exists {
			return b(in.CmpNum == 0)
		}
		if s.ModRev == 0 {
			return -1
		}
		return b(s.ModRev == in.CmpNum)
	}
}

func (s keyState) put(v string, rev int64) keyState {
	return keyState{Exists: true, Value: v, Version: s.Version + 1, ModRev: rev}
}

// read checks an observed key against s and returns s with ModRev learned.
func (s keyState) read(out Output) (bool, keyState) {
	if out.Exists != s.Exists {
		return false, s
	}
	if !s.Exists {
		return true, s
	}
	if out.Value != s.Value || out.Version != s.Version || (s.ModRev != 0 && out.ModRev != s.ModRev) {
		return false, s
	}
	s.ModRev = out.ModRev
	return true, s
}

// newer reports whether a write acknowledged at rev may follow s.
func (s keyState) newer(rev int64) bool { return s.ModRev == 0 || rev > s.ModRev }

func step(s keyState, in Input, out Output) []keyState {
	switch in.Kind {
	case OpGet:
		if ok, n := s.read(out); ok {
			return []keyState{n}
		}
	case OpPut:
		if out.Unknown {
			return []keyState{s.put(in.Value, 0)}
		}
		if s.newer(out.Rev) {
			return []keyState{s.put(in.Value, out.Rev)}
		}
	case OpDelete:
		if out.Unknown {
			return []keyState{{}}
		}
		if (out.Deleted == 1) == s.Exists && (out.Deleted == 0 || s.newer(out.Rev)) {
			return []keyState{{}}
		}
	case OpTxn:
		return stepTxn(s, in, out)
	}
	return nil
}

func stepTxn(s keyState, in Input, out Output) []keyState {
	c := s.cmpResult(in)
	if out.Unknown {
		switch c {
		case 1:
			return []keyState{s.put(in.Value, 0)}
		case 0:
			return []keyState{s}
		}
		return []keyState{s, s.put(in.Value, 0)}
	}
	if out.Succeeded {
		if c == 0 || !s.newer(out.Rev) {
			return nil
		}
		if c == -1 {
			s.ModRev = in.CmpNum
		}
		return []keyState{s.put(in.Value, out.Rev)}
	}
	if c == 1 {
		return nil
	}
	if ok, n := s.read(out); ok {
		return []keyState{n}
	}
	return nil
}

// KVModel is the porcupine model of one key, partitioned by key.
func KVModel() porcupine.Model {
	nm := porcupine.NondeterministicModel{
		Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
			byKey := map[string][]porcupine.Operation{}
			var keys []string
			for _, op := range h {
				k := op.Input.(Input).Key
				if _, ok := byKey[k]; !ok {
					keys = append(keys, k)
				}
				byKey[k] = append(byKey[k], op)
			}
			sort.Strings(keys)
			var out [][]porcupine.Operation
			for _, k := range keys {
				out = append(out, byKey[k])
			}
			return out
		},
		Init: func() []interface{} { return []interface{}{keyState{}} },
		Step: func(st, in, out interface{}) []interface{} {
			var res []interface{}
			for _, n := range step(st.(keyState), in.(Input), out.(Output)) {
				res = append(res, n)
			}
			return res
		},
		Equal:             func(a, b interface{}) bool { return a.(keyState) == b.(keyState) },
		DescribeOperation: describeOp,
		DescribeState: func(st interface{}) string {
			s := st.(keyState)
			if !s.Exists {
				return "absent"
			}
			return fmt.Sprintf("%q ver=%d mod=%d", s.Value, s.Version, s.ModRev)
		},
	}
	return nm.ToModel()
}

func describeOp(in, out interface{}) string {
	i, o := in.(Input), out.(Output)
	var req string
	switch i.Kind {
	case OpPut:
		req = fmt.Sprintf("put(%s,%s)", i.Key, i.Value)
	case OpGet:
		req = fmt.Sprintf("get(%s)", i.Key)
	case OpDelete:
		req = fmt.Sprintf("delete(%s)", i.Key)
	default:
		req = fmt.Sprintf("txn(%s %s=%q/%d ? put %s)", i.Key, i.Cmp, i.CmpValue, i.CmpNum, i.Value)
	}
	if o.Unknown {
		return req + " -> ?"
	}
	return fmt.Sprintf("%s -> rev=%d ok=%v exists=%v %q ver=%d mod=%d del=%d", req, o.Rev, o.Succeeded, o.Exists, o.Value, o.Version, o.ModRev, o.Deleted)
}
