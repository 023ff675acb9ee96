package admin

import (
	"bytes"
	"context"
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/engine/fake"
	"github.com/warmcache/warmcache/internal/naming"
)

func TestReap(t *testing.T) {
	for _, dryRun := range []bool{true, false} {
		h := newHarness()
		old := time.Now().Add(-24 * time.Hour)
		oldKey := naming.JobKey{Runner: "r", Instance: "x", ProjectID: 1, JobID: 2}
		labels := oldKey.Labels(naming.KindBuild, naming.JobMeta{TimeoutSeconds: 60, Created: old})
		h.f.AddImage("img")
		if err := h.f.CreateContainer(context.Background(), engine.ContainerSpec{Name: oldKey.Name(naming.KindBuild), Image: "img", Labels: labels}); err != nil {
			t.Fatal(err)
		}
		startLiveJob(t, h.f)
		var out bytes.Buffer
		d := h.deps()
		d.Stdout = &out
		if err := Reap(context.Background(), d, dryRun); err != nil {
			t.Fatalf("Reap: %v", err)
		}
		verb := "Reaped"
		if dryRun {
			verb = "Would reap"
		}
		// The creation label has whole seconds: allow the second it drops.
		line := regexp.MustCompile(`^` + verb + ` ` + oldKey.Base() + `: 1 resources, created 24h0m[01]s ago, abandoned since 22h59m[01]s ago\n$`)
		if !line.MatchString(out.String()) {
			t.Errorf("dry run %v: output %q", dryRun, out.String())
		}
		c, _ := h.f.Container(oldKey.Name(naming.KindBuild))
		if wantState := fake.Removed; !dryRun && c.State != wantState || dryRun && c.State == wantState {
			t.Errorf("dry run %v: abandoned container is %s", dryRun, c.State)
		}
		live, _ := h.f.Container(liveKey.Name(naming.KindBuild))
		if live.State == fake.Removed {
			t.Errorf("dry run %v: the live job's container was reaped", dryRun)
		}
	}
}

// A network whose job has no container left goes long before the job's
// deadline, by its id, at `warmcache reap` (and at every prepare: see
// package driver); a live job's network stays.
func TestReapStrandedNetwork(t *testing.T) {
	strandedKey := naming.JobKey{Runner: "r", Instance: "x", ProjectID: 1, JobID: 3}
	network := strandedKey.Name(naming.KindNetwork)
	for _, mode := range []string{"dry run", "reap"} {
		t.Run(mode, func(t *testing.T) {
			h := newHarness()
			// Made 2h ago by a job with a 3h timeout: far from abandoned.
			h.f.AddNetwork(network, strandedKey.Labels(naming.KindNetwork, naming.JobMeta{TimeoutSeconds: 3 * 3600, Created: time.Now().Add(-2 * time.Hour)}))
			id := h.f.NetworkID(network)
			startLiveJob(t, h.f)
			var out bytes.Buffer
			d := h.deps()
			d.Stdout = &out
			if err := Reap(context.Background(), d, mode == "dry run"); err != nil {
				t.Fatalf("Reap: %v", err)
			}
			verb := map[string]string{"dry run": "Would remove", "reap": "Removed"}[mode]
			line := regexp.MustCompile(`^` + verb + ` the network of ` + strandedKey.Base() + `: no container of the job is left, created 2h0m[01]s ago\n$`)
			if !line.MatchString(out.String()) {
				t.Errorf("output %q", out.String())
			}
			if got, want := h.f.HasNetwork(network), mode == "dry run"; got != want {
				t.Errorf("stranded network exists: %v, want %v", got, want)
			}
			byID := slices.Contains(h.f.Calls(), fake.Call{Method: fake.MethodRemove, Name: id})
			if byID == (mode == "dry run") {
				t.Errorf("removal by the network's id: %v", byID)
			}
			if !h.f.HasNetwork(liveKey.Name(naming.KindNetwork)) {
				t.Error("the live job's network was removed")
			}
		})
	}
}

// The reaper removes an abandoned job's services and then its network
// (a network with containers on it cannot go).
func TestReapJobNetwork(t *testing.T) {
	h := newHarness()
	ctx := context.Background()
	old := naming.JobKey{Runner: "r", Instance: "x", ProjectID: 1, JobID: 2}
	meta := naming.JobMeta{TimeoutSeconds: 60, Created: time.Now().Add(-24 * time.Hour)}
	network := old.Name(naming.KindNetwork)
	h.f.AddImage("redis:7")
	if err := errors.Join(
		h.f.CreateNetwork(ctx, engine.NetworkSpec{Name: network, Labels: old.Labels(naming.KindNetwork, meta)}),
		h.f.CreateContainer(ctx, engine.ContainerSpec{Name: old.ServiceName(0), Image: "redis:7", NetworkMode: network,
			NetworkAliases: []string{"redis"}, Labels: old.Labels(naming.KindService, meta)}),
		h.f.StartContainer(ctx, old.ServiceName(0)),
	); err != nil {
		t.Fatal(err)
	}
	d := h.deps()
	d.Stdout = &strings.Builder{}
	if err := Reap(ctx, d, false); err != nil {
		t.Fatalf("Reap: %v", err)
	}
	if h.f.HasNetwork(network) {
		t.Error("the abandoned job's network is still there")
	}
	if c, _ := h.f.Container(old.ServiceName(0)); c.State != fake.Removed {
		t.Errorf("the abandoned job's service is %s", c.State)
	}
}
