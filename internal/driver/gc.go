package driver

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/warmcache/warmcache/internal/cache"
	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/job"
)

// stageGCBudget bounds the GC pass in prepare and cleanup: it keeps the
// disk within limits without a cron job, but never holds a job up long.
const stageGCBudget = 5 * time.Second

func gcLimits(d Deps) cache.Limits {
	g := d.Config.Cache.GC
	return cache.Limits{MaxVolumeBytes: int64(g.MaxVolumeSize), BudgetBytes: int64(g.Budget),
		MaxIdle: g.MaxIdle, MinFreeBytes: int64(g.MinFreeDisk)}
}

// dataRootFree is the free space of the engine's data root, or -1 when it
// is not wanted (no low-water mark) or not readable from here.
func dataRootFree(ctx context.Context, d Deps) int64 {
	if d.Config.Cache.GC.MinFreeDisk == 0 {
		return -1
	}
	info, err := d.Engine.Ping(ctx)
	if err != nil || info.RootDir == "" {
		return -1
	}
	free, _, err := DiskSpace(info.RootDir)
	if err != nil {
		return -1
	}
	return free
}

// cacheGC makes one pass over the caches of the configured pool.
// Volumes in keep are never evicted.
func cacheGC(ctx context.Context, d Deps, lim cache.Limits, dryRun bool, keep map[string]bool, onEvict func(cache.Eviction)) ([]cache.Candidate, cache.GCResult, error) {
	recs, now := cacheRecords(d), time.Now()
	cands, err := cache.Candidates(ctx, d.Engine, *recs, cache.Scope(d.Config.Cache.Pool), now)
	if err != nil {
		return nil, cache.GCResult{}, err
	}
	free := dataRootFree(ctx, d)
	if dryRun {
		return cands, cache.GCResult{Evicted: cache.PlanGC(cands, lim, free, now, keep)}, nil
	}
	res, err := cache.GC(ctx, d.Engine, *recs, cands, lim, free, now, keep, onEvict)
	if merr := cacheMetrics(d).Update(func(m *cache.MetricsState) { m.Evicted(res.Evicted) }); merr != nil {
		d.Log.Warn("updating the metrics file", zap.Error(merr))
	}
	return cands, res, err
}

// CacheGC is `warmcache cache gc`: it evicts least recently used caches
// of the configured pool until every cache.gc limit holds, and says on
// stdout what it removed (with dryRun, what it would remove) and what it
// had to leave.
func CacheGC(ctx context.Context, d Deps, dryRun bool) error {
	lim := gcLimits(d)
	if !d.Config.Cache.GC.Limited() {
		fmt.Fprintln(d.Stdout, "No cache.gc limit is set: nothing to evict.")
		return nil
	}
	now := time.Now()
	verb := "Evicted"
	if dryRun {
		verb = "Would evict"
	}
	cands, res, err := cacheGC(ctx, d, lim, dryRun, nil, func(ev cache.Eviction) {
		fmt.Fprintf(d.Stdout, "%s %s\n", verb, describeEviction(ev, now))
	})
	if dryRun {
		for _, ev := range res.Evicted {
			fmt.Fprintf(d.Stdout, "%s %s\n", verb, describeEviction(ev, now))
		}
	}
	for _, s := range res.Skipped {
		what := "Kept"
		if errors.Is(s.Err, cache.ErrGone) {
			what = "Not counted"
		}
		fmt.Fprintf(d.Stdout, "%s %s: %s\n", what, describeEviction(s.Eviction, now), skipReason(s.Err))
	}
	var total, freed int64
	for _, c := range cands {
		total += c.Record.SizeBytes
	}
	for _, ev := range res.Evicted {
		freed += ev.SizeBytes
	}
	fmt.Fprintf(d.Stdout, "%d cache volumes, %s; %d evicted (%s)\n", len(cands), cache.Bytes(total), len(res.Evicted), cache.Bytes(freed))
	if err != nil {
		return fmt.Errorf("cache gc: %w", err)
	}
	return nil
}

func describeEviction(ev cache.Eviction, now time.Time) string {
	size := "size not measured"
	if ev.SizeKnown {
		size = cache.Bytes(ev.SizeBytes)
	}
	return fmt.Sprintf("%s (%s %s, %s, last used %s): %s", ev.Volume, ev.Project, ev.Profile,
		size, cache.Ago(ev.LastUsed, now), ev.Reason)
}

func skipReason(err error) string {
	switch {
	case errors.Is(err, engine.ErrInUse):
		return "in use by a job's container"
	case errors.Is(err, cache.ErrLeased):
		return "just claimed by a job being prepared"
	case errors.Is(err, cache.ErrGone):
		return "already removed (by another gc pass)"
	default:
		return err.Error()
	}
}

// gcAtStage is the light pass of prepare and cleanup: bounded, and only
// when a limit is set; it never fails the job. It leaves the volumes in
// keep alone: in prepare, those the job is about to claim.
func gcAtStage(ctx context.Context, d Deps, keep map[string]bool) {
	if !d.Config.Cache.Enabled || !d.Config.Cache.GC.AtStages || !d.Config.Cache.GC.Limited() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, stageGCBudget)
	defer cancel()
	_, res, err := cacheGC(ctx, d, gcLimits(d), false, keep, func(ev cache.Eviction) {
		d.Log.Info("evicted cache volume", zap.String("volume", ev.Volume), zap.Int64("bytes", ev.SizeBytes), zap.String("reason", ev.Reason))
	})
	if err != nil {
		d.Log.Warn("cache gc pass", zap.Error(err), zap.Int("evicted", len(res.Evicted)))
	}
}

// jobCacheNames names the cache volumes a prepare of j may claim or fork:
// its planned caches and, with cache.fork on, the protected caches below
// its forks and their kept layers.
func jobCacheNames(d Deps, j job.Job) map[string]bool {
	vols, profiles, err := plannedCaches(d, j)
	if err != nil {
		return nil
	}
	if d.Config.Cache.Fork != cache.ForkOff && !j.Protected {
		for _, f := range cache.ForkPlan(cacheKey(d, j), profiles) {
			vols = append(vols, f.Lower, f.Layer)
		}
	}
	out := make(map[string]bool, len(vols))
	for _, v := range vols {
		out[v.Name] = true
	}
	return out
}
