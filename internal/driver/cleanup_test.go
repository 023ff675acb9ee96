package driver

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/engine/fake"
	"github.com/warmcache/warmcache/internal/naming"
)

func TestCleanup(t *testing.T) {
	h := prepared(t)
	ctx := context.Background()
	base := sampleKey.Base()
	// A cache volume that carries the job's label must survive all the same;
	// so must another job's resources.
	cacheLabels := map[string]string{naming.LabelJob: base, naming.LabelKind: string(naming.KindCache)}
	other := naming.JobKey{Runner: "t3st", ProjectID: 1001, Slot: 3, JobID: 22962}
	for _, v := range []engine.VolumeSpec{
		{Name: "warmcache-go-0123456789ab", Labels: cacheLabels},
		{Name: other.Name(naming.KindBuilds), Labels: other.Labels(naming.KindBuilds, naming.JobMeta{})},
	} {
		if err := h.f.EnsureVolume(ctx, v); err != nil {
			t.Fatal(err)
		}
	}
	before := len(h.f.Calls())

	if err := Cleanup(h.deps()); err != nil {
		t.Fatalf("Cleanup: %v", err)
	}

	var removed []string
	for _, c := range h.f.Calls()[before:] {
		if c.Method == fake.MethodRemove {
			removed = append(removed, c.Name)
		}
	}
	containers := []string{sampleKey.Name(naming.KindBuild), sampleKey.Name(naming.KindHelper)}
	// The job ran on its slot's network, which the slot's next job reuses.
	rest := []string{sampleKey.Name(naming.KindBuilds), sampleKey.Name("cachedir")}
	if len(removed) != 4 ||
		!sameSet(removed[:2], containers) || !sameSet(removed[2:], rest) {
		t.Errorf("removed %v, want the containers %v first, then %v", removed, containers, rest)
	}
	for _, name := range containers {
		if c, _ := h.f.Container(name); c.State != fake.Removed {
			t.Errorf("container %s is %s", name, c.State)
		}
	}
	for _, name := range []string{"warmcache-go-0123456789ab", other.Name(naming.KindBuilds)} {
		if _, ok := h.f.Volume(name); !ok {
			t.Errorf("volume %s was removed", name)
		}
	}
	slot, _ := h.f.List(ctx, map[string]string{naming.LabelKind: string(naming.KindSlotNetwork)})
	if len(slot) != 1 {
		t.Errorf("slot networks after cleanup: %+v, want the one the job ran on", slot)
	}
	left, _ := h.f.List(ctx, map[string]string{naming.LabelJob: base})
	if len(left) != 1 || left[0].Name != "warmcache-go-0123456789ab" {
		t.Errorf("left after cleanup: %+v, want only the cache volume", left)
	}

	// Idempotent: a second cleanup finds nothing to do and succeeds.
	if err := Cleanup(h.deps()); err != nil {
		t.Errorf("second Cleanup: %v", err)
	}
}

func sameSet(a, b []string) bool {
	return slices.Equal(slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b)))
}

func TestCleanupWithNothingPrepared(t *testing.T) {
	// The runner calls cleanup after a failed config or prepare too.
	h := newHarness(t, nil)
	if err := Cleanup(h.deps()); err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	if got := methods(h.f, ""); !slices.Equal(got, []string{"List"}) {
		t.Errorf("calls = %v, want only the List", got)
	}
}

func TestCleanupCollectsErrors(t *testing.T) {
	h := prepared(t)
	errBuilds, errNet := errors.New("builds volume busy"), errors.New("network busy")
	net := sampleKey.Name(naming.KindNetwork)
	h.f.AddNetwork(net, sampleKey.Labels(naming.KindNetwork, naming.JobMeta{}))
	h.f.SetHook(func(method, name string) error {
		switch {
		case method != fake.MethodRemove:
		case name == sampleKey.Name(naming.KindBuilds):
			return errBuilds
		case name == net:
			return errNet
		}
		return nil
	})
	err := Cleanup(h.deps())
	if err == nil || err.Error() != "cleanup incomplete: builds volume busy\nnetwork busy" {
		t.Fatalf("Cleanup = %q, want both failures", err)
	}
	if !errors.Is(err, errBuilds) || !errors.Is(err, errNet) {
		t.Errorf("error %v does not wrap both causes", err)
	}
	// One failure does not stop the rest.
	for _, name := range []string{sampleKey.Name(naming.KindHelper), sampleKey.Name(naming.KindBuild)} {
		if c, _ := h.f.Container(name); c.State != fake.Removed {
			t.Errorf("container %s is %s", name, c.State)
		}
	}
	if _, ok := h.f.Volume(sampleKey.Name("cachedir")); ok {
		t.Error("cachedir volume not removed")
	}

	// Once the engine recovers, cleanup finishes the job.
	h.f.SetHook(nil)
	if err := Cleanup(h.deps()); err != nil {
		t.Fatalf("second Cleanup: %v", err)
	}
	if left, _ := h.f.List(context.Background(), map[string]string{naming.LabelJob: sampleKey.Base()}); len(left) != 0 {
		t.Errorf("left: %+v", left)
	}
}

func TestCleanupErrors(t *testing.T) {
	h := prepared(t)
	h.f.FailNext(fake.MethodList, errors.New("engine down"))
	if err := Cleanup(h.deps()); err == nil || err.Error() != "cleanup incomplete: listing the job's resources: engine down" {
		t.Errorf("Cleanup = %v", err)
	}
	delete(h.env, "JOB_RESPONSE_FILE")
	if err := Cleanup(h.deps()); err == nil ||
		err.Error() != "JOB_RESPONSE_FILE is not set: warmcache stages must be started by gitlab-runner's custom executor" {
		t.Errorf("Cleanup = %v", err)
	}
}

func TestCleanupKeepsCacheVolumes(t *testing.T) {
	h := newHarness(t, nil)
	h.cfg.Cache.Enabled = true
	h.f.SetVolumeRoot(t.TempDir())
	if err := Prepare(context.Background(), h.deps()); err != nil {
		t.Fatal(err)
	}
	var caches []string
	all, _ := h.f.List(context.Background(), map[string]string{naming.LabelKind: string(naming.KindCache)})
	for _, r := range all {
		caches = append(caches, r.Name)
	}
	if len(caches) == 0 {
		t.Fatal("Prepare made no cache volumes")
	}
	if err := Cleanup(h.deps()); err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	for _, name := range caches {
		if _, ok := h.f.Volume(name); !ok {
			t.Errorf("cache volume %s removed by cleanup", name)
		}
	}
	if left, _ := h.f.List(context.Background(), map[string]string{naming.LabelJob: sampleKey.Base()}); len(left) != 0 {
		t.Errorf("job resources left: %+v", left)
	}
}

// A fork over a kept layer goes in the stage, after the containers that
// mount it: the project's next job may use the layer only once it is
// gone. The rest goes in the background.
func TestCleanupReleasesKeptLayerInStage(t *testing.T) {
	h := prepared(t)
	ctx := context.Background()
	fork := sampleKey.IndexedName(naming.KindFork, 0)
	labels := sampleKey.Labels(naming.KindFork, naming.JobMeta{})
	labels[naming.LabelForkLayer] = "warmcache-go-layer-0123456789ab"
	if err := h.f.EnsureVolume(ctx, engine.VolumeSpec{Name: fork, Labels: labels}); err != nil {
		t.Fatal(err)
	}
	background := &detachedRecorder{}
	d := h.deps()
	d.Detached = background
	if err := Cleanup(d); err != nil {
		t.Fatal(err)
	}
	if _, ok := h.f.Volume(fork); ok {
		t.Error("the fork over the kept layer outlived the stage")
	}
	for _, name := range []string{sampleKey.Name(naming.KindHelper), sampleKey.Name(naming.KindBuild)} {
		if c, _ := h.f.Container(name); c.State != fake.Removed {
			t.Errorf("container %s is %s, want removed in the stage", name, c.State)
		}
	}
	if len(background.removed) != 1 {
		t.Fatalf("background removals %+v, want one", background.removed)
	}
	for _, r := range background.removed[0].rs {
		if r.Type == engine.Container || r.Name == fork {
			t.Errorf("handed to the background: %+v", r)
		}
	}
	if len(background.removed[0].rs) == 0 {
		t.Error("nothing handed to the background: the job's other volumes should be")
	}
}

// A cleanup that finds nothing of the job starts no detached process.
func TestCleanupWithNothingLeftStartsNoProcess(t *testing.T) {
	h := newHarness(t, nil)
	background := &detachedRecorder{}
	d := h.deps()
	d.Detached = background
	if err := Cleanup(d); err != nil {
		t.Fatal(err)
	}
	if background.tries != 0 {
		t.Errorf("%d detached processes started, want none", background.tries)
	}
}
