package host

import (
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/engine/fake"
)

// localHost is a Host over a fake engine whose volumes are real
// directories under root, as beside a local engine.
func localHost(t *testing.T) (h *Host, f *fake.Engine, root string) {
	t.Helper()
	return localHostIn(t, t.TempDir())
}

func localHostIn(t *testing.T, root string) (*Host, *fake.Engine, string) {
	t.Helper()
	f := fake.New()
	f.SetVolumeRoot(root)
	return New(f, nil), f, root
}

// volume makes the volume name and returns its directory.
func volume(t *testing.T, f *fake.Engine, name string) string {
	t.Helper()
	if err := f.EnsureVolume(t.Context(), engine.VolumeSpec{Name: name}); err != nil {
		t.Fatal(err)
	}
	v, ok := f.Volume(name)
	if !ok || v.Mountpoint == "" {
		t.Fatalf("volume %s: %+v, %v; want a mountpoint", name, v, ok)
	}
	return v.Mountpoint
}

func TestOpenToAllUsers(t *testing.T) {
	mp := filepath.Join(t.TempDir(), "_data")
	if err := os.Mkdir(mp, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := openToAllUsers(mp); err != nil {
		t.Fatalf("openToAllUsers: %v", err)
	}
	if fi, err := os.Stat(mp); err != nil || fi.Mode() != os.ModeDir|os.ModeSticky|0o777 {
		t.Errorf("mode %v, %v; want %v", fi.Mode(), err, os.ModeDir|os.ModeSticky|0o777)
	}
	gone := filepath.Join(t.TempDir(), "gone")
	if err := openToAllUsers(gone); !errors.Is(err, fs.ErrNotExist) || err.Error() != "chmod "+gone+": no such file or directory" {
		t.Errorf("openToAllUsers(missing) = %v, want chmod %s: no such file or directory", err, gone)
	}
}

func TestLocal(t *testing.T) {
	for host, want := range map[string]bool{
		"unix:///var/run/docker.sock": true,
		"tcp://127.0.0.1:2375":        false,
		"ssh://builder":               false,
		"":                            false,
	} {
		if got := Local(host); got != want {
			t.Errorf("Local(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestHostSize(t *testing.T) {
	h, f, _ := localHost(t)
	mp := volume(t, f, "cache")
	// A cache made by an older version, with its stamp at the root.
	writeTree(t, mp, map[string]int{legacyStampFile: 60, "a": 100, "cache/download/b": 2000, "cache/c": 0})
	if err := os.Symlink("a", filepath.Join(mp, "link")); err != nil {
		t.Fatal(err)
	}
	if n, err := h.Size(t.Context(), "cache"); err != nil || n != 2100 {
		t.Errorf("Size = %d, %v; want 2100", n, err)
	}
	if n, err := h.Size(t.Context(), "missing"); !errors.Is(err, engine.ErrNotFound) || n != 0 {
		t.Errorf("Size of a missing volume = %d, %v; want 0, not found", n, err)
	}
	if h.Has(t.Context(), "missing") {
		t.Error("Has(missing) = true, want false")
	}
}

func TestHostOpenToAllUsers(t *testing.T) {
	h, f, _ := localHost(t)
	mp := volume(t, f, "cache")
	if err := h.OpenToAllUsers(t.Context(), "cache"); err != nil {
		t.Fatalf("OpenToAllUsers: %v", err)
	}
	if fi, err := os.Stat(mp); err != nil || fi.Mode() != os.ModeDir|os.ModeSticky|0o777 {
		t.Errorf("mode %v, %v; want %v", fi.Mode(), err, os.ModeDir|os.ModeSticky|0o777)
	}
}

func TestHostPrepareLayer(t *testing.T) {
	h, f, _ := localHost(t)
	mp := volume(t, f, "layer")
	for range 2 { // again on a kept layer
		if err := h.PrepareLayer(t.Context(), "layer"); err != nil {
			t.Fatalf("PrepareLayer: %v", err)
		}
	}
	if got := tree(t, mp); !slices.Equal(got, []string{"upper/", "work/"}) {
		t.Errorf("layer holds %q, want upper/ and work/", got)
	}
	if fi, err := os.Stat(filepath.Join(mp, "upper")); err != nil || fi.Mode() != os.ModeDir|os.ModeSticky|0o777 {
		t.Errorf("upper: %v, %v; want a directory open to every job user", fi, err)
	}
	if fi, err := os.Stat(filepath.Join(mp, "work")); err != nil || fi.Mode() != os.ModeDir|0o700 {
		t.Errorf("work: %v, %v; want drwx------", fi, err)
	}
}

func TestHostOverlayOptions(t *testing.T) {
	h, f, _ := localHost(t)
	lower, layer := volume(t, f, "cache"), volume(t, f, "layer")
	base := "lowerdir=" + lower + ",upperdir=" + filepath.Join(layer, "upper") + ",workdir=" + filepath.Join(layer, "work")
	tests := []struct {
		commit bool
		o      string
	}{
		{false, base},
		{true, base + ",redirect_dir=off,metacopy=off,index=off"},
	}
	for _, tt := range tests {
		got, err := h.OverlayOptions(t.Context(), "cache", "layer", tt.commit)
		want := map[string]string{"type": "overlay", "device": "overlay", "o": tt.o}
		if err != nil || !maps.Equal(got, want) {
			t.Errorf("OverlayOptions(commit %v) = %v, %v; want %v", tt.commit, got, err, want)
		}
	}
	// A mountpoint the mount options cannot carry is refused.
	h2, f2, _ := localHostIn(t, filepath.Join(t.TempDir(), "a,b"))
	volume(t, f2, "cache")
	volume(t, f2, "layer")
	if o, err := h2.OverlayOptions(t.Context(), "cache", "layer", false); err == nil {
		t.Errorf("OverlayOptions under a root with a comma = %v, want a refusal", o)
	}
}

func TestHostApplyLayer(t *testing.T) {
	h, f, _ := localHost(t)
	lower, layer := volume(t, f, "cache"), volume(t, f, "layer")
	write(t, lower, map[string]string{"old.txt": "old", "changed.txt": "old", legacyStampFile: "stamp"})
	if err := h.PrepareLayer(t.Context(), "layer"); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(layer, "upper"), map[string]string{"changed.txt": "new", "new.txt": "new", legacyStampFile: "forged"})
	if err := h.ApplyLayer(t.Context(), "layer", "cache"); err != nil {
		t.Fatalf("ApplyLayer: %v", err)
	}
	want := []string{legacyStampFile + "=stamp", "changed.txt=new", "new.txt=new", "old.txt=old"}
	if got := tree(t, lower); !slices.Equal(got, want) {
		t.Errorf("cache after ApplyLayer: %q, want %q", got, want)
	}
}

// TestHostNotLocal: a volume whose directory is not on this host (the
// engine reports a mountpoint that does not exist here, or none, as a
// remote engine would) is refused with ErrNotLocal by every method, and
// nothing is read or written anywhere (not in the working directory).
func TestHostNotLocal(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T) (*Host, *fake.Engine)
	}{
		{"mountpoint not on this host", func(t *testing.T) (*Host, *fake.Engine) {
			h, f, _ := localHost(t)
			if err := os.Remove(volume(t, f, "far")); err != nil {
				t.Fatal(err)
			}
			volume(t, f, "near")
			return h, f
		}},
		{"no mountpoint (remote engine)", func(t *testing.T) (*Host, *fake.Engine) {
			f := fake.New()
			if err := f.EnsureVolume(t.Context(), engine.VolumeSpec{Name: "far"}); err != nil {
				t.Fatal(err)
			}
			if v, _ := f.Volume("far"); v.Mountpoint != "" {
				t.Fatalf("far has mountpoint %q, want none", v.Mountpoint)
			}
			// Only "near" is on this host.
			f.SetVolumeRoot(t.TempDir())
			volume(t, f, "near")
			return New(f, nil), f
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cwd := t.TempDir()
			t.Chdir(cwd)
			// What a relative path would reach, were the empty mountpoint
			// joined as it is.
			write(t, cwd, map[string]string{"steps": "x", "far/steps": "x"})
			h, _ := tt.setup(t)
			ctx := t.Context()
			calls := map[string]func() error{
				"Size":           func() error { _, err := h.Size(ctx, "far"); return err },
				"OpenToAllUsers": func() error { return h.OpenToAllUsers(ctx, "far") },
				"ReadFile":       func() error { _, err := h.ReadFile(ctx, "far", "steps"); return err },
				"AppendLine":     func() error { return h.AppendLine(ctx, "far", "steps", "line") },
				"PrepareLayer":   func() error { return h.PrepareLayer(ctx, "far") },
				"OverlayOptions lower": func() error {
					_, err := h.OverlayOptions(ctx, "far", "near", false)
					return err
				},
				"OverlayOptions layer": func() error {
					_, err := h.OverlayOptions(ctx, "near", "far", true)
					return err
				},
				"ApplyLayer layer": func() error { return h.ApplyLayer(ctx, "far", "near") },
				"ApplyLayer lower": func() error { return h.ApplyLayer(ctx, "near", "far") },
			}
			for name, call := range calls {
				if err := call(); !errors.Is(err, ErrNotLocal) {
					t.Errorf("%s = %v, want ErrNotLocal", name, err)
				}
			}
			if h.Has(ctx, "far") {
				t.Error("Has(far) = true, want false")
			}
			if !h.Has(ctx, "near") {
				t.Error("Has(near) = false, want true")
			}
			if ok, err := h.WriteIntoTmpfs(ctx, "far", []File{{Name: "netrc", Content: []byte("x")}}); ok || err != nil {
				t.Errorf("WriteIntoTmpfs = %v, %v; want false, nil", ok, err)
			}
			want := []string{"far/", "far/steps=x", "steps=x"}
			if got := tree(t, cwd); !slices.Equal(got, want) {
				t.Errorf("working directory holds %q, want %q", got, want)
			}
		})
	}
}
