package reap

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/engine/fake"
	"github.com/warmcache/warmcache/internal/naming"
)

// RemoveJob removes the job's containers first, then its volumes and
// network; a cache volume labelled with the job stays, and so does
// another job's volume.
func TestRemoveJob(t *testing.T) {
	ctx := context.Background()
	f := fake.New()
	key := naming.JobKey{Runner: "r", Instance: "x", ProjectID: 1, JobID: 2}
	other := naming.JobKey{Runner: "r", Instance: "x", ProjectID: 1, JobID: 3}
	meta := naming.JobMeta{TimeoutSeconds: 60, Created: time.Now()}
	network := key.Name(naming.KindNetwork)
	cache := map[string]string{naming.LabelJob: key.Base(), naming.LabelKind: string(naming.KindCache)}
	f.AddImage("img")
	for _, err := range []error{
		f.EnsureVolume(ctx, engine.VolumeSpec{Name: key.Name(naming.KindBuilds), Labels: key.Labels(naming.KindBuilds, meta)}),
		f.EnsureVolume(ctx, engine.VolumeSpec{Name: "warmcache-go-0123456789ab", Labels: cache}),
		f.EnsureVolume(ctx, engine.VolumeSpec{Name: other.Name(naming.KindBuilds), Labels: other.Labels(naming.KindBuilds, meta)}),
		f.CreateNetwork(ctx, engine.NetworkSpec{Name: network, Labels: key.Labels(naming.KindNetwork, meta)}),
		f.CreateContainer(ctx, engine.ContainerSpec{Name: key.Name(naming.KindBuild), Image: "img", NetworkMode: network,
			Mounts: []engine.Mount{{Volume: key.Name(naming.KindBuilds), Target: "/builds"}}, Labels: key.Labels(naming.KindBuild, meta)}),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := RemoveJob(ctx, f, key); err != nil {
		t.Fatalf("RemoveJob: %v", err)
	}
	var removed []string
	for _, c := range f.Calls() {
		if c.Method == fake.MethodRemove {
			removed = append(removed, c.Name)
		}
	}
	if len(removed) != 3 || removed[0] != key.Name(naming.KindBuild) ||
		!slices.Equal(slices.Sorted(slices.Values(removed[1:])), []string{key.Name(naming.KindBuilds), network}) {
		t.Errorf("removed %q, want the container, then the builds volume and the network", removed)
	}
	for _, name := range []string{"warmcache-go-0123456789ab", other.Name(naming.KindBuilds)} {
		if _, ok := f.Volume(name); !ok {
			t.Errorf("volume %s was removed", name)
		}
	}
	// Idempotent: nothing of the job is left, and a second pass succeeds.
	if err := RemoveJob(ctx, f, key); err != nil {
		t.Errorf("second RemoveJob: %v", err)
	}
}
