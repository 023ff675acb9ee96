package cache

import (
	"strings"
	"testing"
	"time"
)

func TestEnvRewritesOnlyRootPaths(t *testing.T) {
	p := Profile{Env: map[string]string{
		"A": "/opt/root/cache",
		"B": "/root/x:/srv/root/y:/root/z",
		"C": "-Dk=/root/m2 -Dother=/home/root/q",
	}}
	got := strings.Join(Env([]Profile{p}, true), "\n")
	want := "A=/opt/root/cache\n" +
		"B=/var/cache/warmcache/root/x:/srv/root/y:/var/cache/warmcache/root/z\n" +
		"C=-Dk=/var/cache/warmcache/root/m2 -Dother=/home/root/q"
	if got != want {
		t.Errorf("Env:\n got %q\nwant %q", got, want)
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
