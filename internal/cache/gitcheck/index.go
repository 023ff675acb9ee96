package gitcheck

import (
	"bytes"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
)

// Entry is one entry of a git index: a tracked path and what git recorded
// of it when it last wrote the index.
type Entry struct {
	Path     string
	Mode     uint32
	MtimeSec uint32
	Size     uint32
	ID       [sha1.Size]byte
}

// File modes git records.
const (
	ModeRegular    = 0o100644
	ModeExecutable = 0o100755
	ModeSymlink    = 0o120000
	ModeGitlink    = 0o160000
)

// errUnsupported is an index this package does not read (v4, split or
// sparse indexes, unmerged or intent-to-add entries): its caller leaves
// such a checkout as git left it.
var errUnsupported = errors.New("index format not supported")

// Index reads a version 2 or 3 git index of a SHA-1 repository (what git
// writes unless told otherwise). It refuses what it does not fully
// understand, so that a caller never trusts a misread entry.
func Index(data []byte) ([]Entry, error) {
	const header, fixed, trailer = 12, 62, sha1.Size
	if len(data) < header+trailer || string(data[:4]) != "DIRC" {
		return nil, errors.New("not a git index")
	}
	version := binary.BigEndian.Uint32(data[4:])
	if version != 2 && version != 3 {
		return nil, fmt.Errorf("index version %d: %w", version, errUnsupported)
	}
	if sum := sha1.Sum(data[:len(data)-trailer]); !bytes.Equal(sum[:], data[len(data)-trailer:]) {
		return nil, errors.New("index checksum mismatch")
	}
	n := binary.BigEndian.Uint32(data[8:])
	body := data[:len(data)-trailer]
	if uint64(n) > uint64(len(body))/fixed {
		return nil, errors.New("index entry count beyond its size")
	}
	entries := make([]Entry, 0, n)
	off := header
	for range n {
		if off+fixed > len(body) {
			return nil, errors.New("index truncated")
		}
		e := body[off:]
		var ent Entry
		ent.MtimeSec = binary.BigEndian.Uint32(e[8:])
		ent.Mode = binary.BigEndian.Uint32(e[24:])
		ent.Size = binary.BigEndian.Uint32(e[36:])
		copy(ent.ID[:], e[40:60])
		flags := binary.BigEndian.Uint16(e[60:])
		nameAt := fixed
		if flags&0x4000 != 0 { // extended flags (version 3)
			if version < 3 || off+fixed+2 > len(body) {
				return nil, errors.New("index entry with extended flags in version 2")
			}
			ext := binary.BigEndian.Uint16(e[62:])
			if ext&0x2000 != 0 { // intent to add: no content recorded
				return nil, fmt.Errorf("intent-to-add entry: %w", errUnsupported)
			}
			if ext&0x4000 != 0 { // skip-worktree: git never compares it
				ent.Mode = 0
			}
			nameAt += 2
		}
		if flags&0x3000 != 0 {
			return nil, fmt.Errorf("unmerged entry: %w", errUnsupported)
		}
		end := bytes.IndexByte(body[off+nameAt:], 0)
		if end < 0 {
			return nil, errors.New("index entry name not terminated")
		}
		ent.Path = string(body[off+nameAt : off+nameAt+end])
		if l := int(flags & 0xfff); l < 0xfff && l != end {
			return nil, errors.New("index entry name length mismatch")
		}
		// Entries are padded with 1 to 8 NULs to a multiple of 8 bytes.
		off += (nameAt + end + 8) &^ 7
		if off > len(body) {
			return nil, errors.New("index truncated")
		}
		entries = append(entries, ent)
	}
	// Extensions: a split or sparse index keeps entries elsewhere.
	for off+8 <= len(body) {
		sig := string(body[off : off+4])
		size := binary.BigEndian.Uint32(body[off+4:])
		if sig == "link" || sig == "sdir" {
			return nil, fmt.Errorf("index extension %q: %w", sig, errUnsupported)
		}
		if uint64(size) > uint64(len(body)-off-8) {
			return nil, errors.New("index extension truncated")
		}
		off += 8 + int(size)
	}
	return entries, nil
}

// BlobID is the object id git gives content as a blob.
func BlobID(content []byte) [sha1.Size]byte {
	h := sha1.New()
	h.Write([]byte("blob " + strconv.Itoa(len(content)) + "\x00"))
	h.Write(content)
	var id [sha1.Size]byte
	h.Sum(id[:0])
	return id
}

// Racy says whether git, reading an index whose file was last modified
// in second indexSec, must compare e's content with its file rather than
// trust the file's stat data ("racy git": a file changed in the same
// second as the index was written looks unchanged by its times). Gitlinks
// and skip-worktree entries are never compared.
func Racy(e Entry, indexSec int64) bool {
	if e.Mode == ModeGitlink || e.Mode == 0 {
		return false
	}
	return int64(e.MtimeSec) >= indexSec
}
