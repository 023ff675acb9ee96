package cachevol

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
	"sync"
	"syscall"
	"time"

	"github.com/warmcache/warmcache/naming"
	"github.com/warmcache/warmcache/runtime"
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
}

// volumeEngine is what cachevol needs from the container engine.
type volumeEngine interface {
	EnsureVolume(ctx context.Context, v runtime.VolumeSpec) error
	InspectVolume(ctx context.Context, name string) (runtime.VolumeInfo, error)
}

// Claim makes sure every planned volume exists, reads what earlier jobs
// left in its stamp, and stamps it as used now by jobID.
func Claim(ctx context.Context, e volumeEngine, vols []Volume, jobID int64, now time.Time) ([]Status, error) {
	out := make([]Status, len(vols))
	errs := make([]error, len(vols))
	var wg sync.WaitGroup
	for i, v := range vols {
		wg.Go(func() { out[i], errs[i] = claim(ctx, e, v, jobID, now) })
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

func claim(ctx context.Context, e volumeEngine, v Volume, jobID int64, now time.Time) (Status, error) {
	labels := maps.Clone(v.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[LabelCreated] = now.UTC().Format(time.RFC3339)
	if err := e.EnsureVolume(ctx, runtime.VolumeSpec{Name: v.Name, Labels: labels}); err != nil {
		return Status{}, fmt.Errorf("cache volume for %s: %w", v.Path, err)
	}
	info, err := e.InspectVolume(ctx, v.Name)
	if err != nil {
		return Status{}, fmt.Errorf("cache volume for %s: %w", v.Path, err)
	}
	if info.Labels[naming.LabelKind] != string(naming.KindCache) {
		return Status{}, fmt.Errorf("volume %s exists but is not a warmcache cache volume; remove or rename it", v.Name)
	}
	st := Status{Volume: v, Mountpoint: info.Mountpoint}
	if _, err := os.Stat(info.Mountpoint); err != nil {
		return st, nil // remote engine: nothing to read or stamp here
	}
	st.Readable = true
	stamp, err := ReadStamp(info.Mountpoint)
	switch {
	case err == nil:
		st.Warm, st.Stamp = true, stamp
	case errors.Is(err, fs.ErrNotExist):
		// A new volume: let any job user write, whatever uid it runs as.
		if err := os.Chmod(info.Mountpoint, os.ModeSticky|0o777); err != nil {
			return st, fmt.Errorf("opening cache volume %s to non-root jobs: %w", v.Name, err)
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
	return st, nil
}

// maxStampBytes bounds a stamp read: jobs can write the file.
const maxStampBytes = 4 << 10

// ReadStamp reads the stamp of the volume at mountpoint. Jobs can write to
// the volume root, so the stamp is untrusted: a symlink, FIFO, device or
// huge file is refused instead of followed, blocked on or read whole.
func ReadStamp(mountpoint string) (Stamp, error) {
	if mountpoint == "" {
		return Stamp{}, fmt.Errorf("reading stamp: volume has no local mountpoint: %w", fs.ErrNotExist)
	}
	f, err := os.OpenFile(filepath.Join(mountpoint, StampFile), os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return Stamp{}, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return Stamp{}, fmt.Errorf("stamp of %s is not a regular file", mountpoint)
	}
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
	tmp, err := os.CreateTemp(mountpoint, StampFile+".*")
	if err != nil {
		return fmt.Errorf("writing stamp: %w", err)
	}
	_, werr := tmp.Write(data)
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr, os.Chmod(tmp.Name(), 0o644)); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("writing stamp: %w", err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(mountpoint, StampFile)); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("writing stamp: %w", err)
	}
	return nil
}

// Measure records the current size of each volume in its stamp. It walks
// the files, so it runs after the job (cleanup), not on the way in.
func Measure(ctx context.Context, e volumeEngine, vols []Volume, now time.Time) error {
	errs := make([]error, len(vols))
	var wg sync.WaitGroup
	for i, v := range vols {
		wg.Go(func() { errs[i] = measure(ctx, e, v, now) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

func measure(ctx context.Context, e volumeEngine, v Volume, now time.Time) error {
	info, err := e.InspectVolume(ctx, v.Name)
	if errors.Is(err, runtime.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("measuring %s: %w", v.Name, err)
	}
	stamp, err := ReadStamp(info.Mountpoint)
	if err != nil {
		return nil // unreadable here, or never claimed: nothing to update
	}
	size, err := DirSize(ctx, info.Mountpoint)
	if err != nil {
		return fmt.Errorf("measuring %s: %w", v.Name, err)
	}
	stamp.SizeBytes, stamp.Measured = size, now.UTC()
	return WriteStamp(info.Mountpoint, stamp)
}

// DirSize adds up the sizes of the regular files under root.
func DirSize(ctx context.Context, root string) (int64, error) {
	var total int64
	err := filepath.WalkDir(root, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed by a concurrent job while we walked
			}
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				total += info.Size()
			}
		}
		return nil
	})
	return total, err
}
