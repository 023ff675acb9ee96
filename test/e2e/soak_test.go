package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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
	// Every driver call logs its own peak memory (VmHWM) at debug level.
	logFile := filepath.Join(b.TempDir(), "driver.log")
	config := hostNetworkConfig + "[log]\nfile = \"" + logFile + "\"\nlevel = \"debug\"\n"

	start := time.Now()
	jobs := 0
	for i := 0; i < b.N; i++ {
		for round := range rounds {
			var wg sync.WaitGroup
			for slot := range 8 {
				spec := jobSpec{ProjectID: projects[slot%2], Slot: slot, Config: config,
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
						if r.Code != 0 {
							b.Errorf("round %d slot %d %s: %s", round, slot, call[0], r)
							return
						}
					}
					for _, st := range steps {
						r := j.run(st.stage, st.script)
						if r.Code != 0 {
							b.Errorf("round %d slot %d %s: %s", round, slot, st.stage, r)
						}
					}
					r := j.cleanup()
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
	peak := peakMemory(b, logFile)
	if len(peak) < 4 {
		b.Fatalf("the driver log has peak memory for only %v", peak)
	}
	worst := int64(0)
	for stage, kib := range peak {
		b.Logf("driver peak memory, %-10s %5.1f MiB", stage+":", float64(kib)/1024)
		worst = max(worst, kib)
	}
	b.ReportMetric(float64(worst)/1024, "MiB-peak-driver")
	fmt.Fprintf(os.Stderr, "soak: %d jobs in %s\n", jobs, elapsed.Round(time.Second))
}

// peakMemory reads the driver's "stage finished" log lines and returns the
// highest peak_rss_kib per stage (command).
func peakMemory(b *testing.B, logFile string) map[string]int64 {
	data, err := os.ReadFile(logFile)
	if err != nil {
		b.Fatal(err)
	}
	peak := map[string]int64{}
	for _, line := range strings.Split(string(data), "\n") {
		var entry struct {
			Msg   string `json:"msg"`
			Stage string `json:"stage"`
			Peak  int64  `json:"peak_rss_kib"`
		}
		if json.Unmarshal([]byte(line), &entry) == nil && entry.Msg == "stage finished" {
			peak[entry.Stage] = max(peak[entry.Stage], entry.Peak)
		}
	}
	return peak
}
