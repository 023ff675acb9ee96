package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warmcache/warmcache/test/runnersim"
)

// fetch is a command that prints what url serves, or fails the job.
func fetch(url string) string {
	return "curl -fsS --max-time 5 " + url
}

// TestServiceReachableByAliases: a service gets the Docker executor's
// aliases and the job's own, in the build container and in the helper;
// it gets the job's public variables and its own, never the job token;
// cleanup leaves nothing.
func TestServiceReachableByAliases(t *testing.T) {
	j := newJob(t, jobSpec{Services: []runnersim.Service{{
		Name: httpdImage, Alias: "web,api", Variables: map[string]string{"SVC_GREETING": "hello-$CI_PROJECT_PATH"},
	}}})
	r := j.prepare()
	if r.Code != 0 {
		t.Fatalf("prepare: %s", r)
	}
	for _, want := range []string{
		"Starting service " + httpdImage + ", reachable as warmcache-test__httpd, warmcache-test-httpd, web, api\n",
		"Services ready in ",
	} {
		if !strings.Contains(r.Stderr, want) {
			t.Errorf("prepare log lacks %q:\n%s", want, r.Stderr)
		}
	}
	// It runs on its runner slot's network (slotnet_test.go), not one of
	// its own.
	if left := jobResources(t, j); hasResource(left, "network ", "-network") || !hasResource(left, "container ", "-service0") {
		t.Errorf("after prepare the job has %v, want its service and no network of its own", left)
	}

	var script strings.Builder
	for _, host := range []string{"warmcache-test__httpd", "warmcache-test-httpd", "web", "api"} {
		script.WriteString(fetch("http://"+host+":8080/index.html") + "\n")
	}
	script.WriteString(fetch("http://web:8080/env.txt") + " | grep -E '^(SVC_GREETING|CI_JOB_ID|CI_JOB_TOKEN)=' | sort\n")
	r = j.run("build_script", runnerScript(script.String()))
	want := strings.Repeat("hello from the httpd service\n", 4) +
		fmt.Sprintf("CI_JOB_ID=%d\nSVC_GREETING=hello-group/project\n", j.ID)
	if r.Code != 0 || r.Stdout != want {
		t.Errorf("build_script: want stdout %q, got %s", want, r)
	}
	// The helper's stages (here get_sources) see the service as well.
	if r := j.run("get_sources", runnerScript(fetch("http://api:8080/index.html"))); r.Code != 0 || r.Stdout != "hello from the httpd service\n" {
		t.Errorf("get_sources: %s", r)
	}

	if r := j.cleanup(); r.Code != 0 {
		t.Fatalf("cleanup: %s", r)
	}
	if left := jobResources(t, j); len(left) != 0 {
		t.Errorf("after cleanup the job still has %v", left)
	}
}

// TestServiceNeverReady: a service whose exposed port never opens gets
// the timeout message naming it and the port, with its last output, and
// the job goes on.
func TestServiceNeverReady(t *testing.T) {
	j := newJob(t, jobSpec{
		Config:   defaultConfig + "[services]\nwait_timeout = \"2s\"\n",
		Services: []runnersim.Service{{Name: silentImage}, {Name: httpdImage}},
	})
	r := j.prepare()
	if r.Code != 0 {
		t.Fatalf("prepare: want success (the job goes on), got %s", r)
	}
	want := "WARNING: service " + silentImage + " is not ready: port 9999/tcp did not open within 2s (last try: connection refused); the job goes on\n" +
		"  Last lines of its output:\n" +
		"  | silent service: up, but never listening on 9999\n"
	if !strings.Contains(r.Stderr, want) {
		t.Errorf("prepare log lacks\n%s\ngot\n%s", want, r.Stderr)
	}
	if strings.Contains(r.Stderr, "service "+httpdImage+" is not ready") {
		t.Errorf("the ready service was reported:\n%s", r.Stderr)
	}
	if r := j.run("build_script", runnerScript(fetch("http://warmcache-test-httpd:8080/index.html"))); r.Code != 0 {
		t.Errorf("build_script after a service timed out: %s", r)
	}
	if r := j.cleanup(); r.Code != 0 {
		t.Fatalf("cleanup: %s", r)
	}
	if left := jobResources(t, j); len(left) != 0 {
		t.Errorf("after cleanup the job still has %v", left)
	}
}

// TestServicesSameAliasInParallel: two jobs run at once, each with a
// service aliased "db"; each reaches its own.
func TestServicesSameAliasInParallel(t *testing.T) {
	jobs := make([]*job, 2)
	for i := range jobs {
		jobs[i] = newJob(t, jobSpec{Slot: i, Services: []runnersim.Service{{
			Name: httpdImage, Alias: "db", Variables: map[string]string{"WHOSE": fmt.Sprint("job-", i)},
		}}})
	}
	results := make([][]result, len(jobs))
	errs := make([]error, len(jobs))
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Go(func() {
			for _, call := range []func() (result, error){
				func() (result, error) { return j.Call("prepare") },
				func() (result, error) {
					return j.Run("build_script", runnerScript(fetch("http://db:8080/env.txt")+" | grep '^WHOSE='\n"))
				},
				func() (result, error) { return j.Call("cleanup") },
			} {
				r, err := call()
				if err != nil {
					errs[i] = err
					return
				}
				results[i] = append(results[i], r)
			}
		})
	}
	wg.Wait()
	for i, j := range jobs {
		if errs[i] != nil {
			t.Fatalf("job %d: %v", i, errs[i])
		}
		for n, r := range results[i] {
			if r.Code != 0 {
				t.Errorf("job %d call %d: %s", i, n, r)
			}
		}
		if got, want := results[i][1].Stdout, fmt.Sprintf("WHOSE=job-%d\n", i); got != want {
			t.Errorf("job %d reached %q, want its own service (%q)", i, got, want)
		}
		if left := jobResources(t, j); len(left) != 0 {
			t.Errorf("job %d: after cleanup it still has %v", i, left)
		}
	}
}

// hasResource says whether one of the "type name" entries of
// jobResources has the prefix and the suffix.
func hasResource(rs []string, prefix, suffix string) bool {
	return slices.ContainsFunc(rs, func(r string) bool { return strings.HasPrefix(r, prefix) && strings.HasSuffix(r, suffix) })
}

// TestServiceEntrypointAndCommand: a service's entrypoint and command
// from the job replace its image's.
func TestServiceEntrypointAndCommand(t *testing.T) {
	j := newJob(t, jobSpec{Services: []runnersim.Service{{
		Name: httpdImage, Alias: "web",
		Entrypoint: []string{"sh", "-c"},
		Command:    []string{"echo served by the job command > /www/index.html; exec httpd -f -p 8080 -h /www"},
	}}})
	if r := j.prepare(); r.Code != 0 || !strings.Contains(r.Stderr, "Services ready in ") {
		t.Fatalf("prepare: %s", r)
	}
	if r := j.run("build_script", runnerScript(fetch("http://web:8080/index.html"))); r.Code != 0 || r.Stdout != "served by the job command\n" {
		t.Errorf("build_script: %s", r)
	}
}

// TestServiceImageMissing: a service image that cannot be had fails
// prepare with one line naming it, and cleanup removes what prepare had
// made by then.
func TestServiceImageMissing(t *testing.T) {
	j := newJob(t, jobSpec{
		Config:   "[docker]\nhelper_image = \"" + debianImage + "\"\npull_policy = [\"never\"]\n",
		Services: []runnersim.Service{{Name: "warmcache-test/no-such-service:1"}},
	})
	r := j.prepare()
	want := "warmcache: service image: image warmcache-test/no-such-service:1 is not present locally and the pull policy is never: load it on the runner host or allow another pull policy\n"
	if r.Code != systemFailureCode || !strings.HasSuffix(r.Stderr, want) {
		t.Fatalf("prepare: want exit %d ending %q, got %s", systemFailureCode, want, r)
	}
	if r := j.cleanup(); r.Code != 0 {
		t.Fatalf("cleanup: %s", r)
	}
	if left := jobResources(t, j); len(left) != 0 {
		t.Errorf("after cleanup the job still has %v", left)
	}
}

// BenchmarkJobNetwork measures what the job's network costs a bare job:
// the same job on its runner slot's network (the default: made once, by
// the first job of the slot, before the loop), on a network of its own
// (docker.network_per_job) and on Docker's default bridge (network_mode =
// "bridge", no network at all), alternating in one loop so all see the
// same machine load.
func BenchmarkJobNetwork(b *testing.B) {
	bareJob(b, jobSpec{}) // makes the slot's network
	var slot, own, bridge []time.Duration
	for i := 0; i < b.N; i++ {
		slot = append(slot, bareJob(b, jobSpec{}))
		own = append(own, bareJob(b, jobSpec{Config: defaultConfig + "network_per_job = true\n"}))
		bridge = append(bridge, bareJob(b, jobSpec{Config: defaultConfig + "network_mode = \"bridge\"\n"}))
	}
	sm, om, bm := median(slot), median(own), median(bridge)
	b.ReportMetric(float64(sm.Milliseconds()), "ms/job-slot-network")
	b.ReportMetric(float64(om.Milliseconds()), "ms/job-own-network")
	b.ReportMetric(float64(bm.Milliseconds()), "ms/job-default-bridge")
	b.ReportMetric(float64(sm)/float64(bm), "slot/bridge")
	b.ReportMetric(float64(om)/float64(bm), "own/bridge")
}

// TestBackgroundRemovalLogged: the detached process that removes a job's
// containers, volumes and network (its own: docker.network_per_job) after
// cleanup gets the stage's config file (the runner's environment,
// WARMCACHE_CONFIG with it, stays behind) and logs its outcome to the
// configured structured log.
func TestBackgroundRemovalLogged(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "warmcache.log")
	j := newJob(t, jobSpec{Config: defaultConfig + "network_per_job = true\n[log]\nfile = \"" + logFile + "\"\n"})
	if r := j.prepare(); r.Code != 0 {
		t.Fatalf("prepare: %s", r)
	}
	if r := j.cleanup(); r.Code != 0 {
		t.Fatalf("cleanup: %s", r)
	}
	if left := jobResources(t, j); len(left) != 0 {
		t.Errorf("after cleanup the job still has %v", left)
	}
	// The resources are gone before their remover writes the log line:
	// wait for the line a moment longer.
	var entries []string
	for deadline := time.Now().Add(removalBound); ; time.Sleep(50 * time.Millisecond) {
		entries = nil
		data, _ := os.ReadFile(logFile)
		for _, line := range strings.Split(string(data), "\n") {
			if strings.Contains(line, `"stage":"remove-job"`) {
				entries = append(entries, line)
			}
		}
		if len(entries) > 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(entries) != 1 || !strings.Contains(entries[0], `"msg":"stage finished"`) {
		t.Errorf("remove-job log entries %q, want one saying it finished", entries)
	}
}
