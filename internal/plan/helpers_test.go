package plan

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
	"github.com/warmcache/warmcache/internal/config"
	"github.com/warmcache/warmcache/internal/limits"
)

func TestWithEnv(t *testing.T) {
	got := withEnv([]string{"A=1", "GOFLAGS=-x", "B=2"}, []string{"GOFLAGS=-mod=mod", "C=3"})
	want := []string{"A=1", "B=2", "GOFLAGS=-mod=mod", "C=3"}
	if !slices.Equal(got, want) {
		t.Errorf("withEnv = %q, want %q", got, want)
	}
}

func TestWithinJob(t *testing.T) {
	j := limits.Job{NanoCPUs: 1e9, Memory: 1 << 30, PidsLimit: 100}
	for _, tc := range []struct{ in, want limits.Container }{
		{limits.Container{}, limits.Container{NanoCPUs: 1e9, Memory: 1 << 30, PidsLimit: 100}},
		{limits.Container{NanoCPUs: 5e8, Memory: 2 << 30, PidsLimit: 50, ShmSize: 64 << 20},
			limits.Container{NanoCPUs: 5e8, Memory: 1 << 30, PidsLimit: 50, ShmSize: 64 << 20}},
		// Swap and reservation follow a lowered memory limit.
		{limits.Container{Memory: 4 << 30, MemorySwap: 2 << 30, MemoryReservation: 3 << 30},
			limits.Container{NanoCPUs: 1e9, Memory: 1 << 30, MemorySwap: 2 << 30, MemoryReservation: 1 << 30, PidsLimit: 100}},
		{limits.Container{Memory: 4 << 30, MemorySwap: -1},
			limits.Container{NanoCPUs: 1e9, Memory: 1 << 30, MemorySwap: -1, PidsLimit: 100}},
	} {
		if got := withinJob(tc.in, j); got != tc.want {
			t.Errorf("withinJob(%+v) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
	if got := withinJob(limits.Container{Memory: 1 << 20}, limits.Job{}); got != (limits.Container{Memory: 1 << 20}) {
		t.Errorf("no job limits changed the container: %+v", got)
	}
}

// The golden case's options are a config warmcache loads.
func TestEveryOptionLoads(t *testing.T) {
	var text strings.Builder
	if err := toml.NewEncoder(&text).Encode(map[string]any{"docker": everyOption()}); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(text.String())
	if err != nil {
		t.Fatalf("Parse:\n%s\n%v", text.String(), err)
	}
	if !reflect.DeepEqual(cfg.Docker.ContainerOptions, everyOption()) {
		t.Errorf("loaded %+v\nwant %+v", cfg.Docker.ContainerOptions, everyOption())
	}
}
