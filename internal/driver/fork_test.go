package driver

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/warmcache/warmcache/internal/cache"
	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/naming"
)

// TestPrepareForksProtectedCache: with cache.fork = "keep", an unprotected
// job of a project whose protected caches exist mounts overlay forks of
// them, which the GC then leaves alone; cleanup removes the forks and
// keeps the layers.
func TestPrepareForksProtectedCache(t *testing.T) {
	h := unprotectedAfterProtected(t, nil)
	if err := Prepare(context.Background(), h.deps()); err != nil {
		t.Fatal(err)
	}
	build, _ := h.f.Container(sampleKey.Name(naming.KindBuild))
	var forks int
	for _, m := range build.Spec.Mounts {
		if !strings.Contains(m.Volume, "-fork") {
			continue
		}
		forks++
		opts := h.f.VolumeDriverOpts(m.Volume)
		info, _ := h.f.Volume(m.Volume)
		lower, ok := h.f.Volume(info.Labels[naming.LabelForkLower])
		if !ok || lower.Labels[naming.LabelCacheTrust] != cache.Protected || lower.Labels[naming.LabelCachePath] != m.Target {
			t.Errorf("fork %s at %s stands on %+v, want the protected cache of that path", m.Volume, m.Target, lower)
		}
		layer, _ := h.f.Volume(info.Labels[naming.LabelForkLayer])
		want := "lowerdir=" + lower.Mountpoint + ",upperdir=" + layer.Mountpoint + "/upper,workdir=" + layer.Mountpoint + "/work"
		if opts["type"] != "overlay" || opts["device"] != "overlay" || opts["o"] != want {
			t.Errorf("fork %s options %v, want an overlay %s", m.Volume, opts, want)
		}
		if fi, err := os.Stat(filepath.Join(layer.Mountpoint, "upper")); err != nil || !fi.IsDir() {
			t.Errorf("layer %s has no upper directory: %v", layer.Name, err)
		}
	}
	// /cache and the two Go caches.
	if forks != 3 {
		t.Errorf("build mounts %+v: %d forks, want 3", build.Spec.Mounts, forks)
	}
	if !strings.Contains(h.stderr.String(), "Cache go /go/pkg/mod: forked from the protected cache (") {
		t.Errorf("job log:\n%s", h.stderr.String())
	}
	cands, _, err := h.deps().Caches.GC(t.Context(), true, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cands {
		if !c.Forked {
			t.Errorf("cache %s (%s) is not marked as under a live fork", c.Volume, c.Labels[naming.LabelCacheTrust])
		}
	}

	if err := Cleanup(h.deps()); err != nil {
		t.Fatal(err)
	}
	rs, _ := h.f.List(t.Context(), map[string]string{naming.LabelKind: string(naming.KindFork)})
	if len(rs) != 0 {
		t.Errorf("forks left after cleanup: %+v", rs)
	}
	layers, _ := h.f.List(t.Context(), map[string]string{naming.LabelCacheLayer: "true"})
	if len(layers) != 3 || layers[0].Type != engine.Volume {
		t.Errorf("kept layers after cleanup: %+v, want 3", layers)
	}
}

// TestKeptLayerNotShared: with cache.fork = "keep", a second unprotected
// job of the project running while the first one's forks stand gets
// layers of its own (discarded with it): two overlays never share an
// upper and work directory.
func TestKeptLayerNotShared(t *testing.T) {
	first := unprotectedAfterProtected(t, nil)
	if err := Prepare(context.Background(), first.deps()); err != nil {
		t.Fatal(err)
	}
	second := newHarness(t, func(j map[string]any) { j["id"] = 22962 })
	second.f, second.cfg = first.f, first.cfg
	second.env["CUSTOM_ENV_CI_CONCURRENT_ID"] = "3"
	if err := Prepare(context.Background(), second.deps()); err != nil {
		t.Fatal(err)
	}

	forks, _ := first.f.List(t.Context(), map[string]string{naming.LabelKind: string(naming.KindFork)})
	uppers := map[string]string{}
	var own int
	for _, f := range forks {
		o := first.f.VolumeDriverOpts(f.Name)["o"]
		_, upper, _ := strings.Cut(o, "upperdir=")
		if other, ok := uppers[upper]; ok {
			t.Errorf("forks %s and %s share %s", other, f.Name, upper)
		}
		uppers[upper] = f.Name
		if f.Labels[naming.LabelJobID] == "22962" && f.Labels[naming.LabelForkLayer] == "" {
			own++
		}
	}
	if len(forks) != 6 || own != 3 {
		t.Errorf("forks %+v: want 3 per job, the second job's on layers of its own", forks)
	}
	if !strings.Contains(second.stderr.String(), "another job is using the kept layer") {
		t.Errorf("second job's log does not say why its writes are discarded:\n%s", second.stderr.String())
	}

	// Once the first job is gone, the next one gets the kept layers again.
	if err := Cleanup(first.deps()); err != nil {
		t.Fatal(err)
	}
	if err := Cleanup(second.deps()); err != nil {
		t.Fatal(err)
	}
	third := newHarness(t, func(j map[string]any) { j["id"] = 22963 })
	third.f, third.cfg = first.f, first.cfg
	if err := Prepare(context.Background(), third.deps()); err != nil {
		t.Fatal(err)
	}
	kept, _ := first.f.List(t.Context(), map[string]string{naming.LabelKind: string(naming.KindFork), naming.LabelJobID: "22963"})
	for _, f := range kept {
		if f.Labels[naming.LabelForkLayer] == "" {
			t.Errorf("fork %s of the third job is not on the kept layer", f.Name)
		}
	}
	if len(kept) != 3 {
		t.Errorf("third job's forks: %+v", kept)
	}
}

// unprotectedAfterProtected runs a protected job of the project (which
// leaves its protected caches) and returns the harness of an unprotected
// job, changed by edit, on the same engine, with cache.fork = "keep".
func unprotectedAfterProtected(t *testing.T, edit func(job map[string]any)) *harness {
	t.Helper()
	protected := newHarness(t, func(j map[string]any) { j["git_info"].(map[string]any)["protected"] = true })
	protected.cfg.Cache.Enabled = true
	protected.f.SetVolumeRoot(t.TempDir())
	if err := Prepare(context.Background(), protected.deps()); err != nil {
		t.Fatal(err)
	}
	if err := Cleanup(protected.deps()); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, edit)
	h.f, h.cfg = protected.f, protected.cfg
	h.cfg.Cache.Fork = cache.ForkKeep
	return h
}
