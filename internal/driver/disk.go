package driver

import (
	"context"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/warmcache/warmcache/internal/cache"
)

// Below these, a failing engine call is most likely a full disk.
const (
	fullDiskFraction = 0.01
	fullDiskBytes    = 512 << 20
)

// DiskSpace returns the free and total bytes of the filesystem holding
// path, which must be on this host (fs.ErrNotExist otherwise).
func DiskSpace(path string) (free, total int64, err error) {
	if _, err := os.Stat(path); err != nil {
		return 0, 0, err
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return 0, 0, fmt.Errorf("statfs %s: %w", path, err)
	}
	return int64(st.Bavail) * st.Bsize, int64(st.Blocks) * st.Bsize, nil
}

// diskIsFull says whether free of total bytes is too little to work with.
func diskIsFull(free, total int64) bool {
	return total > 0 && (free < fullDiskBytes || float64(free)/float64(total) < fullDiskFraction)
}

// explainFullDisk adds to a failed stage's error that the engine's disk is
// full, when it is: the engine's own message for that is buried in its
// error text, and the admin must act, not the job. It asks the engine
// where its data root is, so it runs only on failure.
func explainFullDisk(d Deps, err error) error {
	if err == nil || d.Engine == nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, perr := d.Engine.Ping(ctx)
	if perr != nil || info.RootDir == "" {
		return err
	}
	free, total, serr := DiskSpace(info.RootDir)
	if serr != nil || !diskIsFull(free, total) {
		return err
	}
	// Make room for the retry: the least recently used caches go first,
	// down to the admin's low-water mark, if one is set.
	gcAtStage(ctx, d, nil)
	return fmt.Errorf("%w (the Docker data root %s has only %s free of %s: free space with warmcache cache ls and docker system prune)",
		err, info.RootDir, cache.Bytes(free), cache.Bytes(total))
}
