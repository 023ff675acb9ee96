package reap

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/warmcache/warmcache/internal/config"
	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/engine/fake"
	"github.com/warmcache/warmcache/internal/limits/cgroup"
	"github.com/warmcache/warmcache/internal/naming"
)

func jobResource(typ engine.ResourceType, name, base string, kind naming.Kind, created time.Time, timeout string) engine.Resource {
	return engine.Resource{Type: typ, Name: name, Labels: map[string]string{
		naming.LabelManaged: "true", naming.LabelJob: base, naming.LabelKind: string(kind),
		naming.LabelCreated: created.UTC().Format(time.RFC3339), naming.LabelTimeout: timeout,
	}}
}

func TestAbandoned(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	grace := time.Hour
	undated := jobResource(engine.Volume, "c-builds", "c", naming.KindBuilds, now, "60")
	undated.Labels[naming.LabelCreated] = "yesterday"
	rs := []engine.Resource{
		// a: created 3h ago, 1h timeout + 1h grace: abandoned.
		jobResource(engine.Container, "a-build", "a", naming.KindBuild, now.Add(-3*time.Hour), "3600"),
		jobResource(engine.Volume, "a-builds", "a", naming.KindBuilds, now.Add(-3*time.Hour), "3600"),
		// b: created 90m ago but its timeout is 3h: still within its time.
		jobResource(engine.Container, "b-build", "b", naming.KindBuild, now.Add(-90*time.Minute), "10800"),
		// c: one resource cannot be dated, so the job is not touched.
		jobResource(engine.Container, "c-build", "c", naming.KindBuild, now.Add(-10*time.Hour), "60"),
		undated,
		// d: an old resource, but a new one shows the job alive recently.
		jobResource(engine.Container, "d-build", "d", naming.KindBuild, now.Add(-5*time.Hour), "60"),
		jobResource(engine.Container, "d-helper", "d", naming.KindHelper, now.Add(-10*time.Minute), "60"),
		// e: no timeout label: GitLab's default hour applies; 2h05m > 1h + 1h.
		jobResource(engine.Container, "e-build", "e", naming.KindBuild, now.Add(-125*time.Minute), ""),
		// f: dated in the future (another host's clock): not judged.
		jobResource(engine.Container, "f-build", "f", naming.KindBuild, now.Add(3*time.Hour), "60"),
		jobResource(engine.Container, "f-helper", "f", naming.KindHelper, now.Add(-30*time.Hour), "60"),
		// A cache volume, even one labelled with a job, is never reaped.
		jobResource(engine.Volume, "warmcache-go-0123456789ab", "a", naming.KindCache, now.Add(-100*time.Hour), "60"),
	}
	var got []string
	for _, j := range Abandoned(rs, now, grace) {
		var names []string
		for _, r := range j.Resources {
			names = append(names, r.Name)
		}
		got = append(got, j.Base+":"+strings.Join(names, ","))
	}
	want := []string{"a:a-build,a-builds", "e:e-build"}
	if !slices.Equal(got, want) {
		t.Errorf("plan = %q, want %q (oldest first)", got, want)
	}
}

func TestStranded(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	grace := time.Hour
	undated := jobResource(engine.Network, "u-network", "u", naming.KindNetwork, now, "10800")
	undated.Labels[naming.LabelCreated] = "yesterday"
	rs := []engine.Resource{
		// a: abandoned: the whole job goes with the reaper's plan.
		jobResource(engine.Network, "a-network", "a", naming.KindNetwork, now.Add(-3*time.Hour), "3600"),
		// b: within its 3h timeout, no container, network 2h old: stranded.
		jobResource(engine.Network, "b-network", "b", naming.KindNetwork, now.Add(-2*time.Hour), "10800"),
		jobResource(engine.Volume, "b-builds", "b", naming.KindBuilds, now.Add(-2*time.Hour), "10800"),
		// c: a container is left: the job may be running.
		jobResource(engine.Container, "c-build", "c", naming.KindBuild, now.Add(-2*time.Hour), "10800"),
		jobResource(engine.Network, "c-network", "c", naming.KindNetwork, now.Add(-2*time.Hour), "10800"),
		// p: made 30 minutes ago, within grace: its prepare may still pull.
		jobResource(engine.Network, "p-network", "p", naming.KindNetwork, now.Add(-30*time.Minute), "10800"),
		// q: stranded too, and older than b.
		jobResource(engine.Network, "q-network", "q", naming.KindNetwork, now.Add(-150*time.Minute), "10800"),
		undated,
	}
	abandoned := Abandoned(rs, now, grace)
	if len(abandoned) != 1 || abandoned[0].Base != "a" {
		t.Fatalf("abandoned = %+v, want job a", abandoned)
	}
	var got []string
	for _, n := range Stranded(rs, now, grace, abandoned) {
		got = append(got, n.Base+":"+n.Network.Name)
	}
	if want := []string{"q:q-network", "b:b-network"}; !slices.Equal(got, want) {
		t.Errorf("stranded = %q, want %q (oldest first)", got, want)
	}
}

// TestRemoveCgroups: the reaper removes the cgroups of reaped jobs and of
// jobs with nothing left in the engine once older than the grace, and
// leaves live and young ones alone.
func TestRemoveCgroups(t *testing.T) {
	d := Deps{Config: config.Default().Reap, Cgroups: syntheticCgroups(t)}
	now := time.Now()
	old := now.Add(-2 * d.Config.Grace)
	mk := func(base string, mod time.Time) string {
		dir := filepath.Join(d.Cgroups.Root, "warmcache", base)
		writeAt(t, filepath.Join(dir, "cgroup.procs"), "")
		if err := os.Chtimes(dir, mod, mod); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	live := mk("warmcache-r-aaaaaa-p1-c0-j1", old)
	gone := mk("warmcache-r-aaaaaa-p1-c0-j2", now)
	orphan := mk("warmcache-r-aaaaaa-p1-c0-j3", old)
	young := mk("warmcache-r-aaaaaa-p1-c0-j4", now)
	rs := []engine.Resource{
		{Type: engine.Container, Labels: map[string]string{naming.LabelJob: "warmcache-r-aaaaaa-p1-c0-j1"}},
		{Type: engine.Container, Labels: map[string]string{naming.LabelJob: "warmcache-r-aaaaaa-p1-c0-j2"}},
	}
	reaped := []Job{{Base: "warmcache-r-aaaaaa-p1-c0-j2"}}
	want := []string{"warmcache-r-aaaaaa-p1-c0-j2", "warmcache-r-aaaaaa-p1-c0-j3"}
	got, err := RemoveCgroups(d, rs, reaped, now, true)
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("dry run = %v, %v; want %v", got, err, want)
	}
	if _, err := os.Stat(orphan); err != nil {
		t.Fatalf("a dry run removed a cgroup: %v", err)
	}
	if got, err = RemoveCgroups(d, rs, reaped, now, false); err != nil || !slices.Equal(got, want) {
		t.Fatalf("RemoveCgroups = %v, %v; want %v", got, err, want)
	}
	for dir, want := range map[string]bool{live: true, gone: false, orphan: false, young: true} {
		if _, err := os.Stat(dir); (err == nil) != want {
			t.Errorf("%s exists = %v, want %v", filepath.Base(dir), err == nil, want)
		}
	}
}

// syntheticCgroups is a cgroup v2 tree in a temp dir (the kernel's files
// written by hand), so the reaper runs against a real cgroup.Host.
func syntheticCgroups(t *testing.T) *cgroup.Host {
	t.Helper()
	root := t.TempDir()
	for _, f := range []string{"cgroup.subtree_control", "warmcache/cgroup.subtree_control"} {
		writeAt(t, filepath.Join(root, f), "")
	}
	return &cgroup.Host{Unified: true, Root: root}
}

func writeAt(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// A slot network made under other options than the config's, longer ago
// than the grace, is stale; one of the current options, or a young one,
// is not; one still in use is kept without an error.
func TestStaleSlotNetworks(t *testing.T) {
	now := time.Now()
	f := fake.New()
	ctx := context.Background()
	add := func(name, options string, age time.Duration) {
		f.AddNetwork(name, naming.SlotNetworkLabels("7", 0, options, now.Add(-age)))
	}
	add("current", "aaaa", 48*time.Hour)
	add("old-young", "bbbb", time.Minute)
	add("old", "bbbb", 2*time.Hour)
	add("old-in-use", "cccc", 3*time.Hour)
	f.AddImage("img")
	if err := f.CreateContainer(ctx, engine.ContainerSpec{Name: "c", Image: "img", NetworkMode: "old-in-use"}); err != nil {
		t.Fatal(err)
	}
	if err := f.StartContainer(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	rs, err := f.List(ctx, map[string]string{naming.LabelManaged: "true"})
	if err != nil {
		t.Fatal(err)
	}
	stale := StaleSlotNetworks(rs, now, 30*time.Minute, "aaaa")
	var names []string
	for _, r := range stale {
		names = append(names, r.Name)
	}
	if !slices.Equal(names, []string{"old-in-use", "old"}) {
		t.Fatalf("stale = %v, want the old ones, oldest first", names)
	}
	removed, errs := RemoveSlotNetworks(ctx, f, stale)
	if !slices.Equal(removed, []bool{false, true}) || errors.Join(errs...) != nil {
		t.Errorf("removed %v, errors %v; want the unused one removed, the other kept without an error", removed, errs)
	}
	if f.HasNetwork("old") || !f.HasNetwork("old-in-use") || !f.HasNetwork("current") {
		t.Error("the wrong networks were removed")
	}
	if got := StaleSlotNetworks(rs, now, 30*time.Minute, ""); len(got) != 3 {
		t.Errorf("with slot networks off, %d stale, want every old one (3)", len(got))
	}
}
