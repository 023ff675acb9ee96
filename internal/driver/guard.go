package driver

import (
	"context"
	"time"

	"github.com/warmcache/warmcache/internal/naming"
)

// guardInterval is how often the free-space guard reads the data root's
// free space while a stage runs in the build container (one statfs);
// only under cache.gc.min_free_disk does it measure the job's caches.
const guardInterval = 5 * time.Second

// watchDisk runs the free-space guard (cache.Guard) of a stage of the job
// beside its exec, until stop is called. The channel gets the job-log
// line once, when the guard says to stop the job; it never fires when
// the job has no guard.
func watchDisk(d Deps, key naming.JobKey) (stopped <-chan string, stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan string, 1)
	go func() {
		// Here, not before the exec: the guard asks the engine where its
		// data root is and reads the caches' sizes at the start.
		g := d.Caches.Guard(ctx, key)
		if g == nil {
			return
		}
		tick := time.NewTicker(guardInterval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if line, stop := g.Check(ctx); stop {
				out <- line
				return
			}
		}
	}()
	return out, cancel
}

// afterGuard makes room once the guard stopped the job: a GC pass, bounded
// like the stages' own.
func afterGuard(d Deps) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d.Caches.GCNow(ctx, nil)
}
