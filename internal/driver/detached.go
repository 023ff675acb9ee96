package driver

import (
	"context"

	"github.com/warmcache/warmcache/internal/engine"
)

// Detached hands work that nothing in a stage waits for to a process of
// its own, which outlives the stage. Each method starts that process and
// returns without waiting for it; an error means it could not start, and
// the stage does the work itself. The process does the work with the
// function of the same name below; its own failure goes to the
// structured log only.
type Detached interface {
	// StartContainer starts the created container name.
	StartContainer(name string) error
	// RemoveNetwork removes the network whose engine id is id.
	RemoveNetwork(id string) error
	// PublishCaches publishes the named cache volumes of a successful job
	// of trust class trust to the fleet cache (remote.PublishVolumes).
	PublishCaches(trust string, volumes []string) error
}

// StartContainer is the work of Detached.StartContainer, in the process
// it started.
func StartContainer(ctx context.Context, e engine.Engine, name string) error {
	return e.StartContainer(ctx, name)
}

// RemoveNetwork is the work of Detached.RemoveNetwork, in the process it
// started. By id: a retried prepare of the job makes a network of the
// same name.
func RemoveNetwork(ctx context.Context, e engine.Engine, id string) error {
	return e.Remove(ctx, engine.Resource{Type: engine.Network, Name: id})
}
