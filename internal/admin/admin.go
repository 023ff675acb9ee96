// Package admin implements the commands a runner admin runs by hand:
// doctor, which checks the host; reap, which removes what jobs left
// behind; and cache ls and gc, which show and bound the caches. The stages never use it.
package admin

import (
	"context"
	"io"

	"github.com/warmcache/warmcache/internal/cache"
	"github.com/warmcache/warmcache/internal/config"
	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/limits/cgroup"
)

// Deps is what every admin command is given by the entry point.
type Deps struct {
	Config config.Config
	Engine Engine
	Stdout io.Writer // the command's report
	// Caches is the cache manager: its list and GC.
	Caches *cache.Manager
	// Cgroups manages the jobs' cgroups on the engine's host; nil when
	// the driver does not run beside the engine.
	Cgroups *cgroup.Host
	// RunnerConfig is gitlab-runner's config.toml, which doctor checks
	// against warmcache's config when it can read it; "" skips the check.
	RunnerConfig string
}

// Engine is what the admin commands need from the container engine (see
// engine.Engine for each method's contract).
type Engine interface {
	Ping(ctx context.Context) (engine.Info, error)
	InspectImage(ctx context.Context, ref string) (engine.ImageInfo, error)
	List(ctx context.Context, labels map[string]string) ([]engine.Resource, error)
	Remove(ctx context.Context, r engine.Resource) error
}
