package e2e

import (
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"
)

// BenchmarkSoak runs 8 concurrent jobs of two projects for many rounds
// (SOAK_ROUNDS, default 25) with caches on, through every stage: every job
// must pass, nothing may leak (TestMain checks), and `go mod verify` must
// pass on both projects' caches afterwards. It reports jobs per minute and
// the driver's peak memory per stage.
func BenchmarkSoak(b *testing.B) {
	rounds := 25
	if n, err := strconv.Atoi(os.Getenv("SOAK_ROUNDS")); err == nil && n > 0 {
		rounds = n
	}
	proxy, srv := goModProxy(b), sampleGitServer(b)
	projects := []int64{nextJobID(), nextJobID()}
	var mu sync.Mutex
	peak := map[string]int64{} // stage -> KiB
	record := func(stage string, r result) {
		mu.Lock()
		defer mu.Unlock()
		peak[stage] = max(peak[stage], r.MaxRSSKiB)
	}

	start := time.Now()
	jobs := 0
	for i := 0; i < b.N; i++ {
		for round := range rounds {
			var wg sync.WaitGroup
			for slot := range 8 {
				spec := jobSpec{ProjectID: projects[slot%2], Slot: slot, Config: hostNetworkConfig,
					Vars: map[string]string{"GOPROXY": proxy, "GOSUMDB": "off", "GOFLAGS": "-mod=mod"}}
				j := newJob(b, spec)
				wg.Go(func() {
					steps := []struct{ stage, script string }{
						{"get_sources", sampleScript(b, "get_sources", srv)},
						{"build_script", j.Script("go mod download && go build -o /dev/null ./...\n")},
						{"cleanup_file_variables", sampleScript(b, "cleanup_file_variables", srv)},
					}
					for _, call := range [][]string{{"config"}, {"prepare"}} {
						r := j.call(call...)
						record(call[0], r)
						if r.Code != 0 {
							b.Errorf("round %d slot %d %s: %s", round, slot, call[0], r)
							return
						}
					}
					for _, st := range steps {
						r := j.run(st.stage, st.script)
						record("run "+st.stage, r)
						if r.Code != 0 {
							b.Errorf("round %d slot %d %s: %s", round, slot, st.stage, r)
						}
					}
					r := j.cleanup()
					record("cleanup", r)
					if r.Code != 0 {
						b.Errorf("round %d slot %d cleanup: %s", round, slot, r)
					}
				})
				jobs++
			}
			wg.Wait()
			if b.Failed() {
				b.FailNow()
			}
		}
	}
	elapsed := time.Since(start)
	for _, project := range projects {
		v := newJob(b, jobSpec{ProjectID: project, Config: hostNetworkConfig, Vars: map[string]string{"GOPROXY": "off", "GOFLAGS": "-mod=mod"}})
		if r := v.prepare(); r.Code != 0 {
			b.Fatalf("verify prepare: %s", r)
		}
		if r := v.run("get_sources", sampleScript(b, "get_sources", srv)); r.Code != 0 {
			b.Fatalf("verify get_sources: %s", r)
		}
		if r := v.run("build_script", v.Script("go mod verify\n")); r.Code != 0 || r.Stdout != "all modules verified\n" {
			b.Fatalf("go mod verify on project %d's cache: %s", project, r)
		}
		if r := v.cleanup(); r.Code != 0 {
			b.Fatalf("verify cleanup: %s", r)
		}
	}
	b.ReportMetric(float64(jobs)/elapsed.Minutes(), "jobs/min")
	worst := int64(0)
	for stage, kib := range peak {
		b.Logf("driver peak memory, %-28s %5.1f MiB", stage+":", float64(kib)/1024)
		worst = max(worst, kib)
	}
	b.ReportMetric(float64(worst)/1024, "MiB-peak-driver")
	fmt.Fprintf(os.Stderr, "soak: %d jobs in %s\n", jobs, elapsed.Round(time.Second))
}
