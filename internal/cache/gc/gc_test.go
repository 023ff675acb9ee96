package gc

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/warmcache/warmcache/internal/cache/record"
	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/engine/fake"
	"github.com/warmcache/warmcache/internal/host"
	"github.com/warmcache/warmcache/internal/naming"
)

func cand(name string, size int64, lastUsed time.Time) Candidate {
	return Candidate{Volume: name, Labels: map[string]string{naming.LabelCacheProfile: "go"},
		Record: record.Record{LastUsed: lastUsed, SizeBytes: size, Measured: lastUsed}}
}

func volumesOf(plan []Eviction) []string {
	var out []string
	for _, e := range plan {
		out = append(out, e.Volume+":"+e.Reason)
	}
	return out
}

func TestPlan(t *testing.T) {
	now := t0
	h := func(n int) time.Time { return now.Add(-time.Duration(n) * time.Hour) }
	leased := cand("leased", 500, h(100))
	leased.Record.Claimed = now.Add(-time.Minute)
	staleLease := cand("stale-lease", 10, h(90))
	staleLease.Record.Claimed = now.Add(-record.LeaseGrace - time.Second)
	neverRecorded := Candidate{Volume: "pre-records", Labels: map[string]string{naming.LabelCreated: h(200).Format(time.RFC3339)}}
	cands := []Candidate{cand("c", 100, h(3)), cand("a", 100, h(10)), cand("b", 100, h(5)), cand("big", 900, h(1)), leased, staleLease, neverRecorded}
	tests := []struct {
		name string
		lim  Limits
		free int64
		skip map[string]bool
		want []string
	}{
		{"no limits", Limits{}, -1, nil, nil},
		{"budget: least recently used first, leased kept",
			Limits{BudgetBytes: 1500}, -1, nil, []string{"pre-records:" + ReasonBudget, "stale-lease:" + ReasonBudget, "a:" + ReasonBudget, "b:" + ReasonBudget}},
		{"size limit first, then the budget",
			Limits{MaxVolumeBytes: 800, BudgetBytes: 700}, -1, nil, []string{"big:" + ReasonTooBig, "pre-records:" + ReasonBudget, "stale-lease:" + ReasonBudget, "a:" + ReasonBudget}},
		{"idle", Limits{MaxIdle: 4 * time.Hour}, -1, nil,
			[]string{"pre-records:" + ReasonIdle, "stale-lease:" + ReasonIdle, "a:" + ReasonIdle, "b:" + ReasonIdle}},
		{"free disk", Limits{MinFreeBytes: 1000}, 850, nil, []string{"pre-records:" + ReasonFreeDisk, "stale-lease:" + ReasonFreeDisk, "a:" + ReasonFreeDisk, "b:" + ReasonFreeDisk}},
		{"free disk unknown", Limits{MinFreeBytes: 1000}, -1, nil, nil},
		{"skipped volumes count but stay", Limits{BudgetBytes: 1500}, -1, map[string]bool{"a": true, "pre-records": true},
			[]string{"stale-lease:" + ReasonBudget, "b:" + ReasonBudget, "c:" + ReasonBudget}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := volumesOf(Plan(cands, tt.lim, tt.free, now, tt.skip))
			if !slices.Equal(got, tt.want) {
				t.Errorf("plan = %v\nwant   %v", got, tt.want)
			}
		})
	}
}

// gcFixture is a fake engine with cache volumes of the sizes given, used
// in the order given (the first is the least recently used), and their
// records.
func gcFixture(t *testing.T, sizes ...int64) (*fake.Engine, record.Records, []string) {
	t.Helper()
	f := fake.New()
	f.AddImage("img")
	recs := record.Records{Dir: t.TempDir()}
	var names []string
	for i, size := range sizes {
		name := fmt.Sprintf("warmcache-go-%012d", i)
		names = append(names, name)
		if err := f.EnsureVolume(t.Context(), engine.VolumeSpec{Name: name, Labels: Scope("")}); err != nil {
			t.Fatal(err)
		}
		used := t0.Add(-time.Hour + time.Duration(i)*time.Minute)
		if err := recs.Update(name, func(r *record.Record) error {
			*r = record.Record{LastUsed: used, Claimed: used, SizeBytes: size, Measured: used}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	return f, recs, names
}

func runGC(t *testing.T, f *fake.Engine, recs record.Records, lim Limits) Result {
	t.Helper()
	cands, err := Candidates(t.Context(), f, recs, Scope(""), t0)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(t.Context(), f, recs, cands, lim, -1, t0, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// TestGCSkipsVolumeInUse: a volume a container mounts is refused by the
// engine; the GC keeps it and evicts the next least recently used instead.
func TestGCSkipsVolumeInUse(t *testing.T) {
	f, recs, names := gcFixture(t, 100, 100, 100)
	if err := f.CreateContainer(t.Context(), engine.ContainerSpec{Name: "job", Image: "img", Mounts: []engine.Mount{{Volume: names[0], Target: "/c"}}}); err != nil {
		t.Fatal(err)
	}
	res := runGC(t, f, recs, Limits{BudgetBytes: 200})
	if len(res.Skipped) != 1 || res.Skipped[0].Volume != names[0] || !errors.Is(res.Skipped[0].Err, engine.ErrInUse) {
		t.Errorf("skipped = %+v, want %s in use", res.Skipped, names[0])
	}
	if len(res.Evicted) != 1 || res.Evicted[0].Volume != names[1] {
		t.Errorf("evicted = %+v, want %s", res.Evicted, names[1])
	}
	for i, want := range []bool{true, false, true} {
		if _, ok := f.Volume(names[i]); ok != want {
			t.Errorf("volume %d exists = %v, want %v", i, ok, want)
		}
	}
	if r, _ := recs.Get(names[1]); r != (record.Record{}) {
		t.Errorf("record of an evicted volume = %+v, want it cleared", r)
	}
}

// BenchmarkPlanGC1000 plans over 1,000 synthetic cache volumes as `cache
// gc` does: one engine list, one record file read per volume, the plan;
// no cache is walked (the bound is 2 s). For scale, "walk" plans
// the same volumes measuring each instead (20 small files each: real
// caches hold thousands).
func BenchmarkPlanGC1000(b *testing.B) {
	f := fake.New()
	f.SetVolumeRoot(b.TempDir())
	recs := record.Records{Dir: b.TempDir()}
	for i := range 1000 {
		name := fmt.Sprintf("warmcache-go-%012d", i)
		if err := f.EnsureVolume(b.Context(), engine.VolumeSpec{Name: name, Labels: Scope("")}); err != nil {
			b.Fatal(err)
		}
		used := t0.Add(-time.Duration(i) * time.Minute)
		if err := recs.Update(name, func(r *record.Record) error {
			*r = record.Record{LastUsed: used, SizeBytes: int64(i) << 20, Measured: used}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
		info, _ := f.Volume(name)
		for j := range 20 {
			if err := os.WriteFile(filepath.Join(info.Mountpoint, fmt.Sprint(j)), []byte("x"), 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
	lim := Limits{BudgetBytes: 100 << 30, MaxIdle: 10 * time.Hour}
	b.Run("records", func(b *testing.B) {
		for b.Loop() {
			cands, err := Candidates(b.Context(), f, recs, Scope(""), t0)
			if err != nil || len(cands) != 1000 {
				b.Fatalf("%d candidates, %v", len(cands), err)
			}
			if plan := Plan(cands, lim, -1, t0, nil); len(plan) == 0 {
				b.Fatal("empty plan")
			}
		}
	})
	b.Run("walk", func(b *testing.B) {
		for b.Loop() {
			cands, err := Candidates(b.Context(), f, recs, Scope(""), t0)
			if err != nil {
				b.Fatal(err)
			}
			local := host.New(f, nil)
			for i, c := range cands {
				if cands[i].Record.SizeBytes, err = local.Size(b.Context(), c.Volume); err != nil {
					b.Fatal(err)
				}
			}
			Plan(cands, lim, -1, t0, nil)
		}
	})
}

// TestGCConcurrentPassesCountOnce: two passes planned from one listing
// (two cleanups at once) evict each volume once and count it once.
func TestGCConcurrentPassesCountOnce(t *testing.T) {
	f, recs, names := gcFixture(t, 100, 100, 100)
	cands, err := Candidates(t.Context(), f, recs, Scope(""), t0)
	if err != nil {
		t.Fatal(err)
	}
	first, err := Run(t.Context(), f, recs, cands, Limits{BudgetBytes: 200}, -1, t0, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	second, err := Run(t.Context(), f, recs, cands, Limits{BudgetBytes: 200}, -1, t0, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(first.Evicted) != 1 || first.Evicted[0].Volume != names[0] {
		t.Errorf("first pass evicted %+v, want %s", first.Evicted, names[0])
	}
	if len(second.Evicted) != 0 {
		t.Errorf("second pass counts %+v as evicted too", second.Evicted)
	}
	if len(second.Skipped) != 1 || !errors.Is(second.Skipped[0].Err, ErrGone) {
		t.Errorf("second pass skipped %+v, want %s already gone", second.Skipped, names[0])
	}
	for i, want := range []bool{false, true, true} {
		if _, ok := f.Volume(names[i]); ok != want {
			t.Errorf("volume %d exists = %v, want %v", i, ok, want)
		}
	}
}

// TestCandidatesSeedsRecord: a cache volume from before records were kept
// is not taken for idle since its creation: its first sight seeds its
// record, last used then, size unknown.
func TestCandidatesSeedsRecord(t *testing.T) {
	f := fake.New()
	recs := record.Records{Dir: t.TempDir()}
	labels := Scope("")
	labels[naming.LabelCreated] = t0.Add(-90 * 24 * time.Hour).Format(time.RFC3339)
	if err := f.EnsureVolume(t.Context(), engine.VolumeSpec{Name: "warmcache-go-old", Labels: labels}); err != nil {
		t.Fatal(err)
	}
	cands, err := Candidates(t.Context(), f, recs, Scope(""), t0)
	if err != nil {
		t.Fatal(err)
	}
	if len(cands) != 1 || !cands[0].LastUsed().Equal(t0) {
		t.Fatalf("candidates %+v, want one last used at %s", cands, t0)
	}
	if plan := Plan(cands, Limits{MaxIdle: 24 * time.Hour}, -1, t0.Add(time.Hour), nil); len(plan) != 0 {
		t.Errorf("plan %+v, want nothing idle", plan)
	}
	plan := Plan(cands, Limits{MaxIdle: time.Hour}, -1, t0.Add(2*time.Hour), nil)
	if len(plan) != 1 || plan[0].SizeKnown {
		t.Errorf("plan %+v, want the volume, its size unknown", plan)
	}
	if r, _ := recs.Get("warmcache-go-old"); !r.LastUsed.Equal(t0) || !r.Measured.IsZero() {
		t.Errorf("record %+v, want seeded at %s, not measured", r, t0)
	}
}

var t0 = time.Date(2026, 11, 26, 21, 31, 10, 0, time.UTC)
