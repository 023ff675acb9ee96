package cache

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/warmcache/warmcache/internal/cache/record"
	"github.com/warmcache/warmcache/internal/config"
	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/engine/fake"
)

// TestMeasureRecords: cleanup's measure puts the size of the job's files
// (a legacy stamp and links count nothing) in the record, and nothing in
// the volume.
func TestMeasureRecords(t *testing.T) {
	f, root := localEngine(t)
	m := newManager(t, f, config.Cache{}, true)
	vols := goVolumes()
	if _, err := m.claimVolumes(t.Context(), vols, t0); err != nil {
		t.Fatal(err)
	}
	mod := filepath.Join(root, vols[0].Name)
	writeFile(t, filepath.Join(mod, "a"), 100)
	writeFile(t, filepath.Join(mod, "cache", "download", "b"), 2000)
	writeFile(t, filepath.Join(mod, ".warmcache-stamp"), 70)
	if err := os.Symlink("a", filepath.Join(mod, "link")); err != nil {
		t.Fatal(err)
	}
	if err := m.measureVolumes(t.Context(), vols, t1); err != nil {
		t.Fatalf("measure: %v", err)
	}
	for i, size := range []int64{2100, 0} {
		r, err := m.records.Get(vols[i].Name)
		if want := (record.Record{LastUsed: t0, Claimed: t0, SizeBytes: size, Measured: t1}); err != nil || r != want {
			t.Errorf("record of %s = %+v, %v; want %+v", vols[i].Name, r, err, want)
		}
	}
	if entries, _ := os.ReadDir(mod); len(entries) != 4 {
		t.Errorf("the volume holds %d entries after the measure, want the 4 it had", len(entries))
	}
	// Measured lately: not walked again (the new file is not seen).
	writeFile(t, filepath.Join(mod, "c"), 5)
	if err := m.measureVolumes(t.Context(), vols[:1], t1.Add(measureInterval-time.Second)); err != nil {
		t.Fatal(err)
	}
	if r, _ := m.records.Get(vols[0].Name); r.SizeBytes != 2100 {
		t.Errorf("size %d after a measure within %s, want the earlier 2100", r.SizeBytes, measureInterval)
	}
	if err := m.measureVolumes(t.Context(), vols[:1], t1.Add(measureInterval+time.Second)); err != nil {
		t.Fatal(err)
	}
	if r, _ := m.records.Get(vols[0].Name); r.SizeBytes != 2105 {
		t.Errorf("size %d once stale, want 2105", r.SizeBytes)
	}
}

// TestMeasureSkips: a volume that does not exist, or was never claimed
// (no record: made by an older version, or evicted), is not walked and
// gets no record.
func TestMeasureSkips(t *testing.T) {
	for _, exists := range []bool{false, true} {
		f, _ := localEngine(t)
		m := newManager(t, f, config.Cache{}, true)
		v := goVolumes()[0]
		if exists {
			if err := f.EnsureVolume(t.Context(), engine.VolumeSpec{Name: v.Name, Labels: v.Labels}); err != nil {
				t.Fatal(err)
			}
		}
		if err := m.measureVolumes(t.Context(), []Volume{v}, t1); err != nil {
			t.Fatalf("measure: %v", err)
		}
		if r, err := m.records.Get(v.Name); err != nil || r != (record.Record{}) {
			t.Errorf("exists=%v: record %+v, %v; want none", exists, r, err)
		}
	}
}

// TestMeasureErrors: a volume that cannot be measured is reported, and
// the others are measured all the same.
func TestMeasureErrors(t *testing.T) {
	f, _ := localEngine(t)
	m := newManager(t, f, config.Cache{}, true)
	vols := goVolumes()
	if _, err := m.claimVolumes(t.Context(), vols, t0); err != nil {
		t.Fatal(err)
	}
	f.SetHook(func(method, name string) error {
		if method == fake.MethodInspectVolume && name == vols[0].Name {
			return errBoom
		}
		return nil
	})
	err := m.measureVolumes(t.Context(), vols, t1)
	if err == nil || !strings.HasPrefix(err.Error(), "measuring warmcache-go-") || !strings.HasSuffix(err.Error(), ": boom") || !errors.Is(err, errBoom) {
		t.Fatalf("measure error = %v, want measuring <volume>: boom", err)
	}
	if r, _ := m.records.Get(vols[1].Name); !r.Measured.Equal(t1) {
		t.Errorf("record of the volume that did not fail: %+v", r)
	}
	if r, _ := m.records.Get(vols[0].Name); !r.Measured.IsZero() {
		t.Errorf("record of the volume that failed: %+v", r)
	}
}
