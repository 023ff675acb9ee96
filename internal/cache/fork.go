package cache

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/warmcache/warmcache/internal/cache/growth"
	"github.com/warmcache/warmcache/internal/cache/overlay"
	"github.com/warmcache/warmcache/internal/cache/profile"
	"go.uber.org/zap"

	"github.com/warmcache/warmcache/internal/cache/record"
	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/human"
	"github.com/warmcache/warmcache/internal/job"
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
	lowers := profile.Plan(lowerKey, profiles)
	layers := profile.Plan(key, profiles)
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

// lowerCache is a protected cache an unprotected job can fork.
type lowerCache struct {
	Fork
	record record.Record
}

// findForks returns, for an unprotected job with cache.fork on, the
// protected cache of each planned path that exists on this host (nil
// entries where none does, and for profiles under commit-on-success),
// leased so that no GC removes it before the fork stands on it. Protected
// jobs, forks off, and a remote engine (an overlay needs the cache's
// directory) get nil.
func (m *Manager) findForks(ctx context.Context, j job.Job, profiles []Profile, commits map[string]bool, now time.Time) []*lowerCache {
	if m.cfg.Fork == ForkOff || j.Protected || m.host == nil {
		return nil
	}
	plan := ForkPlan(m.key(j), profiles)
	out := make([]*lowerCache, len(plan))
	for i, f := range plan {
		// A commit layer already keeps the job's writes apart; a git
		// checkout is never read across trust classes.
		if commits[f.Lower.Profile] || f.Lower.Profile == profile.Git.Name || !m.isCache(ctx, f.Lower.Name) {
			continue
		}
		// The lease first, then a second look: a GC may have removed the
		// volume since the first, but none can from now on.
		var rec record.Record
		err := m.records.Update(f.Lower.Name, func(r *record.Record) error {
			rec = *r
			r.Claimed = now.UTC()
			if !r.LastUsed.IsZero() {
				r.LastUsed = now.UTC() // reading it through a fork is a use
			}
			return nil
		})
		labels, ok := m.cacheLabels(ctx, f.Lower.Name)
		if err != nil || !ok || !m.host.Has(ctx, f.Lower.Name) {
			continue
		}
		// The overlay reads the cache's directory: a quota'd cache's
		// filesystem must be mounted there (it is not after a reboot).
		if labels[naming.LabelCacheQuota] != "" {
			if _, err := m.host.MountQuota(ctx, f.Lower.Name); err != nil {
				m.log.Warn("mounting the filesystem of a protected cache", zap.String("volume", f.Lower.Name), zap.Error(err))
				continue
			}
		}
		out[i] = &lowerCache{Fork: f, record: rec}
	}
	return out
}

// isCache says whether the volume name exists and is a cache volume.
// (An overlay on it needs its directory on this host too: host.Has.)
func (m *Manager) isCache(ctx context.Context, name string) bool {
	_, ok := m.cacheLabels(ctx, name)
	return ok
}

// cacheLabels are the labels of the volume name when it exists and is a
// cache volume.
func (m *Manager) cacheLabels(ctx context.Context, name string) (map[string]string, bool) {
	info, err := m.engine.InspectVolume(ctx, name)
	if err != nil || info.Labels[naming.LabelKind] != string(naming.KindCache) {
		return nil, false
	}
	return info.Labels, true
}

// jobFork is a fork made for a job.
type jobFork struct {
	volume string       // the overlay volume the job mounts
	lower  record.Use   // the protected cache, for the metrics (a hit)
	size   growth.Start // the layer, for the growth report
	line   string       // for the job log
}

// makeFork creates the layer (the kept unprotected layer volume, or one of
// the job's own) and the overlay volume of the job's i-th cache path.
func (m *Manager) makeFork(ctx context.Context, j job.Job, i int, lc lowerCache, now time.Time) (jobFork, error) {
	ov := overlay.Spec{Key: j.Key(), Meta: j.Meta(now), Index: i, Lower: lc.Lower.Name}
	var name string
	var size growth.Start
	var layerSays string
	if m.cfg.Fork == ForkKeep {
		var err error
		name, size, layerSays, err = m.keptLayerFork(ctx, j, ov, lc, now)
		if err != nil {
			return jobFork{}, err
		}
	}
	if name == "" {
		layer, err := overlay.JobLayer(ctx, m.engine, ov, naming.KindLayer, nil)
		if err != nil {
			return jobFork{}, err
		}
		ov.Layer = layer
		size = growth.Start{Volume: Volume{Name: layer, Profile: lc.Layer.Profile, Path: lc.Layer.Path}, Known: true, Job: true}
		if layerSays == "" {
			layerSays = "its writes discarded at the end of the job"
		}
		if name, err = overlay.Create(ctx, m.engine, m.host, ov); err != nil {
			return jobFork{}, fmt.Errorf("creating the fork of %s: %w", lc.Lower.Name, err)
		}
	}
	lower := record.Use{Volume: lc.Lower.Name, Labels: lc.Lower.Labels, Warm: true,
		SizeBytes: lc.record.SizeBytes, SizeKnown: !lc.record.Measured.IsZero()}
	what := "size not measured yet"
	if !lc.record.Measured.IsZero() {
		what = human.Bytes(lc.record.SizeBytes)
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
func (m *Manager) keptLayerFork(ctx context.Context, j job.Job, ov overlay.Spec, lc lowerCache, now time.Time) (name string, size growth.Start, says string, err error) {
	// A layer holds the fork's upper and work directories, which must be
	// on one filesystem: it has no quota of its own.
	sts, err := m.claimVolumes(ctx, []Volume{lc.Layer}, now)
	if err != nil {
		return "", growth.Start{}, "", fmt.Errorf("claiming the layer of a fork: %w", err)
	}
	st := sts[0]
	ov.Layer, ov.KeptLayer = lc.Layer.Name, true
	err = m.records.Update(lc.Layer.Name, func(*record.Record) error {
		forks, err := m.engine.List(ctx, map[string]string{naming.LabelKind: string(naming.KindFork), naming.LabelForkLayer: lc.Layer.Name})
		if err != nil {
			return fmt.Errorf("listing the forks of %s: %w", lc.Layer.Name, err)
		}
		// The job's own leftovers went at the start of prepare: any fork
		// here is another job's.
		if slices.ContainsFunc(forks, func(r engine.Resource) bool { return r.Type == engine.Volume }) {
			return errLayerInUse
		}
		name, err = overlay.Create(ctx, m.engine, m.host, ov)
		return err
	})
	if errors.Is(err, errLayerInUse) {
		return "", growth.Start{}, "its writes discarded at the end of the job (another job is using the kept layer " + lc.Layer.Name + ")", nil
	}
	if err != nil {
		return "", growth.Start{}, "", fmt.Errorf("creating the fork of %s: %w", lc.Lower.Name, err)
	}
	size = sizeAtStart(st)
	says = "its own writes kept from earlier unprotected jobs"
	if st.Warm && !st.Record.Measured.IsZero() {
		says += " (" + human.Bytes(st.Record.SizeBytes) + ")"
	}
	return name, size, says, nil
}

// forkLayers lists the kept layer volumes the job may have used, for
// cleanup to measure.
func (m *Manager) forkLayers(j job.Job, profiles []Profile) []Volume {
	if m.cfg.Fork != ForkKeep || j.Protected {
		return nil
	}
	var out []Volume
	for _, f := range ForkPlan(m.key(j), profiles) {
		if f.Layer.Profile != profile.Git.Name {
			out = append(out, f.Layer)
		}
	}
	return out
}
