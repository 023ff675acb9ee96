package record

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Record is warmcache's own account of one cache volume. Unlike the stamp
// in the volume, which any job can rewrite, it lives in a directory on the
// driver's host that jobs never see, so eviction decisions rest on it: a
// job cannot make its cache look small or fresh, nor others' look big.
type Record struct {
	// LastUsed is when a job last claimed the volume.
	LastUsed time.Time `json:"last_used,omitzero"`
	// Claimed is the lease: a prepare that claims the volume sets it
	// before it makes sure the volume exists, and the GC leaves a volume
	// claimed less than LeaseGrace ago alone (see Evict).
	Claimed time.Time `json:"claimed,omitzero"`
	// SizeBytes is the size the driver last measured, at Measured.
	SizeBytes int64     `json:"size_bytes"`
	Measured  time.Time `json:"measured,omitzero"`
	// Published is when this host last published a snapshot of the
	// volume to the fleet cache (cache.remote), of PublishedBytes.
	Published      time.Time `json:"published,omitzero"`
	PublishedBytes int64     `json:"published_bytes,omitempty"`
	// StoreID is, for a warm git checkout, the id of the project's git
	// object store it was linked to: the checkout may lack objects that
	// are in that store only.
	StoreID string `json:"store_id,omitempty"`
}

// LeaseGrace is how long a claim protects a volume from the GC. It must
// exceed the time from the claim to the creation of the job's containers
// in prepare (seconds); from then on, the engine itself refuses to remove
// a volume that a container mounts.
const LeaseGrace = 15 * time.Minute

// Leased says whether a claim still protects the volume at now. A claim
// dated in the future (another host's clock, a clock step) also protects.
func (r Record) Leased(now time.Time) bool {
	return !r.Claimed.IsZero() && now.Sub(r.Claimed) < LeaseGrace
}

// Records is the directory of records, one file per volume name plus a
// lock file that serialises claims and evictions of that volume.
type Records struct {
	Dir string
}

// ErrLeased is returned by Evict for a volume a prepare has just claimed.
var ErrLeased = errors.New("claimed by a job being prepared")

func (rs Records) path(name, ext string) (string, error) {
	if name == "" || strings.ContainsAny(name, "/\x00") || strings.HasPrefix(name, ".") {
		return "", fmt.Errorf("cache record: bad volume name %q", name)
	}
	return filepath.Join(rs.Dir, name+ext), nil
}

// Get returns the record of volume name; a missing record is the zero
// Record (a volume never claimed since records were kept).
func (rs Records) Get(name string) (Record, error) {
	p, err := rs.path(name, ".json")
	if err != nil {
		return Record{}, err
	}
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return Record{}, nil
	}
	if err != nil {
		return Record{}, fmt.Errorf("reading cache record: %w", err)
	}
	var r Record
	if err := json.Unmarshal(data, &r); err != nil {
		// Only warmcache writes here, atomically: a damaged file is lost
		// bookkeeping (a full disk), not an attack; start afresh.
		return Record{}, nil
	}
	return r, nil
}

// Update changes the record of volume name under its lock: fn gets the
// current record and may change it; it is written back only when fn
// returns nil, and fn's error is returned as is.
func (rs Records) Update(name string, fn func(*Record) error) error {
	unlock, err := rs.lock(name)
	if err != nil {
		return err
	}
	defer unlock()
	r, err := rs.Get(name)
	if err != nil {
		return err
	}
	if err := fn(&r); err != nil {
		return err
	}
	return rs.write(name, r)
}

// SetSize records the size measured at now, unless the volume was evicted
// meanwhile (its record cleared).
func (rs Records) SetSize(name string, size int64, now time.Time) error {
	err := rs.Update(name, func(r *Record) error {
		if r.LastUsed.IsZero() {
			return errEvicted
		}
		r.SizeBytes, r.Measured = size, now.UTC()
		return nil
	})
	if errors.Is(err, errEvicted) {
		return nil
	}
	return err
}

var errEvicted = errors.New("volume evicted")

// lock takes the volume's lock file, waiting for another process that
// holds it (a GC removing the volume, a prepare writing its claim).
func (rs Records) lock(name string) (func(), error) {
	p, err := rs.path(name, ".lock")
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(rs.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("cache records: %w", err)
	}
	return lockFile(p)
}

// lockFile takes an exclusive lock on the file at path, made if missing,
// waiting for whoever holds it; the returned func releases it.
func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	// Closing the file releases the lock.
	return func() { f.Close() }, nil
}

// write replaces the record atomically: a GC planning without the lock
// never reads half a record.
func (rs Records) write(name string, r Record) error {
	p, err := rs.path(name, ".json")
	if err != nil {
		return err
	}
	data, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encoding cache record: %w", err)
	}
	if err := replaceFile(p, data, 0o600); err != nil {
		return fmt.Errorf("writing cache record: %w", err)
	}
	return nil
}

// replaceFile writes data to a temporary file beside path and renames it
// over path, so that no reader sees half of it, and makes the result
// durable: the file's data is synced before the rename and the directory
// after it, so that a crash leaves the old file or the new one, never an
// empty one (ext4 and xfs may otherwise commit the rename before the data).
// The temporary file is changed only through its descriptor (by name, a
// job sharing the directory could have swapped it for a link to a host
// file by then), and the rename follows nothing: it replaces whatever
// entry has path's name. The temporary name is hidden: path's base with a
// dot in front (unless it has one) and a random suffix.
//
// It is not moby/sys/atomicwriter: that one chmods the temporary file by
// name (following a swapped-in link), refuses to replace a link planted at
// path instead of replacing it, and does not sync the directory.
func replaceFile(path string, data []byte, mode os.FileMode) error {
	base := filepath.Base(path)
	if !strings.HasPrefix(base, ".") {
		base = "." + base
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, base+".*")
	if err != nil {
		return err
	}
	_, werr := tmp.Write(data)
	merr := tmp.Chmod(mode)
	serr := tmp.Sync()
	cerr := tmp.Close()
	if err := errors.Join(werr, merr, serr, cerr); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return syncDir(dir)
}

// syncDir makes the directory's entries (a rename into it) durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	return nil
}
