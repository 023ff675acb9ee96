package cache

import (
	"math"
	"testing"
	"time"

	"github.com/warmcache/warmcache/internal/cache/record"
)

func TestDescribe(t *testing.T) {
	now := t0
	v := Volume{Name: "warmcache-go-0123456789ab", Profile: "go", Path: "/go/pkg/mod"}
	tests := []struct {
		name   string
		status Status
		want   string
	}{
		{
			name:   "cold",
			status: Status{Volume: v},
			want:   "Cache go /go/pkg/mod: cold (new volume warmcache-go-0123456789ab)",
		},
		{
			name:   "warm, not measured",
			status: Status{Volume: v, Warm: true, Record: record.Record{LastUsed: now.Add(-3 * time.Minute), SizeBytes: 999}},
			want:   "Cache go /go/pkg/mod: warm, size not measured yet, last used 3m ago (warmcache-go-0123456789ab)",
		},
		{
			name: "warm, measured",
			status: Status{Volume: v, Warm: true,
				Record: record.Record{LastUsed: now.Add(-5 * time.Hour), SizeBytes: 1572864, Measured: now.Add(-5 * time.Hour)}},
			want: "Cache go /go/pkg/mod: warm, 1.5 MiB, last used 5h ago (warmcache-go-0123456789ab)",
		},
		{
			name: "warm, measured empty",
			status: Status{Volume: v, Warm: true,
				Record: record.Record{LastUsed: now.Add(-5 * time.Second), Measured: now.Add(-3 * 24 * time.Hour)}},
			want: "Cache go /go/pkg/mod: warm, 0 B, last used 5s ago (warmcache-go-0123456789ab)",
		},
		{
			name:   "warm, made by an older version (no record)",
			status: Status{Volume: v, Warm: true},
			want:   "Cache go /go/pkg/mod: warm, size not measured yet (warmcache-go-0123456789ab)",
		},
		{
			name: "cache-dir",
			status: Status{Volume: Volume{Name: "warmcache-cache-dir-fedcba987654", Profile: "cache-dir", Path: "/cache"},
				Warm: true, Record: record.Record{LastUsed: now.Add(-3 * 24 * time.Hour), SizeBytes: 2048, Measured: now}},
			want: "Cache cache-dir /cache: warm, 2.0 KiB, last used 3d ago (warmcache-cache-dir-fedcba987654)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Describe(tt.status, now); got != tt.want {
				t.Errorf("Describe =\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestBytes(t *testing.T) {
	tests := []struct {
		n    int64
		want string
	}{
		{0, "0 B"},
		{1, "1 B"},
		{1023, "1023 B"},
		{1024, "1.0 KiB"},
		{1536, "1.5 KiB"},
		{10*1024 - 1, "10.0 KiB"},
		{1 << 20, "1.0 MiB"},
		{1572864, "1.5 MiB"},
		{1<<30 - 1<<20, "1023.0 MiB"},
		{1 << 30, "1.0 GiB"},
		{5 << 30, "5.0 GiB"},
		{1 << 40, "1.0 TiB"},
		{1 << 50, "1.0 PiB"},
		{1 << 60, "1.0 EiB"},
		{math.MaxInt64, "8.0 EiB"},
	}
	for _, tt := range tests {
		if got := Bytes(tt.n); got != tt.want {
			t.Errorf("Bytes(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
}

func TestAgo(t *testing.T) {
	now := t0
	tests := []struct {
		then time.Time
		want string
	}{
		{time.Time{}, "never"},
		{now, "0s ago"},
		{now.Add(-5 * time.Second), "5s ago"},
		{now.Add(-59*time.Second - 999*time.Millisecond), "59s ago"},
		{now.Add(-time.Minute), "1m ago"},
		{now.Add(-3 * time.Minute), "3m ago"},
		{now.Add(-59*time.Minute - 59*time.Second), "59m ago"},
		{now.Add(-time.Hour), "1h ago"},
		{now.Add(-5 * time.Hour), "5h ago"},
		{now.Add(-47*time.Hour - 59*time.Minute), "47h ago"},
		{now.Add(-48 * time.Hour), "2d ago"},
		{now.Add(-3 * 24 * time.Hour), "3d ago"},
		{now.Add(-400 * 24 * time.Hour), "400d ago"},
		// A stamp written in another zone is the same instant.
		{now.Add(-5 * time.Hour).In(time.FixedZone("PST", -8*3600)), "5h ago"},
	}
	for _, tt := range tests {
		if got := Ago(tt.then, now); got != tt.want {
			t.Errorf("Ago(%v, %v) = %q, want %q", tt.then, now, got, tt.want)
		}
	}
}
