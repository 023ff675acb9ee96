package host

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

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
		// A cache made by an older version still holds its stamp at the
		// root: it is not the job's, and is not counted (the Measure test
		// of old: 2100, "the stamp itself is not counted"). A file of that
		// name deeper down is a job's like any other.
		{
			name:  "legacy stamp at the root",
			files: map[string]int{legacyStampFile: 60, "a": 100, "cache/download/b": 2000, "cache/c": 0},
			links: map[string]string{"link": "a"},
			want:  2100,
		},
		{
			name:  "a job's file named like the stamp, deeper",
			files: map[string]int{legacyStampFile: 60, "sub/" + legacyStampFile: 9},
			want:  9,
		},
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
			got, err := dirSize(t.Context(), filepath.Join(dir, tt.root))
			if err != nil || got != tt.want {
				t.Errorf("dirSize = %d, %v; want %d", got, err, tt.want)
			}
		})
	}
}

func TestDirSizeCancelled(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]int{"a": 10, "b/c": 20})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	n, err := dirSize(ctx, dir)
	if !errors.Is(err, context.Canceled) || n != 0 {
		t.Errorf("dirSize on a cancelled context = %d, %v; want 0, context canceled", n, err)
	}
}

// TestDirSizeDepth: files down to maxDepth directories below the root count;
// deeper ones, which no cache has, are not walked.
func TestDirSizeDepth(t *testing.T) {
	dir := t.TempDir()
	deepest := strings.Repeat("d/", maxDepth)
	writeTree(t, dir, map[string]int{"top": 1, deepest + "counted": 10, deepest + "d/not-counted": 100})
	if n, err := dirSize(t.Context(), dir); err != nil || n != 11 {
		t.Errorf("dirSize = %d, %v; want 11", n, err)
	}
}

// dirSize runs as root over job-written trees: it must not leave the
// volume, loop, or open anything but a directory.
func TestDirSizeStaysInVolume(t *testing.T) {
	outside := t.TempDir()
	writeTree(t, outside, map[string]int{"big": 1 << 20})
	tests := []struct {
		name  string
		plant func(root string) error
	}{
		{"symlink to a directory outside", func(root string) error {
			return os.Symlink(outside, filepath.Join(root, "d", "out"))
		}},
		{"symlink to / ", func(root string) error { return os.Symlink("/", filepath.Join(root, "d", "slash")) }},
		{"symlink loop", func(root string) error {
			return errors.Join(
				os.Symlink("loop-b", filepath.Join(root, "d", "loop-a")),
				os.Symlink("loop-a", filepath.Join(root, "d", "loop-b")),
				os.Symlink(".", filepath.Join(root, "d", "self")),
				os.Symlink("..", filepath.Join(root, "d", "up")))
		}},
		{"character device", func(root string) error { return mknodNull(filepath.Join(root, "d", "null")) }},
		{"fifo", func(root string) error { return syscall.Mkfifo(filepath.Join(root, "d", "fifo"), 0o644) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name == "character device" {
				canMknod(t)
			}
			root := t.TempDir()
			writeTree(t, root, map[string]int{"a": 10, "d/b": 20})
			if err := tt.plant(root); err != nil {
				t.Fatal(err)
			}
			opened := watchOpens(t, filepath.Join(root, "d"))
			var (
				n   int64
				err error
			)
			within(t, "dirSize", func() { n, err = dirSize(t.Context(), root) })
			if err != nil || n != 30 {
				t.Errorf("dirSize = %d, %v; want 30", n, err)
			}
			if names := opened(); len(names) != 0 {
				t.Errorf("dirSize opened %q", names)
			}
		})
	}
}

// A job can swap a directory for something else after dirSize listed it
// and before dirSize goes in: what it finds then is skipped, not followed,
// opened or blocked on.
func TestDirSizeSwappedEntries(t *testing.T) {
	outside := t.TempDir()
	writeTree(t, outside, map[string]int{"big": 1 << 20})
	tests := []struct {
		name  string
		plant func(path string) error
	}{
		{"symlink to a directory outside", func(p string) error { return os.Symlink(outside, p) }},
		{"symlink to itself", func(p string) error { return os.Symlink(".", p) }},
		{"character device", mknodNull},
		{"fifo", func(p string) error { return syscall.Mkfifo(p, 0o644) }},
		{"nothing (removed)", func(string) error { return nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name == "character device" {
				canMknod(t)
			}
			root, aside := t.TempDir(), t.TempDir()
			writeTree(t, root, map[string]int{"a/x": 10, "b/y": 10})
			// Whichever of a and b dirSize enters first, the other is
			// swapped just then.
			onOpen(t, root, func(p string) bool {
				var other string
				switch p {
				case filepath.Join(root, "a"):
					other = "b"
				case filepath.Join(root, "b"):
					other = "a"
				default:
					return false
				}
				swapIn(t, filepath.Join(root, other), filepath.Join(aside, other), tt.plant)
				return true
			})
			opened := watchOpens(t, root)
			var (
				n   int64
				err error
			)
			within(t, "dirSize", func() { n, err = dirSize(t.Context(), root) })
			if err != nil || n != 10 {
				t.Errorf("dirSize = %d, %v; want 10", n, err)
			}
			names := opened()
			if len(names) != 1 || names[0] != "a" && names[0] != "b" {
				t.Errorf("dirSize opened %q, want one of a and b", names)
			}
		})
	}
}
