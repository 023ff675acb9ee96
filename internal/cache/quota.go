package cache

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/host"
	"github.com/warmcache/warmcache/internal/human"
)

// Hard quotas (cache.quota): a cache volume created with a quota set gets
// a filesystem of the quota's size of its own (host.CreateQuota), so that
// the kernel stops a job's writes there at the limit. Volumes created
// before (or with no quota) stay as they are until they go (evicted, or
// removed by hand) and are made anew. Profiles under commit-on-success get
// none: their commit moves the job's layer into the cache by renames,
// which cannot cross into a filesystem of its own. A fork's layer is a
// plain volume too: the fork reads the quota'd cache through an overlay,
// and its writes are the job's own, gone with it or kept per cache.fork.
//
// A job that fills a cache is told in its log (ReportGrowth); the next
// job to claim it finds it full and empties it (host.ResetQuota), since
// the files written last may be half written. A cache another job still
// holds is emptied at a later claim.

// quotaEngine removes a quota'd volume only once its filesystem is
// unmounted from its directory (host.ReleaseQuota): the engine would
// otherwise empty the filesystem and fail on its busy directory.
type quotaEngine struct {
	Engine
	host *host.Host
}

// Remove implements Engine.
func (e quotaEngine) Remove(ctx context.Context, r engine.Resource) error {
	if r.Type == engine.Volume {
		if err := e.host.ReleaseQuota(ctx, r.Name); err != nil {
			return fmt.Errorf("removing volume %s: %w", r.Name, err)
		}
	}
	return e.Engine.Remove(ctx, r)
}

// evicting is the engine the GC removes volumes through.
func (m *Manager) evicting() Engine {
	if m.host == nil {
		return m.engine
	}
	return quotaEngine{Engine: m.engine, host: m.host}
}

// noQuotaOnce says once per process (one stage of one job) why quotas
// are not enforced.
var noQuotaOnce sync.Once

// ensureQuota gives a fresh volume v its quota when one is set (limited),
// and mounts the filesystem of an existing volume made with one (quota:
// it is not mounted after a reboot), emptying it if a job filled it. It returns a line for the job
// log, or "". Where the host has no way to enforce a quota, the line says
// so (once) and v stays a plain volume, as with no quota; a fresh volume
// whose quota could not be made is removed, for the next claim to try
// again.
func (m *Manager) ensureQuota(ctx context.Context, v Volume, fresh, limited, quota bool) (string, error) {
	if m.host == nil {
		return "", nil
	}
	if fresh {
		if !limited {
			return "", nil
		}
		err := m.host.CreateQuota(ctx, v.Name, int64(m.cfg.Quota))
		if errors.Is(err, host.ErrNoQuota) {
			line := ""
			noQuotaOnce.Do(func() { line = fmt.Sprintf("cache.quota: not enforced, caches have no size limit: %v", err) })
			return line, nil
		}
		if err != nil {
			if rerr := m.evicting().Remove(ctx, engine.Resource{Type: engine.Volume, Name: v.Name}); rerr != nil {
				err = errors.Join(err, rerr)
			}
			return "", fmt.Errorf("cache volume for %s: %w", v.Path, err)
		}
		return "", nil
	}
	if !quota {
		return "", nil // a plain volume: nothing to mount, no engine call
	}
	mounted, err := m.host.MountQuota(ctx, v.Name)
	if err != nil || !mounted {
		return "", err
	}
	return m.resetIfFull(ctx, v)
}

// resetIfFull empties a quota'd cache that a job filled, before the next
// job mounts it, unless another job holds it still.
func (m *Manager) resetIfFull(ctx context.Context, v Volume) (string, error) {
	q, ok, err := m.host.Quota(ctx, v.Name)
	if err != nil || !ok || !q.Full() {
		return "", err
	}
	err = m.host.ResetQuota(ctx, v.Name)
	switch {
	case errors.Is(err, engine.ErrInUse):
		return fmt.Sprintf("Cache %s %s is full at %s (cache.quota); another job holds it, so it stays full for this job", v.Profile, v.Path, human.Limit(q.Limit)), nil
	case err != nil:
		return "", err
	}
	if err := m.records.SetSize(v.Name, 0, time.Now()); err != nil {
		return "", err
	}
	return fmt.Sprintf("Cache %s %s was full at %s (cache.quota): emptied, since its last files may be half written", v.Profile, v.Path, human.Limit(q.Limit)), nil
}

// QuotaSupport says, for doctor, whether cache.quota is enforced on this
// host: nil when it is, or when no quota is set.
func (m *Manager) QuotaSupport() error {
	if m.cfg.Quota == 0 {
		return nil
	}
	return m.host.QuotaSupport()
}
