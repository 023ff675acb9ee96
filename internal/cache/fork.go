package cache

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"

	"github.com/warmcache/warmcache/internal/naming"
)

// Fork modes (cache.fork): what an unprotected job of a project whose
// protected cache exists starts from.
const (
	// ForkOff: its own unprotected cache, as if no protected one existed.
	ForkOff = "off"
	// ForkKeep: a fork of the protected cache whose layer of writes is kept
	// as the project's unprotected cache, for its next unprotected job.
	ForkKeep = "keep"
	// ForkDiscard: a fork whose layer goes with the job.
	ForkDiscard = "discard"
)

// Fork is one forkable cache path of an unprotected job.
type Fork struct {
	// Lower is the protected cache the fork reads from; it is never
	// written through the fork.
	Lower Volume
	// Layer is the persistent volume that keeps the fork's writes
	// (ForkKeep).
	Layer Volume
}

// ForkPlan lists, for each volume Plan gives an unprotected key, the
// protected volume of the same project and path it may fork, and the
// volume that keeps the fork's layer.
func ForkPlan(key Key, profiles []Profile) []Fork {
	lowerKey := key
	lowerKey.Trust = Protected
	lowers := Plan(lowerKey, profiles)
	layers := Plan(key, profiles)
	out := make([]Fork, len(layers))
	for i, l := range layers {
		l.Labels = maps.Clone(l.Labels)
		l.Labels[naming.LabelCacheLayer] = "true"
		// Apart from the plain unprotected volume: a layer holds upper/
		// and work/ directories, not a cache's files.
		l.Name = naming.CacheVolume(l.Profile, l.Name, "layer")
		out[i] = Fork{Lower: lowers[i], Layer: l}
	}
	return out
}

// Overlay directories inside a layer volume.
const (
	upperDir = "upper"
	workDir  = "work"
)

// PrepareLayer makes the overlay's upper and work directories at the root
// of a layer volume's mountpoint. Jobs never see this root (only what is
// below upper, through the overlay), so names here are trusted; still,
// anything but a directory is refused.
func PrepareLayer(mountpoint string) error {
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
			if err := OpenToAllUsers(p); err != nil {
				return fmt.Errorf("preparing layer %s: %w", mountpoint, err)
			}
		}
	}
	return nil
}

// OverlayOptions are the local volume driver's options for a fork of the
// cache at lowerMountpoint with its layer at layerMountpoint. Docker mounts
// it when a container first mounts the volume, in constant time whatever
// the size of the cache. Paths that the mount options could not carry
// (",", ":") are refused.
func OverlayOptions(lowerMountpoint, layerMountpoint string) (map[string]string, error) {
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
