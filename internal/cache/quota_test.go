package cache

import (
	"strings"
	"testing"
	"time"
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

func TestWriteTableQuotaColumn(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	entries := []Entry{
		{Volume: "a", ProjectPath: "g/p", Profile: "go", Path: "/go/pkg/mod", Trust: "protected", SizeBytes: 5 << 20, SizeKnown: true,
			LastUsed: now.Add(-time.Hour), QuotaBytes: 100 << 20, QuotaUsedBytes: 6 << 20},
		{Volume: "b", ProjectPath: "g/p", Profile: "npm", Path: "/root/.npm", Trust: "protected", LastUsed: now.Add(-2 * time.Hour)},
	}
	var b strings.Builder
	if err := WriteTable(&b, entries, now); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if !strings.HasSuffix(lines[0], "QUOTA") || !strings.HasSuffix(lines[1], "6.0 MiB of 100 MiB") || !strings.HasSuffix(lines[2], "-") {
		t.Errorf("table:\n%s", b.String())
	}
	b.Reset()
	entries[0].QuotaBytes = 0
	if err := WriteTable(&b, entries, now); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "QUOTA") {
		t.Errorf("a QUOTA column with no quota:\n%s", b.String())
	}
}
