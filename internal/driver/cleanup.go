package driver

import (
	"context"
	"fmt"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/job"
	"github.com/warmcache/warmcache/internal/naming"
	"github.com/warmcache/warmcache/internal/reap"
)

// Cleanup removes every container, volume and network of the job except
// persistent caches. It runs on its own bounded context (the runner calls it
// after a cancel too), succeeds when there is nothing to remove, and
// reports everything it could not remove.
func Cleanup(d Deps) error {
	ctx, cancel := context.WithTimeout(context.Background(), d.Config.Docker.CleanupTimeout)
	defer cancel()
	j, err := job.Load(d.Getenv)
	if err != nil {
		return err
	}
	start := time.Now()
	d.Caches.Commit(ctx, j, stepStages(j.Steps), func(ctx context.Context) error {
		return removeJobContainers(ctx, d.Engine, j.Key())
	})
	err = reap.RemoveJob(ctx, cleanupRemover(d), j.Key())
	if err == nil { // the cgroup can only go once its containers have
		err = removeCgroup(d, j.Key().Base())
	}
	removed := time.Since(start)
	// Sizes are measured once the job is done, off the job's critical path.
	d.Caches.Measure(ctx, j)
	d.Caches.GCAtStage(ctx, nil)
	d.Log.Debug("cleanup timings", zap.Duration("remove", removed), zap.Duration("total", time.Since(start)))
	if err != nil {
		return fmt.Errorf("cleanup incomplete: %w", err)
	}
	return nil
}

// networksLater is cleanup's remover: it hands the removal of a network,
// by then free of the job's containers, to a detached process, because
// that removal takes longer than anything else in cleanup and nothing
// needs to wait for it. If that process cannot start, the network is
// removed at once; if it fails, the reaper removes the network later.
type networksLater struct {
	reap.Engine
	d Deps
}

// cleanupRemover returns what cleanup removes the job's resources with.
func cleanupRemover(d Deps) reap.Engine {
	if d.Detached == nil {
		return d.Engine
	}
	return networksLater{Engine: d.Engine, d: d}
}

// Remove implements reap.Engine.
func (n networksLater) Remove(ctx context.Context, r engine.Resource) error {
	if r.Type == engine.Network && r.ID != "" {
		// By id: a retried prepare of the job makes one of the same name.
		err := n.d.Detached.RemoveNetwork(r.ID)
		if err == nil {
			return nil
		}
		n.d.Log.Warn("removing the job's network in the background", zap.Error(err))
	}
	return n.Engine.Remove(ctx, r)
}

// removeJobContainers removes the job's containers (which unmounts its
// volumes), and nothing else.
func removeJobContainers(ctx context.Context, e reap.Engine, key naming.JobKey) error {
	rs, err := e.List(ctx, map[string]string{naming.LabelJob: key.Base()})
	if err != nil {
		return fmt.Errorf("listing the job's containers: %w", err)
	}
	rs = slices.DeleteFunc(rs, func(r engine.Resource) bool { return r.Type != engine.Container })
	return reap.RemoveAll(ctx, e, rs)
}
