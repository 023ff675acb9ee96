package driver

import (
	"context"
	"fmt"
	"strings"

	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/limits/cgroup"
	"github.com/warmcache/warmcache/internal/reap"
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

// RemoveJob is the work of Detached.RemoveJob, in the process it started:
// the containers first (they hold the volumes and networks), the cgroup
// last (it can only go once they have). cgroups is nil when the engine
// is not on this host. It removes what cleanup found, by names no retried
// preparation of the job reuses (see endContainers), and the job's
// networks by id: a retried preparation makes one of the same name.
func RemoveJob(ctx context.Context, e engine.Engine, cgroups *cgroup.Host, base string, rs []engine.Resource) error {
	if err := reap.RemoveAll(ctx, e, rs); err != nil {
		return err
	}
	if cgroups == nil {
		return nil
	}
	return cgroups.Remove(base)
}

// ResourceArg spells a resource on a detached process's command line:
// "type:name", a network by its id.
func ResourceArg(r engine.Resource) string {
	if r.Type == engine.Network && r.ID != "" {
		return string(r.Type) + ":" + r.ID
	}
	return string(r.Type) + ":" + r.Name
}

// ParseResourceArg reads what ResourceArg wrote.
func ParseResourceArg(s string) (engine.Resource, error) {
	typ, name, ok := strings.Cut(s, ":")
	switch t := engine.ResourceType(typ); {
	case !ok || name == "":
		return engine.Resource{}, fmt.Errorf("resource %q: want type:name", s)
	case t == engine.Container || t == engine.Volume || t == engine.Network:
		return engine.Resource{Type: t, Name: name}, nil
	default:
		return engine.Resource{}, fmt.Errorf("resource %q: unknown type %q", s, typ)
	}
}
