package cache

import (
	"context"
	"time"

	"github.com/warmcache/warmcache/internal/cache/gc"
	"github.com/warmcache/warmcache/internal/cache/record"
	"github.com/warmcache/warmcache/internal/host"
	"go.uber.org/zap"
)

// stageGCBudget bounds the GC pass in prepare and cleanup: it keeps the
// disk within limits without a cron job, but never holds a job up long.
const stageGCBudget = 5 * time.Second

// limits are the configured cache.gc limits.
func (m *Manager) limits() gc.Limits {
	g := m.cfg.GC
	return gc.Limits{MaxVolumeBytes: int64(g.MaxVolumeSize), BudgetBytes: int64(g.Budget),
		MaxIdle: g.MaxIdle, MinFreeBytes: int64(g.MinFreeDisk)}
}

// dataRoot is the engine's data root, "" when it does not say.
func (m *Manager) dataRoot(ctx context.Context) string {
	info, err := m.engine.Ping(ctx)
	if err != nil {
		return ""
	}
	return info.RootDir
}

// dataRootFree is the free space of the engine's data root, or -1 when it
// is not wanted (no low-water mark) or not readable from here.
func (m *Manager) dataRootFree(ctx context.Context) int64 {
	if m.cfg.GC.MinFreeDisk == 0 || m.host == nil {
		return -1
	}
	root := m.dataRoot(ctx)
	if root == "" {
		return -1
	}
	free, _, err := host.DiskSpace(root)
	if err != nil {
		return -1
	}
	return free
}

// GC makes one pass over the caches of the configured pool, evicting
// until every cache.gc limit holds (with dryRun, only planning), and
// returns the candidates it considered and what it did. Volumes in keep
// are never evicted; onEvict, when set, is called after each removal.
func (m *Manager) GC(ctx context.Context, dryRun bool, keep map[string]bool, onEvict func(gc.Eviction)) ([]gc.Candidate, gc.Result, error) {
	now := time.Now()
	cands, err := gc.Candidates(ctx, m.engine, m.records, gc.Scope(m.cfg.Pool), now)
	if err != nil {
		return nil, gc.Result{}, err
	}
	free := m.dataRootFree(ctx)
	if dryRun {
		return cands, gc.Result{Evicted: gc.Plan(cands, m.limits(), free, now, keep)}, nil
	}
	res, err := gc.Run(ctx, m.evicting(), m.records, cands, m.limits(), free, now, keep, onEvict)
	m.updateMetrics(func(s *record.MetricsState) {
		for _, ev := range res.Evicted {
			s.Evicted(ev.Volume, ev.SizeBytes)
		}
		if err == nil {
			s.GCSucceeded(time.Now())
		}
	})
	return cands, res, err
}

// GCAtStage is the light pass of prepare and cleanup: bounded, and only
// when a limit is set; it never fails the job. It leaves the volumes in
// keep alone: in prepare, those the job is about to claim (Names).
func (m *Manager) GCAtStage(ctx context.Context, keep map[string]bool) {
	if m.cfg.GC.AtStages {
		m.GCNow(ctx, keep)
	}
}

// GCNow is GCAtStage's pass whatever cache.gc.at_stages says: the
// free-space guard's, once it stopped a job, for the data root is under
// its floor now and the next periodic pass may be minutes away.
func (m *Manager) GCNow(ctx context.Context, keep map[string]bool) {
	if !m.cfg.Enabled || !m.cfg.GC.Limited() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, stageGCBudget)
	defer cancel()
	_, res, err := m.GC(ctx, false, keep, func(ev gc.Eviction) {
		m.log.Info("evicted cache volume", zap.String("volume", ev.Volume), zap.Int64("bytes", ev.SizeBytes), zap.String("reason", ev.Reason))
	})
	if err != nil {
		m.log.Warn("cache gc pass", zap.Error(err), zap.Int("evicted", len(res.Evicted)))
	}
}
