package cache

import (
	"context"
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/engine/fake"
)

var (
	t0 = time.Date(2026, 11, 26, 21, 31, 10, 0, time.UTC)
	t1 = t0.Add(time.Hour)
)

var errBoom = errors.New("boom")

// localEngine returns a fake engine whose volumes are directories under a
// temporary root, as with a local Docker engine.
func localEngine(t *testing.T) (*fake.Engine, string) {
	t.Helper()
	f := fake.New()
	f.SetClock(func() time.Time { return t0 })
	root := t.TempDir()
	f.SetVolumeRoot(root)
	return f, root
}

// goVolumes is the plan of testKey for the go profile: two volumes.
func goVolumes() []Volume { return Plan(testKey, []Profile{wantGo}) }

func stampFile(t *testing.T, mountpoint string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(mountpoint, StampFile))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestClaimColdThenWarm(t *testing.T) {
	f, root := localEngine(t)
	vols := Plan(testKey, []Profile{wantCacheDir, wantGo})
	orig := make([]map[string]string, len(vols))
	for i, v := range vols {
		orig[i] = maps.Clone(v.Labels)
	}

	// The caller's clock may be in any zone; stamps and labels are UTC.
	first := t0.In(time.FixedZone("CET", 3600))
	got, err := Claim(t.Context(), f, nil, vols, 101, first)
	if err != nil {
		t.Fatalf("first Claim: %v", err)
	}
	var want []Status
	for _, v := range vols {
		want = append(want, Status{Volume: v, Mountpoint: filepath.Join(root, v.Name), Readable: true})
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("first Claim =\n%+v\nwant\n%+v", got, want)
	}
	for i, v := range vols {
		mp := filepath.Join(root, v.Name)
		fi, err := os.Stat(mp)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != os.ModeDir|os.ModeSticky|0o777 {
			t.Errorf("%s: mode %v, want %v", v.Name, fi.Mode(), os.ModeDir|os.ModeSticky|0o777)
		}
		if got, want := stampFile(t, mp), `{"last_used":"2026-11-26T21:31:10Z","size_bytes":0,"job_id":101}`; got != want {
			t.Errorf("%s: stamp %s, want %s", v.Name, got, want)
		}
		info, ok := f.Volume(v.Name)
		if !ok {
			t.Fatalf("volume %s was not created", v.Name)
		}
		wantLabels := maps.Clone(orig[i])
		wantLabels["io.warmcache.created"] = "2026-11-26T21:31:10Z"
		if !reflect.DeepEqual(info.Labels, wantLabels) {
			t.Errorf("%s: labels =\n%v\nwant\n%v", v.Name, info.Labels, wantLabels)
		}
		if !reflect.DeepEqual(v.Labels, orig[i]) {
			t.Errorf("Claim changed the planned labels of %s: %v", v.Name, v.Labels)
		}
	}

	got, err = Claim(t.Context(), f, nil, vols, 102, t1)
	if err != nil {
		t.Fatalf("second Claim: %v", err)
	}
	want = nil
	for _, v := range vols {
		want = append(want, Status{Volume: v, Mountpoint: filepath.Join(root, v.Name), Readable: true, Warm: true,
			Stamp: Stamp{LastUsed: t0, JobID: 101}})
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("second Claim =\n%+v\nwant\n%+v", got, want)
	}
	for _, v := range vols {
		mp := filepath.Join(root, v.Name)
		if got, want := stampFile(t, mp), `{"last_used":"2026-11-26T22:31:10Z","size_bytes":0,"job_id":102}`; got != want {
			t.Errorf("%s: stamp %s, want %s", v.Name, got, want)
		}
		if names := dirNames(t, mp); !slices.Equal(names, []string{StampFile}) {
			t.Errorf("%s holds %q, want only the stamp", v.Name, names)
		}
		info, _ := f.Volume(v.Name)
		if got := info.Labels["io.warmcache.created"]; got != "2026-11-26T21:31:10Z" {
			t.Errorf("%s: created label %q after the second claim, want the first", v.Name, got)
		}
	}
}

func TestClaimKeepsMeasuredSize(t *testing.T) {
	f, root := localEngine(t)
	vols := goVolumes()[:1]
	mp := filepath.Join(root, vols[0].Name)
	if _, err := Claim(t.Context(), f, nil, vols, 1, t0); err != nil {
		t.Fatal(err)
	}
	measured := Stamp{LastUsed: t0, SizeBytes: 5000, Measured: t0.Add(time.Minute), JobID: 1}
	if err := WriteStamp(mp, measured); err != nil {
		t.Fatal(err)
	}
	got, err := Claim(t.Context(), f, nil, vols, 2, t1)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !got[0].Warm || got[0].Stamp != measured {
		t.Errorf("Claim = %+v, want warm with stamp %+v", got, measured)
	}
	want := `{"last_used":"2026-11-26T22:31:10Z","size_bytes":5000,"measured":"2026-11-26T21:32:10Z","job_id":2}`
	if got := stampFile(t, mp); got != want {
		t.Errorf("stamp %s, want %s", got, want)
	}
}

func TestClaimDamagedStamp(t *testing.T) {
	tests := []struct {
		name  string
		stamp string
	}{
		{"empty", ""},
		{"garbage", "not json"},
		{"truncated", `{"last_used":"2026-11-26T21:3`},
		{"wrong type", `{"last_used":5}`},
		{"bad time", `{"last_used":"yesterday"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, root := localEngine(t)
			vols := goVolumes()[:1]
			mp := filepath.Join(root, vols[0].Name)
			if _, err := Claim(t.Context(), f, nil, vols, 1, t0); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(mp, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(mp, StampFile), []byte(tt.stamp), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := Claim(t.Context(), f, nil, vols, 2, t1)
			if err != nil {
				t.Fatalf("Claim: %v", err)
			}
			want := []Status{{Volume: vols[0], Mountpoint: mp, Readable: true, Warm: true}}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Claim =\n%+v\nwant\n%+v", got, want)
			}
			if got, want := stampFile(t, mp), `{"last_used":"2026-11-26T22:31:10Z","size_bytes":0,"job_id":2}`; got != want {
				t.Errorf("stamp %s, want %s", got, want)
			}
			// A warm volume is not reopened: its mode is the admin's.
			if fi, err := os.Stat(mp); err != nil || fi.Mode() != os.ModeDir|0o755 {
				t.Errorf("mode of a warm volume: %v, %v; want %v", fi.Mode(), err, os.ModeDir|0o755)
			}
		})
	}
}

func TestClaimRefusesForeignVolume(t *testing.T) {
	tests := []struct {
		name   string
		labels map[string]string
	}{
		{"no labels", nil},
		{"another kind", map[string]string{"io.warmcache.managed": "true", "io.warmcache.kind": "builds"}},
		{"managed without a kind", map[string]string{"io.warmcache.managed": "true"}},
		{"cache labels but no kind", func() map[string]string {
			l := maps.Clone(goVolumes()[0].Labels)
			delete(l, "io.warmcache.kind")
			return l
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, root := localEngine(t)
			v := goVolumes()[0]
			if err := f.EnsureVolume(t.Context(), engine.VolumeSpec{Name: v.Name, Labels: tt.labels}); err != nil {
				t.Fatal(err)
			}
			got, err := Claim(t.Context(), f, nil, []Volume{v}, 1, t0)
			want := "volume " + v.Name + " exists but is not a warmcache cache volume; remove or rename it"
			if err == nil || err.Error() != want {
				t.Fatalf("Claim error = %v, want %q", err, want)
			}
			if !reflect.DeepEqual(got, []Status{{}}) {
				t.Errorf("Claim = %+v, want one zero Status", got)
			}
			mp := filepath.Join(root, v.Name)
			if names := dirNames(t, mp); len(names) != 0 {
				t.Errorf("refused volume now holds %q", names)
			}
			if fi, err := os.Stat(mp); err != nil || fi.Mode()&os.ModeSticky != 0 {
				t.Errorf("refused volume was reopened: %v, %v", fi.Mode(), err)
			}
			if info, _ := f.Volume(v.Name); !reflect.DeepEqual(info.Labels, tt.labels) {
				t.Errorf("labels changed to %v", info.Labels)
			}
		})
	}
}

// TestClaimRemoteEngine: when the engine's mountpoint is not on this host,
// the claim succeeds but nothing can be read or written.
func TestClaimRemoteEngine(t *testing.T) {
	t.Run("no mountpoint", func(t *testing.T) {
		// Run in an empty directory: an empty mountpoint must not make
		// Claim read or write a stamp in the current directory.
		cwd := t.TempDir()
		t.Chdir(cwd)
		f := fake.New()
		vols := goVolumes()
		got, err := Claim(t.Context(), f, nil, vols, 1, t0)
		if err != nil {
			t.Fatalf("Claim: %v", err)
		}
		want := []Status{{Volume: vols[0]}, {Volume: vols[1]}}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Claim =\n%+v\nwant\n%+v", got, want)
		}
		if names := dirNames(t, cwd); len(names) != 0 {
			t.Errorf("Claim wrote %q in the current directory", names)
		}
	})
	t.Run("mountpoint missing here", func(t *testing.T) {
		f, root := localEngine(t)
		v := goVolumes()[0]
		if err := f.EnsureVolume(t.Context(), engine.VolumeSpec{Name: v.Name, Labels: v.Labels}); err != nil {
			t.Fatal(err)
		}
		mp := filepath.Join(root, v.Name)
		if err := os.Remove(mp); err != nil {
			t.Fatal(err)
		}
		got, err := Claim(t.Context(), f, nil, []Volume{v}, 1, t0)
		if err != nil {
			t.Fatalf("Claim: %v", err)
		}
		if want := []Status{{Volume: v, Mountpoint: mp}}; !reflect.DeepEqual(got, want) {
			t.Errorf("Claim =\n%+v\nwant\n%+v", got, want)
		}
		if _, err := os.Lstat(mp); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Claim created %s: %v", mp, err)
		}
	})
}

func TestClaimEngineErrors(t *testing.T) {
	tests := []struct {
		name      string
		setup     func(f *fake.Engine)
		cancelled bool
		want      string
		is        error
		calls     []string
	}{
		{
			name:  "EnsureVolume fails",
			setup: func(f *fake.Engine) { f.FailNext(fake.MethodEnsureVolume, errBoom) },
			want:  "cache volume for /go/pkg/mod: boom", is: errBoom,
			calls: []string{fake.MethodInspectVolume, fake.MethodEnsureVolume},
		},
		{
			name:  "InspectVolume fails",
			setup: func(f *fake.Engine) { f.FailNext(fake.MethodInspectVolume, errBoom) },
			want:  "cache volume for /go/pkg/mod: boom", is: errBoom,
			calls: []string{fake.MethodInspectVolume},
		},
		{
			name:      "cancelled",
			setup:     func(*fake.Engine) {},
			cancelled: true,
			want:      "cache volume for /go/pkg/mod: context canceled", is: context.Canceled,
			calls: []string{fake.MethodInspectVolume},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, root := localEngine(t)
			tt.setup(f)
			ctx := t.Context()
			if tt.cancelled {
				var cancel context.CancelFunc
				ctx, cancel = context.WithCancel(ctx)
				cancel()
			}
			v := goVolumes()[0]
			got, err := Claim(ctx, f, nil, []Volume{v}, 1, t0)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("Claim error = %v, want %q", err, tt.want)
			}
			if !errors.Is(err, tt.is) {
				t.Errorf("Claim error %v is not %v", err, tt.is)
			}
			if !reflect.DeepEqual(got, []Status{{}}) {
				t.Errorf("Claim = %+v, want one zero Status", got)
			}
			var methods []string
			for _, c := range f.Calls() {
				methods = append(methods, c.Method)
			}
			if !slices.Equal(methods, tt.calls) {
				t.Errorf("calls %q, want %q", methods, tt.calls)
			}
			if _, err := ReadStamp(filepath.Join(root, v.Name)); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("a stamp was written after a failure: %v", err)
			}
		})
	}
}

// TestClaimSeveral: every volume is claimed even when some fail, and the
// failures are all reported, in plan order.
func TestClaimSeveral(t *testing.T) {
	f, root := localEngine(t)
	vols := Plan(testKey, []Profile{wantCacheDir, wantGo, wantNpm})
	if len(vols) != 4 {
		t.Fatalf("planned %d volumes, want 4", len(vols))
	}
	fail := map[string]error{
		vols[0].Name: errors.New("no space left on device"),
		vols[3].Name: errBoom,
	}
	f.SetHook(func(method, name string) error {
		if method == fake.MethodEnsureVolume {
			return fail[name]
		}
		return nil
	})
	got, err := Claim(t.Context(), f, nil, vols, 1, t0)
	want := "cache volume for /cache: no space left on device\ncache volume for /root/.npm: boom"
	if err == nil || err.Error() != want {
		t.Fatalf("Claim error = %v, want %q", err, want)
	}
	if !errors.Is(err, errBoom) || !errors.Is(err, fail[vols[0].Name]) {
		t.Errorf("Claim error %v does not wrap both failures", err)
	}
	wantStatus := []Status{
		{},
		{Volume: vols[1], Mountpoint: filepath.Join(root, vols[1].Name), Readable: true},
		{Volume: vols[2], Mountpoint: filepath.Join(root, vols[2].Name), Readable: true},
		{},
	}
	if !reflect.DeepEqual(got, wantStatus) {
		t.Errorf("Claim =\n%+v\nwant\n%+v", got, wantStatus)
	}
	var ensured []string
	for _, c := range f.Calls() {
		if c.Method == fake.MethodEnsureVolume {
			ensured = append(ensured, c.Name)
		}
	}
	slices.Sort(ensured)
	var names []string
	for _, v := range vols {
		names = append(names, v.Name)
	}
	slices.Sort(names)
	if !slices.Equal(ensured, names) {
		t.Errorf("EnsureVolume called for %q, want every volume %q", ensured, names)
	}
	for _, v := range vols[1:3] {
		if s, err := ReadStamp(filepath.Join(root, v.Name)); err != nil || s != (Stamp{LastUsed: t0, JobID: 1}) {
			t.Errorf("stamp of %s: %+v, %v", v.Name, s, err)
		}
	}
}

func TestClaimNothing(t *testing.T) {
	f, _ := localEngine(t)
	got, err := Claim(t.Context(), f, nil, nil, 1, t0)
	if err != nil || len(got) != 0 {
		t.Errorf("Claim(nil) = %+v, %v; want nothing", got, err)
	}
	if calls := f.Calls(); len(calls) != 0 {
		t.Errorf("Claim(nil) made calls %+v", calls)
	}
}

func TestOpenToAllUsers(t *testing.T) {
	mp := filepath.Join(t.TempDir(), "_data")
	if err := os.Mkdir(mp, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := OpenToAllUsers(mp); err != nil {
		t.Fatalf("OpenToAllUsers: %v", err)
	}
	if fi, err := os.Stat(mp); err != nil || fi.Mode() != os.ModeDir|os.ModeSticky|0o777 {
		t.Errorf("mode %v, %v; want %v", fi.Mode(), err, os.ModeDir|os.ModeSticky|0o777)
	}
	gone := filepath.Join(t.TempDir(), "gone")
	if err := OpenToAllUsers(gone); !errors.Is(err, fs.ErrNotExist) || err.Error() != "chmod "+gone+": no such file or directory" {
		t.Errorf("OpenToAllUsers(missing) = %v, want chmod %s: no such file or directory", err, gone)
	}
}

// TestClaimAfterRemovalByHand: a cache volume removed by hand (its record
// kept) is made anew, reported cold, and its record's size forgotten.
func TestClaimAfterRemovalByHand(t *testing.T) {
	f, _ := localEngine(t)
	recs := Records{Dir: t.TempDir()}
	vols := goVolumes()[:1]
	if _, err := Claim(t.Context(), f, &recs, vols, 1, t0); err != nil {
		t.Fatal(err)
	}
	if err := recs.SetSize(vols[0].Name, 5000, t0); err != nil {
		t.Fatal(err)
	}
	if err := f.Remove(t.Context(), engine.Resource{Type: engine.Volume, Name: vols[0].Name}); err != nil {
		t.Fatal(err)
	}
	got, err := Claim(t.Context(), f, &recs, vols, 2, t1)
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Warm || got[0].Stamp.SizeBytes != 0 {
		t.Errorf("Claim = %+v, want a cold, empty cache", got[0])
	}
	if r, _ := recs.Get(vols[0].Name); r.SizeBytes != 0 || !r.Measured.IsZero() || !r.LastUsed.Equal(t1) {
		t.Errorf("record %+v, want used at %s with no size", r, t1)
	}
}
