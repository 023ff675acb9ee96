package gitcheck

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// git runs git in dir, failing t on an error, and returns its output.
func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+dir, "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t",
		"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@t")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// gitUpstream is a repository with n commits of a file each.
func gitUpstream(t *testing.T, n int) string {
	t.Helper()
	dir := t.TempDir()
	git(t, dir, "init", "-q")
	for i := range n {
		if err := os.WriteFile(filepath.Join(dir, "f"+string(rune('a'+i))), []byte(strings.Repeat(string(rune('a'+i)), 3000)), 0o644); err != nil {
			t.Fatal(err)
		}
		git(t, dir, "add", "-A")
		git(t, dir, "commit", "-qm", "c")
	}
	return dir
}

// TestStoreFeed: a checkout linked to the store fetches, its objects
// move to the store, and the checkout (through its alternates) and a
// new repository borrowing the store both read the history; the store
// names the checkout's HEAD. A second InitGitStore keeps the store's id.
func TestStoreFeed(t *testing.T) {
	ctx := context.Background()
	store, checkout := t.TempDir(), t.TempDir()
	storeRoot, checkoutRoot := openRoot(t, store), openRoot(t, checkout)
	id, err := InitStore(storeRoot)
	if err != nil || len(id) != 32 {
		t.Fatalf("InitStore = %q, %v", id, err)
	}
	if again, err := InitStore(storeRoot); err != nil || again != id {
		t.Fatalf("InitStore again = %q, %v; want %q", again, err, id)
	}
	if err := LinkStore(checkoutRoot, "group/project", filepath.Join(store, "objects")); err != nil {
		t.Fatal(err)
	}
	up := gitUpstream(t, 3)
	work := filepath.Join(checkout, "group", "project")
	git(t, work, "init", "-q")
	git(t, work, "fetch", "-q", up, "HEAD")
	git(t, work, "checkout", "-q", "-f", "FETCH_HEAD")
	head := git(t, work, "rev-parse", "HEAD")

	res, err := FeedStore(ctx, checkoutRoot, storeRoot, "group/project", "slot-0")
	if err != nil || res.Packs+res.Loose == 0 {
		t.Fatalf("FeedStore = %+v, %v", res, err)
	}
	if left := git(t, work, "count-objects", "-v"); !strings.Contains(left, "count: 0\n") || !strings.Contains(left, "packs: 0\n") {
		t.Errorf("objects left in the checkout:\n%s", left)
	}
	git(t, work, "fsck", "--connectivity-only", "--no-dangling")
	if got := git(t, store, "for-each-ref", "--format=%(refname) %(objectname)"); got != "refs/heads/slot-0 "+head {
		t.Errorf("store refs = %q, want slot-0 at %s", got, head)
	}
	borrower := t.TempDir()
	git(t, borrower, "init", "-q")
	if err := os.WriteFile(filepath.Join(borrower, ".git", "objects", "info", "alternates"), []byte(filepath.Join(store, "objects")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if n := git(t, borrower, "rev-list", "--count", head); n != "3" {
		t.Errorf("a repository borrowing the store counts %s commits, want 3", n)
	}
}

// TestSettleIndex: after a checkout, the index is dated past its
// files once they are found unchanged; a file changed within its
// recorded second, at its recorded size, keeps the index as it was (git
// must still compare it).
func TestSettleIndex(t *testing.T) {
	ctx := context.Background()
	checkout := t.TempDir()
	root := openRoot(t, checkout)
	work := filepath.Join(checkout, "p")
	if err := os.MkdirAll(work, 0o755); err != nil {
		t.Fatal(err)
	}
	up := gitUpstream(t, 3)
	git(t, work, "init", "-q")
	git(t, work, "fetch", "-q", up, "HEAD")
	git(t, work, "checkout", "-q", "-f", "FETCH_HEAD")
	index := filepath.Join(work, ".git", "index")
	st, err := os.Stat(index)
	if err != nil {
		t.Fatal(err)
	}
	// Every file as racy as a checkout leaves it: of the index's second.
	for _, f := range []string{"fa", "fb", "fc"} {
		if err := os.Chtimes(filepath.Join(work, f), st.ModTime(), st.ModTime()); err != nil {
			t.Fatal(err)
		}
	}
	// The changed file: same size, same times, other content.
	if err := os.WriteFile(filepath.Join(work, "fb"), []byte(strings.Repeat("x", 3000)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(filepath.Join(work, "fb"), st.ModTime(), st.ModTime()); err != nil {
		t.Fatal(err)
	}
	now := st.ModTime().Add(2 * time.Second)
	if ok, err := SettleIndex(ctx, root, "p", now); ok || err != nil {
		t.Fatalf("SettleIndex with a changed racy file = %v, %v; want false", ok, err)
	}
	if after, _ := os.Stat(index); !after.ModTime().Equal(st.ModTime()) {
		t.Errorf("the index's time moved: %v -> %v", st.ModTime(), after.ModTime())
	}

	git(t, work, "checkout", "-q", "-f", "fb")
	for _, f := range []string{"fa", "fb", "fc"} {
		if err := os.Chtimes(filepath.Join(work, f), st.ModTime(), st.ModTime()); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chtimes(index, st.ModTime(), st.ModTime()); err != nil {
		t.Fatal(err)
	}
	if ok, err := SettleIndex(ctx, root, "p", now); !ok || err != nil {
		t.Fatalf("SettleIndex of a clean checkout = %v, %v; want true", ok, err)
	}
	if after, _ := os.Stat(index); after.ModTime().Unix() != now.Unix() {
		t.Errorf("the index's time is %v, want %v", after.ModTime(), now)
	}
	if status := git(t, work, "status", "--porcelain"); status != "" {
		t.Errorf("git status after settling: %q", status)
	}
}

// openRoot opens dir as a root, closed with the test.
func openRoot(t *testing.T, dir string) *os.Root {
	t.Helper()
	r, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// TestStoreFeedLinkedObject: an object file that has another name in the
// checkout (a job can link one into its work tree) is copied into the
// store, never shared with it.
func TestStoreFeedLinkedObject(t *testing.T) {
	store, checkout := t.TempDir(), t.TempDir()
	storeRoot, checkoutRoot := openRoot(t, store), openRoot(t, checkout)
	if _, err := InitStore(storeRoot); err != nil {
		t.Fatal(err)
	}
	work := filepath.Join(checkout, "p")
	if err := os.Mkdir(work, 0o755); err != nil {
		t.Fatal(err)
	}
	git(t, work, "init", "-q")
	git(t, work, "fetch", "-q", gitUpstream(t, 1), "HEAD")
	head := git(t, work, "rev-parse", "FETCH_HEAD")
	object := filepath.Join(".git", "objects", head[:2], head[2:])
	if err := os.Link(filepath.Join(work, object), filepath.Join(work, "planted")); err != nil {
		t.Fatal(err)
	}
	if _, err := FeedStore(context.Background(), checkoutRoot, storeRoot, "p", "slot-0"); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(store, "objects", head[:2], head[2:]))
	if err != nil {
		t.Fatal(err)
	}
	planted, err := os.Stat(filepath.Join(work, "planted"))
	if err != nil {
		t.Fatal(err)
	}
	if os.SameFile(st, planted) {
		t.Error("the store's object is the file the checkout still names")
	}
}

// TestInitStoreDamaged: a store without its objects gets a new id.
func TestInitStoreDamaged(t *testing.T) {
	dir := t.TempDir()
	root := openRoot(t, dir)
	id, err := InitStore(root)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "objects")); err != nil {
		t.Fatal(err)
	}
	again, err := InitStore(root)
	if err != nil || again == id || len(again) != 32 {
		t.Fatalf("InitStore of a damaged store = %q, %v; want a new id (was %q)", again, err, id)
	}
	if st, err := os.Stat(filepath.Join(dir, "objects", "pack")); err != nil || !st.IsDir() {
		t.Errorf("objects/pack not made again: %v", err)
	}
}
