package cache

import (
	"context"

	"github.com/warmcache/warmcache/internal/cache/profile"
	"github.com/warmcache/warmcache/internal/cache/record"
	"github.com/warmcache/warmcache/internal/cache/remote"
)

// Remote is the fleet cache tier (package remote), which fills a cache
// volume new on this host from the newest snapshot of its cache key.
type Remote interface {
	Restore(ctx context.Context, v remote.Volume) remote.Restored
}

// SetRemote gives the manager the fleet cache tier ([cache.remote]).
func (m *Manager) SetRemote(r Remote) { m.remote = r }

// restore fills st's volume, new on this host, from the fleet cache: the
// job log's line instead of the cold one, if any.
func (m *Manager) restore(ctx context.Context, st Status) string {
	if m.remote == nil || m.host == nil || st.Warm || st.Profile == profile.Git.Name {
		return ""
	}
	r := m.remote.Restore(ctx, remote.Volume(st.Volume))
	if r.OK || r.Failed {
		m.updateMetrics(func(s *record.MetricsState) { s.FleetRestored(r.OK, r.Bytes, r.Took) })
	}
	return r.Line
}
