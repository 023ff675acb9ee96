package host

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
)

// Archive writes the content of volume to w as a tar stream: directories,
// regular files and links that stay inside the volume, with their modes
// and owners. What a job wrote there is the job's: the walk is confined to
// the volume (os.Root) and follows no link; device files, sockets, pipes
// and links that point out of the volume are left out.
func (h *Host) Archive(ctx context.Context, volume string, w io.Writer) error {
	dir, err := h.dir(ctx, volume)
	if err != nil {
		return err
	}
	return archiveDir(ctx, dir, w)
}

func archiveDir(ctx context.Context, dir string, w io.Writer) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	tw := tar.NewWriter(w)
	err = fs.WalkDir(root.FS(), ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if name == "." {
			return nil
		}
		info, err := root.Lstat(name)
		if err != nil {
			return err
		}
		var link string
		switch {
		case info.Mode().IsDir(), info.Mode().IsRegular():
		case info.Mode()&fs.ModeSymlink != 0:
			if link, err = root.Readlink(name); err != nil {
				return err
			}
			if !localLink(name, link) {
				return nil
			}
		default:
			return nil // devices, sockets, pipes: not a cache's content
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		hdr.Name = name
		hdr.Uname, hdr.Gname = "", ""
		if info.IsDir() {
			hdr.Name += "/"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		f, err := root.Open(name)
		if err != nil {
			return err
		}
		defer f.Close()
		if n, err := io.Copy(tw, f); err != nil {
			return err
		} else if n != hdr.Size {
			return fmt.Errorf("%s changed while it was archived", name)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// localLink says whether the symbolic link name -> target resolves
// inside the directory it is in the tree of.
func localLink(name, target string) bool {
	return !filepath.IsAbs(target) && filepath.IsLocal(path.Join(path.Dir(name), target))
}

// ErrNotEmpty: Restore was asked to fill a volume that holds something.
var ErrNotEmpty = errors.New("volume is not empty")

// Restore fills volume, which must be empty (a fresh one), from the tar
// stream r, as Archive writes it. It refuses what Archive never writes:
// paths out of the volume, hard links, links out of the volume, device
// files. On any error it empties the volume again: a volume never keeps
// half a restore.
func (h *Host) Restore(ctx context.Context, volume string, r io.Reader) error {
	dir, err := h.dir(ctx, volume)
	if err != nil {
		return err
	}
	return restoreDir(ctx, dir, r)
}

func restoreDir(ctx context.Context, dir string, r io.Reader) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	if entries, err := fs.ReadDir(root.FS(), "."); err != nil {
		return err
	} else if len(entries) > 0 {
		return fmt.Errorf("%s: %w", dir, ErrNotEmpty)
	}
	if err := extract(ctx, root, r); err != nil {
		if cerr := emptyRoot(root); cerr != nil {
			return errors.Join(err, fmt.Errorf("emptying the volume again: %w", cerr))
		}
		return err
	}
	return nil
}

func extract(ctx context.Context, root *os.Root, r io.Reader) error {
	tr := tar.NewReader(r)
	type dirMode struct {
		name string
		mode fs.FileMode
	}
	var dirs []dirMode // set last: a read-only directory is filled first
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		name := path.Clean(hdr.Name)
		if !filepath.IsLocal(name) || name == "." {
			return fmt.Errorf("archive entry %q is outside the volume", hdr.Name)
		}
		mode := fs.FileMode(hdr.Mode).Perm() | fs.FileMode(hdr.Mode)&(fs.ModeSticky|fs.ModeSetgid)
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(name, 0o700); err != nil {
				return err
			}
			dirs = append(dirs, dirMode{name, mode | fs.ModeDir})
		case tar.TypeReg:
			f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return err
			}
			// Owner, then mode (a chown clears setgid), on the open file:
			// no second lookup of its path.
			_, err = io.Copy(f, tr)
			if err == nil {
				err = f.Chown(hdr.Uid, hdr.Gid)
			}
			if err == nil {
				err = f.Chmod(mode)
			}
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
			continue
		case tar.TypeSymlink:
			if !localLink(name, hdr.Linkname) {
				return fmt.Errorf("archive link %q -> %q leads out of the volume", hdr.Name, hdr.Linkname)
			}
			if err := root.Symlink(hdr.Linkname, name); err != nil {
				return err
			}
		default:
			return fmt.Errorf("archive entry %q: type %q is not restored (only directories, files and links inside the volume)", hdr.Name, hdr.Typeflag)
		}
		if err := root.Lchown(name, hdr.Uid, hdr.Gid); err != nil {
			return err
		}
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := root.Chmod(dirs[i].name, dirs[i].mode); err != nil {
			return err
		}
	}
	return nil
}

// emptyRoot removes everything inside root, and not root itself.
func emptyRoot(root *os.Root) error {
	entries, err := fs.ReadDir(root.FS(), ".")
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		errs = append(errs, root.RemoveAll(e.Name()))
	}
	return errors.Join(errs...)
}

// Empty removes the whole content of volume (not the volume).
func (h *Host) Empty(ctx context.Context, volume string) error {
	dir, err := h.dir(ctx, volume)
	if err != nil {
		return err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	return emptyRoot(root)
}
