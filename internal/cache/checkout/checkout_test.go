package checkout

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/warmcache/warmcache/internal/cache/record"
	"github.com/warmcache/warmcache/internal/protocol"
)

// dirs are volumes as directories under a temporary root.
type dirs string

func (d dirs) path(volume string) string { return filepath.Join(string(d), volume) }

func (d dirs) FS(_ context.Context, volume string) (fs.FS, error) {
	return os.DirFS(d.path(volume)), nil
}

func (d dirs) OpenRoot(_ context.Context, volume string) (*os.Root, error) {
	return os.OpenRoot(d.path(volume))
}

func (d dirs) Has(_ context.Context, volume string) bool {
	_, err := os.Stat(d.path(volume))
	return err == nil
}

// setup returns deps over fresh volumes "co" (a checkout) and "store",
// and a claim of the checkout.
func setup(t *testing.T) (Deps, dirs, Claim) {
	t.Helper()
	d := dirs(t.TempDir())
	for _, v := range []string{"co", "store"} {
		if err := os.Mkdir(d.path(v), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	deps := Deps{Roots: d, Records: record.Records{Dir: t.TempDir()}, Log: zap.NewNop()}
	c := Claim{Volume: "co", Path: protocol.BuildsDir, Store: "store", WorkTree: "group/project",
		Renew: func(context.Context) error {
			if err := os.RemoveAll(d.path("co")); err != nil {
				return err
			}
			return os.Mkdir(d.path("co"), 0o755)
		}}
	return deps, d, c
}

// lines collects what a Say says.
func lines(out *[]string) Say {
	return func(format string, args ...any) {
		*out = append(*out, strings.TrimSpace(strings.ReplaceAll(format, "%s", "")))
	}
}

func alternates(t *testing.T, d dirs) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(d.path("co"), "group/project/.git/objects/info/alternates"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestReadyLinksANewCheckout: a new checkout's repository-to-be borrows
// the store's objects, and its record names the store it now depends on.
func TestReadyLinksANewCheckout(t *testing.T) {
	deps, d, c := setup(t)
	var said []string
	got, ok := Ready(context.Background(), deps, c, lines(&said))
	if !ok || len(said) != 0 {
		t.Fatalf("Ready = %v, said %q", ok, said)
	}
	if a := alternates(t, d); a != protocol.GitStoreDir+"/objects\n" {
		t.Errorf("alternates = %q", a)
	}
	rec, err := deps.Records.Get("co")
	if err != nil || rec.StoreID == "" || rec.StoreID != got.Record.StoreID {
		t.Errorf("record %+v (%v), claim's store id %q", rec, err, got.Record.StoreID)
	}
}

// TestReadyReplaces: a warm checkout linked to a store that is no more,
// or damaged, is replaced by an empty one with one line; one linked to
// this store is kept.
func TestReadyReplaces(t *testing.T) {
	ctx := context.Background()
	deps, d, c := setup(t)
	first, _ := Ready(ctx, deps, c, func(string, ...any) {})
	keep := filepath.Join(d.path("co"), "group/project/kept.txt")
	if err := os.WriteFile(keep, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d.path("co"), "group/project/.git/HEAD"), []byte("ref: refs/heads/main\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c.Warm, c.Record = true, first.Record
	var said []string
	if got, ok := Ready(ctx, deps, c, func(f string, a ...any) { said = append(said, f) }); !ok || !got.Warm || len(said) != 0 {
		t.Fatalf("a checkout of this store: Ready = %+v %v, said %q", got, ok, said)
	}

	c.Record.StoreID = "another"
	got, ok := Ready(ctx, deps, c, func(f string, a ...any) { said = append(said, a[1].(string)) })
	if !ok || got.Warm || len(said) != 1 || said[0] != "its object store was replaced" {
		t.Fatalf("a checkout of another store: Ready = %+v %v, said %q", got, ok, said)
	}
	if _, err := os.Stat(keep); err == nil {
		t.Error("the replaced checkout kept its files")
	}
	if a := alternates(t, d); a != protocol.GitStoreDir+"/objects\n" {
		t.Errorf("the fresh checkout is not linked: alternates %q", a)
	}

	if err := os.WriteFile(filepath.Join(d.path("co"), "group/project/.git/index.lock"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	c.Record = got.Record
	said = nil
	if got, ok := Ready(ctx, deps, c, func(f string, a ...any) { said = append(said, a[1].(string)) }); !ok || got.Warm || len(said) != 1 || !strings.Contains(said[0], "index.lock") {
		t.Errorf("a locked checkout: Ready = %+v %v, said %q", got, ok, said)
	}
}
