package cache

import (
	"testing"
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
