package cache

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// tree lists the files under root as "path=content" (links as
// "path->target"), sorted.
func tree(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		switch {
		case d.Type()&os.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			out = append(out, rel+"->"+target)
		case d.Type().IsRegular():
			data, _ := os.ReadFile(p)
			out = append(out, rel+"="+strings.TrimSpace(string(data)))
		case d.IsDir():
			out = append(out, rel+"/")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func write(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestApplyLayer applies an upper directory as overlayfs leaves it (new
// and changed files, a whiteout, an opaque directory, a directory over a
// file, a link) to a lower one.
func TestApplyLayer(t *testing.T) {
	lower, layer := t.TempDir(), t.TempDir()
	upper := filepath.Join(layer, "upper")
	write(t, lower, map[string]string{
		"keep.txt": "keep", "changed.txt": "old", "gone.txt": "old",
		"dir/old.txt": "old", "dir/kept.txt": "kept", "opaque/old.txt": "old", "file-then-dir": "old",
		StampFile: "stamp",
	})
	write(t, upper, map[string]string{
		"changed.txt": "new", "new.txt": "new", "dir/new.txt": "new",
		"opaque/new.txt": "new", "file-then-dir/inside.txt": "new", StampFile: "forged",
	})
	if err := unix.Mknod(filepath.Join(upper, "gone.txt"), unix.S_IFCHR, 0); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mknod(filepath.Join(upper, "dir", "old.txt"), unix.S_IFCHR, 0); err != nil {
		t.Fatal(err)
	}
	if err := unix.Lsetxattr(filepath.Join(upper, "opaque"), opaqueXattr, []byte("y"), 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(upper, "link")); err != nil {
		t.Fatal(err)
	}
	if err := ApplyLayer(t.Context(), layer, lower); err != nil {
		t.Fatal(err)
	}
	want := []string{
		StampFile + "=stamp", "changed.txt=new", "dir/", "dir/kept.txt=kept", "dir/new.txt=new",
		"file-then-dir/", "file-then-dir/inside.txt=new", "keep.txt=keep", "link->/etc/passwd", "new.txt=new",
		"opaque/", "opaque/new.txt=new",
	}
	if got := tree(t, lower); !slices.Equal(got, want) {
		t.Errorf("lower after the layer:\n%q\nwant\n%q", got, want)
	}
}

// TestApplyLayerChecksFirst: a layer ApplyLayer cannot move whole (too
// deep, a FIFO or device a job made) is refused before lower changes.
func TestApplyLayerChecksFirst(t *testing.T) {
	tests := map[string]func(upper string) error{
		"too deep": func(upper string) error {
			return os.MkdirAll(filepath.Join(upper, "z", strings.Repeat("d/", maxApplyDepth+1)), 0o755)
		},
		"fifo": func(upper string) error { return unix.Mkfifo(filepath.Join(upper, "z.fifo"), 0o644) },
		"device": func(upper string) error {
			return unix.Mknod(filepath.Join(upper, "z"), unix.S_IFCHR, int(unix.Mkdev(1, 3)))
		},
	}
	for name, bad := range tests {
		t.Run(name, func(t *testing.T) {
			lower, layer := t.TempDir(), t.TempDir()
			upper := filepath.Join(layer, "upper")
			write(t, lower, map[string]string{"a.txt": "old"})
			write(t, upper, map[string]string{"a.txt": "new", "b.txt": "new"})
			if err := bad(upper); err != nil {
				t.Fatal(err)
			}
			err := ApplyLayer(t.Context(), layer, lower)
			if err == nil || errors.Is(err, ErrHalfApplied) {
				t.Fatalf("ApplyLayer = %v, want a refusal before any change", err)
			}
			if got := tree(t, lower); !slices.Equal(got, []string{"a.txt=old"}) {
				t.Errorf("lower changed: %q", got)
			}
		})
	}
}

// TestApplyLayerHalf: an error after the first change (here a rename
// across filesystems) says the lower directory is half applied.
func TestApplyLayerHalf(t *testing.T) {
	// A tmpfs, unlike the test's temp dir.
	lower, err := os.MkdirTemp("/dev/shm", "applylayer")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(lower) })
	layer := t.TempDir()
	upper := filepath.Join(layer, "upper")
	write(t, lower, map[string]string{"a.txt": "old"})
	write(t, upper, map[string]string{"b.txt": "new"})
	// A whiteout, applied first (a change), then b.txt, which cannot move.
	if err := unix.Mknod(filepath.Join(upper, "a.txt"), unix.S_IFCHR, 0); err != nil {
		t.Fatal(err)
	}
	if err := ApplyLayer(t.Context(), layer, lower); !errors.Is(err, ErrHalfApplied) || !errors.Is(err, unix.EXDEV) {
		t.Fatalf("ApplyLayer = %v, want ErrHalfApplied over EXDEV", err)
	}
}
