package mvcc

import "go.etcd.io/etcd/api/v3/mvccpb"

// Pending returns the events written through w so far, in revision order,
// with Kv and PrevKv filled, for owners that index them in the same batch
// (the lease attachments). The caller must not modify them; End still
// returns them.
func (w *Writer) Pending() []*mvccpb.Event { return w.events }
