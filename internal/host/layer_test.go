package host

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestApplyLayer applies an upper directory as overlayfs leaves it (new
// and changed files, a whiteout, an opaque directory, a directory over a
// file, a link) to a lower one. Lower is a cache made by an older version,
// with its stamp at the root: the job's own file of that name in upper is
// not applied.
func TestApplyLayer(t *testing.T) {
	lower, layer := t.TempDir(), t.TempDir()
	upper := filepath.Join(layer, "upper")
	write(t, lower, map[string]string{
		"keep.txt": "keep", "changed.txt": "old", "gone.txt": "old",
		"dir/old.txt": "old", "dir/kept.txt": "kept", "opaque/old.txt": "old", "file-then-dir": "old",
		legacyStampFile: "stamp",
	})
	write(t, upper, map[string]string{
		"changed.txt": "new", "new.txt": "new", "dir/new.txt": "new",
		"opaque/new.txt": "new", "file-then-dir/inside.txt": "new", legacyStampFile: "forged",
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
	if err := applyLayer(t.Context(), layer, lower); err != nil {
		t.Fatal(err)
	}
	want := []string{
		legacyStampFile + "=stamp", "changed.txt=new", "dir/", "dir/kept.txt=kept", "dir/new.txt=new",
		"file-then-dir/", "file-then-dir/inside.txt=new", "keep.txt=keep", "link->/etc/passwd", "new.txt=new",
		"opaque/", "opaque/new.txt=new",
	}
	if got := tree(t, lower); !slices.Equal(got, want) {
		t.Errorf("lower after the layer:\n%q\nwant\n%q", got, want)
	}
}

// TestApplyLayerChecksFirst: a layer applyLayer cannot move whole (too
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
			err := applyLayer(t.Context(), layer, lower)
			if err == nil || errors.Is(err, ErrHalfApplied) {
				t.Fatalf("applyLayer = %v, want a refusal before any change", err)
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
	if err := applyLayer(t.Context(), layer, lower); !errors.Is(err, ErrHalfApplied) || !errors.Is(err, unix.EXDEV) {
		t.Fatalf("applyLayer = %v, want ErrHalfApplied over EXDEV", err)
	}
}

func TestOverlayOptionsRefuseUnsafePaths(t *testing.T) {
	for _, lower := range []string{"relative/dir", "/a,b", "/a:b"} {
		if _, err := overlayOptions(lower, "/layer"); err == nil {
			t.Errorf("overlayOptions(%q) accepted", lower)
		}
	}
}

func TestPrepareLayer(t *testing.T) {
	mp := t.TempDir()
	for range 2 { // again on a kept layer
		if err := prepareLayer(mp); err != nil {
			t.Fatal(err)
		}
	}
	fi, err := os.Stat(filepath.Join(mp, "upper"))
	if err != nil || fi.Mode()&(os.ModePerm|os.ModeSticky) != os.ModeSticky|0o777 {
		t.Errorf("upper: %v, %v; want a directory open to every job user", fi, err)
	}
	bad := t.TempDir()
	if err := os.Symlink("/etc", filepath.Join(bad, "work")); err != nil {
		t.Fatal(err)
	}
	if err := prepareLayer(bad); err == nil {
		t.Error("prepareLayer followed a symlink in place of work/")
	}
}
