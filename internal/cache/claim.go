package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/naming"
)

// StampFile sits at the root of every cache volume. Docker volume labels
// cannot change after creation, so what does change (last use, size) is
// kept here, beside the data it describes.
const StampFile = ".warmcache-stamp"

// Stamp is the mutable record of a cache volume.
type Stamp struct {
	LastUsed  time.Time `json:"last_used"`
	SizeBytes int64     `json:"size_bytes"`
	Measured  time.Time `json:"measured,omitzero"`
	JobID     int64     `json:"job_id,omitempty"`
}

// Status is what a job found in one cache volume.
type Status struct {
	Volume
	Mountpoint string
	// Warm says an earlier job used the volume.
	Warm bool
	// Readable says the stamp could be read from this host; when false,
	// Warm, Stamp and the size are unknown (a remote engine).
	Readable bool
	Stamp    Stamp
	// StampErr is set when the new stamp could not be written.
	StampErr error
	// RecordErr is set when the claim could not be recorded in the state
	// directory (no lease: the GC cannot run either without it).
	RecordErr error
}

// volumeEngine is what cachevol needs from the container engine.
type volumeEngine interface {
	EnsureVolume(ctx context.Context, v engine.VolumeSpec) error
	InspectVolume(ctx context.Context, name string) (engine.VolumeInfo, error)
}

// Claim makes sure every planned volume exists, reads what earlier jobs
// left in its stamp, and stamps it as used now by jobID. With recs, each
// volume is first leased in its record (so that no GC removes it between
// here and the creation of the job's containers), and what the record
// says (last use, measured size) is reported instead of the stamp's.
func Claim(ctx context.Context, e volumeEngine, recs *Records, vols []Volume, jobID int64, now time.Time) ([]Status, error) {
	out := make([]Status, len(vols))
	errs := make([]error, len(vols))
	var wg sync.WaitGroup
	for i, v := range vols {
		wg.Go(func() { out[i], errs[i] = claim(ctx, e, recs, v, jobID, now) })
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

func claim(ctx context.Context, e volumeEngine, recs *Records, v Volume, jobID int64, now time.Time) (Status, error) {
	// The lease comes before the volume is made sure of: a GC that took
	// the lock first has removed the volume by the time the lease is
	// written, and EnsureVolume below creates it anew.
	var prev Record
	var recErr error
	if recs != nil {
		recErr = recs.Update(v.Name, func(r *Record) error {
			prev = *r
			r.Claimed, r.LastUsed = now.UTC(), now.UTC()
			return nil
		})
	}
	st, existed, err := claimVolume(ctx, e, v, jobID, now)
	st.RecordErr = recErr
	if err == nil && recErr == nil && !existed && !prev.LastUsed.IsZero() {
		// Removed by hand since its last use and made anew: empty, so
		// the record's size no longer holds.
		st.RecordErr = recs.Update(v.Name, func(r *Record) error {
			r.SizeBytes, r.Measured = 0, time.Time{}
			return nil
		})
		return st, nil
	}
	if err == nil && recErr == nil && st.Readable && !prev.LastUsed.IsZero() {
		// The driver's own record wins over the job-writable stamp.
		st.Warm = true
		st.Stamp.LastUsed, st.Stamp.SizeBytes, st.Stamp.Measured = prev.LastUsed, prev.SizeBytes, prev.Measured
	}
	return st, err
}

// claimVolume makes sure the volume v exists (existed: it did before)
// and reads and renews its stamp.
func claimVolume(ctx context.Context, e volumeEngine, v Volume, jobID int64, now time.Time) (st Status, existed bool, err error) {
	info, err := e.InspectVolume(ctx, v.Name)
	existed = err == nil
	if errors.Is(err, engine.ErrNotFound) {
		labels := maps.Clone(v.Labels)
		if labels == nil {
			labels = map[string]string{}
		}
		labels[naming.LabelCreated] = now.UTC().Format(time.RFC3339)
		if err := e.EnsureVolume(ctx, engine.VolumeSpec{Name: v.Name, Labels: labels}); err != nil {
			return Status{}, false, fmt.Errorf("cache volume for %s: %w", v.Path, err)
		}
		info, err = e.InspectVolume(ctx, v.Name)
	}
	if err != nil {
		return Status{}, false, fmt.Errorf("cache volume for %s: %w", v.Path, err)
	}
	if info.Labels[naming.LabelKind] != string(naming.KindCache) {
		return Status{}, false, fmt.Errorf("volume %s exists but is not a warmcache cache volume; remove or rename it", v.Name)
	}
	st = Status{Volume: v, Mountpoint: info.Mountpoint}
	if _, err := os.Stat(info.Mountpoint); err != nil {
		return st, existed, nil // remote engine: nothing to read or stamp here
	}
	st.Readable = true
	stamp, err := ReadStamp(info.Mountpoint)
	switch {
	case err == nil:
		st.Warm, st.Stamp = true, stamp
	case errors.Is(err, fs.ErrNotExist):
		// A new volume: let any job user write, whatever uid it runs as.
		if err := OpenToAllUsers(info.Mountpoint); err != nil {
			return st, existed, fmt.Errorf("opening cache volume %s to non-root jobs: %w", v.Name, err)
		}
	default:
		// A damaged stamp only loses the record, never the cache.
		st.Warm = true
	}
	next := st.Stamp
	next.LastUsed, next.JobID = now.UTC(), jobID
	if err := WriteStamp(info.Mountpoint, next); err != nil {
		// Only the record is lost (a job may have put something in the
		// stamp's place); the cache itself is fine to use.
		st.StampErr = err
	}
	return st, existed, nil
}

// OpenToAllUsers makes the root of a fresh volume writable by every user,
// so that a job running as any non-root uid can use it. The sticky bit, as
// on /tmp, keeps a non-root job from removing or renaming what it does not
// own there, such as the stamp.
//
// Changing the mode by path is safe here, unlike anywhere inside a volume:
// mountpoint is the engine's own directory for the volume (for Docker,
// /var/lib/docker/volumes/NAME/_data), which a job sees only as the root of
// its mount and cannot replace with a link.
func OpenToAllUsers(mountpoint string) error {
	return os.Chmod(mountpoint, os.ModeSticky|0o777)
}

// maxStampBytes bounds a stamp read: jobs can write the file.
const maxStampBytes = 4 << 10

// ReadStamp reads the stamp of the volume at mountpoint. Jobs can write to
// the volume root, so the stamp is untrusted: a symlink, FIFO, device or
// huge file is refused instead of followed, opened or read whole.
func ReadStamp(mountpoint string) (Stamp, error) {
	if mountpoint == "" {
		return Stamp{}, fmt.Errorf("reading stamp: volume has no local mountpoint: %w", fs.ErrNotExist)
	}
	name := filepath.Join(mountpoint, StampFile)
	// O_PATH looks the name up without opening what it names: opening a
	// device can act (a watchdog, a tape) and opening a FIFO wakes its
	// writer. With O_NOFOLLOW a symlink yields the link itself.
	fd, err := unix.Open(name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return Stamp{}, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return Stamp{}, fmt.Errorf("stamp of %s is not a regular file", mountpoint)
	}
	// Reopening the descriptor reads the very file just checked, whatever
	// the name has become since. O_NONBLOCK: a lease a job holds on the
	// file makes the open fail instead of wait.
	f, err := os.OpenFile("/proc/self/fd/"+strconv.Itoa(fd), os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return Stamp{}, fmt.Errorf("reading stamp of %s: %w", mountpoint, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxStampBytes))
	if err != nil {
		return Stamp{}, fmt.Errorf("reading stamp of %s: %w", mountpoint, err)
	}
	var s Stamp
	if err := json.Unmarshal(data, &s); err != nil {
		return Stamp{}, fmt.Errorf("stamp of %s: %w", mountpoint, err)
	}
	return s, nil
}

// WriteStamp replaces the stamp atomically, so concurrent jobs never read
// half a stamp.
func WriteStamp(mountpoint string, s Stamp) error {
	data, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("encoding stamp: %w", err)
	}
	// Jobs write in this directory at the same time: replaceFile changes
	// the temporary file only through its descriptor and renames it
	// without following anything.
	if err := replaceFile(filepath.Join(mountpoint, StampFile), data, 0o644); err != nil {
		return fmt.Errorf("writing stamp: %w", err)
	}
	return nil
}

// measureInterval is how long a measured size stands. Measuring walks
// every file of a cache and cleanup runs after every job: size tracking
// must stay cheap with big caches and many jobs, so a size may be this old.
const measureInterval = 10 * time.Minute

// Measure records the current size of each volume in its stamp (and, with
// recs, in its record, which then decides whether it is due), unless it
// was measured less than measureInterval before now. It walks the files,
// so it runs after the job (cleanup), not on the way in.
func Measure(ctx context.Context, e volumeEngine, recs *Records, vols []Volume, now time.Time) error {
	errs := make([]error, len(vols))
	var wg sync.WaitGroup
	for i, v := range vols {
		wg.Go(func() { errs[i] = measure(ctx, e, recs, v, now) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// fresh says whether a size measured at measured still stands at now. A
// time after now is not believed: one far in the future would stop the
// measuring for good.
func fresh(measured, now time.Time) bool {
	age := now.Sub(measured)
	return !measured.IsZero() && age >= 0 && age <= measureInterval
}

func measure(ctx context.Context, e volumeEngine, recs *Records, v Volume, now time.Time) error {
	if recs != nil {
		rec, err := recs.Get(v.Name)
		if err == nil && fresh(rec.Measured, now) {
			return nil
		}
	}
	info, err := e.InspectVolume(ctx, v.Name)
	if errors.Is(err, engine.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("measuring %s: %w", v.Name, err)
	}
	stamp, err := ReadStamp(info.Mountpoint)
	if err != nil {
		return nil // unreadable here, or never claimed: nothing to update
	}
	if recs == nil && fresh(stamp.Measured, now) {
		return nil
	}
	size, err := DirSize(ctx, info.Mountpoint)
	if err != nil {
		return fmt.Errorf("measuring %s: %w", v.Name, err)
	}
	stamp.SizeBytes, stamp.Measured = size, now.UTC()
	var recErr error
	if recs != nil {
		recErr = recs.SetSize(v.Name, size, now)
	}
	return errors.Join(recErr, WriteStamp(info.Mountpoint, stamp))
}

// maxDepth bounds how deep DirSize goes below the root: the walk holds a
// descriptor per level, and a job can nest directories far deeper than
// any cache does. Deeper files are not counted.
const maxDepth = 256

// DirSize adds up the sizes of the regular files under root (a volume's
// mountpoint) that are at most maxDepth directories deep, but for the
// stamp at its root.
//
// Jobs change the tree while it is walked, as root, so the walk trusts no
// name twice: each directory is opened relative to its parent's
// descriptor, by a name read from that descriptor, with O_NOFOLLOW and
// O_DIRECTORY. It cannot leave root, and what a job swaps in for a
// directory (a symlink, a device, a FIFO) fails to open, unopened, and is
// skipped like an entry that vanished. Sizes come from fstatat on the
// parent's descriptor. Symlinks and special files count nothing.
func DirSize(ctx context.Context, root string) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	fi, err := os.Lstat(root)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return 0, nil
	case err != nil:
		return 0, err
	case fi.Mode().IsRegular():
		return fi.Size(), nil
	case !fi.IsDir():
		return 0, nil
	}
	fd, err := openDir(unix.AT_FDCWD, root)
	if gone(err) {
		return 0, nil
	}
	if err != nil {
		return 0, &fs.PathError{Op: "open", Path: root, Err: err}
	}
	var total int64
	if err := addDir(ctx, fd, root, 0, &total); err != nil {
		return 0, err
	}
	return total, nil
}

// addDir adds to total the sizes under the directory open as fd, at depth
// below the root, and closes fd. name is for errors only.
func addDir(ctx context.Context, fd int, name string, depth int, total *int64) error {
	dir := os.NewFile(uintptr(fd), name)
	defer dir.Close()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		// In batches: a job can put millions of entries in a directory.
		entries, rerr := dir.ReadDir(1024)
		for _, e := range entries {
			switch {
			case depth == 0 && e.Name() == StampFile:
				// warmcache's own: a cache's size is the job's files.
			case e.Type().IsRegular():
				// Not e.Info: it would stat by path, through names a job
				// may have swapped since.
				var st unix.Stat_t
				err := statAt(fd, e.Name(), &st)
				if gone(err) {
					continue
				}
				if err != nil {
					return &fs.PathError{Op: "fstatat", Path: filepath.Join(name, e.Name()), Err: err}
				}
				if st.Mode&unix.S_IFMT == unix.S_IFREG {
					*total += st.Size
				}
			case e.IsDir() && depth < maxDepth:
				sub, err := openDir(fd, e.Name())
				if gone(err) {
					continue
				}
				if err != nil {
					return &fs.PathError{Op: "openat", Path: filepath.Join(name, e.Name()), Err: err}
				}
				if err := addDir(ctx, sub, filepath.Join(name, e.Name()), depth+1, total); err != nil {
					return err
				}
			}
		}
		switch {
		case rerr == io.EOF:
			return nil
		case gone(rerr):
			return nil // removed while it was read
		case rerr != nil:
			return rerr
		}
	}
}

// openDir opens the directory name in dirfd, refusing anything else
// before opening it and following no symlink.
func openDir(dirfd int, name string) (int, error) {
	for {
		fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// statAt lstats name in dirfd.
func statAt(dirfd int, name string, st *unix.Stat_t) error {
	for {
		err := unix.Fstatat(dirfd, name, st, unix.AT_SYMLINK_NOFOLLOW)
		if err != unix.EINTR {
			return err
		}
	}
}

// gone says an entry vanished (ENOENT) or was swapped for something not to
// be entered (ENOTDIR, ELOOP) by a concurrent job while it was walked.
func gone(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP)
}
