package cache

import (
	"testing"

	"github.com/warmcache/warmcache/internal/host"
)

func TestQuotaBytes(t *testing.T) {
	for n, want := range map[int64]string{
		20 << 30: "20 GiB", 100 << 20: "100 MiB", 1 << 40: "1 TiB", 1536 << 20: "1536 MiB", 100<<20 + 1: "100.0 MiB",
	} {
		if got := QuotaBytes(n); got != want {
			t.Errorf("QuotaBytes(%d) = %q, want %q", n, got, want)
		}
	}
	v := Volume{Profile: "go", Path: "/root/.cache/go-build"}
	if got, want := quotaFullLine(v, 20<<30), "Cache go /root/.cache/go-build is full at 20 GiB (cache.quota)"; got != want {
		t.Errorf("quotaFullLine = %q, want %q", got, want)
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
		want quotaUse
	}{
		{"quota'd", mounted, true, nil, quotaUse{limit: 100 << 20, used: 3 << 20, known: true}},
		{"no quota", host.QuotaSpace{}, false, nil, quotaUse{known: true}},
		{"not mounted", host.QuotaSpace{Limit: 100 << 20}, false, nil, quotaUse{}},
		{"error", host.QuotaSpace{}, false, errBoom, quotaUse{}},
	} {
		if got := quotaOf(tt.q, tt.ok, tt.err); got != tt.want {
			t.Errorf("%s: quotaOf = %+v, want %+v", tt.name, got, tt.want)
		}
	}
}
