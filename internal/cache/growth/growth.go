// Package growth follows a job's caches through its life: their sizes at
// the start, carried on the job's build container (Encode, Decode); how
// much each grew, reported after the job's last step (Report); and the
// free-space guard that stops a job growing a cache while the Docker data
// root runs low (Guard). It measures through package host and records
// through the cache manager (Recorder).
package growth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/warmcache/warmcache/internal/cache/profile"
	"github.com/warmcache/warmcache/internal/cache/record"
	"github.com/warmcache/warmcache/internal/host"
	"github.com/warmcache/warmcache/internal/human"
	"github.com/warmcache/warmcache/internal/naming"
	"go.uber.org/zap"
)

// Budget bounds the measuring after a step: it walks the caches on
// the job's time, so a huge cache is reported as not measured instead.
const Budget = 3 * time.Second

// Start is one cache as prepare found it.
type Start struct {
	Volume profile.Volume `json:"volume"`
	Bytes  int64          `json:"bytes"`
	Known  bool           `json:"known"`
	// Job says the volume is one of the job's own (a layer that goes with
	// the job): it has no record and no metrics series.
	Job bool `json:"job,omitempty"`
	// Quota says the volume is quota'd, and QuotaUsed is its use then, as
	// its filesystem reported it (for the free-space guard).
	Quota     bool  `json:"quota,omitempty"`
	QuotaUsed int64 `json:"quota_used,omitempty"`
}

// Encode returns base with the label that carries, on the job's build
// container, the caches' sizes at the start: the run stage is another
// process, and a job's state lives in Docker, where it goes with the job
// and out of the job's reach.
func Encode(base map[string]string, sizes []Start) map[string]string {
	if len(sizes) == 0 {
		return base
	}
	data, err := json.Marshal(sizes)
	if err != nil {
		return base // plain structs: cannot fail; the report is simply skipped
	}
	labels := maps.Clone(base)
	labels[naming.LabelCacheSizes] = string(data)
	return labels
}

// Decode reads back what Encode put in a container's labels.
func Decode(labels map[string]string) ([]Start, error) {
	var sizes []Start
	if data := labels[naming.LabelCacheSizes]; data != "" {
		if err := json.Unmarshal([]byte(data), &sizes); err != nil {
			return nil, fmt.Errorf("reading the cache sizes at the start: %w", err)
		}
	}
	return sizes, nil
}

// Recorder is where Report records what it measured: the cache
// manager's records and metrics.
type Recorder interface {
	SetSize(volume string, size int64, now time.Time) error
	Metrics(fn func(*record.MetricsState))
}

// Report says in the job log how much each cache grew since the start
// (sizes), measuring through h within ctx, and records the new sizes and
// quotas with rec (so cleanup need not walk the caches again).
func Report(ctx context.Context, h *host.Host, sizes []Start, rec Recorder, say func(format string, args ...any), log *zap.Logger) {
	now := time.Now()
	lines := make([]string, len(sizes))
	measured := make([]int64, len(sizes))
	quotas := make([]QuotaUse, len(sizes))
	var wg sync.WaitGroup
	for i, s := range sizes {
		wg.Go(func() {
			measured[i] = -1
			size, err := h.Size(ctx, s.Volume.Name)
			switch {
			case errors.Is(err, host.ErrNotLocal):
				return // nothing to say
			case errors.Is(err, context.DeadlineExceeded):
				lines[i] = fmt.Sprintf("Cache %s %s: not measured within %s", s.Volume.Profile, s.Volume.Path, Budget)
				return
			case err != nil:
				lines[i] = fmt.Sprintf("Cache %s %s: not measured (%v)", s.Volume.Profile, s.Volume.Path, err)
				return
			}
			measured[i] = size
			lines[i] = Line(s, size)
			var q host.QuotaSpace
			var ok bool
			if s.Volume.Labels[naming.LabelCacheQuota] != "" { // a plain volume has none to read
				q, ok, err = h.Quota(ctx, s.Volume.Name)
			}
			if err == nil && ok && q.Full() {
				lines[i] += "\n" + QuotaFullLine(s.Volume, q.Limit)
			}
			quotas[i] = QuotaOf(q, ok, err)
			if s.Job {
				return
			}
			if err := rec.SetSize(s.Volume.Name, size, now); err != nil {
				log.Warn("recording a cache size", zap.Error(err))
			}
		})
	}
	wg.Wait()
	for _, l := range lines {
		if l != "" {
			say("%s", l)
		}
	}
	rec.Metrics(func(st *record.MetricsState) {
		for i, s := range sizes {
			if measured[i] >= 0 && !s.Job {
				st.Sized(s.Volume.Name, s.Volume.Labels, measured[i])
				quotas[i].Record(st, s.Volume)
			}
		}
	})
}

// Line is the job-log line for a cache of size bytes now.
func Line(s Start, size int64) string {
	head := fmt.Sprintf("Cache %s %s:", s.Volume.Profile, s.Volume.Path)
	switch {
	case !s.Known:
		return fmt.Sprintf("%s %s now (its size at the start was not measured)", head, human.Bytes(size))
	case size > s.Bytes:
		return fmt.Sprintf("%s grew by %s to %s", head, human.Bytes(size-s.Bytes), human.Bytes(size))
	case size < s.Bytes:
		return fmt.Sprintf("%s shrank by %s to %s", head, human.Bytes(s.Bytes-size), human.Bytes(size))
	default:
		return fmt.Sprintf("%s unchanged, %s", head, human.Bytes(size))
	}
}

// QuotaFullLine is the job-log line for a cache the job filled.
func QuotaFullLine(v profile.Volume, limit int64) string {
	return fmt.Sprintf("Cache %s %s is full at %s (cache.quota)", v.Profile, v.Path, human.Limit(limit))
}

// QuotaUse is a volume's quota and use for the metrics, when known.
type QuotaUse struct {
	limit, used int64
	known       bool
}

// QuotaOf reads host.Quota's answer for the metrics: a volume without a
// quota has none (0, 0); one whose filesystem is not mounted, or that
// could not be read, is not known (its series keep what they had).
func QuotaOf(q host.QuotaSpace, ok bool, err error) QuotaUse {
	switch {
	case err != nil || !ok && q.Limit > 0:
		return QuotaUse{}
	case !ok:
		return QuotaUse{known: true}
	}
	return QuotaUse{limit: q.Limit, used: q.Used, known: true}
}

// Record puts the quota of v in the metrics, when known.
func (u QuotaUse) Record(s *record.MetricsState, v profile.Volume) {
	if u.known {
		s.Quota(v.Name, v.Labels, u.limit, u.used)
	}
}

// The free-space guard (cache.gc.min_free_disk while a job runs): the GC
// keeps the data root above its floor only between jobs, and a job can
// write gigabytes into a cache within one step. So while a stage runs in
// the build container, the run stage reads the data root's free space
// every few seconds (one statfs); under the floor it measures the job's
// caches, and when one of them grew by MinGrowth or more, the job is
// stopped (StopLine) and the caller runs a GC pass. A job whose caches did
// not grow is left alone: it is not what fills the disk.
//
// What "grew" compares, cheaply: a quota'd cache's use as its own
// filesystem reports it (a statfs), against its use at prepare;
// a plain volume's files, walked as the growth report walks them (all at
// once, bounded to growthBudget, and only under the floor), against its size at prepare,
// or, not measured then, against the guard's first walk. A cache whose
// walk does not end in time is not counted.

// MinGrowth is how much a cache must have grown for the guard to
// hold its job responsible: less is a build's ordinary writes.
const MinGrowth = 64 << 20

// CacheGrowth is how much one of a job's caches grew.
type CacheGrowth struct {
	Profile, Path string
	Bytes         int64
}

// StopLine decides whether the guard stops a job: when free (bytes free
// on the data root) is under floor (cache.gc.min_free_disk) and one of
// the job's caches grew by MinGrowth or more. It returns the line
// for the job log, naming every such cache.
func StopLine(free, floor int64, grown []CacheGrowth) (string, bool) {
	if floor <= 0 || free >= floor {
		return "", false
	}
	var culprits []string
	for _, g := range grown {
		if g.Bytes >= MinGrowth {
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
		human.Bytes(max(free, 0)), human.Limit(floor), noun, strings.Join(culprits, ", ")), true
}

// Guard watches the free space of the data root for one stage of a job.
// It is not safe for concurrent use.
type Guard struct {
	host   *host.Host
	root   string // the engine's data root
	floor  int64  // cache.gc.min_free_disk
	caches []Watched
	log    *zap.Logger
}

// Watched is one of the job's caches, as the guard compares it.
type Watched struct {
	Volume profile.Volume
	Quota  bool  // its use is read from its own filesystem
	Base   int64 // its size (or use) to compare with
	Known  bool  // Base is measured
}

// NewGuard watches caches for a job on the engine whose data root is root,
// against floor.
func NewGuard(h *host.Host, root string, floor int64, caches []Watched, log *zap.Logger) *Guard {
	return &Guard{host: h, root: root, floor: floor, caches: caches, log: log}
}

// Check reads the data root's free space and, under the floor, how much
// each of the job's caches grew (measured at once, within Budget
// together); it returns StopLine's verdict.
func (g *Guard) Check(ctx context.Context) (string, bool) {
	floor := g.floor
	free, _, err := host.DiskSpace(g.root)
	if err != nil || free >= floor {
		return "", false
	}
	ctx, cancel := context.WithTimeout(ctx, Budget)
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
		case !c.Known:
			c.Base, c.Known = sizes[i], true
			continue
		}
		grown = append(grown, CacheGrowth{Profile: c.Volume.Profile, Path: c.Volume.Path, Bytes: sizes[i] - c.Base})
	}
	return StopLine(free, floor, grown)
}

// size is a cache's size (or use) now, as its base was measured.
func (g *Guard) size(ctx context.Context, c Watched) (int64, bool) {
	if c.Quota {
		q, ok, err := g.host.Quota(ctx, c.Volume.Name)
		return q.Used, err == nil && ok
	}
	size, err := g.host.Size(ctx, c.Volume.Name)
	if err != nil {
		g.log.Debug("free-space guard: cache not measured", zap.String("volume", c.Volume.Name), zap.Error(err))
	}
	return size, err == nil
}
