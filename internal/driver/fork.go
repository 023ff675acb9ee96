package driver

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"time"

	"github.com/warmcache/warmcache/internal/cache"
	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/job"
	"github.com/warmcache/warmcache/internal/naming"
)

// lowerCache is a protected cache an unprotected job can fork.
type lowerCache struct {
	cache.Fork
	mountpoint string
	record     cache.Record
}

// findForks returns, for an unprotected job with cache.fork on, the
// protected cache of each planned path that exists on this host (nil
// entries where none does, and for profiles under commit-on-success),
// leased so that no GC removes it before the fork stands on it. Protected
// jobs, and forks off, get nil.
func findForks(ctx context.Context, d Deps, j job.Job, profiles []cache.Profile, commits map[string]bool, now time.Time) []*lowerCache {
	if d.Config.Cache.Fork == cache.ForkOff || j.Protected {
		return nil
	}
	plan := cache.ForkPlan(cacheKey(d, j), profiles)
	out := make([]*lowerCache, len(plan))
	for i, f := range plan {
		// A commit layer already keeps the job's writes apart.
		if commits[f.Lower.Profile] || !protectedCacheHere(ctx, d, f.Lower.Name) {
			continue
		}
		// The lease first, then a second look: a GC may have removed the
		// volume since the first, but none can from now on.
		var rec cache.Record
		err := cacheRecords(d).Update(f.Lower.Name, func(r *cache.Record) error {
			rec = *r
			r.Claimed = now.UTC()
			if !r.LastUsed.IsZero() {
				r.LastUsed = now.UTC() // reading it through a fork is a use
			}
			return nil
		})
		if err != nil || !protectedCacheHere(ctx, d, f.Lower.Name) {
			continue
		}
		info, err := d.Engine.InspectVolume(ctx, f.Lower.Name)
		if err != nil {
			continue
		}
		out[i] = &lowerCache{Fork: f, mountpoint: info.Mountpoint, record: rec}
	}
	return out
}

// protectedCacheHere says whether the cache volume name exists and can be
// read on this host (an overlay needs its directory).
func protectedCacheHere(ctx context.Context, d Deps, name string) bool {
	info, err := d.Engine.InspectVolume(ctx, name)
	if err != nil || info.Labels[naming.LabelKind] != string(naming.KindCache) {
		return false
	}
	_, err = os.Stat(info.Mountpoint)
	return err == nil
}

// jobFork is a fork made for a job.
type jobFork struct {
	volume string       // the overlay volume the job mounts
	lower  cache.Status // the protected cache, for the metrics (a hit)
	size   startSize    // the layer, for the growth report
	line   string       // for the job log
}

// makeFork creates the layer (the kept unprotected layer volume, or one of
// the job's own) and the overlay volume of the job's i-th cache path.
func makeFork(ctx context.Context, d Deps, j job.Job, i int, lc lowerCache, now time.Time) (jobFork, error) {
	ov := overlay{key: j.Key(), meta: jobMeta(j, now), index: i, lower: lc.Lower.Name, lowerMP: lc.mountpoint,
		options: cache.OverlayOptions}
	var name string
	var size startSize
	var layerSays string
	if d.Config.Cache.Fork == cache.ForkKeep {
		var err error
		name, size, layerSays, err = keptLayerFork(ctx, d, j, ov, lc, now)
		if err != nil {
			return jobFork{}, err
		}
	}
	if name == "" {
		layer, mp, err := ov.jobLayer(ctx, d, naming.KindLayer, nil)
		if err != nil {
			return jobFork{}, err
		}
		ov.layerMP = mp
		size = startSize{Volume: cache.Volume{Name: layer, Profile: lc.Layer.Profile, Path: lc.Layer.Path}, Known: true, Job: true}
		if layerSays == "" {
			layerSays = "its writes discarded at the end of the job"
		}
		if name, err = ov.create(ctx, d); err != nil {
			return jobFork{}, fmt.Errorf("creating the fork of %s: %w", lc.Lower.Name, err)
		}
	}
	lower := cache.Status{Volume: lc.Lower, Mountpoint: lc.mountpoint, Warm: true, Readable: true,
		Stamp: cache.Stamp{LastUsed: lc.record.LastUsed, SizeBytes: lc.record.SizeBytes, Measured: lc.record.Measured}}
	what := "size not measured yet"
	if !lc.record.Measured.IsZero() {
		what = cache.Bytes(lc.record.SizeBytes)
	}
	line := fmt.Sprintf("Cache %s %s: forked from the protected cache (%s, %s), %s", lc.Lower.Profile, lc.Lower.Path, what, lc.Lower.Name, layerSays)
	return jobFork{volume: name, lower: lower, size: size, line: line}, nil
}

// errLayerInUse: another job's fork stands on a kept layer.
var errLayerInUse = errors.New("kept layer in use by another job's fork")

// keptLayerFork claims the kept layer of lc and creates the job's fork on
// it, unless another job's fork already stands on it: two overlays must
// never share an upper and work directory (the second mount would wipe
// the first one's work directory under it), so that job gets an empty
// name and a layer of its own, discarded with it. The check and the
// creation of the fork volume happen under the layer's record lock, so
// two prepares cannot both find the layer free.
func keptLayerFork(ctx context.Context, d Deps, j job.Job, ov overlay, lc lowerCache, now time.Time) (name string, size startSize, says string, err error) {
	sts, err := cache.Claim(ctx, d.Engine, cacheRecords(d), []cache.Volume{lc.Layer}, j.ID, now)
	if err != nil {
		return "", startSize{}, "", fmt.Errorf("claiming the layer of a fork: %w", err)
	}
	st := sts[0]
	ov.layer, ov.layerMP = lc.Layer.Name, st.Mountpoint
	err = cacheRecords(d).Update(lc.Layer.Name, func(*cache.Record) error {
		forks, err := d.Engine.List(ctx, map[string]string{naming.LabelKind: string(naming.KindFork), naming.LabelForkLayer: lc.Layer.Name})
		if err != nil {
			return fmt.Errorf("listing the forks of %s: %w", lc.Layer.Name, err)
		}
		// The job's own leftovers went at the start of prepare: any fork
		// here is another job's.
		if slices.ContainsFunc(forks, func(r engine.Resource) bool { return r.Type == engine.Volume }) {
			return errLayerInUse
		}
		name, err = ov.create(ctx, d)
		return err
	})
	if errors.Is(err, errLayerInUse) {
		return "", startSize{}, "its writes discarded at the end of the job (another job is using the kept layer " + lc.Layer.Name + ")", nil
	}
	if err != nil {
		return "", startSize{}, "", fmt.Errorf("creating the fork of %s: %w", lc.Lower.Name, err)
	}
	size = startSize{Volume: lc.Layer, Bytes: st.Stamp.SizeBytes, Known: !st.Warm || !st.Stamp.Measured.IsZero()}
	says = "its own writes kept from earlier unprotected jobs"
	if st.Warm && !st.Stamp.Measured.IsZero() {
		says += " (" + cache.Bytes(st.Stamp.SizeBytes) + ")"
	}
	return name, size, says, nil
}

func jobMeta(j job.Job, now time.Time) naming.JobMeta {
	return naming.JobMeta{PipelineID: j.PipelineID, RunnerID: j.RunnerID, TimeoutSeconds: j.Timeout, Created: now}
}

// overlay is the job's i-th overlay volume: a cache volume below (lower),
// read only, and a layer of the job's writes on top. Forks and commit
// layers are both made of it.
type overlay struct {
	key     naming.JobKey
	meta    naming.JobMeta
	index   int
	lower   string // the cache volume below
	lowerMP string
	layer   string // a persistent layer volume, if any: kept by the GC while the overlay lives
	layerMP string
	options func(lowerMP, layerMP string) (map[string]string, error)
}

// jobLayer creates a layer volume of the job's own, of kind, removed with
// the job's other volumes.
func (o overlay) jobLayer(ctx context.Context, d Deps, kind naming.Kind, labels map[string]string) (name, mountpoint string, err error) {
	name = o.key.IndexedName(kind, o.index)
	all := o.key.Labels(kind, o.meta)
	maps.Copy(all, labels)
	if err := d.Engine.EnsureVolume(ctx, engine.VolumeSpec{Name: name, Labels: all}); err != nil {
		return "", "", err
	}
	info, err := d.Engine.InspectVolume(ctx, name)
	if err != nil {
		return "", "", err
	}
	return name, info.Mountpoint, nil
}

// create prepares the layer's directories and creates the overlay volume,
// labelled with what it stands on; Docker mounts it when a container
// first mounts the volume.
func (o overlay) create(ctx context.Context, d Deps) (string, error) {
	if err := cache.PrepareLayer(o.layerMP); err != nil {
		return "", err
	}
	opts, err := o.options(o.lowerMP, o.layerMP)
	if err != nil {
		return "", err
	}
	name := o.key.IndexedName(naming.KindFork, o.index)
	labels := o.key.Labels(naming.KindFork, o.meta)
	labels[naming.LabelForkLower] = o.lower
	if o.layer != "" {
		labels[naming.LabelForkLayer] = o.layer
	}
	if err := d.Engine.EnsureVolume(ctx, engine.VolumeSpec{Name: name, Labels: labels, DriverOpts: opts}); err != nil {
		return "", err
	}
	return name, nil
}

// forkLayers lists the kept layer volumes the job may have used, for
// cleanup to measure.
func forkLayers(d Deps, j job.Job, profiles []cache.Profile) []cache.Volume {
	if d.Config.Cache.Fork != cache.ForkKeep || j.Protected {
		return nil
	}
	var out []cache.Volume
	for _, f := range cache.ForkPlan(cacheKey(d, j), profiles) {
		out = append(out, f.Layer)
	}
	return out
}
