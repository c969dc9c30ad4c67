package robustness

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// History is what the traffic recorded. mu guards every field but start.
type History struct {
	start time.Time

	mu          sync.Mutex
	ops         []porcupine.Operation
	written     map[string]map[string]bool // key -> every value a put or txn tried to write
	serializabe []serialRead
	anomalies   []string // found outside porcupine (lease, serializable reads)
}

type serialRead struct {
	Key    string
	Exists bool
	Value  string
}

// unknownReturn marks an operation whose outcome is unknown; finish turns it
// into a time after every other operation.
const unknownReturn = -1

func newHistory() *History {
	return &History{start: time.Now(), written: map[string]map[string]bool{}}
}

func (h *History) now() int64 { return int64(time.Since(h.start)) }

func (h *History) add(client int, in Input, call int64, out Output) {
	ret := h.now()
	if out.Unknown {
		ret = unknownReturn
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ops = append(h.ops, porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret})
}

func (h *History) tried(key, value string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.written[key] == nil {
		h.written[key] = map[string]bool{}
	}
	h.written[key][value] = true
}

func (h *History) anomaly(format string, args ...any) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.anomalies = append(h.anomalies, fmt.Sprintf(format, args...))
}

// finish returns the operations with unknown returns moved past the end.
func (h *History) finish() []porcupine.Operation {
	h.mu.Lock()
	defer h.mu.Unlock()
	end := h.now() + 1
	out := make([]porcupine.Operation, len(h.ops))
	copy(out, h.ops)
	for i := range out {
		if out[i].Return == unknownReturn {
			out[i].Return = end
		}
	}
	return out
}

// Keys is the KV traffic's keyspace.
var Keys = func() []string {
	var ks []string
	for i := range 10 {
		ks = append(ks, fmt.Sprintf("k%d", i))
	}
	return ks
}()

const opTimeout = 2 * time.Second

// worker issues random single-key operations on cli until ctx ends, about
// one per interval.
type worker struct {
	id   int
	cli  *clientv3.Client
	rng  *rand.Rand
	h    *History
	seq  int
	seen map[string]Output // last state this worker observed per key
}

func (w *worker) run(ctx context.Context, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		w.one(ctx)
	}
}

func (w *worker) one(ctx context.Context) {
	key := Keys[w.rng.IntN(len(Keys))]
	switch p := w.rng.IntN(100); {
	case p < 30:
		w.get(ctx, key)
	case p < 40:
		w.serializableGet(ctx, key)
	case p < 65:
		w.put(ctx, key)
	case p < 75:
		w.del(ctx, key)
	default:
		w.txn(ctx, key)
	}
}

func (w *worker) value() string {
	w.seq++
	return fmt.Sprintf("w%d-%d", w.id, w.seq)
}

func kvOutput(resp *clientv3.GetResponse) Output {
	out := Output{Rev: resp.Header.Revision}
	if len(resp.Kvs) == 1 {
		kv := resp.Kvs[0]
		out.Exists, out.Value, out.Version, out.ModRev = true, string(kv.Value), kv.Version, kv.ModRevision
	}
	return out
}

func (w *worker) get(ctx context.Context, key string) {
	in := Input{Kind: OpGet, Key: key}
	call := w.h.now()
	c, cancel := context.WithTimeout(ctx, opTimeout)
	resp, err := w.cli.Get(c, key)
	cancel()
	if err != nil {
		return // a failed read changes nothing
	}
	out := kvOutput(resp)
	w.seen[key] = out
	w.h.add(w.id, in, call, out)
}

// serializableGet may be stale, so it stays out of the linearizability
// check; it must return a value that some put tried to write.
func (w *worker) serializableGet(ctx context.Context, key string) {
	c, cancel := context.WithTimeout(ctx, opTimeout)
	resp, err := w.cli.Get(c, key, clientv3.WithSerializable())
	cancel()
	if err != nil {
		return
	}
	out := kvOutput(resp)
	w.h.mu.Lock()
	w.h.serializabe = append(w.h.serializabe, serialRead{Key: key, Exists: out.Exists, Value: out.Value})
	w.h.mu.Unlock()
}

func (w *worker) put(ctx context.Context, key string) {
	in := Input{Kind: OpPut, Key: key, Value: w.value()}
	w.h.tried(key, in.Value)
	call := w.h.now()
	c, cancel := context.WithTimeout(ctx, opTimeout)
	resp, err := w.cli.Put(c, key, in.Value)
	cancel()
	if err != nil {
		w.h.add(w.id, in, call, Output{Unknown: true})
		return
	}
	w.h.add(w.id, in, call, Output{Rev: resp.Header.Revision})
}

func (w *worker) del(ctx context.Context, key string) {
	in := Input{Kind: OpDelete, Key: key}
	call := w.h.now()
	c, cancel := context.WithTimeout(ctx, opTimeout)
	resp, err := w.cli.Delete(c, key)
	cancel()
	if err != nil {
		w.h.add(w.id, in, call, Output{Unknown: true})
		return
	}
	w.h.add(w.id, in, call, Output{Rev: resp.Header.Revision, Deleted: resp.Deleted})
}

func (w *worker) txn(ctx context.Context, key string) {
	in := Input{Kind: OpTxn, Key: key, Value: w.value()}
	seen := w.seen[key]
	var cmp clientv3.Cmp
	switch w.rng.IntN(3) {
	case 0:
		in.Cmp, in.CmpValue = CmpValue, seen.Value
		cmp = clientv3.Compare(clientv3.Value(key), "=", seen.Value)
	case 1:
		in.Cmp, in.CmpNum = CmpVersion, seen.Version
		cmp = clientv3.Compare(clientv3.Version(key), "=", seen.Version)
	default:
		in.Cmp, in.CmpNum = CmpModRev, seen.ModRev
		cmp = clientv3.Compare(clientv3.ModRevision(key), "=", seen.ModRev)
	}
	w.h.tried(key, in.Value)
	call := w.h.now()
	c, cancel := context.WithTimeout(ctx, opTimeout)
	resp, err := w.cli.Txn(c).If(cmp).Then(clientv3.OpPut(key, in.Value)).Else(clientv3.OpGet(key)).Commit()
	cancel()
	if err != nil {
		w.h.add(w.id, in, call, Output{Unknown: true})
		return
	}
	out := Output{Rev: resp.Header.Revision, Succeeded: resp.Succeeded}
	if !resp.Succeeded && len(resp.Responses) == 1 {
		if rr := resp.Responses[0].GetResponseRange(); rr != nil && len(rr.Kvs) == 1 {
			kv := rr.Kvs[0]
			out.Exists, out.Value, out.Version, out.ModRev = true, string(kv.Value), kv.Version, kv.ModRevision
		}
		w.seen[key] = out
	}
	w.h.add(w.id, in, call, out)
}

// leaseLoop grants a lease, attaches a key, keeps it alive once and revokes
// it; after an acknowledged revoke a linearizable read must not see the key.
func leaseLoop(ctx context.Context, cli *clientv3.Client, h *History, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		leaseOnce(ctx, cli, h, fmt.Sprintf("lease/%d", n))
	}
}

func leaseOnce(ctx context.Context, cli *clientv3.Client, h *History, key string) {
	c, cancel := context.WithTimeout(ctx, 3*opTimeout)
	defer cancel()
	g, err := cli.Grant(c, 30)
	if err != nil {
		return
	}
	if _, err := cli.Put(c, key, "v", clientv3.WithLease(g.ID)); err != nil {
		return
	}
	if _, err := cli.KeepAliveOnce(c, g.ID); err != nil {
		return
	}
	if _, err := cli.Revoke(c, g.ID); err != nil {
		return
	}
	resp, err := cli.Get(c, key)
	if err == nil && len(resp.Kvs) != 0 {
		h.anomaly("lease: key %s of revoked lease %x still present at rev %d", key, g.ID, resp.Header.Revision)
	}
}
