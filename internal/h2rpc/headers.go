package h2rpc

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A request's header block is decoded here rather than by the framer
// (Framer.ReadMetaHeaders), which collects every field into a slice that
// grows for each request, validates it, and leaves the caller to walk the
// slice again: the largest allocation and about a tenth of a serializable
// read's CPU. The connection's hpack decoder hands each field to
// conn.field as it is decoded, which checks it as the framer would and
// files it straight into the request (path, content type, deadline,
// metadata).

// reqHeaders is the request whose header block is being read. A block is
// a HEADERS frame and the CONTINUATION frames after it; the framer makes
// sure nothing comes between them.
type reqHeaders struct {
	id        uint32
	endStream bool
	remain    uint32 // what is left of the header list budget, maxHeaderList
	truncated bool   // the list went over the budget; later fields were dropped
	invalid   error  // a field HTTP/2 does not allow: the stream is reset
	refusal   error  // a field gRPC cannot serve: the call is answered with it

	sawRegular bool
	pseudo     uint8 // pseudo-header fields seen, a bit each

	path, method string
	ctype        string
	timeout      time.Duration
	hasTimeout   bool
	md           mdFields
}

// The request pseudo-header fields (RFC 9113, 8.3.1).
const (
	pseudoMethod uint8 = 1 << iota
	pseudoScheme
	pseudoAuthority
	pseudoPath
	pseudoProtocol
)

func pseudoBit(name string) uint8 {
	switch name {
	case ":method":
		return pseudoMethod
	case ":scheme":
		return pseudoScheme
	case ":authority":
		return pseudoAuthority
	case ":path":
		return pseudoPath
	case ":protocol":
		return pseudoProtocol
	}
	return 0
}

// beginHeaders starts reading the header block f opens.
func (c *conn) beginHeaders(f *http2.HeadersFrame) error {
	c.rh = reqHeaders{id: f.StreamID, endStream: f.StreamEnded(), remain: maxHeaderList}
	c.hdec.SetEmitEnabled(true)
	return c.headerFragment(f.HeaderBlockFragment(), f.HeadersEnded())
}

// headerFragment decodes the next piece of the header block; with the
// last, it opens (or refuses, or resets) the stream.
func (c *conn) headerFragment(frag []byte, ended bool) error {
	h := &c.rh
	// A block far over the budget is not decoded at all, and a block with
	// an invalid field is not followed further (the budget is no longer
	// counted): the connection ends, as x/net's framer ends it.
	if int64(len(frag)) > 2*int64(h.remain) || h.invalid != nil {
		c.goAway(http2.ErrCodeProtocol, "header list too large or invalid")
		return fmt.Errorf("h2rpc: stream %d: header block too large or invalid", h.id)
	}
	if _, err := c.hdec.Write(frag); err != nil {
		c.goAway(http2.ErrCodeCompression, "")
		return fmt.Errorf("h2rpc: stream %d: decoding headers: %w", h.id, err)
	}
	if !ended {
		return nil
	}
	if err := c.hdec.Close(); err != nil {
		c.goAway(http2.ErrCodeCompression, "")
		return fmt.Errorf("h2rpc: stream %d: decoding headers: %w", h.id, err)
	}
	if h.invalid != nil {
		c.resetStream(h.id, http2.ErrCodeProtocol)
		return nil
	}
	return c.headers(h)
}

// field takes one decoded header field of the request being read.
func (c *conn) field(f hpack.HeaderField) {
	h := &c.rh
	if !httpguts.ValidHeaderFieldValue(f.Value) {
		c.invalidField(fmt.Errorf("invalid value of header field %q", f.Name))
		return
	}
	if strings.HasPrefix(f.Name, ":") {
		bit := pseudoBit(f.Name)
		switch {
		case h.sawRegular:
			c.invalidField(errors.New("pseudo-header field after a regular one"))
			return
		case bit == 0:
			c.invalidField(fmt.Errorf("invalid pseudo-header field %q", f.Name))
			return
		case h.pseudo&bit != 0:
			c.invalidField(fmt.Errorf("duplicate pseudo-header field %q", f.Name))
			return
		}
		h.pseudo |= bit
	} else {
		h.sawRegular = true
		if !validFieldName(f.Name) {
			c.invalidField(fmt.Errorf("invalid header field name %q", f.Name))
			return
		}
	}
	size := f.Size()
	if size > h.remain {
		h.truncated, h.remain = true, 0
		c.hdec.SetEmitEnabled(false)
		return
	}
	h.remain -= size

	switch f.Name {
	case ":path":
		h.path = f.Value
	case ":method":
		h.method = f.Value
	case ":authority":
		h.md.add(":authority", f.Value)
	case ":scheme", ":protocol":
	case "content-type":
		h.ctype = f.Value
	case "grpc-timeout":
		d, err := parseTimeout(f.Value)
		if err != nil {
			h.setRefusal(status.Errorf(codes.Internal, "malformed grpc-timeout: %v", err))
			return
		}
		h.timeout, h.hasTimeout = d, true
	case "grpc-encoding":
		if f.Value != "identity" {
			h.setRefusal(status.Errorf(codes.Unimplemented, "grpc: Decompressor is not installed for grpc-encoding %q", f.Value))
		}
	case "te", "grpc-accept-encoding", "grpc-message-type", "connection":
		// The transport's own; not metadata.
	default:
		if strings.HasSuffix(f.Name, "-bin") {
			v, err := decodeBinHeader(f.Value)
			if err != nil {
				h.setRefusal(status.Errorf(codes.Internal, "malformed binary metadata %q", f.Name))
				return
			}
			h.md.add(f.Name, v)
		} else {
			h.md.add(f.Name, f.Value)
		}
	}
}

// invalidField marks the request invalid; the rest of its block is decoded
// (the dynamic table must follow the client's) but not looked at.
func (c *conn) invalidField(err error) {
	c.rh.invalid = err
	c.hdec.SetEmitEnabled(false)
}

// setRefusal keeps the first reason the call cannot be served.
func (h *reqHeaders) setRefusal(err error) {
	if h.refusal == nil {
		h.refusal = err
	}
}

// validFieldName reports whether name is a valid HTTP/2 field name: a
// token (httpguts), in lower case (RFC 9113, 8.2.1).
func validFieldName(name string) bool {
	return httpguts.ValidHeaderFieldName(name) && strings.ToLower(name) == name
}
