package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/warmcache/warmcache/internal/cache"
	"github.com/warmcache/warmcache/internal/cache/gc"
	"github.com/warmcache/warmcache/internal/cache/record"
	"github.com/warmcache/warmcache/internal/config"
	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/engine/docker"
	"github.com/warmcache/warmcache/internal/naming"
	"go.uber.org/zap"
)

// pausingEngine is the real engine, except that Remove waits for the test
// between being called and removing: a GC paused inside its critical
// section.
type pausingEngine struct {
	*docker.Docker
	volume            string // the one whose removal pauses
	removing, proceed chan struct{}
}

func (p pausingEngine) Remove(ctx context.Context, r engine.Resource) error {
	if r.Name == p.volume {
		p.removing <- struct{}{}
		<-p.proceed
	}
	return p.Docker.Remove(ctx, r)
}

// lockWaiter says whether a process waits (in /proc/locks) for the flock
// of the file at path.
func lockWaiter(t *testing.T, path string) bool {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		return false
	}
	inode := fi.Sys().(*syscall.Stat_t).Ino
	data, err := os.ReadFile("/proc/locks")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.Contains(line, "->") && strings.Contains(line, fmt.Sprintf(":%d ", inode)) {
			return true
		}
	}
	return false
}

// TestCacheLeaseRace interleaves a prepare's claim and an eviction at the
// two dangerous points, on the real engine, with the real binary:
//   - a GC (`cache gc`) between a claim and the creation of the container
//     that mounts the volume keeps the volume (the lease);
//   - a prepare that claims while a GC is removing the volume waits for
//     it, then creates the volume anew, labelled, and mounts that.
func TestCacheLeaseRace(t *testing.T) {
	pool := newGCPool(t)
	project := nextJobID()
	fillCache(t, pool, project)
	name := pool.volumes(t, project)["/go/pkg/mod"]
	info, err := eng.InspectVolume(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	recs := record.Records{Dir: filepath.Join(pool.stateDir, "caches")}
	gcCfg := pool.config("budget = \"1B\"\nmax_idle = \"1m\"\n")

	// 1. claim, GC, container.
	pool.age(t, map[string]string{"mod": name}, time.Hour)
	// What a prepare's claim writes first, before it makes sure of the
	// volume and creates its containers: the lease.
	if err := recs.Update(name, func(r *record.Record) error {
		r.Claimed, r.LastUsed = time.Now(), time.Now()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	gcJob := newJob(t, jobSpec{Config: gcCfg})
	if r := gcJob.call("cache", "gc"); r.Code != 0 || strings.Contains(r.Stdout, "Evicted "+name) || !exists(t, name) {
		t.Fatalf("cache gc between a claim and its container: %s", r)
	}
	c := fmt.Sprintf("lease-race-%d", nextJobID())
	t.Cleanup(func() { eng.Remove(context.Background(), engine.Resource{Type: engine.Container, Name: c}) })
	if err := eng.CreateContainer(t.Context(), engine.ContainerSpec{Name: c, Image: busyboxImage, Cmd: []string{"true"},
		Mounts: []engine.Mount{{Volume: name, Target: "/c"}}}); err != nil {
		t.Fatal(err)
	}
	if info, err := eng.InspectVolume(t.Context(), name); err != nil || info.Labels[naming.LabelKind] != string(naming.KindCache) {
		t.Fatalf("the container mounts %+v, %v; want the labelled cache", info, err)
	}
	if err := eng.Remove(t.Context(), engine.Resource{Type: engine.Container, Name: c}); err != nil {
		t.Fatal(err)
	}

	// 2. a GC removing, a prepare claiming meanwhile.
	pool.age(t, map[string]string{"mod": name}, time.Hour)
	paused := pausingEngine{Docker: eng, volume: name, removing: make(chan struct{}), proceed: make(chan struct{})}
	gcCache := config.Cache{Enabled: true, Pool: pool.name, StateDir: pool.stateDir,
		GC: config.CacheGC{Budget: 1, MaxIdle: time.Minute}}
	evicted := make(chan error, 1)
	go func() {
		_, res, err := cache.New(gcCache, paused, nil, zap.NewNop()).GC(context.Background(), false, nil, nil)
		if err == nil && !slices.ContainsFunc(res.Evicted, func(ev gc.Eviction) bool { return ev.Volume == name }) {
			err = fmt.Errorf("the GC did not evict %s: %+v", name, res)
		}
		evicted <- err
	}()
	<-paused.removing // the GC holds the volume's lock and is about to remove it

	j := newJob(t, jobSpec{ProjectID: project, Config: pool.config("")})
	cmd := j.Command("prepare")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lock := filepath.Join(recs.Dir, name+".lock")
	for deadline := time.Now().Add(30 * time.Second); !lockWaiter(t, lock); {
		if time.Now().After(deadline) {
			t.Fatal("the prepare never waited for the volume's lock")
		}
		time.Sleep(10 * time.Millisecond) // polling /proc/locks, a real condition
	}
	close(paused.proceed)
	if err := <-evicted; err != nil {
		t.Fatalf("eviction: %v", err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("prepare: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "Cache go /go/pkg/mod: cold (new volume "+name+")") {
		t.Errorf("the prepare after the eviction should find a new, cold volume:\n%s", stderr.String())
	}
	info, err = eng.InspectVolume(t.Context(), name)
	if err != nil || info.Labels[naming.LabelKind] != string(naming.KindCache) || info.Labels[naming.LabelCachePool] != pool.name {
		t.Errorf("the volume the job mounts: %+v, %v; want the labelled cache", info, err)
	}
}
