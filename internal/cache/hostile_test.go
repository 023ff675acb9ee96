package cache

import (
	"strings"
	"testing"
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
