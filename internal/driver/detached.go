package driver

import (
	"context"

	"github.com/warmcache/warmcache/internal/engine"
)

// Detached hands work that nothing in a stage waits for to a process of
// its own, which outlives the stage. Each method starts that process and
// returns without waiting for it; an error means it could not start, and
// the stage does the work itself. The process does the work with the
// function of the same name below (RemoveJob's: reap.RemoveEnded); its
// own failure goes to the structured log only.
type Detached interface {
	// StartContainer starts the created container name.
	StartContainer(name string) error
	// RemoveJob removes the resources rs of the ended job base (found by
	// cleanup: its containers under the names naming.Ended gave them, its
	// networks by id), then the job's cgroup.
	RemoveJob(base string, rs []engine.Resource) error
	// PublishCaches publishes the named cache volumes of a successful job
	// of trust class trust to the fleet cache (remote.PublishVolumes).
	PublishCaches(trust string, volumes []string) error
}

// StartContainer is the work of Detached.StartContainer, in the process
// it started.
func StartContainer(ctx context.Context, e engine.Engine, name string) error {
	return e.StartContainer(ctx, name)
}
