// Package wal is cairn's write-ahead log: the durable record of the Raft
// hard state, the Raft log entries and snapshot markers of one member. An
// entry is durable (and may be acknowledged) once Save with mustSync has
// returned nil.
//
// # Files
//
// The log lives in one directory (the server uses member/wal/). It is a
// sequence of segment files named <seq>-<first>.wal, both numbers in 16 hex
// digits: seq counts segments from 1 without holes, first is the index of
// the first entry that may be written into the segment. A new segment is
// preallocated to Options.SegmentSize (64 MiB by default) and filled with
// zeros (so appends overwrite written blocks and their fsyncs journal no
// extent changes) in the background under the name next.tmp, and renamed
// into place when the current segment would overflow; a finished segment is
// cut to its written length. Create builds the first segment, zero-filled
// the same way, in <dir>.tmp and renames the directory, so a crash never
// leaves a half-made log.
//
// # Records
//
// A segment is a chain of records:
//
//	length  uint32 little-endian, payload bytes (at most MaxRecordSize)
//	crc     uint32 little-endian, CRC32C (Castagnoli) of length, type and
//	        payload, seeded with the previous record's crc
//	type    byte
//	payload
//
// Types: 1 crc (4-byte chain value: the crc of the last record of the
// previous segment, 0 in the first; the record's own crc is seeded with it),
// 2 metadata (cluster ID, member ID, 8 bytes each), 3 entry, 4 hard state,
// 5 snapshot marker (uvarint index, uvarint term, then 0, or 1 and the
// protobuf ConfState). Every segment starts with a head: a crc record
// continuing the chain, the metadata and the hard state current at the
// switch (if any), so the chain can be checked across segments and a
// segment's hard state survives the release of older ones.
//
// Entries and hard states use a compact encoding of our own instead of
// protobuf: a uvarint of presence flags, then the present fields as uvarints
// (entry: term, index, type, then data to the end; hard state: term, vote,
// commit). A decoded message equals the saved one (proto.Equal). See
// BenchmarkEncodeEntry for the comparison with proto.Marshal.
//
// # Log semantics
//
// An entry record with index i supersedes every entry record written
// before it with index >= i (a new leader overwrote the tail). ReadAll
// returns that effective log after the marker given to Open, and an
// ErrIndexGap error if it is not contiguous. Save writes its entries before
// its hard state, so a torn tail never leaves a commit index above the
// entries that are present.
//
// # Lifecycle
//
//	w, err := wal.Create(fs, dir, md, opts)      // new member: ready to append
//	w, err := wal.Open(fs, dir, snap, opts)      // restart: then
//	md, hs, ents, err := w.ReadAll()             // verify, repair the tail, ready to append
//	w.Save(hs, ents, mustSync) / w.SaveSnapshot(s) / w.ReleaseTo(index)
//	w.Close()
//
// # Damage
//
// ReadAll and ValidSnapshots verify every checksum of the segments they
// read. A failure in the newest segment is a torn tail, cut off by ReadAll
// with nothing before it lost, if the failing record's header is zero, if
// it covers an aligned 512-byte block of zeros before the file's trailing
// zeros (a block the crash kept from the disk), or if no intact record can
// be found after it (two consecutive records the second of which verifies
// against the first's stored crc). Anything else, and any failure in an
// older segment, is a *CorruptionError naming the file and offset and
// wrapping ErrCRCMismatch or ErrCorrupt; nothing is skipped. Damage inside
// the last record, or in the header of the second to last, cannot be told
// from a torn write and is cut off.
//
// # Failures and concurrency
//
// Save and SaveSnapshot are safe for concurrent use and implement group
// commit: each call encodes its records into the pending batch under mu
// (which fixes their order in the crc chain); the first caller to find no
// write in progress becomes the flusher and writes batches (one write per
// segment touched, one fdatasync if any member asked for it) until none is
// pending, and every caller returns its batch's result. fileMu guards the
// files and is held by the flusher, ReleaseTo and Close. A failed write,
// fsync or segment switch breaks the WAL: that call and every later one
// return an error wrapping ErrBroken and the first failure; nothing is
// retried, because after a failed fsync the kernel may have dropped the
// dirty pages. Open, ReadAll and Close are not concurrent with other calls.
package wal
