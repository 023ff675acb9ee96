package driver

import (
	"bytes"
	"context"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/engine/fake"
	"github.com/warmcache/warmcache/internal/naming"
)

func jobResource(typ engine.ResourceType, name, base string, kind naming.Kind, created time.Time, timeout string) engine.Resource {
	return engine.Resource{Type: typ, Name: name, Labels: map[string]string{
		naming.LabelManaged: "true", naming.LabelJob: base, naming.LabelKind: string(kind),
		naming.LabelCreated: created.UTC().Format(time.RFC3339), naming.LabelTimeout: timeout,
	}}
}

func TestPlanReap(t *testing.T) {
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
	for _, j := range planReap(rs, now, grace) {
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

func TestReap(t *testing.T) {
	for _, dryRun := range []bool{true, false} {
		h := newHarness(t, nil)
		old := time.Now().Add(-24 * time.Hour)
		oldKey := naming.JobKey{Runner: "r", Instance: "x", ProjectID: 1, JobID: 2}
		labels := oldKey.Labels(naming.KindBuild, naming.JobMeta{TimeoutSeconds: 60, Created: old})
		h.f.AddImage("img")
		if err := h.f.CreateContainer(context.Background(), engine.ContainerSpec{Name: oldKey.Name(naming.KindBuild), Image: "img", Labels: labels}); err != nil {
			t.Fatal(err)
		}
		if err := Prepare(context.Background(), h.deps()); err != nil { // a live job
			t.Fatal(err)
		}
		var out bytes.Buffer
		d := h.deps()
		d.Stdout = &out
		if err := Reap(context.Background(), d, dryRun); err != nil {
			t.Fatalf("Reap: %v", err)
		}
		verb := "Reaped"
		if dryRun {
			verb = "Would reap"
		}
		// The creation label has whole seconds: allow the second it drops.
		line := regexp.MustCompile(`^` + verb + ` ` + oldKey.Base() + `: 1 resources, created 24h0m[01]s ago, abandoned since 22h59m[01]s ago\n$`)
		if !line.MatchString(out.String()) {
			t.Errorf("dry run %v: output %q", dryRun, out.String())
		}
		c, _ := h.f.Container(oldKey.Name(naming.KindBuild))
		if wantState := fake.Removed; !dryRun && c.State != wantState || dryRun && c.State == wantState {
			t.Errorf("dry run %v: abandoned container is %s", dryRun, c.State)
		}
		live, _ := h.f.Container(sampleKey.Name(naming.KindBuild))
		if live.State == fake.Removed {
			t.Errorf("dry run %v: the live job's container was reaped", dryRun)
		}
	}
}

// Prepare makes a bounded reaper pass, so admins need no cron job.
func TestPrepareReaps(t *testing.T) {
	h := newHarness(t, nil)
	h.cfg.Reap.AtPrepare = true
	oldKey := naming.JobKey{Runner: "r", Instance: "x", ProjectID: 1, JobID: 2}
	h.f.AddImage("img")
	labels := oldKey.Labels(naming.KindBuild, naming.JobMeta{TimeoutSeconds: 60, Created: time.Now().Add(-24 * time.Hour)})
	if err := h.f.CreateContainer(context.Background(), engine.ContainerSpec{Name: oldKey.Name(naming.KindBuild), Image: "img", Labels: labels}); err != nil {
		t.Fatal(err)
	}
	if err := Prepare(context.Background(), h.deps()); err != nil {
		t.Fatal(err)
	}
	if c, _ := h.f.Container(oldKey.Name(naming.KindBuild)); c.State != fake.Removed {
		t.Errorf("abandoned container is %s after prepare", c.State)
	}
}

func TestPlanStranded(t *testing.T) {
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
	abandoned := planReap(rs, now, grace)
	if len(abandoned) != 1 || abandoned[0].Base != "a" {
		t.Fatalf("abandoned = %+v, want job a", abandoned)
	}
	var got []string
	for _, n := range planStranded(rs, now, grace, abandoned) {
		got = append(got, n.Base+":"+n.Network.Name)
	}
	if want := []string{"q:q-network", "b:b-network"}; !slices.Equal(got, want) {
		t.Errorf("stranded = %q, want %q (oldest first)", got, want)
	}
}

// A network whose job has no container left goes long before the job's
// deadline, by its id, at `warmcache reap` and at every prepare; a live
// job's network stays.
func TestReapStrandedNetwork(t *testing.T) {
	strandedKey := naming.JobKey{Runner: "r", Instance: "x", ProjectID: 1, JobID: 3}
	network := strandedKey.Name(naming.KindNetwork)
	for _, mode := range []string{"dry run", "reap", "prepare"} {
		t.Run(mode, func(t *testing.T) {
			h := newHarness(t, nil)
			h.cfg.Reap.AtPrepare = mode == "prepare"
			// Made 2h ago by a job with a 3h timeout: far from abandoned.
			h.f.AddNetwork(network, strandedKey.Labels(naming.KindNetwork, naming.JobMeta{TimeoutSeconds: 3 * 3600, Created: time.Now().Add(-2 * time.Hour)}))
			id := h.f.NetworkID(network)
			if err := Prepare(context.Background(), h.deps()); err != nil {
				t.Fatal(err)
			}
			if mode != "prepare" {
				var out bytes.Buffer
				d := h.deps()
				d.Stdout = &out
				if err := Reap(context.Background(), d, mode == "dry run"); err != nil {
					t.Fatalf("Reap: %v", err)
				}
				verb := map[string]string{"dry run": "Would remove", "reap": "Removed"}[mode]
				line := regexp.MustCompile(`^` + verb + ` the network of ` + strandedKey.Base() + `: no container of the job is left, created 2h0m[01]s ago\n$`)
				if !line.MatchString(out.String()) {
					t.Errorf("output %q", out.String())
				}
			}
			if got, want := h.f.HasNetwork(network), mode == "dry run"; got != want {
				t.Errorf("stranded network exists: %v, want %v", got, want)
			}
			byID := slices.Contains(h.f.Calls(), fake.Call{Method: fake.MethodRemove, Name: id})
			if byID == (mode == "dry run") {
				t.Errorf("removal by the network's id: %v", byID)
			}
			if !h.f.HasNetwork(sampleKey.Name(naming.KindNetwork)) {
				t.Error("the live job's network was removed")
			}
		})
	}
}
