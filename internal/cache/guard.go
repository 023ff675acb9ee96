package cache

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"go.uber.org/zap"

	"github.com/warmcache/warmcache/internal/host"
	"github.com/warmcache/warmcache/internal/human"
	"github.com/warmcache/warmcache/internal/naming"
)

// The free-space guard (cache.gc.min_free_disk while a job runs): the GC
// keeps the data root above its floor only between jobs, and a job can
// write gigabytes into a cache within one step. So while a stage runs in
// the build container, the run stage reads the data root's free space
// every few seconds (one statfs); under the floor it measures the job's
// caches, and when one of them grew by guardMinGrowth or more, the job is
// stopped (StopLine) and a GC pass runs (GCNow). A job whose caches did
// not grow is left alone: it is not what fills the disk.
//
// What "grew" compares, cheaply: a quota'd cache's use as its own
// filesystem reports it (a statfs), against its use at prepare;
// a plain volume's files, walked as the growth report walks them (all at
// once, bounded to growthBudget, and only under the floor), against its size at prepare,
// or, not measured then, against the guard's first walk. A cache whose
// walk does not end in time is not counted.

// guardMinGrowth is how much a cache must have grown for the guard to
// hold its job responsible: less is a build's ordinary writes.
const guardMinGrowth = 64 << 20

// CacheGrowth is how much one of a job's caches grew.
type CacheGrowth struct {
	Profile, Path string
	Bytes         int64
}

// StopLine decides whether the guard stops a job: when free (bytes free
// on the data root) is under floor (cache.gc.min_free_disk) and one of
// the job's caches grew by guardMinGrowth or more. It returns the line
// for the job log, naming every such cache.
func StopLine(free, floor int64, grown []CacheGrowth) (string, bool) {
	if floor <= 0 || free >= floor {
		return "", false
	}
	var culprits []string
	for _, g := range grown {
		if g.Bytes >= guardMinGrowth {
			culprits = append(culprits, fmt.Sprintf("%s %s grew by %s", g.Profile, g.Path, human.Bytes(g.Bytes)))
		}
	}
	if len(culprits) == 0 {
		return "", false
	}
	noun := "cache"
	if len(culprits) > 1 {
		noun = "caches"
	}
	return fmt.Sprintf("WARNING: stopping the job: the Docker data root has %s free, under cache.gc.min_free_disk (%s), and this job's %s %s",
		human.Bytes(max(free, 0)), QuotaBytes(floor), noun, strings.Join(culprits, ", ")), true
}

// Guard watches the free space of the data root for one stage of a job.
// It is not safe for concurrent use.
type Guard struct {
	m      *Manager
	root   string
	caches []guarded
}

// guarded is one of the job's caches, as the guard compares it.
type guarded struct {
	vol   Volume
	quota bool  // its use is read from its own filesystem
	base  int64 // its size (or use) to compare with
	known bool  // base is measured
}

// Guard returns the free-space guard of a stage of the job, or nil when
// there is none to run: no cache.gc.min_free_disk, caches off, an engine
// not on this host, a data root it cannot read.
func (m *Manager) Guard(ctx context.Context, key naming.JobKey) *Guard {
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
	g := &Guard{m: m, root: root}
	for _, s := range sizes {
		c := guarded{vol: s.Volume, base: s.Bytes, known: s.Known}
		switch q, ok, err := m.host.Quota(ctx, s.Volume.Name); {
		case s.Quota:
			c.quota, c.base, c.known = true, s.QuotaUsed, true
		case err == nil && ok:
			// A prepare of an older version did not say: its use from now.
			c.quota, c.base, c.known = true, q.Used, true
		}
		g.caches = append(g.caches, c)
	}
	return g
}

// withQuotaUse adds to a cache's size at the start its use as its quota'd
// filesystem reports it (a statfs), for the guard to compare like with
// like; only with a guard to run.
func (m *Manager) withQuotaUse(ctx context.Context, s startSize) startSize {
	if m.cfg.GC.MinFreeDisk <= 0 {
		return s
	}
	if q, ok, err := m.host.Quota(ctx, s.Volume.Name); err == nil && ok {
		s.Quota, s.QuotaUsed = true, q.Used
	}
	return s
}

// Check reads the data root's free space and, under the floor, how much
// each of the job's caches grew (measured at once, within growthBudget
// together); it returns StopLine's verdict.
func (g *Guard) Check(ctx context.Context) (string, bool) {
	floor := int64(g.m.cfg.GC.MinFreeDisk)
	free, _, err := host.DiskSpace(g.root)
	if err != nil || free >= floor {
		return "", false
	}
	ctx, cancel := context.WithTimeout(ctx, growthBudget)
	defer cancel()
	sizes := make([]int64, len(g.caches))
	measured := make([]bool, len(g.caches))
	var wg sync.WaitGroup
	for i, c := range g.caches {
		wg.Go(func() { sizes[i], measured[i] = g.size(ctx, c) })
	}
	wg.Wait()
	var grown []CacheGrowth
	for i := range g.caches {
		c := &g.caches[i]
		switch {
		case !measured[i]:
			continue
		case !c.known:
			c.base, c.known = sizes[i], true
			continue
		}
		grown = append(grown, CacheGrowth{Profile: c.vol.Profile, Path: c.vol.Path, Bytes: sizes[i] - c.base})
	}
	return StopLine(free, floor, grown)
}

// size is a cache's size (or use) now, as its base was measured.
func (g *Guard) size(ctx context.Context, c guarded) (int64, bool) {
	if c.quota {
		q, ok, err := g.m.host.Quota(ctx, c.vol.Name)
		return q.Used, err == nil && ok
	}
	size, err := g.m.host.Size(ctx, c.vol.Name)
	if err != nil {
		g.m.log.Debug("free-space guard: cache not measured", zap.String("volume", c.vol.Name), zap.Error(err))
	}
	return size, err == nil
}
