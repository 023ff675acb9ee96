package reap

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/naming"
	"github.com/warmcache/warmcache/internal/parallel"
)

// Engine is what removal needs from the engine (see engine.Engine).
type Engine interface {
	List(ctx context.Context, labels map[string]string) ([]engine.Resource, error)
	Remove(ctx context.Context, r engine.Resource) error
}

// RemoveJob removes what the job created, at its cleanup or before a
// retried prepare. Persistent caches are skipped even if a label says
// they belong to the job.
func RemoveJob(ctx context.Context, e Engine, key naming.JobKey) error {
	found, err := JobResources(ctx, e, key)
	if err != nil {
		return err
	}
	return RemoveAll(ctx, e, found)
}

// JobResources lists what RemoveJob removes.
func JobResources(ctx context.Context, e Engine, key naming.JobKey) ([]engine.Resource, error) {
	found, err := e.List(ctx, map[string]string{naming.LabelJob: key.Base()})
	if err != nil {
		return nil, fmt.Errorf("listing the job's resources: %w", err)
	}
	return slices.DeleteFunc(found, func(r engine.Resource) bool {
		return r.Labels[naming.LabelKind] == string(naming.KindCache)
	}), nil
}

// RemoveAll removes containers first: they hold the volumes and networks.
func RemoveAll(ctx context.Context, e Engine, rs []engine.Resource) error {
	var containers, rest []engine.Resource
	for _, r := range rs {
		if r.Type == engine.Container {
			containers = append(containers, r)
		} else {
			rest = append(rest, r)
		}
	}
	remove := func(r engine.Resource) error { return e.Remove(ctx, r) }
	return errors.Join(parallel.Each(containers, remove), parallel.Each(rest, remove))
}
