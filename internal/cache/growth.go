package cache

import (
	"context"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/warmcache/warmcache/internal/cache/growth"
	"github.com/warmcache/warmcache/internal/cache/record"
	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/host"
	"github.com/warmcache/warmcache/internal/naming"
)

// sizeAtStart is what prepare knows of the size of a claimed cache.
func sizeAtStart(st Status) growth.Start {
	return growth.Start{Volume: st.Volume, Bytes: st.Record.SizeBytes, Known: st.SizeKnown()}
}

// startSizes reads back what Labels put on the job's build container.
func (m *Manager) startSizes(ctx context.Context, key naming.JobKey) []growth.Start {
	rs, err := m.engine.List(ctx, map[string]string{naming.LabelJob: key.Base(), naming.LabelKind: string(naming.KindBuild)})
	if err != nil {
		return nil
	}
	rs = slices.DeleteFunc(rs, func(r engine.Resource) bool { return r.Type != engine.Container })
	if len(rs) == 0 {
		return nil
	}
	sizes, err := growth.Decode(rs[0].Labels)
	if err != nil {
		m.log.Warn("reading the cache sizes at the start", zap.Error(err))
	}
	return sizes
}

// ReportGrowth says in the job log, after the job's last step, how much
// each cache grew since prepare, and records the new sizes (so cleanup
// need not walk the caches again). It never fails the stage; beside a
// remote engine it says nothing.
func (m *Manager) ReportGrowth(key naming.JobKey, say Say) {
	if m.host == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), growth.Budget)
	defer cancel()
	sizes := m.startSizes(ctx, key)
	if len(sizes) == 0 {
		return // caches off, or a prepare of an older version
	}
	growth.Report(ctx, m.host, sizes, recorder{m}, say, m.log)
}

// recorder is the manager as growth.Report records through it.
type recorder struct{ m *Manager }

func (r recorder) SetSize(volume string, size int64, now time.Time) error {
	return r.m.records.SetSize(volume, size, now)
}

func (r recorder) Metrics(fn func(*record.MetricsState)) { r.m.updateMetrics(fn) }

// Labels are base with the caches' sizes at the start, for the build
// container (see growth.Encode).
func (c JobCaches) Labels(base map[string]string) map[string]string {
	return growth.Encode(base, c.sizes)
}

// Guard returns the free-space guard of a stage of the job, or nil when
// there is none to run: no cache.gc.min_free_disk, caches off, an engine
// not on this host, a data root it cannot read.
func (m *Manager) Guard(ctx context.Context, key naming.JobKey) *growth.Guard {
	if m == nil || m.host == nil || !m.cfg.Enabled || m.cfg.GC.MinFreeDisk <= 0 {
		return nil
	}
	root := m.dataRoot(ctx)
	if root == "" {
		return nil
	}
	if _, _, err := host.DiskSpace(root); err != nil {
		return nil
	}
	sizes := m.startSizes(ctx, key)
	if len(sizes) == 0 {
		return nil
	}
	var caches []growth.Watched
	for _, s := range sizes {
		c := growth.Watched{Volume: s.Volume, Base: s.Bytes, Known: s.Known}
		switch {
		case s.Quota:
			c.Quota, c.Base, c.Known = true, s.QuotaUsed, true
		case s.Volume.Labels[naming.LabelCacheQuota] != "":
			// Its use at prepare was not recorded: its use from now.
			if q, ok, err := m.host.Quota(ctx, s.Volume.Name); err == nil && ok {
				c.Quota, c.Base, c.Known = true, q.Used, true
			}
		}
		caches = append(caches, c)
	}
	return growth.NewGuard(m.host, root, int64(m.cfg.GC.MinFreeDisk), caches, m.log)
}

// withQuotaUse adds to a cache's size at the start its use as its quota'd
// filesystem reports it (a statfs), for the guard to compare like with
// like; only with a guard to run.
func (m *Manager) withQuotaUse(ctx context.Context, s growth.Start) growth.Start {
	if m.cfg.GC.MinFreeDisk <= 0 {
		return s
	}
	if s.Volume.Labels[naming.LabelCacheQuota] == "" {
		return s // a plain volume: nothing to read
	}
	if q, ok, err := m.host.Quota(ctx, s.Volume.Name); err == nil && ok {
		s.Quota, s.QuotaUsed = true, q.Used
	}
	return s
}
