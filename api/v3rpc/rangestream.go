package v3rpc

import (
	"bytes"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"
)

// rangeStreamPage is how many keys one RangeStream chunk carries.
const rangeStreamPage = 1000

// RangeStream answers a range in chunks (etcd 3.7): each chunk carries a
// disjoint slice of the keys in order; header, more and count come only on
// the final chunk, so merging all chunks gives what Range would return.
//
// A key-ordered range is read page by page at one revision (the first page
// fixes it and is linearizable unless the request is serializable; later
// pages read that revision locally), so memory stays bounded by a page. Other
// sort orders need the whole result first, so they are read with one Range
// and sent in chunks.
func (s *kvServer) RangeStream(r *pb.RangeRequest, stream pb.KV_RangeStreamServer) error {
	if err := checkRange(r); err != nil {
		return err
	}
	ctx := stream.Context()
	keyOrdered := r.SortTarget == pb.RangeRequest_KEY && r.SortOrder != pb.RangeRequest_DESCEND
	if !keyOrdered || r.CountOnly || len(r.RangeEnd) == 0 {
		resp, err := s.a.b.Range(ctx, r)
		if err != nil {
			return toGRPCError(err)
		}
		return s.sendChunks(stream, resp)
	}
	req := proto.Clone(r).(*pb.RangeRequest)
	var (
		total, sent int64
		rev         int64
		more        bool
	)
	for {
		req.Limit = rangeStreamPage
		if r.Limit > 0 {
			req.Limit = min(req.Limit, r.Limit-sent)
		}
		resp, err := s.a.b.Range(ctx, req)
		if err != nil {
			return toGRPCError(err)
		}
		if rev == 0 {
			rev, total = resp.Header.GetRevision(), resp.Count
			req.Revision, req.Serializable = rev, true
		}
		if len(resp.Kvs) > 0 {
			if err := stream.Send(&pb.RangeStreamResponse{RangeResponse: &pb.RangeResponse{Kvs: resp.Kvs}}); err != nil {
				return err
			}
			sent += int64(len(resp.Kvs))
		}
		if !resp.More {
			break
		}
		if r.Limit > 0 && sent >= r.Limit {
			more = true
			break
		}
		last := resp.Kvs[len(resp.Kvs)-1].Key
		req.Key = append(bytes.Clone(last), 0)
	}
	return stream.Send(&pb.RangeStreamResponse{RangeResponse: &pb.RangeResponse{
		Header: s.a.header(rev), More: more, Count: total,
	}})
}

// sendChunks sends a whole range result in pages, the header, more and
// count on the last message.
func (s *kvServer) sendChunks(stream pb.KV_RangeStreamServer, resp *pb.RangeResponse) error {
	kvs := resp.Kvs
	for len(kvs) > 0 {
		n := min(len(kvs), rangeStreamPage)
		if err := stream.Send(&pb.RangeStreamResponse{RangeResponse: &pb.RangeResponse{Kvs: kvs[:n]}}); err != nil {
			return err
		}
		kvs = kvs[n:]
	}
	s.a.fillHeader(&resp.Header)
	return stream.Send(&pb.RangeStreamResponse{RangeResponse: &pb.RangeResponse{
		Header: resp.Header, More: resp.More, Count: resp.Count,
	}})
}
