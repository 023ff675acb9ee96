package host

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// maxDepth bounds how deep dirSize goes below the root: the walk holds a
// descriptor per level, and a job can nest directories far deeper than
// any cache does. Deeper files are not counted.
const maxDepth = 256

// dirSize adds up the sizes of the regular files under root (a volume's
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
func dirSize(ctx context.Context, root string) (int64, error) {
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
			case depth == 0 && e.Name() == legacyStampFile:
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

// legacyStampFile is the file older versions kept at the root of each
// cache volume (a job-writable note of last use and size, replaced by
// the driver's own records). Caches made then still hold one: it is not a
// job's file, so it counts for nothing and a commit never applies it.
const legacyStampFile = ".warmcache-stamp"
