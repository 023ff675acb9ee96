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
	err = removeJobResources(ctx, cleanupRemover(d), j.Key())
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

// remover is what teardown needs from the engine.
type remover interface {
	List(ctx context.Context, labels map[string]string) ([]engine.Resource, error)
	Remove(ctx context.Context, r engine.Resource) error
}

// removeJobResources removes what the job created. Persistent caches are
// skipped even if a label says they belong to the job.
func removeJobResources(ctx context.Context, e remover, key naming.JobKey) error {
	found, err := e.List(ctx, map[string]string{naming.LabelJob: key.Base()})
	if err != nil {
		return fmt.Errorf("listing the job's resources: %w", err)
	}
	found = slices.DeleteFunc(found, func(r engine.Resource) bool {
		return r.Labels[naming.LabelKind] == string(naming.KindCache)
	})
	return removeAll(ctx, e, found)
}

// removeJobContainers removes the job's containers (which unmounts its
// volumes), and nothing else.
func removeJobContainers(ctx context.Context, e remover, key naming.JobKey) error {
	rs, err := e.List(ctx, map[string]string{naming.LabelJob: key.Base()})
	if err != nil {
		return fmt.Errorf("listing the job's containers: %w", err)
	}
	rs = slices.DeleteFunc(rs, func(r engine.Resource) bool { return r.Type != engine.Container })
	return removeAll(ctx, e, rs)
}
