package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/naming"
)

// fakeCrashedJob leaves what a job that died without cleanup leaves: a
// running build container on its network and its builds volume, created
// hours ago. It
// returns the job's key and a function listing what is left of it.
func fakeCrashedJob(t *testing.T) (naming.JobKey, func() []string) {
	t.Helper()
	ctx := context.Background()
	crashed := naming.JobKey{Runner: "e2etoken", Instance: "127.0.0.1:42891", ProjectID: nextJobID(), JobID: nextJobID()}
	meta := naming.JobMeta{PipelineID: 1, TimeoutSeconds: 60, Created: time.Now().Add(-3 * time.Hour)}
	builds, container, network := crashed.Name(naming.KindBuilds), crashed.Name(naming.KindBuild), crashed.Name(naming.KindNetwork)
	t.Cleanup(func() {
		eng.Remove(ctx, engine.Resource{Type: engine.Container, Name: container})
		eng.Remove(ctx, engine.Resource{Type: engine.Volume, Name: builds})
		eng.Remove(ctx, engine.Resource{Type: engine.Network, Name: network})
	})
	if err := eng.EnsureVolume(ctx, engine.VolumeSpec{Name: builds, Labels: crashed.Labels(naming.KindBuilds, meta)}); err != nil {
		t.Fatal(err)
	}
	if err := eng.CreateNetwork(ctx, engine.NetworkSpec{Name: network, Labels: crashed.Labels(naming.KindNetwork, meta)}); err != nil {
		t.Fatal(err)
	}
	if err := eng.CreateContainer(ctx, engine.ContainerSpec{
		Name: container, Image: busyboxImage, Cmd: []string{"sh", "-c", "sleep 3600"}, NetworkMode: network,
		Labels: crashed.Labels(naming.KindBuild, meta), Mounts: []engine.Mount{{Volume: builds, Target: "/builds"}},
	}); err != nil {
		t.Fatal(err)
	}
	if err := eng.StartContainer(ctx, container); err != nil {
		t.Fatal(err)
	}
	return crashed, func() []string {
		rs, err := eng.List(ctx, map[string]string{naming.LabelJob: crashed.Base()})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, r := range rs {
			names = append(names, r.Name)
		}
		return names
	}
}

// TestReapCommand: `warmcache reap` finds a crashed job's resources by
// their labels and removes them; --dry-run removes nothing; a running job
// and the persistent caches are left alone.
func TestReapCommand(t *testing.T) {
	live := newJob(t, jobSpec{Config: defaultConfig + "[reap]\nat_prepare = false\n"})
	if r := live.prepare(); r.Code != 0 {
		t.Fatalf("prepare: %s", r)
	}
	crashed, left := fakeCrashedJob(t)

	dry := live.call("reap", "--dry-run")
	if dry.Code != 0 || !strings.Contains(dry.Stdout, "Would reap "+crashed.Base()+": 3 resources, created 3h0m") {
		t.Errorf("reap --dry-run: %s", dry)
	}
	if l := left(); len(l) != 3 {
		t.Errorf("--dry-run removed something: %v left", l)
	}
	r := live.call("reap")
	if r.Code != 0 || !strings.Contains(r.Stdout, "Reaped "+crashed.Base()+": 3 resources") {
		t.Errorf("reap: %s", r)
	}
	if l := left(); len(l) != 0 {
		t.Errorf("after reap the crashed job still has %v", l)
	}
	if l := jobResources(t, live); len(l) != 4 { // 2 containers, the builds volume, the credentials' tmpfs (its network is its slot's)
		t.Errorf("the live job lost resources to the reaper: %v", l)
	}
	if r := live.run("build_script", runnerScript("grep -q ' /go/pkg/mod ' /proc/mounts && echo still alive\n")); r.Code != 0 || !strings.HasSuffix(r.Stdout, "still alive\n") {
		t.Errorf("live job after reap: %s", r)
	}
}

// TestPrepareReaps: every prepare makes a bounded reaper pass, so admins
// need no cron job for correctness.
func TestPrepareReaps(t *testing.T) {
	_, left := fakeCrashedJob(t)
	j := newJob(t, jobSpec{})
	if r := j.prepare(); r.Code != 0 {
		t.Fatalf("prepare: %s", r)
	}
	if l := left(); len(l) != 0 {
		t.Errorf("after a prepare the crashed job still has %v", l)
	}
}

// TestReapStrandedNetwork: the network of a job with no container left
// (its removal after cleanup failed) goes once older than reap.grace,
// hours before the job's deadline; a live job keeps its network (one of
// its own: docker.network_per_job).
func TestReapStrandedNetwork(t *testing.T) {
	ctx := context.Background()
	live := newJob(t, jobSpec{Config: defaultConfig + "network_per_job = true\n[reap]\nat_prepare = false\n"})
	if r := live.prepare(); r.Code != 0 {
		t.Fatalf("prepare: %s", r)
	}
	stranded := naming.JobKey{Runner: "e2etoken", Instance: "127.0.0.1:42891", ProjectID: nextJobID(), JobID: nextJobID()}
	network := stranded.Name(naming.KindNetwork)
	t.Cleanup(func() { eng.Remove(ctx, engine.Resource{Type: engine.Network, Name: network}) })
	meta := naming.JobMeta{PipelineID: 1, TimeoutSeconds: 3 * 3600, Created: time.Now().Add(-2 * time.Hour)}
	if err := eng.CreateNetwork(ctx, engine.NetworkSpec{Name: network, Labels: stranded.Labels(naming.KindNetwork, meta)}); err != nil {
		t.Fatal(err)
	}
	r := live.call("reap")
	if r.Code != 0 || !strings.Contains(r.Stdout, "Removed the network of "+stranded.Base()+": no container of the job is left, created 2h0m") {
		t.Errorf("reap: %s", r)
	}
	rs, err := eng.List(ctx, map[string]string{naming.LabelJob: stranded.Base()})
	if err != nil || len(rs) != 0 {
		t.Errorf("after reap the stranded job has %v (%v)", rs, err)
	}
	if l := jobResources(t, live); !hasResource(l, "network ", "-network") {
		t.Errorf("the live job lost its network to the reaper: %v", l)
	}
}
