package host

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/warmcache/warmcache/internal/engine"
)

// A quota'd volume is a Docker local volume like any other, whose
// directory has an ext4 filesystem mounted on it by this host: the
// filesystem lives in a sparse image file of the quota's size beside the
// directory, in the volume's own folder of the engine's store
// (/var/lib/docker/volumes/NAME/warmcache-quota.img, next to _data), and
// is attached to a loop device set to clear itself when the filesystem is
// unmounted. The engine binds the directory into containers as it does
// any volume's, so a container sees the filesystem and the kernel stops
// its writes at the image's size (ENOSPC); overlays over the directory
// (forks) see it as well. Docker's local driver cannot do this itself: it
// hands its "o" options to mount(2), which knows no "loop" (mount(8)
// does): `docker volume create --opt type=ext4 --opt device=IMG --opt
// o=loop` fails at the first mount with "data: loop: invalid argument".
//
// The mount does not survive a reboot: MountQuota mounts it again at the
// next claim. Removing the volume needs it unmounted first (the engine
// would empty the filesystem and fail on the busy directory):
// ReleaseQuota, which the cache manager calls before every removal.

// quotaImageName is the image's name in the volume's folder.
const quotaImageName = "warmcache-quota.img"

// ErrNoQuota wraps why this host cannot give volumes a hard size limit.
var ErrNoQuota = errors.New("hard cache quotas are not available on this host")

// QuotaSupport says whether this host can give volumes a hard limit: it
// needs loop devices (/dev/loop-control), ext4 in the kernel and
// mkfs.ext4 (e2fsprogs) on the PATH, and the right to mount (root).
func (h *Host) QuotaSupport() error {
	if h == nil {
		return fmt.Errorf("%w: the engine is not on this host", ErrNoQuota)
	}
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		return fmt.Errorf("%w: mkfs.ext4 (e2fsprogs) not found", ErrNoQuota)
	}
	fss, err := os.ReadFile("/proc/filesystems")
	if err != nil || !bytes.Contains(fss, []byte("\text4\n")) {
		return fmt.Errorf("%w: the kernel has no ext4", ErrNoQuota)
	}
	fd, err := unix.Open("/dev/loop-control", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("%w: /dev/loop-control: %v", ErrNoQuota, err)
	}
	unix.Close(fd)
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: mounting needs root", ErrNoQuota)
	}
	return nil
}

// quotaPaths are the volume's directory and its image, or ErrNoQuota
// where the engine's store is not laid out as Docker's local driver
// lays it out (a directory _data in a folder of the volume's own).
func (h *Host) quotaPaths(ctx context.Context, volume string) (dir, image string, err error) {
	dir, err = h.dir(ctx, volume)
	if err != nil {
		return "", "", err
	}
	if filepath.Base(dir) != "_data" {
		return "", "", fmt.Errorf("%w: volume %s is not in a local volume store", ErrNoQuota, volume)
	}
	return dir, filepath.Join(filepath.Dir(dir), quotaImageName), nil
}

// CreateQuota gives a fresh volume a hard limit of limit bytes: it makes
// the image (sparse: it takes only what is written to it), its ext4
// filesystem, and mounts it (MountQuota). The filesystem's own overhead
// (its journal and tables) comes out of the limit.
func (h *Host) CreateQuota(ctx context.Context, volume string, limit int64) error {
	if err := h.QuotaSupport(); err != nil {
		return err
	}
	dir, image, err := h.quotaPaths(ctx, volume)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(image, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("quota of %s: %w", volume, err)
	}
	err = f.Truncate(limit)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = mkfs(ctx, image)
	}
	if err != nil {
		os.Remove(image)
		return fmt.Errorf("quota of %s: %w", volume, err)
	}
	if _, err := h.MountQuota(ctx, volume); err != nil {
		return err
	}
	return freshRoot(dir)
}

// freshRoot makes the root of a new filesystem look like a new volume's:
// no lost+found among a cache's files (fsck makes one again if it needs
// one), writable by every job user.
func freshRoot(dir string) error {
	if err := os.Remove(filepath.Join(dir, "lost+found")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return openToAllUsers(dir)
}

// mkfs makes an empty ext4 filesystem in image: no blocks reserved for
// root (a job running as root would otherwise have 5% more than others),
// its tables initialised lazily (constant time in the size).
func mkfs(ctx context.Context, image string) error {
	cmd := exec.CommandContext(ctx, "mkfs.ext4", "-q", "-F", "-m", "0", "-L", "warmcache",
		"-E", "lazy_itable_init=1,lazy_journal_init=1,root_owner=0:0", image)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("mkfs.ext4: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// MountQuota makes sure the filesystem of a quota'd volume is mounted on
// its directory, before any container binds it; quota says whether the
// volume has one. It is cheap when it is (two stats), and safe when
// several prepares of the volume run at once (they take turns on a lock
// of the image).
func (h *Host) MountQuota(ctx context.Context, volume string) (quota bool, err error) {
	if h == nil {
		return false, nil
	}
	dir, image, err := h.quotaPaths(ctx, volume)
	if errors.Is(err, ErrNoQuota) || errors.Is(err, ErrNotLocal) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	f, err := os.OpenFile(image, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return true, fmt.Errorf("quota of %s: %w", volume, err)
	}
	defer f.Close()
	unlock, err := lockVolume(dir)
	if err != nil {
		return true, fmt.Errorf("quota of %s: %w", volume, err)
	}
	defer unlock()
	if mounted, err := isMountpoint(dir); err != nil || mounted {
		return true, err
	}
	if err := mountImage(f, dir); err != nil {
		return true, fmt.Errorf("quota of %s: %w", volume, err)
	}
	return true, openToAllUsers(dir)
}

// lockVolume takes a lock on the folder of the volume whose directory is
// dir, for one process at a time to mount or unmount it. (Not on the
// image: its loop device holds the image's open file, and with it any
// lock taken through it.)
func lockVolume(dir string) (unlock func(), err error) {
	f, err := os.Open(filepath.Dir(dir))
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", f.Name(), err)
	}
	return func() { f.Close() }, nil
}

// isMountpoint says whether dir is the root of a filesystem mounted on its
// parent's.
func isMountpoint(dir string) (bool, error) {
	var st, parent unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return false, &fs.PathError{Op: "lstat", Path: dir, Err: err}
	}
	if err := unix.Lstat(filepath.Dir(dir), &parent); err != nil {
		return false, &fs.PathError{Op: "lstat", Path: filepath.Dir(dir), Err: err}
	}
	return st.Dev != parent.Dev, nil
}

// mountImage mounts the ext4 filesystem in the open image on dir through
// a loop device: the one the image is attached to already (a container
// may still hold its filesystem: a second device would be a second,
// corrupting writer), or a free one, set to clear itself once nothing
// mounts it.
func mountImage(image *os.File, dir string) error {
	dev, err := attachedLoop(image)
	if err != nil {
		return err
	}
	if dev == "" {
		loop, err := attachLoop(image)
		if err != nil {
			return err
		}
		// Held open until mounted: the device would clear itself at
		// its last close.
		defer loop.Close()
		dev = loop.Name()
	}
	if err := unix.Mount(dev, dir, "ext4", unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		return fmt.Errorf("mounting %s on %s: %w", dev, dir, err)
	}
	return nil
}

// attachedLoop is the loop device the image is attached to, "" if none.
func attachedLoop(image *os.File) (string, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(image.Fd()), &st); err != nil {
		return "", err
	}
	devs, err := filepath.Glob("/sys/block/loop*/loop/backing_file")
	if err != nil {
		return "", err
	}
	for _, p := range devs {
		name := filepath.Base(filepath.Dir(filepath.Dir(p)))
		fd, err := unix.Open("/dev/"+name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			continue // detached meanwhile
		}
		info, err := unix.IoctlLoopGetStatus64(fd)
		unix.Close(fd)
		if err == nil && info.Device == st.Dev && info.Inode == st.Ino {
			return "/dev/" + name, nil
		}
	}
	return "", nil
}

// attachLoop attaches the image to a free loop device, open on return.
func attachLoop(image *os.File) (*os.File, error) {
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer ctl.Close()
	for range 8 { // another process may take the free device first
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return nil, fmt.Errorf("finding a free loop device: %w", err)
		}
		loop, err := os.OpenFile(fmt.Sprintf("/dev/loop%d", n), os.O_RDWR, 0)
		if err != nil {
			return nil, err
		}
		cfg := unix.LoopConfig{Fd: uint32(image.Fd())}
		cfg.Info.Flags = unix.LO_FLAGS_AUTOCLEAR
		err = unix.IoctlLoopConfigure(int(loop.Fd()), &cfg)
		if err == nil {
			return loop, nil
		}
		loop.Close()
		if !errors.Is(err, unix.EBUSY) {
			return nil, fmt.Errorf("attaching %s to %s: %w", image.Name(), loop.Name(), err)
		}
	}
	return nil, fmt.Errorf("attaching %s: no free loop device", image.Name())
}

// ReleaseQuota unmounts the filesystem of a quota'd volume from its
// directory, before the engine removes the volume; its loop device clears
// itself. A volume without a quota is left alone. When a container still
// holds the filesystem (its own mount outlives this one), the filesystem
// is mounted back and the error wraps engine.ErrInUse: the volume must
// stay.
func (h *Host) ReleaseQuota(ctx context.Context, volume string) error {
	if h == nil {
		return nil
	}
	dir, image, err := h.quotaPaths(ctx, volume)
	if errors.Is(err, ErrNoQuota) || errors.Is(err, ErrNotLocal) || errors.Is(err, engine.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	f, err := os.OpenFile(image, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("quota of %s: %w", volume, err)
	}
	defer f.Close()
	unlock, err := lockVolume(dir)
	if err != nil {
		return fmt.Errorf("quota of %s: %w", volume, err)
	}
	defer unlock()
	return unmountImage(f, dir, volume)
}

// unmountImage unmounts dir, and mounts it back (wrapping ErrInUse) if
// the image's filesystem is still mounted elsewhere.
func unmountImage(image *os.File, dir, volume string) error {
	mounted, err := isMountpoint(dir)
	if err != nil || !mounted {
		return err
	}
	if err := unix.Unmount(dir, 0); err != nil {
		return fmt.Errorf("quota of %s: unmounting: %w", volume, err)
	}
	dev, err := stillMounted(image)
	if err != nil || dev == "" {
		return err
	}
	if err := unix.Mount(dev, dir, "ext4", unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		return fmt.Errorf("quota of %s: mounting back %s: %w", volume, dev, err)
	}
	return fmt.Errorf("quota of %s: %w", volume, engine.ErrInUse)
}

// releaseWait bounds how long an unmounted filesystem's loop device may
// take to be released by the kernel: the device clears itself a moment
// after the unmount returns, not always before.
const releaseWait = 2 * time.Second

// stillMounted is the loop device of image if its filesystem is still
// mounted somewhere (a container's mount holds it), "" if not. A mounted
// device cannot be opened exclusively; one being released may refuse as
// well for a moment, so a refusal is believed only after releaseWait.
func stillMounted(image *os.File) (string, error) {
	deadline := time.Now().Add(releaseWait)
	for {
		dev, err := attachedLoop(image)
		if err != nil || dev == "" {
			return "", err
		}
		fd, err := unix.Open(dev, unix.O_RDONLY|unix.O_EXCL|unix.O_CLOEXEC, 0)
		if err == nil {
			unix.Close(fd)
			return "", nil
		}
		if time.Now().After(deadline) {
			return dev, nil
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ResetQuota empties a quota'd volume by making its filesystem anew: for
// a cache a job filled, whose last files may be half written. It fails
// (wrapping engine.ErrInUse) while a container holds the filesystem.
func (h *Host) ResetQuota(ctx context.Context, volume string) error {
	dir, image, err := h.quotaPaths(ctx, volume)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(image, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("quota of %s: %w", volume, err)
	}
	defer f.Close()
	unlock, err := lockVolume(dir)
	if err != nil {
		return fmt.Errorf("quota of %s: %w", volume, err)
	}
	defer unlock()
	if err := unmountImage(f, dir, volume); err != nil {
		return err
	}
	if err := mkfs(ctx, image); err != nil {
		return fmt.Errorf("quota of %s: %w", volume, err)
	}
	if err := mountImage(f, dir); err != nil {
		return fmt.Errorf("quota of %s: %w", volume, err)
	}
	return freshRoot(dir)
}

// QuotaSpace is what a quota'd volume holds: its limit (the image's size)
// and the bytes used and free in its filesystem as mounted now. ok is
// false for a volume without a quota or with its filesystem not mounted.
type QuotaSpace struct {
	Limit, Used, Free int64
}

// Quota reports the space of a quota'd volume (see QuotaSpace).
func (h *Host) Quota(ctx context.Context, volume string) (space QuotaSpace, ok bool, err error) {
	if h == nil {
		return QuotaSpace{}, false, nil
	}
	dir, image, err := h.quotaPaths(ctx, volume)
	if errors.Is(err, ErrNoQuota) || errors.Is(err, ErrNotLocal) {
		return QuotaSpace{}, false, nil
	}
	if err != nil {
		return QuotaSpace{}, false, err
	}
	fi, err := os.Stat(image)
	if errors.Is(err, fs.ErrNotExist) {
		return QuotaSpace{}, false, nil
	}
	if err != nil {
		return QuotaSpace{}, false, err
	}
	if mounted, err := isMountpoint(dir); err != nil || !mounted {
		return QuotaSpace{Limit: fi.Size()}, false, err
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return QuotaSpace{}, false, fmt.Errorf("statfs %s: %w", dir, err)
	}
	used := int64(st.Blocks-st.Bfree) * st.Bsize
	return QuotaSpace{Limit: fi.Size(), Used: used, Free: int64(st.Bavail) * st.Bsize}, true, nil
}

// Full says whether a quota'd filesystem has no room left for a cache to
// grow: under 1% of its limit, or under 1 MiB, free.
func (q QuotaSpace) Full() bool {
	return q.Free < q.Limit/100 || q.Free < 1<<20
}
