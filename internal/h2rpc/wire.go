package h2rpc

import (
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"time"
)

// parseTimeout decodes a grpc-timeout header: at most eight digits and a
// unit (H, M, S, m, u, n).
func parseTimeout(s string) (time.Duration, error) {
	if len(s) < 2 || len(s) > 9 {
		return 0, errors.New("bad length")
	}
	var unit time.Duration
	switch s[len(s)-1] {
	case 'H':
		unit = time.Hour
	case 'M':
		unit = time.Minute
	case 'S':
		unit = time.Second
	case 'm':
		unit = time.Millisecond
	case 'u':
		unit = time.Microsecond
	case 'n':
		unit = time.Nanosecond
	default:
		return 0, errors.New("bad unit")
	}
	digits := s[:len(s)-1]
	for _, c := range []byte(digits) {
		if c < '0' || c > '9' {
			return 0, errors.New("not a number")
		}
	}
	v, err := strconv.ParseInt(digits, 10, 64)
	if err != nil {
		return 0, err
	}
	// Eight digits of hours overflow a Duration: cap, as a far deadline.
	const maxDur = time.Duration(1<<63 - 1)
	if unit >= time.Second && v > int64(maxDur/unit) {
		return maxDur, nil
	}
	return time.Duration(v) * unit, nil
}

// decodeBinHeader decodes a -bin header's value: base64, padded or not.
func decodeBinHeader(v string) (string, error) {
	var b []byte
	var err error
	if len(v)%4 == 0 {
		b, err = base64.StdEncoding.DecodeString(v)
	} else {
		b, err = base64.RawStdEncoding.DecodeString(v)
	}
	return string(b), err
}

// encodeBinHeader encodes a -bin header's value as grpc-go does.
func encodeBinHeader(b []byte) string { return base64.RawStdEncoding.EncodeToString(b) }

// encodeGrpcMessage percent-encodes a status message: bytes outside
// printable ASCII, and '%'.
func encodeGrpcMessage(msg string) string {
	clean := true
	for i := 0; i < len(msg); i++ {
		if c := msg[i]; c < ' ' || c > '~' || c == '%' {
			clean = false
			break
		}
	}
	if clean {
		return msg
	}
	var b strings.Builder
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(msg); i++ {
		c := msg[i]
		if c < ' ' || c > '~' || c == '%' {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// isReservedHeader reports whether a metadata key is one the transport
// sets itself and must not come from handlers' metadata.
func isReservedHeader(k string) bool {
	if strings.HasPrefix(k, ":") {
		return true
	}
	switch k {
	case "content-type", "user-agent", "grpc-message-type", "grpc-encoding", "grpc-message", "grpc-status",
		"grpc-timeout", "grpc-status-details-bin", "te", "connection", "transfer-encoding":
		return true
	}
	return false
}
