package robustness

import (
	"strings"
	"testing"

	"github.com/anishathalye/porcupine"
)

func op(client int, call, ret int64, in Input, out Output) porcupine.Operation {
	return porcupine.Operation{ClientId: client, Call: call, Return: ret, Input: in, Output: out}
}

var (
	putA = Input{Kind: OpPut, Key: "k", Value: "a"}
	putB = Input{Kind: OpPut, Key: "k", Value: "b"}
	getK = Input{Kind: OpGet, Key: "k"}
)

func TestModelLinearizable(t *testing.T) {
	for _, tc := range []struct {
		name string
		ops  []porcupine.Operation
		want porcupine.CheckResult
	}{
		{"read your write", []porcupine.Operation{
			op(0, 0, 1, putA, Output{Rev: 2}),
			op(1, 2, 3, getK, Output{Exists: true, Value: "a", Version: 1, ModRev: 2}),
		}, porcupine.Ok},
		{"stale read after acknowledged put", []porcupine.Operation{
			op(0, 0, 1, putA, Output{Rev: 2}),
			op(0, 2, 3, putB, Output{Rev: 3}),
			op(1, 4, 5, getK, Output{Exists: true, Value: "a", Version: 1, ModRev: 2}),
		}, porcupine.Illegal},
		{"unknown put seen later", []porcupine.Operation{
			op(0, 0, 100, putA, Output{Unknown: true}),
			op(1, 2, 3, getK, Output{Exists: true, Value: "a", Version: 1, ModRev: 7}),
			op(1, 4, 5, getK, Output{Exists: true, Value: "a", Version: 1, ModRev: 7}),
		}, porcupine.Ok},
		{"mod revision changes without a write", []porcupine.Operation{
			op(0, 0, 100, putA, Output{Unknown: true}),
			op(1, 2, 3, getK, Output{Exists: true, Value: "a", Version: 1, ModRev: 7}),
			op(1, 4, 5, getK, Output{Exists: true, Value: "a", Version: 1, ModRev: 8}),
		}, porcupine.Illegal},
		{"txn succeeds although its compare is false", []porcupine.Operation{
			op(0, 0, 1, putA, Output{Rev: 2}),
			op(0, 2, 3, Input{Kind: OpTxn, Key: "k", Value: "c", Cmp: CmpValue, CmpValue: "z"}, Output{Rev: 3, Succeeded: true}),
		}, porcupine.Illegal},
		{"txn on mod revision, else branch reads", []porcupine.Operation{
			op(0, 0, 1, putA, Output{Rev: 2}),
			op(0, 2, 3, Input{Kind: OpTxn, Key: "k", Value: "c", Cmp: CmpModRev, CmpNum: 5}, Output{Rev: 2, Exists: true, Value: "a", Version: 1, ModRev: 2}),
			op(0, 4, 5, Input{Kind: OpTxn, Key: "k", Value: "d", Cmp: CmpModRev, CmpNum: 2}, Output{Rev: 3, Succeeded: true}),
			op(1, 6, 7, getK, Output{Exists: true, Value: "d", Version: 2, ModRev: 3}),
		}, porcupine.Ok},
		{"delete reports a key that is absent", []porcupine.Operation{
			op(0, 0, 1, Input{Kind: OpDelete, Key: "k"}, Output{Rev: 2, Deleted: 1}),
		}, porcupine.Illegal},
		{"write revision goes backwards", []porcupine.Operation{
			op(0, 0, 1, putA, Output{Rev: 5}),
			op(0, 2, 3, putB, Output{Rev: 4}),
		}, porcupine.Illegal},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := porcupine.CheckOperationsTimeout(KVModel(), tc.ops, 0); got != tc.want {
				t.Fatalf("check = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestCheckWatch(t *testing.T) {
	h := newHistory()
	h.tried("k1", "a")
	h.tried("k2", "b")
	h.add(0, Input{Kind: OpPut, Key: "k1", Value: "a"}, 0, Output{Rev: 2})
	h.add(0, Input{Kind: OpPut, Key: "k2", Value: "b"}, 0, Output{Rev: 3})
	h.tried("k1", "c")
	h.add(0, Input{Kind: OpPut, Key: "k1", Value: "c"}, 0, Output{Rev: 4})
	good := []WatchEvent{{Rev: 2, Key: "k1", Value: "a"}, {Rev: 3, Key: "k2", Value: "b"}, {Rev: 4, Key: "k1", Value: "c", PrevRev: 2, PrevValue: "a"}}
	if bad := checkWatch(good, h, 4); len(bad) != 0 {
		t.Fatalf("good stream: %v", bad)
	}
	for name, tc := range map[string]struct {
		events []WatchEvent
		want   string
	}{
		"gap":            {[]WatchEvent{good[0], {Rev: 4, Key: "k2", Value: "b"}}, "gap"},
		"duplicate":      {[]WatchEvent{good[0], good[0], good[1], good[2]}, "not strictly increasing"},
		"missing ack":    {[]WatchEvent{good[0], good[2]}, "acknowledged put of k2"},
		"phantom":        {[]WatchEvent{good[0], {Rev: 3, Key: "k2", Value: "zz"}, good[2]}, "never written"},
		"previous value": {[]WatchEvent{good[0], good[1], {Rev: 4, Key: "k1", Value: "c", PrevRev: 2}}, "previous version 2"},
		"no previous":    {[]WatchEvent{good[0], good[1], {Rev: 4, Key: "k1", Value: "c"}}, "previous version 0"},
		"phantom prev":   {[]WatchEvent{good[0], {Rev: 3, Key: "k2", Value: "b", PrevRev: 2, PrevValue: "a"}, good[2]}, "previous version 2"},
	} {
		bad := checkWatch(tc.events, h, 4)
		if !strings.Contains(strings.Join(bad, "\n"), tc.want) {
			t.Errorf("%s: problems %v, want one containing %q", name, bad, tc.want)
		}
	}
}
