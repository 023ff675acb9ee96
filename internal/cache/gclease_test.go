package cache

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/warmcache/warmcache/internal/cache/gc"
	"github.com/warmcache/warmcache/internal/cache/profile"
	"github.com/warmcache/warmcache/internal/cache/record"
	"github.com/warmcache/warmcache/internal/config"
	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/engine/fake"
	"github.com/warmcache/warmcache/internal/host"
	"github.com/warmcache/warmcache/internal/naming"
	"go.uber.org/zap"
)

// TestClaimAndGCInterleaved drives a prepare's claim and a GC into each
// other at the two dangerous points, with the fake engine's hooks.
func TestClaimAndGCInterleaved(t *testing.T) {
	vol := profile.Plan(testKey, []Profile{wantGo})[0]
	setup := func(t *testing.T) (*fake.Engine, record.Records) {
		f, _ := localEngine(t)
		f.AddImage("img")
		m := newManager(t, f, config.Cache{}, true)
		recs := m.records
		old := t0.Add(-2 * record.LeaseGrace)
		if _, err := m.claimVolumes(t.Context(), []Volume{vol}, old); err != nil {
			t.Fatal(err)
		}
		return f, recs
	}
	pass := func(t *testing.T, f *fake.Engine, recs record.Records) gc.Result {
		t.Helper()
		return runGC(t, f, recs, gc.Limits{BudgetBytes: 1, MaxIdle: time.Minute})
	}

	// The GC runs after the claim's lease, before its containers exist:
	// the lease keeps the volume, and the container mounts a cache volume.
	t.Run("gc between claim and container", func(t *testing.T) {
		f, recs := setup(t)
		var during gc.Result
		f.SetHook(func(method, name string) error {
			if method == fake.MethodEnsureVolume && name == vol.Name {
				f.SetHook(nil)
				during = pass(t, f, recs)
			}
			return nil
		})
		if _, err := claimer(f, recs).claimVolumes(t.Context(), []Volume{vol}, t0); err != nil {
			t.Fatal(err)
		}
		if len(during.Evicted) != 0 {
			t.Fatalf("GC during the claim evicted %+v, want the leased volume kept", during)
		}
		// A GC that planned before the lease is refused at removal.
		if err := gc.Evict(t.Context(), f, recs, vol.Name, t0); !errors.Is(err, record.ErrLeased) {
			t.Errorf("Evict of the claimed volume = %v, want ErrLeased", err)
		}
		if err := f.CreateContainer(t.Context(), engine.ContainerSpec{Name: "job", Image: "img", Mounts: []engine.Mount{{Volume: vol.Name, Target: vol.Path}}}); err != nil {
			t.Fatal(err)
		}
		info, ok := f.Volume(vol.Name)
		if !ok || info.Labels[naming.LabelKind] != string(naming.KindCache) {
			t.Errorf("volume after the claim = %+v, %v; want the labelled cache", info, ok)
		}
	})

	// A claim arrives while the GC removes the volume: it waits for the
	// GC's lock, then creates the volume anew (cold) with its labels.
	t.Run("claim while gc removes", func(t *testing.T) {
		f, recs := setup(t)
		claimed := make(chan []Status, 1)
		f.SetHook(func(method, name string) error {
			if method == fake.MethodRemove && name == vol.Name {
				f.SetHook(nil)
				go func() {
					st, err := claimer(f, recs).claimVolumes(context.Background(), []Volume{vol}, t0)
					if err != nil {
						t.Error(err)
					}
					claimed <- st
				}()
			}
			return nil
		})
		res := pass(t, f, recs)
		st := <-claimed
		if len(res.Evicted) != 1 {
			t.Fatalf("GC = %+v, want the idle volume evicted", res)
		}
		if len(st) != 1 || st[0].Warm {
			t.Errorf("claim after the eviction = %+v, want a cold volume", st)
		}
		var order []string
		for _, c := range f.Calls() {
			if c.Name == vol.Name && (c.Method == fake.MethodRemove || c.Method == fake.MethodEnsureVolume) {
				order = append(order, c.Method)
			}
		}
		if want := []string{fake.MethodEnsureVolume, fake.MethodRemove, fake.MethodEnsureVolume}; !slices.Equal(order, want) {
			t.Errorf("calls on the volume = %v, want %v", order, want)
		}
		if info, ok := f.Volume(vol.Name); !ok || info.Labels[naming.LabelKind] != string(naming.KindCache) {
			t.Errorf("volume after both = %+v, %v; want the labelled cache", info, ok)
		}
		if r, _ := recs.Get(vol.Name); !r.Leased(t0) {
			t.Errorf("record after both = %+v, want the new claim's lease", r)
		}
	})
}

// claimer is a manager over f and the records recs, as a second process
// (a prepare) sharing the state directory would be.
func claimer(f *fake.Engine, recs record.Records) *Manager {
	return &Manager{engine: f, host: host.New(f, nil), records: recs, log: zap.NewNop()}
}

func runGC(t *testing.T, f *fake.Engine, recs record.Records, lim gc.Limits) gc.Result {
	t.Helper()
	cands, err := gc.Candidates(t.Context(), f, recs, gc.Scope(""), t0)
	if err != nil {
		t.Fatal(err)
	}
	res, err := gc.Run(t.Context(), f, recs, cands, lim, -1, t0, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return res
}
