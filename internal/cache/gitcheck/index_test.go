package gitcheck

import (
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// gitRepo makes a repository in a temporary directory with files (and a
// link) committed, and returns its work tree.
func gitRepo(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("a.txt", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"init", "-q"}, {"add", "-A"}, {"-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"}} {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	return dir
}

// TestIndexAsGitListsIt: every entry of an index git wrote, with the mode
// and id git lists for it (git ls-files -s), and BlobID agrees with git.
func TestIndexAsGitListsIt(t *testing.T) {
	dir := gitRepo(t, map[string]string{"a.txt": "alpha\n", "sub/dir/b.bin": strings.Repeat("b", 5000), "c": ""})
	data, err := os.ReadFile(filepath.Join(dir, ".git", "index"))
	if err != nil {
		t.Fatal(err)
	}
	entries, err := Index(data)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, strings.Join([]string{fmt.Sprintf("%06o", e.Mode), hex.EncodeToString(e.ID[:]), "0\t" + e.Path}, " "))
	}
	cmd := exec.Command("git", "ls-files", "-s")
	cmd.Dir = dir
	want, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, "\n")+"\n" != string(want) {
		t.Errorf("Index =\n%s\nwant (git ls-files -s)\n%s", strings.Join(got, "\n"), want)
	}
	for _, e := range entries {
		if e.Path == "a.txt" && (BlobID([]byte("alpha\n")) != e.ID || e.Size != 6) {
			t.Errorf("a.txt: id %x size %d, BlobID %x", e.ID, e.Size, BlobID([]byte("alpha\n")))
		}
	}

	bad := append([]byte(nil), data...)
	bad[20] ^= 1
	if _, err := Index(bad); err == nil {
		t.Error("an index with a wrong checksum was read")
	}
	if _, err := Index(data[:40]); err == nil {
		t.Error("a truncated index was read")
	}
}

func TestRacy(t *testing.T) {
	for _, tt := range []struct {
		e    Entry
		idx  int64
		want bool
	}{
		{Entry{Mode: ModeRegular, MtimeSec: 100}, 100, true},
		{Entry{Mode: ModeRegular, MtimeSec: 101}, 100, true},
		{Entry{Mode: ModeRegular, MtimeSec: 99}, 100, false},
		{Entry{Mode: ModeSymlink, MtimeSec: 100}, 100, true},
		{Entry{Mode: ModeGitlink, MtimeSec: 100}, 100, false},
		{Entry{Mode: 0, MtimeSec: 100}, 100, false}, // skip-worktree
	} {
		if got := Racy(tt.e, tt.idx); got != tt.want {
			t.Errorf("Racy(%+v, %d) = %v, want %v", tt.e, tt.idx, got, tt.want)
		}
	}
}
