package cache

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/warmcache/warmcache/internal/cache/growth"
	"github.com/warmcache/warmcache/internal/cache/profile"
	"github.com/warmcache/warmcache/internal/cache/record"
	"github.com/warmcache/warmcache/internal/config"
	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/engine/fake"
	"github.com/warmcache/warmcache/internal/host"
	"github.com/warmcache/warmcache/internal/naming"
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

// newManager is a manager of cfg's caches over f, beside it (a host) when
// local, with its records in a temporary state directory.
func newManager(t *testing.T, f *fake.Engine, cfg config.Cache, local bool) *Manager {
	t.Helper()
	if cfg.StateDir == "" {
		cfg.StateDir = t.TempDir()
	}
	var h *host.Host
	if local {
		h = host.New(f, nil)
	}
	return New(cfg, f, h, zap.NewNop())
}

// goVolumes is the plan of testKey for the go profile: two volumes.
func goVolumes() []Volume { return profile.Plan(testKey, []Profile{wantGo}) }

func TestClaimColdThenWarm(t *testing.T) {
	f, root := localEngine(t)
	m := newManager(t, f, config.Cache{}, true)
	vols := profile.Plan(testKey, []Profile{wantCacheDir, wantGo})
	orig := make([]map[string]string, len(vols))
	for i, v := range vols {
		orig[i] = maps.Clone(v.Labels)
	}

	// The caller's clock may be in any zone; records and labels are UTC.
	first := t0.In(time.FixedZone("CET", 3600))
	got, err := m.claimVolumes(t.Context(), vols, first)
	if err != nil {
		t.Fatalf("first claim: %v", err)
	}
	var want []Status
	for _, v := range vols {
		want = append(want, Status{Volume: v})
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("first claim =\n%+v\nwant\n%+v", got, want)
	}
	for i, v := range vols {
		fi, err := os.Stat(filepath.Join(root, v.Name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != os.ModeDir|os.ModeSticky|0o777 {
			t.Errorf("%s: mode %v, want %v", v.Name, fi.Mode(), os.ModeDir|os.ModeSticky|0o777)
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
			t.Errorf("the claim changed the planned labels of %s: %v", v.Name, v.Labels)
		}
		if r, err := m.records.Get(v.Name); err != nil || r != (record.Record{LastUsed: t0, Claimed: t0}) {
			t.Errorf("%s: record %+v, %v; want used and claimed at %s", v.Name, r, err, t0)
		}
	}

	got, err = m.claimVolumes(t.Context(), vols, t1)
	if err != nil {
		t.Fatalf("second claim: %v", err)
	}
	want = nil
	for _, v := range vols {
		want = append(want, Status{Volume: v, Warm: true, Record: record.Record{LastUsed: t0, Claimed: t0}})
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("second claim =\n%+v\nwant\n%+v", got, want)
	}
	for _, v := range vols {
		if entries, _ := os.ReadDir(filepath.Join(root, v.Name)); len(entries) != 0 {
			t.Errorf("%s holds %d entries: the claim wrote into the cache", v.Name, len(entries))
		}
		info, _ := f.Volume(v.Name)
		if got := info.Labels["io.warmcache.created"]; got != "2026-11-26T21:31:10Z" {
			t.Errorf("%s: created label %q after the second claim, want the first", v.Name, got)
		}
		if r, _ := m.records.Get(v.Name); !r.LastUsed.Equal(t1) {
			t.Errorf("%s: last used %s after the second claim, want %s", v.Name, r.LastUsed, t1)
		}
	}
}

// TestClaimTrustsRecordsOnly: the size and last use a claim reports come
// from the driver's records; a stamp an older version (or a job) left in
// the volume is not read.
func TestClaimTrustsRecordsOnly(t *testing.T) {
	f, root := localEngine(t)
	m := newManager(t, f, config.Cache{}, true)
	vols := goVolumes()[:1]
	if _, err := m.claimVolumes(t.Context(), vols, t0); err != nil {
		t.Fatal(err)
	}
	if err := m.records.SetSize(vols[0].Name, 4096, t0); err != nil {
		t.Fatal(err)
	}
	forged := `{"last_used":"2099-01-01T00:00:00Z","size_bytes":1,"measured":"2099-01-01T00:00:00Z"}`
	if err := os.WriteFile(filepath.Join(root, vols[0].Name, ".warmcache-stamp"), []byte(forged), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := m.claimVolumes(t.Context(), vols, t1)
	if err != nil {
		t.Fatal(err)
	}
	if st := got[0]; !st.Warm || st.Record.SizeBytes != 4096 || !st.Record.LastUsed.Equal(t0) || !st.SizeKnown() {
		t.Errorf("claim = %+v, want warm, 4096 bytes, last used %s", st, t0)
	}
	if line, want := Describe(got[0], t1), "Cache go /go/pkg/mod: warm, 4.0 KiB, last used 1h ago ("+vols[0].Name+")"; line != want {
		t.Errorf("Describe = %q, want %q", line, want)
	}
}

func TestClaimRefusesForeignVolume(t *testing.T) {
	f, _ := localEngine(t)
	m := newManager(t, f, config.Cache{}, true)
	v := goVolumes()[0]
	if err := f.EnsureVolume(t.Context(), engine.VolumeSpec{Name: v.Name}); err != nil {
		t.Fatal(err)
	}
	_, err := m.claimVolumes(t.Context(), []Volume{v}, t0)
	want := "volume " + v.Name + " exists but is not a warmcache cache volume; remove or rename it"
	if err == nil || err.Error() != want {
		t.Errorf("claim of a foreign volume: %v, want %q", err, want)
	}
}

// TestClaimRemoteEngine: with the engine elsewhere (no host), a claim
// still leases and records the volume, and a second job finds it warm;
// nothing is read from or written to a volume directory.
func TestClaimRemoteEngine(t *testing.T) {
	f := fake.New() // volumes without a directory here
	m := newManager(t, f, config.Cache{}, false)
	vols := goVolumes()
	first, err := m.claimVolumes(t.Context(), vols, t0)
	if err != nil {
		t.Fatal(err)
	}
	second, err := m.claimVolumes(t.Context(), vols, t1)
	if err != nil {
		t.Fatal(err)
	}
	for i := range vols {
		if first[i].Warm || !second[i].Warm || !second[i].Record.LastUsed.Equal(t0) || second[i].SizeKnown() {
			t.Errorf("%s: first %+v, second %+v; want cold then warm, size not known", vols[i].Name, first[i], second[i])
		}
	}
	if err := m.measureVolumes(t.Context(), vols, t1.Add(time.Hour)); err != nil {
		t.Errorf("measuring beside a remote engine: %v, want nothing done", err)
	}
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
			m := newManager(t, f, config.Cache{}, true)
			tt.setup(f)
			ctx := t.Context()
			if tt.cancelled {
				var cancel context.CancelFunc
				ctx, cancel = context.WithCancel(ctx)
				cancel()
			}
			v := goVolumes()[0]
			got, err := m.claimVolumes(ctx, []Volume{v}, t0)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("claim error = %v, want %q", err, tt.want)
			}
			if !errors.Is(err, tt.is) {
				t.Errorf("claim error %v is not %v", err, tt.is)
			}
			if !reflect.DeepEqual(got, []Status{{}}) {
				t.Errorf("claim = %+v, want one zero Status", got)
			}
			var methods []string
			for _, c := range f.Calls() {
				methods = append(methods, c.Method)
			}
			if !slices.Equal(methods, tt.calls) {
				t.Errorf("calls %q, want %q", methods, tt.calls)
			}
			if _, err := os.Stat(filepath.Join(root, v.Name)); err == nil && tt.name != "InspectVolume fails" {
				t.Errorf("a volume directory exists after the failure")
			}
		})
	}
}

// TestClaimSeveral: every volume is claimed even when some fail, and the
// failures are all reported, in plan order.
func TestClaimSeveral(t *testing.T) {
	f, _ := localEngine(t)
	m := newManager(t, f, config.Cache{}, true)
	vols := profile.Plan(testKey, []Profile{wantCacheDir, wantGo, wantNpm})
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
	got, err := m.claimVolumes(t.Context(), vols, t0)
	want := "cache volume for /cache: no space left on device\ncache volume for /root/.npm: boom"
	if err == nil || err.Error() != want {
		t.Fatalf("claim error = %v, want %q", err, want)
	}
	if !errors.Is(err, errBoom) || !errors.Is(err, fail[vols[0].Name]) {
		t.Errorf("claim error %v does not wrap both failures", err)
	}
	wantStatus := []Status{{}, {Volume: vols[1]}, {Volume: vols[2]}, {}}
	if !reflect.DeepEqual(got, wantStatus) {
		t.Errorf("claim =\n%+v\nwant\n%+v", got, wantStatus)
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
}

func TestClaimNothing(t *testing.T) {
	f, _ := localEngine(t)
	m := newManager(t, f, config.Cache{}, true)
	got, err := m.claimVolumes(t.Context(), nil, t0)
	if err != nil || len(got) != 0 {
		t.Errorf("claim(nil) = %+v, %v; want nothing", got, err)
	}
	if calls := f.Calls(); len(calls) != 0 {
		t.Errorf("claim(nil) made calls %+v", calls)
	}
}

// TestClaimAfterRemovalByHand: a cache volume removed by hand (its record
// kept) is made anew, reported cold, and its record's size forgotten.
func TestClaimAfterRemovalByHand(t *testing.T) {
	f, _ := localEngine(t)
	m := newManager(t, f, config.Cache{}, true)
	vols := goVolumes()[:1]
	if _, err := m.claimVolumes(t.Context(), vols, t0); err != nil {
		t.Fatal(err)
	}
	if err := m.records.SetSize(vols[0].Name, 5000, t0); err != nil {
		t.Fatal(err)
	}
	if err := f.Remove(t.Context(), engine.Resource{Type: engine.Volume, Name: vols[0].Name}); err != nil {
		t.Fatal(err)
	}
	got, err := m.claimVolumes(t.Context(), vols, t1)
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Warm || got[0].Record.SizeBytes != 0 {
		t.Errorf("claim = %+v, want a cold, empty cache", got[0])
	}
	if r, _ := m.records.Get(vols[0].Name); r.SizeBytes != 0 || !r.Measured.IsZero() || !r.LastUsed.Equal(t1) {
		t.Errorf("record %+v, want used at %s with no size", r, t1)
	}
}

// TestClaimExistingPlainVolumeOneInspect: claiming a cache volume that
// exists and was made without a quota costs one engine call (the
// inspect that finds it), quota set or not: a filesystem to mount is
// looked for only on volumes made with a quota (LabelCacheQuota).
func TestClaimExistingPlainVolumeOneInspect(t *testing.T) {
	f, _ := localEngine(t)
	m := newManager(t, f, config.Cache{}, true)
	vols := goVolumes()[:1]
	if _, err := m.claimVolumes(t.Context(), vols, t0); err != nil {
		t.Fatal(err)
	}
	m.cfg.Quota = 100 << 20
	before := len(f.Calls())
	if _, err := m.claimLimited(t.Context(), vols, func(Volume) bool { return true }, t1); err != nil {
		t.Fatal(err)
	}
	var methods []string
	for _, c := range f.Calls()[before:] {
		methods = append(methods, c.Method)
	}
	if !slices.Equal(methods, []string{fake.MethodInspectVolume}) {
		t.Errorf("claim of an existing plain volume: calls %q, want one InspectVolume", methods)
	}
	if info, _ := f.Volume(vols[0].Name); info.Labels[naming.LabelCacheQuota] != "" {
		t.Errorf("a volume made without a quota is labelled %q", info.Labels[naming.LabelCacheQuota])
	}
}

// TestReportGrowthPlainVolumeOneInspect: the growth report after the
// last step measures a plain cache with one engine call (the inspect of
// its directory); only a volume claimed with a quota is asked about one.
func TestReportGrowthPlainVolumeOneInspect(t *testing.T) {
	f, _ := localEngine(t)
	f.AddImage("img")
	m := newManager(t, f, config.Cache{CacheQuota: config.CacheQuota{Quota: 100 << 20}}, true)
	sts, err := m.claimVolumes(t.Context(), goVolumes()[:1], t0)
	if err != nil {
		t.Fatal(err)
	}
	key := naming.JobKey{Runner: "r", ProjectID: 1, JobID: 1}
	c := JobCaches{sizes: []growth.Start{sizeAtStart(sts[0])}}
	if err := f.CreateContainer(t.Context(), engine.ContainerSpec{Name: "build", Image: "img",
		Labels: c.Labels(key.Labels(naming.KindBuild, naming.JobMeta{}))}); err != nil {
		t.Fatal(err)
	}
	before := len(f.Calls())
	var lines []string
	m.ReportGrowth(key, func(format string, args ...any) { lines = append(lines, fmt.Sprintf(format, args...)) })
	var inspects int
	for _, call := range f.Calls()[before:] {
		if call.Method == fake.MethodInspectVolume {
			inspects++
		}
	}
	if inspects != 1 || len(lines) != 1 || !strings.Contains(lines[0], "unchanged, 0 B") {
		t.Errorf("growth report: %d inspects, lines %q; want 1 inspect and the cache unchanged", inspects, lines)
	}
}
