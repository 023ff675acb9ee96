package driver

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/engine/fake"
	"github.com/warmcache/warmcache/internal/naming"
)

// Prepare makes a bounded reaper pass, so admins need no cron job.
func TestPrepareReaps(t *testing.T) {
	h := newHarness(t, nil)
	h.cfg.Reap.AtPrepare = true
	oldKey := naming.JobKey{Runner: "r", Instance: "x", ProjectID: 1, JobID: 2}
	h.f.AddImage("img")
	labels := oldKey.Labels(naming.KindBuild, naming.JobMeta{TimeoutSeconds: 60, Created: time.Now().Add(-24 * time.Hour)})
	if err := h.f.CreateContainer(context.Background(), engine.ContainerSpec{Name: oldKey.Name(naming.KindBuild), Image: "img", Labels: labels}); err != nil {
		t.Fatal(err)
	}
	if err := Prepare(context.Background(), h.deps()); err != nil {
		t.Fatal(err)
	}
	if c, _ := h.f.Container(oldKey.Name(naming.KindBuild)); c.State != fake.Removed {
		t.Errorf("abandoned container is %s after prepare", c.State)
	}
}

// A network whose job has no container left goes long before the job's
// deadline, by its id, at every prepare (and at `warmcache reap`: see
// package admin); a live job's network stays.
func TestPrepareReapsStrandedNetwork(t *testing.T) {
	strandedKey := naming.JobKey{Runner: "r", Instance: "x", ProjectID: 1, JobID: 3}
	network := strandedKey.Name(naming.KindNetwork)
	h := newHarness(t, nil)
	h.cfg.Docker.NetworkPerJob = true
	h.cfg.Reap.AtPrepare = true
	// Made 2h ago by a job with a 3h timeout: far from abandoned.
	h.f.AddNetwork(network, strandedKey.Labels(naming.KindNetwork, naming.JobMeta{TimeoutSeconds: 3 * 3600, Created: time.Now().Add(-2 * time.Hour)}))
	id := h.f.NetworkID(network)
	if err := Prepare(context.Background(), h.deps()); err != nil {
		t.Fatal(err)
	}
	if h.f.HasNetwork(network) {
		t.Error("the stranded network is still there")
	}
	if byID := slices.Contains(h.f.Calls(), fake.Call{Method: fake.MethodRemove, Name: id}); !byID {
		t.Errorf("removal by the network's id: %v", byID)
	}
	if !h.f.HasNetwork(sampleKey.Name(naming.KindNetwork)) {
		t.Error("the live job's network was removed")
	}
}
