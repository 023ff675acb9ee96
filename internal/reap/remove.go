package reap

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/limits/cgroup"
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
	remove := func(r engine.Resource) error { return e.Remove(ctx, r) }
	return containersFirst(rs, remove, remove)
}

// containersFirst applies container to each container of rs, all at
// once, then rest to the other resources, all at once (also after a
// failure: what can go, goes), and joins their errors.
func containersFirst(rs []engine.Resource, container, rest func(engine.Resource) error) error {
	var cs, others []engine.Resource
	for _, r := range rs {
		if r.Type == engine.Container {
			cs = append(cs, r)
		} else {
			others = append(others, r)
		}
	}
	return errors.Join(parallel.Each(cs, container), parallel.Each(others, rest))
}

// EndContainers renames the job's containers as naming.Ended says, at
// its cleanup, before their removal in the background, and returns rs
// with their new names. The next job of the runner slot finds them by
// that name on the slot's network while they are still being removed,
// and takes them off it (see services.MakeNetwork); a retried
// preparation of the job is free to create containers of the old names;
// and the late removal, by the new names, never touches those. A
// container gone meanwhile is dropped.
func EndContainers(ctx context.Context, e Renamer, rs []engine.Resource) ([]engine.Resource, error) {
	stamp := strconv.FormatInt(time.Now().UnixNano(), 36)
	gone := make([]bool, len(rs))
	err := parallel.Each(indexes(len(rs)), func(i int) error {
		r := &rs[i]
		if r.Type != engine.Container || naming.IsEnded(r.Name) {
			return nil
		}
		ended := naming.Ended(r.Name, stamp)
		err := e.RenameContainer(ctx, r.Name, ended)
		if errors.Is(err, engine.ErrNotFound) {
			gone[i] = true
			return nil
		}
		if err == nil {
			r.Name = ended
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("marking the job's containers ended: %w", err)
	}
	out := rs[:0]
	for i, r := range rs {
		if !gone[i] {
			out = append(out, r)
		}
	}
	return out, nil
}

// Renamer renames containers (see engine.Engine).
type Renamer interface {
	RenameContainer(ctx context.Context, name, newName string) error
}

// EndedEngine is what RemoveEnded needs from the engine.
type EndedEngine interface {
	Engine
	InspectVolume(ctx context.Context, name string) (engine.VolumeInfo, error)
}

// RemoveEnded is the removal of an ended job's resources rs (as
// EndContainers left them, its networks by id: a retried preparation
// makes one of the same name), handed over by its cleanup at endedAt, in
// the detached process cleanup starts: the containers first (they hold
// the volumes and networks), the job base's cgroup last (it can only go
// once they have); cgroups is nil when the engine is not on this host.
// A volume is looked at just before its removal: one made after endedAt
// (its LabelCreated, in the driver's clock) is of a retried preparation
// of the job, which the runner starts seconds after the cleanup, under
// the same name, and is kept.
func RemoveEnded(ctx context.Context, e EndedEngine, cgroups *cgroup.Host, base string, rs []engine.Resource, endedAt time.Time) error {
	remove := func(r engine.Resource) error {
		if r.Type == engine.Network && r.ID != "" {
			r.Name = r.ID
		}
		if r.Type == engine.Volume {
			v, err := e.InspectVolume(ctx, r.Name)
			if errors.Is(err, engine.ErrNotFound) {
				return nil
			}
			if created, perr := time.Parse(time.RFC3339, v.Labels[naming.LabelCreated]); err == nil && perr == nil && created.After(endedAt) {
				return nil
			}
		}
		return e.Remove(ctx, r)
	}
	if err := containersFirst(rs, func(r engine.Resource) error { return e.Remove(ctx, r) }, remove); err != nil {
		return err
	}
	if cgroups == nil {
		return nil
	}
	return cgroups.Remove(base)
}
