package driver

import (
	"context"
	"fmt"
	"time"

	"github.com/warmcache/warmcache/internal/engine"
)

// Detached hands work that nothing in a stage waits for to a process of
// its own, which outlives the stage. Each method starts that process and
// returns without waiting for it; an error means it could not start, and
// the stage does the work itself. The process does the work with the
// function of the same name below (RemoveJob's: reap.RemoveEnded); its
// own failure goes to the structured log only.
type Detached interface {
	// StartContainer starts the created container name, once the
	// container after runs when after is not "" (name joins its network
	// namespace: the start can be handed over before after's has ended).
	StartContainer(name, after string) error
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
func StartContainer(ctx context.Context, e engine.Engine, name, after string) error {
	if after != "" {
		if err := awaitRunning(ctx, e, after); err != nil {
			return err
		}
	}
	return e.StartContainer(ctx, name)
}

// awaitRunning waits until container name runs; it fails when the
// container is gone or ended (a failed prepare), or when ctx ends. An
// inspect during a start returns when the start has ended, so the polls
// are few.
func awaitRunning(ctx context.Context, e engine.Engine, name string) error {
	for {
		state, err := e.ContainerState(ctx, name)
		if err != nil {
			return fmt.Errorf("waiting for %s to run: %w", name, err)
		}
		switch state {
		case "running":
			return nil
		case "created":
		default:
			return fmt.Errorf("waiting for %s to run: it is %s", name, state)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s to run: %w", name, ctx.Err())
		case <-time.After(2 * time.Millisecond):
		}
	}
}
