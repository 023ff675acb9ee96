package cache

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// SharedProfiles returns profiles with every one marked safe for
// concurrent writers: under commit-on-success, jobs never write the shared
// volume itself, only layers of their own, so one volume serves every
// concurrency slot.
func SharedProfiles(profiles []Profile) []Profile {
	out := make([]Profile, len(profiles))
	for i, p := range profiles {
		p.ConcurrentSafe = true
		out[i] = p
	}
	return out
}

// CommitOptions are OverlayOptions for a commit layer: with redirect_dir,
// metacopy and index off, the upper directory holds whole files, whiteouts
// and opaque directories only, which is all ApplyLayer knows.
func CommitOptions(lowerMountpoint, layerMountpoint string) (map[string]string, error) {
	opts, err := OverlayOptions(lowerMountpoint, layerMountpoint)
	if err != nil {
		return nil, err
	}
	opts["o"] += ",redirect_dir=off,metacopy=off,index=off"
	return opts, nil
}

// opaqueXattr marks an upper directory that hides the lower one entirely.
const opaqueXattr = "trusted.overlay.opaque"

// maxApplyDepth bounds how deep ApplyLayer goes; a job can nest far deeper
// than any cache does.
const maxApplyDepth = 256

// ErrHalfApplied wraps an ApplyLayer error that came after the first
// change to lower: lower now holds part of the layer, and the caller must
// not leave it for the next job as it is.
var ErrHalfApplied = errors.New("layer half applied")

// ApplyLayer moves what jobs wrote through an overlay (the layer's upper
// directory) into the volume it was mounted over (lower): new and changed
// files replace lower's, whiteouts delete, opaque directories replace
// lower's whole. Files move by rename on one filesystem, so the cost is the
// number of changed entries, not the size of the cache.
//
// The overlay must be unmounted (the job's containers removed) and lower
// must have no other writer (the caller holds the volume's record lock).
// The job wrote upper, so nothing in it is followed: symlinks move as
// links, and lower is entered only through real directories. Upper is
// checked whole before lower is touched (depth, kinds of file); an error
// after the first change (a full disk) wraps ErrHalfApplied.
func ApplyLayer(ctx context.Context, layerMountpoint, lowerMountpoint string) error {
	upper := filepath.Join(layerMountpoint, upperDir)
	if err := checkDir(ctx, upper, 0); err != nil {
		return fmt.Errorf("applying layer: %w", err)
	}
	a := applier{ctx: ctx}
	err := a.dir(upper, lowerMountpoint, 0)
	if err != nil && a.changed {
		return fmt.Errorf("%w: %w", ErrHalfApplied, err)
	}
	return err
}

// checkDir makes sure ApplyLayer can move all of the upper directory dir:
// no deeper than maxApplyDepth, and only directories, regular files,
// links and whiteouts (no device, socket or FIFO a job made).
func checkDir(ctx context.Context, dir string, depth int) error {
	if depth > maxApplyDepth {
		return fmt.Errorf("%s is nested too deep", dir)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return &fs.PathError{Op: "lstat", Path: p, Err: err}
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			if err := checkDir(ctx, p, depth+1); err != nil {
				return err
			}
		case unix.S_IFREG, unix.S_IFLNK:
		case unix.S_IFCHR:
			if st.Rdev != 0 {
				return fmt.Errorf("%s is a device", p)
			}
		default:
			return fmt.Errorf("%s is not a file, directory or link", p)
		}
	}
	return nil
}

// applier applies an upper directory checked by checkDir.
type applier struct {
	ctx     context.Context
	changed bool // lower was changed
}

func (a *applier) dir(upper, lower string, depth int) error {
	if depth > maxApplyDepth {
		return fmt.Errorf("applying layer: %s is nested too deep", upper)
	}
	entries, err := os.ReadDir(upper)
	if err != nil {
		return fmt.Errorf("applying layer: %w", err)
	}
	for _, e := range entries {
		if err := a.ctx.Err(); err != nil {
			return fmt.Errorf("applying layer: %w", err)
		}
		if depth == 0 && e.Name() == StampFile {
			continue // the volume's own record, whatever the job wrote there
		}
		if err := a.entry(filepath.Join(upper, e.Name()), filepath.Join(lower, e.Name()), depth); err != nil {
			return err
		}
	}
	return nil
}

func (a *applier) entry(u, l string, depth int) error {
	var st unix.Stat_t
	if err := unix.Lstat(u, &st); err != nil {
		return fmt.Errorf("applying layer: %w", &fs.PathError{Op: "lstat", Path: u, Err: err})
	}
	// Every step below may change lower.
	a.changed = true
	if st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0 {
		// A whiteout: the job deleted this.
		if err := os.RemoveAll(l); err != nil {
			return fmt.Errorf("applying layer: %w", err)
		}
		return nil
	}
	li, lerr := os.Lstat(l)
	if lerr != nil && !errors.Is(lerr, fs.ErrNotExist) {
		return fmt.Errorf("applying layer: %w", lerr)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		if lerr == nil && li.IsDir() {
			if err := os.RemoveAll(l); err != nil {
				return fmt.Errorf("applying layer: %w", err)
			}
		}
		// Rename replaces a file or link in lower in one step.
		if err := os.Rename(u, l); err != nil {
			return fmt.Errorf("applying layer: %w", err)
		}
		return nil
	}
	if lerr == nil && (!li.IsDir() || opaque(u)) {
		if err := os.RemoveAll(l); err != nil {
			return fmt.Errorf("applying layer: %w", err)
		}
		lerr = fs.ErrNotExist
	}
	if lerr != nil {
		if err := os.Mkdir(l, 0o700); err != nil {
			return fmt.Errorf("applying layer: %w", err)
		}
	}
	// The directory's owner and mode as the job left them.
	if err := errors.Join(os.Lchown(l, int(st.Uid), int(st.Gid)), unix.Chmod(l, st.Mode&0o7777)); err != nil {
		return fmt.Errorf("applying layer: %w", err)
	}
	return a.dir(u, l, depth+1)
}

// opaque says whether the upper directory dir hides the lower one.
func opaque(dir string) bool {
	buf := make([]byte, 1)
	n, err := unix.Lgetxattr(dir, opaqueXattr, buf)
	return err == nil && n == 1 && buf[0] == 'y'
}
