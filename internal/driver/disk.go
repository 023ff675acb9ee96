package driver

import (
	"context"
	"fmt"
	"time"

	"github.com/warmcache/warmcache/internal/host"
	"github.com/warmcache/warmcache/internal/human"
)

// Below these, a failing engine call is most likely a full disk.
const (
	fullDiskFraction = 0.01
	fullDiskBytes    = 512 << 20
)

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
	free, total, serr := host.DiskSpace(info.RootDir)
	if serr != nil || !diskIsFull(free, total) {
		return err
	}
	// Make room for the retry: the least recently used caches go first,
	// down to the admin's low-water mark, if one is set.
	d.Caches.GCAtStage(ctx, nil)
	return fmt.Errorf("%w (the Docker data root %s has only %s free of %s: free space with warmcache cache ls and docker system prune)",
		err, info.RootDir, human.Bytes(free), human.Bytes(total))
}
