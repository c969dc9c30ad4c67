package server

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairn-kv/cairn/backend"
	"github.com/cairn-kv/cairn/mvcc"
)

// Metrics
//
// The member exports etcd's names for the basics, registered with the
// registry the binary passes to [Server.RegisterMetrics] (never the global
// one). Counters and histograms are updated on the paths that produce them;
// gauges are read from the member when scraped.

// serverMetrics are the member's own metrics; nil when none are registered
// (every method is nil-safe). Set before Start, read-only afterwards.
type serverMetrics struct {
	leaderChanges    prometheus.Counter
	proposalsPending prometheus.Gauge
	proposalsFailed  prometheus.Counter
	walFsync         prometheus.Histogram
}

// RegisterMetrics creates the member's metrics and registers them with reg.
// Call it at most once, after New and before Start.
func (s *Server) RegisterMetrics(reg prometheus.Registerer) error {
	m := &serverMetrics{
		leaderChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "etcd_server_leader_changes_seen_total", Help: "The number of leader changes seen.",
		}),
		proposalsPending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "etcd_server_proposals_pending", Help: "The current number of pending proposals to commit.",
		}),
		proposalsFailed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "etcd_server_proposals_failed_total", Help: "The total number of failed proposals seen.",
		}),
		walFsync: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "etcd_disk_wal_fsync_duration_seconds",
			Help:    "The latency distributions of fsync called by WAL (write and fsync of one synced save).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
	}
	cs := []prometheus.Collector{m.leaderChanges, m.proposalsPending, m.proposalsFailed, m.walFsync,
		gauge("etcd_server_has_leader", "Whether or not a leader exists. 1 is existence, 0 is not.", func() float64 {
			return boolFloat(s.node != nil && s.node.Leader() != 0)
		}),
		gauge("etcd_server_is_leader", "Whether or not this member is a leader. 1 if is, 0 otherwise.", func() float64 {
			return boolFloat(s.node != nil && s.node.Leader() == s.id)
		}),
		gauge("etcd_server_proposals_committed_total", "The total number of consensus proposals committed.", func() float64 {
			if s.node == nil {
				return 0
			}
			return float64(s.node.Status().Commit)
		}),
		gauge("etcd_server_proposals_applied_total", "The total number of consensus proposals applied.", func() float64 {
			return float64(s.AppliedIndex())
		}),
		gauge("etcd_mvcc_db_total_size_in_bytes", "Total size of the underlying database physically allocated in bytes.", func() float64 {
			return s.backendSize(false)
		}),
		gauge("etcd_mvcc_db_total_size_in_use_in_bytes", "Total size of the underlying database logically in use in bytes.", func() float64 {
			return s.backendSize(true)
		}),
	}
	cs = append(cs, peerCollector{s},
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "cairn_lease_keepalives_forwarded_total",
			Help: "The keep-alives this member forwarded to the leader.",
		}, func() float64 { return float64(s.renewals.forwarded.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "cairn_lease_keepalive_batches_total",
			Help: "The requests that carried the forwarded keep-alives to the leader.",
		}, func() float64 { return float64(s.renewals.batches.Load()) }),
	)
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	s.metrics = m
	return nil
}

func gauge(name, help string, f func() float64) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (s *Server) backendSize(inUse bool) float64 {
	var n int64
	_ = s.withBackend(func(be *backend.Backend, _ *mvcc.Store) error {
		if inUse {
			n = be.SizeInUse()
		} else {
			n = be.Size()
		}
		return nil
	})
	return float64(n)
}

func (m *serverMetrics) proposalPending(delta float64) {
	if m != nil {
		m.proposalsPending.Add(delta)
	}
}

func (m *serverMetrics) proposalFailed() {
	if m != nil {
		m.proposalsFailed.Inc()
	}
}

// observeWALSync is the WAL adapter's hook for synced saves.
func (m *serverMetrics) observeWALSync(d time.Duration) {
	if m != nil {
		m.walFsync.Observe(d.Seconds())
	}
}

// startMetrics starts counting leader changes (Start calls it).
func (s *Server) startMetrics() {
	m := s.metrics
	if m == nil {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		var last uint64
		for {
			ch := s.node.LeaderChanged()
			if l := s.node.Leader(); l != last {
				if l != 0 {
					m.leaderChanges.Inc()
				}
				last = l
			}
			select {
			case <-ch:
			case <-s.stopc:
				return
			}
		}
	}()
}

// peerCollector exports the transport's per-peer message counters, read
// when scraped. Like the gauges above it reads fields that Start sets before
// it starts serving the client listener, where /metrics is scraped.
type peerCollector struct{ s *Server }

var (
	peerSentDesc = prometheus.NewDesc("cairn_network_peer_sent_messages_total",
		"Raft messages written to the stream to a peer.", []string{"To"}, nil)
	peerBatchesDesc = prometheus.NewDesc("cairn_network_peer_sent_batches_total",
		"Writes to the stream to a peer; each carries one or more raft messages.", []string{"To"}, nil)
	peerDroppedDesc = prometheus.NewDesc("cairn_network_peer_dropped_messages_total",
		"Raft messages to a peer dropped because its stream was down or its queue full.", []string{"To"}, nil)
	peerQueuedDesc = prometheus.NewDesc("cairn_network_peer_queued_messages",
		"Raft messages waiting in the send queue of a peer.", []string{"To"}, nil)
	peerActiveDesc = prometheus.NewDesc("cairn_network_peer_stream_active",
		"Whether the stream to a peer is established (1) or not (0).", []string{"To"}, nil)
	peerReceivedDesc = prometheus.NewDesc("cairn_network_peer_received_messages_total",
		"Raft messages received from a peer and handed to raft.", []string{"From"}, nil)
)

func (c peerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{peerSentDesc, peerBatchesDesc, peerDroppedDesc, peerQueuedDesc, peerActiveDesc, peerReceivedDesc} {
		ch <- d
	}
}

func (c peerCollector) Collect(ch chan<- prometheus.Metric) {
	if c.s.tr == nil {
		return
	}
	for _, st := range c.s.tr.Peers() {
		id := fmt.Sprintf("%x", st.ID)
		ch <- prometheus.MustNewConstMetric(peerSentDesc, prometheus.CounterValue, float64(st.MessagesSent), id)
		ch <- prometheus.MustNewConstMetric(peerBatchesDesc, prometheus.CounterValue, float64(st.BatchesSent), id)
		ch <- prometheus.MustNewConstMetric(peerDroppedDesc, prometheus.CounterValue, float64(st.Dropped), id)
		ch <- prometheus.MustNewConstMetric(peerQueuedDesc, prometheus.GaugeValue, float64(st.Queued), id)
		ch <- prometheus.MustNewConstMetric(peerActiveDesc, prometheus.GaugeValue, boolFloat(st.Active), id)
		ch <- prometheus.MustNewConstMetric(peerReceivedDesc, prometheus.CounterValue, float64(st.Received), id)
	}
}
