package driver

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/warmcache/warmcache/internal/cache"
	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/job"
	"github.com/warmcache/warmcache/internal/naming"
	"github.com/warmcache/warmcache/internal/reap"
)

// stepsFile records, at the root of each of the job's commit layer
// volumes (beside the layer's upper and work directories, which the job
// sees only through its overlay), when each step started and whether it
// succeeded: cleanup, which is not told the job's result, reads it to
// decide whether the job's cache writes are committed. It lives in Docker
// with the layer, out of the job's reach, and goes with it.
const stepsFile = "steps"

// markStep notes the start of a step now in the job's commit layers and
// returns what notes its success when the run stage ends with *err nil.
// A step that fails, is cancelled, or whose driver is killed has a start
// and no success.
func markStep(d Deps, key naming.JobKey, stage string) func(*error) {
	if !isStep(stage) || !d.Config.Cache.CommitOnSuccess {
		return func(*error) {}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rs, err := d.Engine.List(ctx, map[string]string{naming.LabelJob: key.Base(), naming.LabelKind: string(naming.KindCommit)})
	if err != nil {
		// Without a start mark the job's writes are not committed.
		d.Log.Warn("listing the job's commit layers", zap.Error(err))
		return func(*error) {}
	}
	var dirs []string
	for _, r := range rs {
		if r.Type == engine.Volume && r.Mountpoint != "" {
			dirs = append(dirs, r.Mountpoint)
		}
	}
	return markStepIn(d, dirs, stage)
}

// markStepIn is markStep for the layer directories dirs.
func markStepIn(d Deps, dirs []string, stage string) func(*error) {
	note := func(what string) {
		for _, dir := range dirs {
			f, err := os.OpenFile(filepath.Join(dir, stepsFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
			if err == nil {
				_, err = fmt.Fprintf(f, "%s %s\n", what, stage)
				err = errors.Join(err, f.Close())
			}
			if err != nil {
				d.Log.Warn("recording a step for commit-on-success", zap.Error(err))
			}
		}
	}
	note("start")
	return func(err *error) {
		if *err == nil {
			note("ok")
		}
	}
}

// stepsSucceeded says whether, by the marks in the layer directory dir,
// every one of the job's steps (stepStages) succeeded and no step that
// started failed. A step whose marks could not be written counts as
// failed: commit fails closed.
func stepsSucceeded(dir string, steps []string) bool {
	f, err := os.Open(filepath.Join(dir, stepsFile))
	if err != nil {
		return false
	}
	defer f.Close()
	started, ok := 0, 0
	done := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		what, stage, _ := strings.Cut(sc.Text(), " ")
		switch what {
		case "start":
			started++
		case "ok":
			ok++
			done[stage] = true
		}
	}
	if sc.Err() != nil || ok != started || len(steps) == 0 {
		return false
	}
	for _, s := range steps {
		if !done[s] {
			return false
		}
	}
	return true
}

// commitProfiles names the profiles whose jobs write through a commit
// layer: those unsafe with concurrent writers, when commit_on_success is on.
func commitProfiles(d Deps, profiles []cache.Profile) map[string]bool {
	out := map[string]bool{}
	for _, p := range profiles {
		if d.Config.Cache.CommitOnSuccess && !p.ConcurrentSafe {
			out[p.Name] = true
		}
	}
	return out
}

// makeCommitLayer creates the job's i-th commit layer over the shared
// cache st and the overlay volume the job mounts instead of st.
func makeCommitLayer(ctx context.Context, d Deps, j job.Job, i int, st cache.Status, now time.Time) (string, startSize, error) {
	if !st.Readable {
		return "", startSize{}, fmt.Errorf("cache.commit_on_success needs the driver beside a local engine (volume %s is not readable here)", st.Name)
	}
	ov := overlay{key: j.Key(), meta: jobMeta(j, now), index: i, lower: st.Name, lowerMP: st.Mountpoint,
		options: cache.CommitOptions}
	layer, mp, err := ov.jobLayer(ctx, d, naming.KindCommit, map[string]string{cache.LabelCommitTo: st.Name})
	if err != nil {
		return "", startSize{}, err
	}
	ov.layerMP = mp
	// Under the cache's lock: a commit applying a layer to it finishes
	// before the overlay exists, or sees it and does not apply (commitLayer).
	var name string
	err = cacheRecords(d).Update(st.Name, func(*cache.Record) error {
		name, err = ov.create(ctx, d)
		return err
	})
	if err != nil {
		return "", startSize{}, fmt.Errorf("creating the commit layer of %s: %w", st.Name, err)
	}
	return name, startSize{Volume: cache.Volume{Name: layer, Profile: st.Profile, Path: st.Path}, Known: true, Job: true}, nil
}

// commitLayers, at cleanup, removes the job's containers (which unmounts
// its overlays) and, if every step of the job succeeded, applies each
// commit layer to its shared cache under that cache's lock. A failed or
// cancelled job changes nothing: its layers go with its other volumes.
func commitLayers(ctx context.Context, d Deps, j job.Job) {
	if !d.Config.Cache.CommitOnSuccess {
		return
	}
	rs, err := d.Engine.List(ctx, map[string]string{naming.LabelJob: j.Key().Base(), naming.LabelKind: string(naming.KindCommit)})
	if err != nil || len(rs) == 0 {
		return
	}
	steps := stepStages(j.Steps)
	if slices.ContainsFunc(rs, func(r engine.Resource) bool { return !stepsSucceeded(r.Mountpoint, steps) }) {
		d.Log.Info("job did not succeed: its cache writes are discarded", zap.Int("layers", len(rs)))
		return
	}
	containers, err := d.Engine.List(ctx, map[string]string{naming.LabelJob: j.Key().Base()})
	if err == nil {
		containers = slices.DeleteFunc(containers, func(r engine.Resource) bool { return r.Type != engine.Container })
		err = reap.RemoveAll(ctx, d.Engine, containers)
	}
	if err != nil {
		d.Log.Warn("cache writes not committed: the job's containers remain", zap.Error(err))
		return
	}
	for _, r := range rs {
		err := commitLayer(ctx, d, r)
		if errors.Is(err, errCacheMounted) {
			d.Log.Warn("cache writes of a successful job discarded: another running job mounts the cache",
				zap.String("layer", r.Name), zap.String("volume", r.Labels[cache.LabelCommitTo]))
			continue
		}
		if err != nil {
			d.Log.Warn("committing a cache layer", zap.String("layer", r.Name), zap.Error(err))
			continue
		}
		d.Log.Info("committed the job's cache writes", zap.String("layer", r.Name), zap.String("volume", r.Labels[cache.LabelCommitTo]))
	}
}

// errCacheMounted: another job's overlay stands on the cache a layer would
// be applied to.
var errCacheMounted = errors.New("another job's overlay stands on the cache")

// commitLayer applies the job's commit layer to its shared cache, unless
// another job's overlay stands on that cache: overlayfs leaves changes to
// a lower directory under a mounted overlay undefined, so the writes of
// this job are then discarded (errCacheMounted) rather than risk what the
// other job sees. Overlays are made under the same lock (makeCommitLayer),
// so none appears while the layer is applied.
func commitLayer(ctx context.Context, d Deps, layer engine.Resource) error {
	target := layer.Labels[cache.LabelCommitTo]
	to, err := d.Engine.InspectVolume(ctx, target)
	if err != nil {
		return err
	}
	if to.Labels[naming.LabelKind] != string(naming.KindCache) {
		return fmt.Errorf("%s is not a cache volume", target)
	}
	from, err := d.Engine.InspectVolume(ctx, layer.Name)
	if err != nil {
		return err
	}
	var applyErr error
	err = cacheRecords(d).Update(target, func(r *cache.Record) error {
		forks, err := d.Engine.List(ctx, map[string]string{naming.LabelKind: string(naming.KindFork), cache.LabelForkLower: target})
		if err != nil {
			return fmt.Errorf("listing the overlays on %s: %w", target, err)
		}
		if slices.ContainsFunc(forks, func(f engine.Resource) bool {
			return f.Type == engine.Volume && f.Labels[naming.LabelJob] != layer.Labels[naming.LabelJob]
		}) {
			return errCacheMounted
		}
		applyErr = cache.ApplyLayer(ctx, from.Mountpoint, to.Mountpoint)
		if errors.Is(applyErr, cache.ErrHalfApplied) {
			// Neither the cache as it was nor as the job left it: the
			// next job starts cold rather than from a mix.
			if err := d.Engine.Remove(ctx, engine.Resource{Type: engine.Volume, Name: target}); err != nil {
				return errors.Join(applyErr, fmt.Errorf("removing the half-committed cache %s: %w", target, err))
			}
			*r = cache.Record{}
			return nil
		}
		if applyErr != nil {
			return applyErr
		}
		r.Measured = time.Time{} // changed: cleanup measures it again
		return nil
	})
	return errors.Join(err, applyErr)
}
