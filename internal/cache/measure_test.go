package cache

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/engine/fake"
)

// writeTree creates files of the given sizes (paths relative to dir).
func writeTree(t *testing.T, dir string, files map[string]int) {
	t.Helper()
	for name, size := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, make([]byte, size), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestMeasure(t *testing.T) {
	f, root := localEngine(t)
	vols := goVolumes()
	if _, err := Claim(t.Context(), f, nil, vols, 7, t0); err != nil {
		t.Fatal(err)
	}
	// The stamp as Claim wrote it; it is part of what Measure counts.
	const claimed = `{"last_used":"2026-11-26T21:31:10Z","size_bytes":0,"job_id":7}`
	mod, build := filepath.Join(root, vols[0].Name), filepath.Join(root, vols[1].Name)
	writeTree(t, mod, map[string]int{"a": 100, "cache/download/b": 2000, "cache/c": 0})
	if err := os.Symlink("a", filepath.Join(mod, "link")); err != nil {
		t.Fatal(err)
	}

	if err := Measure(t.Context(), f, nil, vols, t1); err != nil {
		t.Fatalf("Measure: %v", err)
	}
	tests := []struct {
		mountpoint string
		size       int64
		file       string
	}{
		// The stamp itself is not counted.
		{mod, 2100,
			`{"last_used":"2026-11-26T21:31:10Z","size_bytes":2100,"measured":"2026-11-26T22:31:10Z","job_id":7}`},
		{build, 0,
			`{"last_used":"2026-11-26T21:31:10Z","size_bytes":0,"measured":"2026-11-26T22:31:10Z","job_id":7}`},
	}
	for _, tt := range tests {
		s, err := ReadStamp(tt.mountpoint)
		if err != nil {
			t.Fatal(err)
		}
		if want := (Stamp{LastUsed: t0, SizeBytes: tt.size, Measured: t1, JobID: 7}); s != want {
			t.Errorf("stamp of %s = %+v, want %+v", tt.mountpoint, s, want)
		}
		if got := stampFile(t, tt.mountpoint); got != tt.file {
			t.Errorf("stamp file %s, want %s", got, tt.file)
		}
	}
	if got := dirNames(t, mod); !slices.Equal(got, []string{StampFile, "a", "cache", "link"}) {
		t.Errorf("volume holds %q after Measure", got)
	}
}

func TestMeasureSkips(t *testing.T) {
	tests := []struct {
		name   string
		exists bool
	}{
		{"volume does not exist", false},
		{"volume never claimed", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, root := localEngine(t)
			v := goVolumes()[0]
			if tt.exists {
				if err := f.EnsureVolume(t.Context(), engine.VolumeSpec{Name: v.Name, Labels: v.Labels}); err != nil {
					t.Fatal(err)
				}
			}
			if err := Measure(t.Context(), f, nil, []Volume{v}, t1); err != nil {
				t.Fatalf("Measure: %v", err)
			}
			if _, err := ReadStamp(filepath.Join(root, v.Name)); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Measure wrote a stamp: %v", err)
			}
			if _, ok := f.Volume(v.Name); ok != tt.exists {
				t.Errorf("Measure changed whether %s exists", v.Name)
			}
		})
	}
	t.Run("remote engine", func(t *testing.T) {
		cwd := t.TempDir()
		t.Chdir(cwd)
		f := fake.New()
		vols := goVolumes()
		if _, err := Claim(t.Context(), f, nil, vols, 1, t0); err != nil {
			t.Fatal(err)
		}
		if err := Measure(t.Context(), f, nil, vols, t1); err != nil {
			t.Fatalf("Measure: %v", err)
		}
		if names := dirNames(t, cwd); len(names) != 0 {
			t.Errorf("Measure wrote %q in the current directory", names)
		}
	})
}

func TestMeasureErrors(t *testing.T) {
	f, root := localEngine(t)
	vols := goVolumes()
	if _, err := Claim(t.Context(), f, nil, vols, 1, t0); err != nil {
		t.Fatal(err)
	}
	f.SetHook(func(method, name string) error {
		if method == fake.MethodInspectVolume && name == vols[0].Name {
			return errBoom
		}
		return nil
	})
	err := Measure(t.Context(), f, nil, vols, t1)
	if err == nil || !strings.HasPrefix(err.Error(), "measuring warmcache-go-") || !strings.HasSuffix(err.Error(), ": boom") || !errors.Is(err, errBoom) {
		t.Fatalf("Measure error = %v, want measuring <volume>: boom", err)
	}
	// The other volume is measured all the same.
	if s, err := ReadStamp(filepath.Join(root, vols[1].Name)); err != nil || !s.Measured.Equal(t1) {
		t.Errorf("stamp of the volume that did not fail: %+v, %v", s, err)
	}
	if s, err := ReadStamp(filepath.Join(root, vols[0].Name)); err != nil || !s.Measured.IsZero() {
		t.Errorf("stamp of the volume that failed: %+v, %v", s, err)
	}
}

func TestDirSize(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]int
		// links are symlinks (name -> target) that must not count.
		links map[string]string
		dirs  []string
		root  string // relative to the tree; "" for the tree itself
		want  int64
	}{
		{name: "empty", want: 0},
		{name: "missing root", root: "nope", want: 0},
		{name: "one file", files: map[string]int{"f": 1234}, want: 1234},
		{
			name: "nested tree",
			files: map[string]int{
				"a":              1,
				"b/c":            10,
				"b/d/e":          4096,
				"b/d/empty-file": 0,
				"b/d/f/g/h":      100_000,
				".hidden/i":      7,
			},
			links: map[string]string{"link-to-file": "b/d/e", "link-to-dir": "b", "dangling": "nowhere"},
			dirs:  []string{"empty-dir", "b/d/also-empty"},
			want:  1 + 10 + 4096 + 0 + 100_000 + 7,
		},
		{name: "a file as root", files: map[string]int{"f": 321, "g": 5}, root: "f", want: 321},
		{name: "a subtree", files: map[string]int{"x/y": 3, "x/z/w": 4, "v": 100}, root: "x", want: 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeTree(t, dir, tt.files)
			for name, target := range tt.links {
				if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
					t.Fatal(err)
				}
			}
			for _, d := range tt.dirs {
				if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			got, err := DirSize(t.Context(), filepath.Join(dir, tt.root))
			if err != nil || got != tt.want {
				t.Errorf("DirSize = %d, %v; want %d", got, err, tt.want)
			}
		})
	}
}

func TestDirSizeCancelled(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]int{"a": 10, "b/c": 20})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	n, err := DirSize(ctx, dir)
	if !errors.Is(err, context.Canceled) || n != 0 {
		t.Errorf("DirSize on a cancelled context = %d, %v; want 0, context canceled", n, err)
	}
}

func TestMeasureCancelled(t *testing.T) {
	f, root := localEngine(t)
	vols := goVolumes()[:1]
	if _, err := Claim(t.Context(), f, nil, vols, 1, t0); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := Measure(ctx, f, nil, vols, t1); !errors.Is(err, context.Canceled) {
		t.Errorf("Measure on a cancelled context = %v, want context canceled", err)
	}
	if s, err := ReadStamp(filepath.Join(root, vols[0].Name)); err != nil || !s.Measured.IsZero() {
		t.Errorf("stamp after a cancelled Measure: %+v, %v", s, err)
	}
}

// TestMeasureOnlyWhenStale: a volume measured less than measureInterval ago
// is not walked again; one never measured, measured long ago or measured
// "in the future" (the stamp is job-writable) is.
func TestMeasureOnlyWhenStale(t *testing.T) {
	tests := []struct {
		name     string
		measured time.Time
		walk     bool
	}{
		{"never measured", time.Time{}, true},
		{"measured 11 minutes ago", t1.Add(-11 * time.Minute), true},
		{"measured 10 minutes ago", t1.Add(-10 * time.Minute), false},
		{"measured 10 minutes and 1ns ago", t1.Add(-10*time.Minute - 1), true},
		{"measured 5 minutes ago", t1.Add(-5 * time.Minute), false},
		{"measured just now", t1, false},
		{"measured in the future", t1.Add(time.Second), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, root := localEngine(t)
			vols := goVolumes()[:1]
			if _, err := Claim(t.Context(), f, nil, vols, 1, t0); err != nil {
				t.Fatal(err)
			}
			mp := filepath.Join(root, vols[0].Name)
			writeTree(t, mp, map[string]int{"a": 1000})
			old := Stamp{LastUsed: t0, SizeBytes: 7, Measured: tt.measured, JobID: 1}
			if err := WriteStamp(mp, old); err != nil {
				t.Fatal(err)
			}
			before := stampFile(t, mp)

			if err := Measure(t.Context(), f, nil, vols, t1); err != nil {
				t.Fatalf("Measure: %v", err)
			}
			want := old
			if tt.walk {
				want.SizeBytes, want.Measured = 1000, t1 // not the stamp
			}
			if got, err := ReadStamp(mp); err != nil || got != want {
				t.Errorf("stamp after Measure = %+v, %v; want %+v", got, err, want)
			}
			if !tt.walk && stampFile(t, mp) != before {
				t.Errorf("stamp file rewritten: %s, was %s", stampFile(t, mp), before)
			}
		})
	}
}

// TestDirSizeDepth: files down to maxDepth directories below the root count;
// deeper ones, which no cache has, are not walked.
func TestDirSizeDepth(t *testing.T) {
	dir := t.TempDir()
	deepest := strings.Repeat("d/", maxDepth)
	writeTree(t, dir, map[string]int{"top": 1, deepest + "counted": 10, deepest + "d/not-counted": 100})
	if n, err := DirSize(t.Context(), dir); err != nil || n != 11 {
		t.Errorf("DirSize = %d, %v; want 11", n, err)
	}
}
