package cache

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/warmcache/warmcache/internal/naming"
)

func TestForkPlan(t *testing.T) {
	forks := ForkPlan(testKey, []Profile{wantGo})
	plain := Plan(testKey, []Profile{wantGo})
	protKey := testKey
	protKey.Trust = Protected
	prot := Plan(protKey, []Profile{wantGo})
	for i, f := range forks {
		if f.Lower.Name != prot[i].Name {
			t.Errorf("fork %d lower %s, want the protected %s", i, f.Lower.Name, prot[i].Name)
		}
		if f.Layer.Name == plain[i].Name || f.Layer.Labels[naming.LabelCacheLayer] != "true" || f.Layer.Labels[naming.LabelCacheTrust] != Unprotected {
			t.Errorf("fork %d layer %+v, want an unprotected layer volume apart from %s", i, f.Layer, plain[i].Name)
		}
		if plain[i].Labels[naming.LabelCacheLayer] != "" {
			t.Errorf("ForkPlan changed the labels of Plan's volumes")
		}
	}
}

func TestOverlayOptionsRefuseUnsafePaths(t *testing.T) {
	for _, lower := range []string{"relative/dir", "/a,b", "/a:b"} {
		if _, err := OverlayOptions(lower, "/layer"); err == nil {
			t.Errorf("OverlayOptions(%q) accepted", lower)
		}
	}
}

func TestPrepareLayer(t *testing.T) {
	mp := t.TempDir()
	for range 2 { // again on a kept layer
		if err := PrepareLayer(mp); err != nil {
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
	if err := PrepareLayer(bad); err == nil {
		t.Error("PrepareLayer followed a symlink in place of work/")
	}
}
