package cache

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/warmcache/warmcache/internal/cache/profile"
	"github.com/warmcache/warmcache/internal/config"
	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/engine/fake"
)

func TestList(t *testing.T) {
	f, root := localEngine(t)
	m := newManager(t, f, config.Cache{}, true)
	ctx := t.Context()

	// Project A: three volumes claimed at t0, cache-dir measured.
	volsA := profile.Plan(testKey, []Profile{wantCacheDir, wantGo})
	if _, err := m.claimVolumes(ctx, volsA, t0); err != nil {
		t.Fatal(err)
	}
	if err := m.measureVolumes(ctx, volsA[:1], t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	// Project B: one volume used later, holding 1000 bytes, measured; and
	// a stamp an older version (or a job) left claiming other figures.
	keyB := Key{Instance: "gitlab.example.com", ProjectID: 2002, ProjectPath: "group/other", Trust: Protected}
	volsB := profile.Plan(keyB, []Profile{wantNpm})
	if _, err := m.claimVolumes(ctx, volsB, t1); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(root, volsB[0].Name, "_cacache", "index"), 1000)
	if err := m.measureVolumes(ctx, volsB, t1.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	forged := `{"last_used":"2099-01-01T00:00:00Z","size_bytes":1,"measured":"2099-01-01T00:00:00Z"}`
	if err := os.WriteFile(filepath.Join(root, volsB[0].Name, ".warmcache-stamp"), []byte(forged), 0o644); err != nil {
		t.Fatal(err)
	}
	// A cache volume without a record (made by an older version): it
	// sorts last although its name sorts first, its size not measured.
	unrecorded := profile.Plan(Key{Instance: "gitlab.example.com", ProjectID: 3003, ProjectPath: "g/p", Trust: Unprotected}, []Profile{wantPip})[0]
	if err := f.EnsureVolume(ctx, engine.VolumeSpec{Name: "aaa-unrecorded", Labels: unrecorded.Labels}); err != nil {
		t.Fatal(err)
	}
	// Not cache volumes: a job volume, a container and a network
	// carrying the cache kind label.
	jobVolume := "warmcache-r-p1001-c0-j1-builds"
	if err := f.EnsureVolume(ctx, engine.VolumeSpec{Name: jobVolume,
		Labels: map[string]string{"io.warmcache.managed": "true", "io.warmcache.kind": "builds"}}); err != nil {
		t.Fatal(err)
	}
	f.AddImage("img")
	if err := f.CreateContainer(ctx, engine.ContainerSpec{Name: "zzz-container", Image: "img", Labels: volsA[0].Labels}); err != nil {
		t.Fatal(err)
	}
	f.AddNetwork("zzz-network", volsA[0].Labels)

	got, err := m.List(ctx)
	if err != nil {
		t.Fatalf("List: %v", err)
	}

	entry := func(v Volume, instance, projectID, projectPath, trust string) Entry {
		return Entry{Volume: v.Name, Instance: instance, ProjectID: projectID, ProjectPath: projectPath,
			Profile: v.Profile, Path: v.Path, Trust: trust}
	}
	b := entry(volsB[0], "gitlab.example.com", "2002", "group/other", "protected")
	// 1000 bytes of data, from the record: the forged stamp is not read.
	b.SizeBytes, b.SizeKnown, b.LastUsed = 1000, true, t1
	var a []Entry
	for i, v := range volsA {
		e := entry(v, "gitlab.example.com", "1001", "group/project", "unprotected")
		e.LastUsed = t0
		if i == 0 {
			e.SizeBytes, e.SizeKnown = 0, true
		}
		a = append(a, e)
	}
	// Same last use: by name.
	slices.SortFunc(a, func(x, y Entry) int { return strings.Compare(x.Volume, y.Volume) })
	c := Entry{Volume: "aaa-unrecorded", Instance: "gitlab.example.com", ProjectID: "3003", ProjectPath: "g/p",
		Profile: "pip", Path: "/root/.cache/pip", Trust: "unprotected"}
	want := append(append([]Entry{b}, a...), c)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("List =\n%+v\nwant\n%+v", got, want)
	}

	calls := f.Calls()
	if last := calls[len(calls)-1]; last != (fake.Call{Method: fake.MethodList, Name: "io.warmcache.kind=cache"}) {
		t.Errorf("List asked the engine %+v, want the cache kind label", last)
	}
	// Listing reads, never writes: B's record is as the measure left it.
	if r, err := m.records.Get(volsB[0].Name); err != nil || !r.Measured.Equal(t1.Add(time.Minute)) {
		t.Errorf("record of B after List: %+v, %v", r, err)
	}
}

// writeFile writes size bytes at path, making its directories.
func writeFile(t *testing.T, path string, size int) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, make([]byte, size), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestListEmptyAndErrors(t *testing.T) {
	t.Run("no cache volumes", func(t *testing.T) {
		f := fake.New()
		got, err := newManager(t, f, config.Cache{}, true).List(t.Context())
		if err != nil || got != nil {
			t.Errorf("List = %+v, %v; want nil, nil", got, err)
		}
	})
	t.Run("engine fails", func(t *testing.T) {
		f := fake.New()
		f.FailNext(fake.MethodList, errBoom)
		got, err := newManager(t, f, config.Cache{}, true).List(t.Context())
		if err == nil || err.Error() != "listing cache volumes: boom" || !errors.Is(err, errBoom) {
			t.Errorf("List error = %v, want listing cache volumes: boom", err)
		}
		if got != nil {
			t.Errorf("List = %+v with an error", got)
		}
	})
	t.Run("remote engine", func(t *testing.T) {
		// No host: labels and records, nothing read from the current
		// directory (which is empty here).
		t.Chdir(t.TempDir())
		f := fake.New()
		m := newManager(t, f, config.Cache{}, false)
		v := goVolumes()[0]
		if _, err := m.claimVolumes(t.Context(), []Volume{v}, t0); err != nil {
			t.Fatal(err)
		}
		got, err := m.List(t.Context())
		want := []Entry{{Volume: v.Name, Instance: "gitlab.example.com", ProjectID: "1001", ProjectPath: "group/project",
			Profile: "go", Path: "/go/pkg/mod", Trust: "unprotected", LastUsed: t0}}
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("List = %+v, %v; want %+v", got, err, want)
		}
	})
}
