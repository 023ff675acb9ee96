package e2e

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/naming"
)

// TestHostileJobVariables: variables a job controls (it can override any
// CUSTOM_ENV_ value) with path separators, newlines, non-UTF-8 bytes and
// huge values neither break the job nor reach a resource name.
func TestHostileJobVariables(t *testing.T) {
	j := newJob(t, jobSpec{Vars: map[string]string{
		"CI_RUNNER_SHORT_TOKEN": "../../etc/passwd\n--name=x",
		"CI_CONCURRENT_ID":      "99999999999999999999999",
		"CI_RUNNER_ID":          "7\t;rm -rf /",
		"WEIRD":                 "\xff\xfe not utf-8 \n second line",
		"HUGE":                  strings.Repeat("x", 100<<10),
	}})
	r := j.prepare()
	if r.Code != 0 {
		t.Fatalf("prepare: %s", r)
	}
	names := jobResources(t, j)
	valid := regexp.MustCompile(`^(container|volume|network) warmcache-[a-z0-9]{1,16}-[0-9a-f]{6}-p\d+-c0-j\d+-[a-z]+$`)
	for _, n := range names {
		if !valid.MatchString(n) {
			t.Errorf("resource name %q", n)
		}
	}
	if len(names) != 4 {
		t.Errorf("resources %v, want 2 containers, the builds and secrets volumes", names)
	}
	if r := j.run("build_script", j.Script("printf '%s' \"$HUGE\" | wc -c\n")); r.Code != 0 || r.Stdout != "102400\n" {
		t.Errorf("build_script: %s", r)
	}
	// The slot's network, named from the same values; the job's runner id
	// is not the suite's, so it is removed here.
	if r := j.cleanup(); r.Code != 0 {
		t.Fatalf("cleanup: %s", r)
	}
	if left := jobResources(t, j); len(left) != 0 {
		t.Fatalf("after cleanup the job still has %v", left)
	}
	ctx := context.Background()
	nets, err := eng.List(ctx, map[string]string{naming.LabelKind: string(naming.KindSlotNetwork), naming.LabelRunnerID: "7rmrf"})
	if err != nil || len(nets) != 1 || !regexp.MustCompile(`^warmcache-[a-z0-9]{1,16}-[0-9a-f]{6}-c0-slotnet-[0-9a-f]{8}$`).MatchString(nets[0].Name) {
		t.Errorf("slot networks %+v (%v), want one with a clean name", nets, err)
	}
	for _, n := range nets {
		if err := eng.Remove(ctx, engine.Resource{Type: engine.Network, Name: n.ID}); err != nil {
			t.Error(err)
		}
	}
}

// TestBadJobResponse: a truncated or hostile job payload is a system
// failure with one clear line, and cleanup copes.
func TestBadJobResponse(t *testing.T) {
	for name, payload := range map[string]string{
		"truncated":       `{"id":1,"job_info":{"project_id":`,
		"no project":      `{"id":5,"job_info":{}}`,
		"negative job id": `{"id":-5,"job_info":{"project_id":1}}`,
		"not an object":   `["id",1]`,
	} {
		t.Run(name, func(t *testing.T) {
			j := newJob(t, jobSpec{})
			original, err := os.ReadFile(filepath.Join(j.Dir, "response.json"))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(j.Dir, "response.json"), []byte(payload), 0o600); err != nil {
				t.Fatal(err)
			}
			r := j.prepare()
			if r.Code != systemFailureCode || strings.Count(r.Stderr, "\n") != 1 || !strings.HasPrefix(r.Stderr, "warmcache: job response ") {
				t.Errorf("prepare: want exit %d and one line, got %s", systemFailureCode, r)
			}
			// The deferred cleanup gets the real payload back.
			if err := os.WriteFile(filepath.Join(j.Dir, "response.json"), original, 0o600); err != nil {
				t.Fatal(err)
			}
		})
	}
}
