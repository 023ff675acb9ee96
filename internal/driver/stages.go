// Package driver implements the custom executor's four stages: config,
// prepare, run and cleanup. Each stage is a separate process started by
// gitlab-runner; everything a later stage needs is found in Docker by the
// names and labels of package naming.
package driver

import (
	"fmt"
	"io"

	"go.uber.org/zap"

	"github.com/warmcache/warmcache/internal/cache"
	"github.com/warmcache/warmcache/internal/config"
	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/host"
	"github.com/warmcache/warmcache/internal/limits/cgroup"
)

// Deps is what every stage is given by the entry point.
type Deps struct {
	Config config.Config
	// Engine is the container engine; nil for the config stage.
	Engine engine.Engine
	Getenv func(string) string
	Stdout io.Writer // job log (prepare, run); protocol JSON (config)
	Stderr io.Writer // job log
	Log    *zap.Logger
	// Detached hands work no stage waits for to processes of their own;
	// nil does it in the foreground instead.
	Detached Detached
	// Caches manages the persistent cache volumes; nil for the config
	// stage.
	Caches *cache.Manager
	// Host reaches the engine's host filesystem; nil when the engine is
	// not local (see package host).
	Host *host.Host
	// Agent is the host path of the stage agent's binary, mounted into the
	// job's containers (package agent); "" when stages run through exec.
	Agent string
}

// say writes one human line to the job log.
func (d Deps) say(format string, args ...any) {
	fmt.Fprintf(d.Stderr, format+"\n", args...)
}

// cgroups manages the jobs' cgroups on the engine's host; nil when the
// driver does not run beside the engine or may not manage them (job-wide
// limits then fall back to the build container's own).
func (d Deps) cgroups() *cgroup.Host {
	if d.Host == nil {
		return nil
	}
	return d.Host.Cgroups
}
