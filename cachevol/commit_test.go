package cachevol

import (
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
	if err := ApplyLayer(layer, lower); err != nil {
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
