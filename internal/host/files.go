package host

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// File is a file for a job, by name, under a volume's root.
type File struct {
	Name    string
	Content []byte
}

// WriteIntoTmpfs writes files into the job's tmpfs volume straight
// through its directory on this host, saving an exec into a container.
// Only where that directory is a tmpfs now (a started container holds it
// mounted, and the driver runs in the engine's mount namespace): otherwise
// it is on disk, or out of reach, and it reports false for the caller to
// deliver them another way. A file that exists (say, planted by an image
// entrypoint) is never opened or followed: the delivery fails.
func (h *Host) WriteIntoTmpfs(ctx context.Context, volume string, files []File) (bool, error) {
	dir, err := h.dir(ctx, volume)
	if err != nil {
		return false, nil
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil || st.Type != unix.TMPFS_MAGIC {
		return false, nil
	}
	for _, f := range files {
		path := filepath.Join(dir, f.Name)
		fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return false, fmt.Errorf("writing %s into the job's tmpfs: %w", f.Name, err)
		}
		file := os.NewFile(uintptr(fd), path)
		_, werr := file.Write(f.Content)
		if err := errors.Join(werr, file.Close()); err != nil {
			return false, fmt.Errorf("writing %s into the job's tmpfs: %w", f.Name, err)
		}
	}
	return true, nil
}

// maxReadBytes bounds ReadFile: what it reads is in a job's volume.
const maxReadBytes = 1 << 20

// ReadFile reads the file name at the root of volume, following no link.
func (h *Host) ReadFile(ctx context.Context, volume, name string) ([]byte, error) {
	dir, err := h.dir(ctx, volume)
	if err != nil {
		return nil, err
	}
	// O_PATH looks the name up without opening what it names: opening a
	// device can act and opening a FIFO wakes its writer. With O_NOFOLLOW
	// a symlink yields the link itself, refused below.
	path := filepath.Join(dir, name)
	pfd, err := unix.Open(path, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("reading %s of volume %s: %w", name, volume, err)
	}
	defer unix.Close(pfd)
	var st unix.Stat_t
	if err := unix.Fstat(pfd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("%s of volume %s is not a regular file", name, volume)
	}
	// Reopening the descriptor reads the very file just checked.
	f, err := os.OpenFile("/proc/self/fd/"+strconv.Itoa(pfd), os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("reading %s of volume %s: %w", name, volume, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxReadBytes))
	if err != nil {
		return nil, fmt.Errorf("reading %s of volume %s: %w", name, volume, err)
	}
	return data, nil
}

// AppendLine appends line to the file name at the root of volume, made
// if missing (mode 0600). Only for volumes jobs never see the root of,
// such as an overlay's layer.
func (h *Host) AppendLine(ctx context.Context, volume, name, line string) error {
	dir, err := h.dir(ctx, volume)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(f, line)
	return errors.Join(err, f.Close())
}
