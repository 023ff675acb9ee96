package human

import (
	"math"
	"testing"
	"time"
)

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

func TestFormattingEdges(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	if got := Ago(now.Add(3*time.Second), now); got != "0s ago" {
		t.Errorf("Ago(future) = %q, want 0s ago", got)
	}
	for n, want := range map[int64]string{1048575: "1.0 MiB", 1048524: "1023.9 KiB", 1<<30 - 1: "1.0 GiB"} {
		if got := Bytes(n); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", n, got, want)
		}
	}
}

var t0 = time.Date(2026, 11, 26, 21, 31, 10, 0, time.UTC)

func TestLimit(t *testing.T) {
	for n, want := range map[int64]string{
		20 << 30: "20 GiB", 100 << 20: "100 MiB", 1 << 40: "1 TiB", 1536 << 20: "1536 MiB", 100<<20 + 1: "100.0 MiB",
	} {
		if got := Limit(n); got != want {
			t.Errorf("Limit(%d) = %q, want %q", n, got, want)
		}
	}
}
