package cache

import (
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
