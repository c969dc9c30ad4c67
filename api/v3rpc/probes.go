package v3rpc

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
)

// Probes and metrics on the client port
//
//	GET /livez   the process is alive: a serializable read of the local
//	             store answers (check "serializable_read").
//	GET /readyz  the member can serve: no CORRUPT alarm ("data_corruption"),
//	             the local store answers ("serializable_read"), and a leader
//	             is known and this member has applied the log up to the
//	             leader's commit index ("linearizable_read").
//	GET /metrics the registry in Config.Metrics, in Prometheus text format.
//
// Like etcd (and Kubernetes), a probe answers 200 "ok", or with ?verbose one
// line per check ("[+]name ok") and "<probe> check passed"; on failure 503
// with one line per check ("[-]name failed: reason") and "<probe> check
// failed". ?exclude=name skips a check ("[+]name excluded: ok"), and
// /readyz/name runs only that check.

// probeTimeout bounds one check.
const probeTimeout = 2 * time.Second

// ProbeBackend is what the probes need from the member.
type ProbeBackend interface {
	Leader() uint64
	// IsLearner reports whether the member is a learner (not yet promoted).
	IsLearner() bool
	Alarms() []*pb.AlarmMember
	Range(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error)
	LinearizableReadNotify(ctx context.Context) error
}

// probeCheck is one named check; it returns nil when healthy.
type probeCheck struct {
	name  string
	check func(ctx context.Context) error
}

func (a *API) installProbes() {
	serializable := probeCheck{"serializable_read", func(ctx context.Context) error {
		_, err := a.b.Range(ctx, &pb.RangeRequest{Key: []byte{0}, KeysOnly: true, Limit: 1, Serializable: true})
		return err
	}}
	corruption := probeCheck{"data_corruption", func(context.Context) error {
		for _, m := range a.b.Alarms() {
			if m.Alarm == pb.AlarmType_CORRUPT {
				return fmt.Errorf("alarm CORRUPT raised for member %x", m.MemberID)
			}
		}
		return nil
	}}
	linearizable := probeCheck{"linearizable_read", func(ctx context.Context) error {
		if a.b.Leader() == 0 {
			return fmt.Errorf("raft: no leader")
		}
		return a.b.LinearizableReadNotify(ctx)
	}}
	a.installProbe("livez", []probeCheck{serializable})
	a.installProbe("readyz", []probeCheck{corruption, serializable, linearizable})
	if a.cfg.Metrics != nil {
		a.http.Handle("/metrics", promhttp.HandlerFor(a.cfg.Metrics, promhttp.HandlerOpts{}))
	}
}

func (a *API) installProbe(name string, checks []probeCheck) {
	a.http.HandleFunc("/"+name, func(w http.ResponseWriter, r *http.Request) {
		serveProbe(w, r, name, checks)
	})
	for _, c := range checks {
		a.http.HandleFunc("/"+name+"/"+c.name, func(w http.ResponseWriter, r *http.Request) {
			serveProbe(w, r, name, []probeCheck{c})
		})
	}
}

func serveProbe(w http.ResponseWriter, r *http.Request, name string, checks []probeCheck) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
		return
	}
	q := r.URL.Query()
	excluded := q["exclude"]
	ctx, cancel := context.WithTimeout(r.Context(), probeTimeout)
	defer cancel()
	var out strings.Builder
	failed := false
	for _, c := range checks {
		if slices.Contains(excluded, c.name) {
			fmt.Fprintf(&out, "[+]%s excluded: ok\n", c.name)
			continue
		}
		if err := c.check(ctx); err != nil {
			fmt.Fprintf(&out, "[-]%s failed: %v\n", c.name, err)
			failed = true
			continue
		}
		fmt.Fprintf(&out, "[+]%s ok\n", c.name)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if failed {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "%s%s check failed\n", out.String(), name)
		return
	}
	if _, verbose := q["verbose"]; !verbose {
		fmt.Fprint(w, "ok")
		return
	}
	fmt.Fprintf(w, "%s%s check passed\n", out.String(), name)
}

// grpcMetrics returns the gRPC interceptors that count requests
// (grpc_server_started_total, grpc_server_handled_total, ...) into
// Config.Metrics, and a function to call once the services are registered;
// nil interceptors without Config.Metrics.
func (a *API) grpcMetrics() (grpc.UnaryServerInterceptor, grpc.StreamServerInterceptor, func(serviceInfo)) {
	if a.cfg.Metrics == nil {
		return nil, nil, func(serviceInfo) {}
	}
	m := newRPCMetrics()
	if err := m.register(a.cfg.Metrics); err != nil {
		a.cfg.Logger.Warn("gRPC metrics not registered", "err", err)
		return nil, nil, func(serviceInfo) {}
	}
	return m.unary, m.stream, m.init
}
