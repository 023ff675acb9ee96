package driver

import (
	"maps"
	"slices"

	"go.uber.org/zap"

	"github.com/warmcache/warmcache/internal/cache/profile"
	"github.com/warmcache/warmcache/internal/config"
	"github.com/warmcache/warmcache/internal/job"
)

// publishCaches hands the job's cache volumes, once its steps all
// succeeded, to a detached process that publishes them to the fleet cache
// (cache.remote; see remote.PublishVolumes). The run stage that ends the
// steps without an error knows this: the runner runs no step after a
// failed one. Cleanup, which is not told the job's result, would know it
// only from marks; and the job does not wait for the detached process.
func publishCaches(d Deps, j job.Job) {
	r := d.Config.Cache.Remote
	if !r.Enabled() || d.Detached == nil || d.Caches == nil || d.Host == nil ||
		r.Publish == config.PublishNone || (r.Publish == config.PublishProtected && !j.Protected) {
		return
	}
	names := slices.Sorted(maps.Keys(d.Caches.Names(j)))
	if len(names) == 0 {
		return
	}
	if err := d.Detached.PublishCaches(profile.KeyFor(j).Trust, names); err != nil {
		d.Log.Warn("starting the fleet cache publish", zap.Error(err))
	}
}
