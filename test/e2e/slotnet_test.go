package e2e

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/warmcache/warmcache/internal/naming"
	"github.com/warmcache/warmcache/test/runnersim"
)

// whoseService is a job spec on slot with an httpd service aliased db
// that says which job it serves.
func whoseService(slot int, whose string) jobSpec {
	return jobSpec{Slot: slot, Services: []runnersim.Service{{
		Name: httpdImage, Alias: "db", Variables: map[string]string{"WHOSE": whose},
	}}}
}

// slotNetwork returns the network of this suite's runner's slot, "" and
// "" if it has none.
func slotNetwork(t *testing.T, slot int) (name, id string) {
	t.Helper()
	rs, err := eng.List(context.Background(), map[string]string{naming.LabelKind: string(naming.KindSlotNetwork),
		naming.LabelRunnerID: runnersim.RunnerID, naming.LabelNetworkSlot: strconv.Itoa(slot)})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) > 1 {
		t.Fatalf("slot %d has %d networks: %+v", slot, len(rs), rs)
	}
	if len(rs) == 0 {
		return "", ""
	}
	return rs[0].Name, rs[0].ID
}

// TestSlotNetworkReused: two successive jobs of one slot run on the
// slot's network, made by the first and reused by the second, and each
// reaches its own service under the same alias.
func TestSlotNetworkReused(t *testing.T) {
	const slot = 40
	var ids []string
	for i := range 2 {
		j := newJob(t, whoseService(slot, fmt.Sprint("job-", i)))
		if r := j.prepare(); r.Code != 0 {
			t.Fatalf("job %d: prepare: %s", i, r)
		}
		if left := jobResources(t, j); hasResource(left, "network ", "") {
			t.Errorf("job %d made a network of its own: %v", i, left)
		}
		_, id := slotNetwork(t, slot)
		ids = append(ids, id)
		r := j.run("build_script", runnerScript(fetch("http://db:8080/env.txt")+" | grep '^WHOSE='\n"))
		if want := fmt.Sprintf("WHOSE=job-%d\n", i); r.Code != 0 || r.Stdout != want {
			t.Errorf("job %d: want stdout %q, got %s", i, want, r)
		}
		if r := j.cleanup(); r.Code != 0 {
			t.Fatalf("job %d: cleanup: %s", i, r)
		}
		if left := jobResources(t, j); len(left) != 0 {
			t.Errorf("job %d: after cleanup it still has %v", i, left)
		}
	}
	if ids[0] == "" || ids[0] != ids[1] {
		t.Errorf("slot network ids %q: want one network, reused", ids)
	}
}

// TestSlotNetworkLeftoverUnreachable: a container of an earlier job of
// the slot still on the slot's network never meets the next job. One of
// a job that has not ended (its cleanup never ran) is left alone, and
// the next job gets a network of its own; one of an ended job (renamed
// by its cleanup, its removal still to come or failed) is taken off.
func TestSlotNetworkLeftoverUnreachable(t *testing.T) {
	for slot, ended := range map[int]bool{41: false, 42: true} {
		t.Run(fmt.Sprint("ended=", ended), func(t *testing.T) {
			earlier := newJob(t, whoseService(slot, "earlier"))
			if r := earlier.prepare(); r.Code != 0 {
				t.Fatalf("earlier job: prepare: %s", r)
			}
			network, _ := slotNetwork(t, slot)
			svc := naming.JobKey{Runner: "e2etoken", Instance: "127.0.0.1:42891", ProjectID: earlier.ID, Slot: slot, JobID: earlier.ID}.ServiceName(0)
			ip, err := eng.ContainerIP(context.Background(), svc, network)
			if err != nil || ip == "" {
				t.Fatalf("the earlier job's service on %s: %q, %v", network, ip, err)
			}
			if ended {
				helper := strings.TrimSuffix(svc, "-service0") + "-helper"
				for _, name := range []string{svc, helper} {
					if err := eng.RenameContainer(context.Background(), name, naming.Ended(name, "e2e")); err != nil {
						t.Fatal(err)
					}
				}
			}

			next := newJob(t, whoseService(slot, "next"))
			if r := next.prepare(); r.Code != 0 {
				t.Fatalf("next job: prepare: %s", r)
			}
			if own := hasResource(jobResources(t, next), "network ", "-network"); own == ended {
				t.Errorf("the next job has a network of its own: %v, want %v", own, !ended)
			}
			// The address may be the next job's own service's by now: what
			// answers there must not be the earlier job's.
			r := next.run("build_script", runnerScript(fetch("http://db:8080/env.txt")+" | grep '^WHOSE='\n"+
				"if curl -fsS --max-time 3 http://"+ip+":8080/env.txt | grep -q '^WHOSE=earlier'; then echo REACHED; fi\n"))
			if r.Code != 0 || r.Stdout != "WHOSE=next\n" {
				t.Errorf("next job: want only its own service, got %s", r)
			}
			if info, err := eng.InspectNetwork(context.Background(), network); err != nil ||
				ended == containsPrefix(info.Containers, strings.TrimSuffix(svc, "-service0")) {
				t.Errorf("slot network %s has %v (%v); the earlier job's containers on it: want %v", network, info.Containers, err, !ended)
			}
		})
	}
}

func containsPrefix(names []string, prefix string) bool {
	for _, n := range names {
		if strings.HasPrefix(n, prefix) {
			return true
		}
	}
	return false
}
