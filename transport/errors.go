package transport

import (
	"errors"
	"fmt"
)

// Sentinel errors.
var (
	ErrStopped            = errors.New("transport: stopped")
	ErrFrameTooLarge      = errors.New("transport: frame too large")
	ErrFrameCorrupt       = errors.New("transport: corrupt frame")
	ErrSnapshotChecksum   = errors.New("transport: snapshot checksum mismatch")
	ErrSnapshotCorrupt    = errors.New("transport: corrupt snapshot stream")
	ErrSnapshotIncomplete = errors.New("transport: snapshot sink did not consume the whole stream")
	ErrUnknownPeer        = errors.New("transport: unknown peer")
	ErrClusterIDMismatch  = errors.New("transport: cluster ID mismatch")
	ErrWrongMember        = errors.New("transport: request addressed to another member")
	ErrMemberRemoved      = errors.New("transport: member has been removed from the cluster")
	ErrBadRequest         = errors.New("transport: bad request")
	ErrBadConfig          = errors.New("transport: invalid config")
)

// RejectedError is returned (and logged) by a sender when a peer refused one
// of its requests. Reason is one of ErrClusterIDMismatch, ErrWrongMember,
// ErrMemberRemoved, ErrBadRequest, ErrStopped; errors.Is sees through it.
type RejectedError struct {
	Peer         uint64 // the member we addressed
	Reason       error
	OurCluster   uint64
	TheirCluster uint64 // as the peer reported it; 0 if not reported
	TheirID      uint64 // the member ID the peer reported; 0 if not reported
	Status       int    // HTTP status
	Detail       string // the peer's message
}

func (e *RejectedError) Error() string {
	switch {
	case errors.Is(e.Reason, ErrClusterIDMismatch):
		return fmt.Sprintf("transport: peer %x rejected us: cluster ID mismatch (ours %x, theirs %x)",
			e.Peer, e.OurCluster, e.TheirCluster)
	case errors.Is(e.Reason, ErrWrongMember):
		return fmt.Sprintf("transport: peer %x rejected us: the member at that URL is %x, not %x",
			e.Peer, e.TheirID, e.Peer)
	case errors.Is(e.Reason, ErrMemberRemoved):
		return fmt.Sprintf("transport: peer %x rejected us: this member has been removed from the cluster", e.Peer)
	}
	return fmt.Sprintf("transport: peer %x rejected us (HTTP %d): %v: %s", e.Peer, e.Status, e.Reason, e.Detail)
}

func (e *RejectedError) Unwrap() error { return e.Reason }
