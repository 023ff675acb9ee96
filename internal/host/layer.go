package host

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Overlay directories inside a layer volume.
const (
	upperDir = "upper"
	workDir  = "work"
)

// prepareLayer makes the overlay's upper and work directories at the root
// of a layer volume's mountpoint. Jobs never see this root (only what is
// below upper, through the overlay), so names here are trusted; still,
// anything but a directory is refused.
func prepareLayer(mountpoint string) error {
	for _, d := range []string{upperDir, workDir} {
		p := filepath.Join(mountpoint, d)
		err := os.Mkdir(p, 0o700)
		if errors.Is(err, fs.ErrExist) {
			fi, lerr := os.Lstat(p)
			if lerr != nil || !fi.IsDir() {
				return fmt.Errorf("layer %s: %s is not a directory", mountpoint, p)
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("preparing layer %s: %w", mountpoint, err)
		}
		if d == upperDir {
			// The root of the fork takes the upper directory's mode: as
			// on a fresh cache, any job user may write there.
			if err := openToAllUsers(p); err != nil {
				return fmt.Errorf("preparing layer %s: %w", mountpoint, err)
			}
		}
	}
	return nil
}

// overlayOptions are the local volume driver's options for a fork of the
// cache at lowerMountpoint with its layer at layerMountpoint. Docker mounts
// it when a container first mounts the volume, in constant time whatever
// the size of the cache. Paths that the mount options could not carry
// (",", ":") are refused.
func overlayOptions(lowerMountpoint, layerMountpoint string) (map[string]string, error) {
	upper, work := filepath.Join(layerMountpoint, upperDir), filepath.Join(layerMountpoint, workDir)
	for _, p := range []string{lowerMountpoint, upper, work} {
		if !filepath.IsAbs(p) || strings.ContainsAny(p, ",:\\\n") {
			return nil, fmt.Errorf("cannot fork: path %q does not fit overlay mount options", p)
		}
	}
	return map[string]string{
		"type":   "overlay",
		"device": "overlay",
		"o":      fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", lowerMountpoint, upper, work),
	}, nil
}

// commitOptions are overlayOptions for a commit layer: with redirect_dir,
// metacopy and index off, the upper directory holds whole files, whiteouts
// and opaque directories only, which is all applyLayer knows.
func commitOptions(lowerMountpoint, layerMountpoint string) (map[string]string, error) {
	opts, err := overlayOptions(lowerMountpoint, layerMountpoint)
	if err != nil {
		return nil, err
	}
	opts["o"] += ",redirect_dir=off,metacopy=off,index=off"
	return opts, nil
}

// opaqueXattr marks an upper directory that hides the lower one entirely.
const opaqueXattr = "trusted.overlay.opaque"

// maxApplyDepth bounds how deep applyLayer goes; a job can nest far deeper
// than any cache does.
const maxApplyDepth = 256

// ErrHalfApplied wraps an applyLayer error that came after the first
// change to lower: lower now holds part of the layer, and the caller must
// not leave it for the next job as it is.
var ErrHalfApplied = errors.New("layer half applied")

// applyLayer moves what jobs wrote through an overlay (the layer's upper
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
func applyLayer(ctx context.Context, layerMountpoint, lowerMountpoint string) error {
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

// checkDir makes sure applyLayer can move all of the upper directory dir:
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
		if depth == 0 && e.Name() == legacyStampFile {
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

// PrepareLayer makes the overlay's upper and work directories in the
// layer volume (see prepareLayer).
func (h *Host) PrepareLayer(ctx context.Context, layer string) error {
	dir, err := h.dir(ctx, layer)
	if err != nil {
		return err
	}
	return prepareLayer(dir)
}

// OverlayOptions are the local volume driver's options for an overlay of
// the volume lower with its writes in the volume layer: a fork of a
// cache when commit is false, a commit layer when it is true (see
// overlayOptions and commitOptions).
func (h *Host) OverlayOptions(ctx context.Context, lower, layer string, commit bool) (map[string]string, error) {
	lowerDir, err := h.dir(ctx, lower)
	if err != nil {
		return nil, err
	}
	layerDir, err := h.dir(ctx, layer)
	if err != nil {
		return nil, err
	}
	if commit {
		return commitOptions(lowerDir, layerDir)
	}
	return overlayOptions(lowerDir, layerDir)
}

// ApplyLayer moves the writes kept in the layer volume into the volume
// lower (see applyLayer); an error after the first change wraps
// ErrHalfApplied.
func (h *Host) ApplyLayer(ctx context.Context, layer, lower string) error {
	layerDir, err := h.dir(ctx, layer)
	if err != nil {
		return err
	}
	lowerDir, err := h.dir(ctx, lower)
	if err != nil {
		return err
	}
	return applyLayer(ctx, layerDir, lowerDir)
}
