package cache

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/warmcache/warmcache/internal/cache/growth"
	"github.com/warmcache/warmcache/internal/cache/overlay"
	"github.com/warmcache/warmcache/internal/cache/record"
	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/host"
	"github.com/warmcache/warmcache/internal/job"
	"github.com/warmcache/warmcache/internal/naming"
)

// stepsFile records, at the root of each of the job's commit layer
// volumes (beside the layer's upper and work directories, which the job
// sees only through its overlay), when each step started and whether it
// succeeded: cleanup, which is not told the job's result, reads it to
// decide whether the job's cache writes are committed. It lives in Docker
// with the layer, out of the job's reach, and goes with it.
const stepsFile = "steps"

// MarkStep notes the start of the step stage now in the job's commit
// layers and returns what notes its success when the run stage ends with
// *err nil. A step that fails, is cancelled, or whose driver is killed has
// a start and no success. steps says whether stage is one of the job's
// steps (protocol knowledge the caller has).
func (m *Manager) MarkStep(key naming.JobKey, stage string, step bool) func(*error) {
	if !step || !m.cfg.CommitOnSuccess || m.host == nil {
		return func(*error) {}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rs, err := m.engine.List(ctx, map[string]string{naming.LabelJob: key.Base(), naming.LabelKind: string(naming.KindCommit)})
	if err != nil {
		// Without a start mark the job's writes are not committed.
		m.log.Warn("listing the job's commit layers", zap.Error(err))
		return func(*error) {}
	}
	var layers []string
	for _, r := range rs {
		if r.Type == engine.Volume {
			layers = append(layers, r.Name)
		}
	}
	note := func(what string) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for _, l := range layers {
			if err := m.host.AppendLine(ctx, l, stepsFile, what+" "+stage); err != nil {
				m.log.Warn("recording a step for commit-on-success", zap.Error(err))
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

// stepsSucceeded says whether, by the marks in marks (the steps file),
// every one of the job's steps succeeded and no step that started
// failed. A step whose marks could not be written counts as failed:
// commit fails closed.
func stepsSucceeded(marks []byte, steps []string) bool {
	started, ok := 0, 0
	done := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(string(marks)))
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
func (m *Manager) commitProfiles(profiles []Profile) map[string]bool {
	out := map[string]bool{}
	for _, p := range profiles {
		if m.cfg.CommitOnSuccess && !p.ConcurrentSafe && !p.ProjectSlot {
			out[p.Name] = true
		}
	}
	return out
}

// makeCommitLayer creates the job's i-th commit layer over the shared
// cache st and the overlay volume the job mounts instead of st.
func (m *Manager) makeCommitLayer(ctx context.Context, j job.Job, i int, st Status, now time.Time) (string, growth.Start, error) {
	if m.host == nil {
		return "", growth.Start{}, fmt.Errorf("cache.commit_on_success needs the driver beside a local engine (volume %s is not on this host)", st.Name)
	}
	ov := overlay.Spec{Key: j.Key(), Meta: j.Meta(now), Index: i, Lower: st.Name, Commit: true}
	layer, err := overlay.JobLayer(ctx, m.engine, ov, naming.KindCommit, map[string]string{naming.LabelCommitTo: st.Name})
	if err != nil {
		return "", growth.Start{}, err
	}
	ov.Layer = layer
	// Under the cache's lock: a commit applying a layer to it finishes
	// before the overlay exists, or sees it and does not apply (commitLayer).
	var name string
	err = m.records.Update(st.Name, func(*record.Record) error {
		name, err = overlay.Create(ctx, m.engine, m.host, ov)
		return err
	})
	if err != nil {
		return "", growth.Start{}, fmt.Errorf("creating the commit layer of %s: %w", st.Name, err)
	}
	return name, growth.Start{Volume: Volume{Name: layer, Profile: st.Profile, Path: st.Path}, Known: true, Job: true}, nil
}

// Commit, at cleanup, removes the job's containers with removeContainers
// (which unmounts its overlays) and, if every step of the job (steps, the
// run stages that are its steps) succeeded, applies each commit layer to
// its shared cache under that cache's lock. A failed or cancelled job
// changes nothing: its layers go with its other volumes.
func (m *Manager) Commit(ctx context.Context, j job.Job, steps []string, removeContainers func(context.Context) error) {
	if !m.cfg.CommitOnSuccess || m.host == nil {
		return
	}
	rs, err := m.engine.List(ctx, map[string]string{naming.LabelJob: j.Key().Base(), naming.LabelKind: string(naming.KindCommit)})
	if err != nil || len(rs) == 0 {
		return
	}
	if slices.ContainsFunc(rs, func(r engine.Resource) bool {
		marks, err := m.host.ReadFile(ctx, r.Name, stepsFile)
		return err != nil || !stepsSucceeded(marks, steps)
	}) {
		m.log.Info("job did not succeed: its cache writes are discarded", zap.Int("layers", len(rs)))
		return
	}
	if err := removeContainers(ctx); err != nil {
		m.log.Warn("cache writes not committed: the job's containers remain", zap.Error(err))
		return
	}
	for _, r := range rs {
		err := m.commitLayer(ctx, r)
		if errors.Is(err, errCacheMounted) {
			m.log.Warn("cache writes of a successful job discarded: another running job mounts the cache",
				zap.String("layer", r.Name), zap.String("volume", r.Labels[naming.LabelCommitTo]))
			continue
		}
		if err != nil {
			m.log.Warn("committing a cache layer", zap.String("layer", r.Name), zap.Error(err))
			continue
		}
		m.log.Info("committed the job's cache writes", zap.String("layer", r.Name), zap.String("volume", r.Labels[naming.LabelCommitTo]))
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
func (m *Manager) commitLayer(ctx context.Context, layer engine.Resource) error {
	target := layer.Labels[naming.LabelCommitTo]
	if !m.isCache(ctx, target) {
		return fmt.Errorf("%s is not a cache volume", target)
	}
	var applyErr error
	err := m.records.Update(target, func(r *record.Record) error {
		forks, err := m.engine.List(ctx, map[string]string{naming.LabelKind: string(naming.KindFork), naming.LabelForkLower: target})
		if err != nil {
			return fmt.Errorf("listing the overlays on %s: %w", target, err)
		}
		if slices.ContainsFunc(forks, func(f engine.Resource) bool {
			return f.Type == engine.Volume && f.Labels[naming.LabelJob] != layer.Labels[naming.LabelJob]
		}) {
			return errCacheMounted
		}
		applyErr = m.host.ApplyLayer(ctx, layer.Name, target)
		if errors.Is(applyErr, host.ErrHalfApplied) {
			// Neither the cache as it was nor as the job left it: the
			// next job starts cold rather than from a mix.
			if err := m.engine.Remove(ctx, engine.Resource{Type: engine.Volume, Name: target}); err != nil {
				return errors.Join(applyErr, fmt.Errorf("removing the half-committed cache %s: %w", target, err))
			}
			*r = record.Record{}
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
