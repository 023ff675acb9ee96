package growth

import (
	"errors"
	"testing"

	"github.com/warmcache/warmcache/internal/cache/profile"
	"github.com/warmcache/warmcache/internal/host"
)

func TestStopLine(t *testing.T) {
	const gib, mib = 1 << 30, 1 << 20
	mod := CacheGrowth{Profile: "go", Path: "/go/pkg/mod"}
	build := CacheGrowth{Profile: "go", Path: "/root/.cache/go-build"}
	grew := func(c CacheGrowth, n int64) CacheGrowth { c.Bytes = n; return c }
	tests := []struct {
		name        string
		free, floor int64
		grown       []CacheGrowth
		want        string
	}{
		{name: "no floor", free: 0, floor: 0, grown: []CacheGrowth{grew(mod, 5*gib)}},
		{name: "above the floor", free: 2 * gib, floor: gib, grown: []CacheGrowth{grew(mod, 5*gib)}},
		{name: "at the floor", free: gib, floor: gib, grown: []CacheGrowth{grew(mod, 5*gib)}},
		{name: "under the floor, no cache", free: 812 * mib, floor: gib},
		{name: "under the floor, caches unchanged or shrunk", free: 812 * mib, floor: gib,
			grown: []CacheGrowth{grew(mod, 0), grew(build, -gib)}},
		{name: "under the floor, a build's ordinary writes", free: 812 * mib, floor: gib,
			grown: []CacheGrowth{grew(mod, 64*mib-1)}},
		{name: "under the floor, one cache grew", free: 812 * mib, floor: gib,
			grown: []CacheGrowth{grew(build, mib), grew(mod, 2254857830)},
			want:  "WARNING: stopping the job: the Docker data root has 812.0 MiB free, under cache.gc.min_free_disk (1 GiB), and this job's cache go /go/pkg/mod grew by 2.1 GiB"},
		{name: "under the floor, at the threshold", free: 812 * mib, floor: gib,
			grown: []CacheGrowth{grew(mod, 64*mib)},
			want:  "WARNING: stopping the job: the Docker data root has 812.0 MiB free, under cache.gc.min_free_disk (1 GiB), and this job's cache go /go/pkg/mod grew by 64.0 MiB"},
		{name: "under the floor, two caches grew", free: 0, floor: 20 * gib,
			grown: []CacheGrowth{grew(mod, 300*mib), grew(build, 3*gib)},
			want:  "WARNING: stopping the job: the Docker data root has 0 B free, under cache.gc.min_free_disk (20 GiB), and this job's caches go /go/pkg/mod grew by 300.0 MiB, go /root/.cache/go-build grew by 3.0 GiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			line, stop := StopLine(tt.free, tt.floor, tt.grown)
			if line != tt.want || stop != (tt.want != "") {
				t.Errorf("StopLine = %q, %v; want %q, %v", line, stop, tt.want, tt.want != "")
			}
		})
	}
}

// TestQuotaOf: what the metrics take of host.Quota's answer.
func TestQuotaOf(t *testing.T) {
	mounted := host.QuotaSpace{Limit: 100 << 20, Used: 3 << 20, Free: 80 << 20}
	for _, tt := range []struct {
		name string
		q    host.QuotaSpace
		ok   bool
		err  error
		want QuotaUse
	}{
		{"quota'd", mounted, true, nil, QuotaUse{limit: 100 << 20, used: 3 << 20, known: true}},
		{"no quota", host.QuotaSpace{}, false, nil, QuotaUse{known: true}},
		{"not mounted", host.QuotaSpace{Limit: 100 << 20}, false, nil, QuotaUse{}},
		{"error", host.QuotaSpace{}, false, errBoom, QuotaUse{}},
	} {
		if got := QuotaOf(tt.q, tt.ok, tt.err); got != tt.want {
			t.Errorf("%s: quotaOf = %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

func TestQuotaFullLine(t *testing.T) {
	v := profile.Volume{Profile: "go", Path: "/root/.cache/go-build"}
	if got, want := QuotaFullLine(v, 20<<30), "Cache go /root/.cache/go-build is full at 20 GiB (cache.quota)"; got != want {
		t.Errorf("QuotaFullLine = %q, want %q", got, want)
	}
}

var errBoom = errors.New("boom")
