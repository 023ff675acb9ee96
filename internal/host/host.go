// Package host is the one place that reaches into the engine's own
// filesystem: the directories of volumes (to measure a cache, make an
// overlay's layer, apply a commit, write a job's credentials straight into
// its tmpfs, keep a job's step marks), the job cgroups, and the sockets
// inside job containers (the stage agent's). It works only
// when the driver runs beside a local engine, so main decides once whether
// there is a Host; with a remote engine it passes nil, and every caller
// then goes without (a size not measured, credentials delivered by exec).
package host

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strings"

	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/limits/cgroup"
)

// VolumeInspector is what Host needs from the engine: where a volume's
// directory is.
type VolumeInspector interface {
	InspectVolume(ctx context.Context, name string) (engine.VolumeInfo, error)
}

// Host is the engine's host, seen from the driver beside it.
type Host struct {
	volumes VolumeInspector
	// Cgroups manages the jobs' cgroups; nil where this process may not
	// (the engine's hierarchy is not this host's to manage).
	Cgroups *cgroup.Host
}

// ErrNotLocal means a volume's directory is not on this host: the engine
// that reported it runs elsewhere (or in another mount namespace).
var ErrNotLocal = errors.New("volume directory not on this host")

// New returns the Host of a local engine. cgroups may be nil.
func New(volumes VolumeInspector, cgroups *cgroup.Host) *Host {
	return &Host{volumes: volumes, Cgroups: cgroups}
}

// Local decides, once, whether the engine at dockerHost runs on this host:
// only a unix socket reaches the engine on the same machine.
func Local(dockerHost string) bool {
	return strings.HasPrefix(dockerHost, "unix://")
}

// dir is the directory of volume on this host. The engine reports it;
// it must exist here for the engine to be this host's.
func (h *Host) dir(ctx context.Context, volume string) (string, error) {
	info, err := h.volumes.InspectVolume(ctx, volume)
	if err != nil {
		return "", err
	}
	if info.Mountpoint == "" {
		return "", fmt.Errorf("volume %s: %w", volume, ErrNotLocal)
	}
	if _, err := os.Stat(info.Mountpoint); err != nil {
		return "", fmt.Errorf("volume %s: %w", volume, ErrNotLocal)
	}
	return info.Mountpoint, nil
}

// Has says whether the directory of volume is on this host.
func (h *Host) Has(ctx context.Context, volume string) bool {
	_, err := h.dir(ctx, volume)
	return err == nil
}

// FS is the content of volume, to read. What a job wrote there is the
// job's: read it as such (os.DirFS follows links in the paths it opens,
// fs.ReadDir's entries do not).
func (h *Host) FS(ctx context.Context, volume string) (fs.FS, error) {
	dir, err := h.dir(ctx, volume)
	if err != nil {
		return nil, err
	}
	return os.DirFS(dir), nil
}

// OpenRoot opens the directory of volume as a root no path may leave,
// to work in (see cache/gitcheck). What a job wrote there is the job's:
// links inside it are followed, and may have moved since a look.
func (h *Host) OpenRoot(ctx context.Context, volume string) (*os.Root, error) {
	dir, err := h.dir(ctx, volume)
	if err != nil {
		return nil, err
	}
	return os.OpenRoot(dir)
}

// Size is the size of the regular files in volume (see dirSize).
func (h *Host) Size(ctx context.Context, volume string) (int64, error) {
	dir, err := h.dir(ctx, volume)
	if err != nil {
		return 0, err
	}
	return dirSize(ctx, dir)
}

// OpenToAllUsers makes the root of a fresh volume writable by every user,
// so that a job running as any non-root uid can use it. The sticky bit, as
// on /tmp, keeps a non-root job from removing or renaming what it does not
// own there.
//
// Changing the mode by path is safe here, unlike anywhere inside a volume:
// the directory is the engine's own for the volume (for Docker,
// /var/lib/docker/volumes/NAME/_data), which a job sees only as the root of
// its mount and cannot replace with a link.
func (h *Host) OpenToAllUsers(ctx context.Context, volume string) error {
	dir, err := h.dir(ctx, volume)
	if err != nil {
		return err
	}
	return openToAllUsers(dir)
}

func openToAllUsers(dir string) error {
	return os.Chmod(dir, os.ModeSticky|0o777)
}

// DialIn connects to the unix socket at path as the host process pid sees
// it (its mount namespace: a container's own files), through
// /proc/<pid>/root; root on the engine's host may, others get an error.
func (h *Host) DialIn(ctx context.Context, pid int, path string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "unix", fmt.Sprintf("/proc/%d/root%s", pid, path))
}
