package e2e

import (
	"os/exec"
	"slices"
	"testing"
	"time"
)

// BenchmarkBareJob measures the per-job overhead every pipeline pays: a
// bare job (prepare_script, get_sources with GIT_STRATEGY=none,
// build_script, cleanup_file_variables) through config, prepare, run and
// cleanup, against `docker run --rm IMAGE true`, alternating the two in
// the same loop so both see the same machine load. It reports medians and
// their ratio (target: at most 2x).
func BenchmarkBareJob(b *testing.B) {
	var jobTimes, runTimes []time.Duration
	for i := 0; i < b.N; i++ {
		start := time.Now()
		out, err := exec.Command("docker", "run", "--rm", debianImage, "true").CombinedOutput()
		if err != nil {
			b.Fatalf("docker run: %v\n%s", err, out)
		}
		runTimes = append(runTimes, time.Since(start))

		jobTimes = append(jobTimes, bareJob(b))
	}
	jm, rm := median(jobTimes), median(runTimes)
	b.ReportMetric(float64(jm.Milliseconds()), "ms/bare-job")
	b.ReportMetric(float64(rm.Milliseconds()), "ms/docker-run")
	b.ReportMetric(float64(jm)/float64(rm), "bare-job/docker-run")
}

// bareJob runs one bare job through all four stages and returns its wall
// time as the runner would see it.
func bareJob(b *testing.B) time.Duration {
	b.Helper()
	j := newJob(b, jobSpec{})
	start := time.Now()
	mustPass(b, j.call("config"))
	mustPass(b, j.prepare())
	for _, st := range []struct{ stage, body string }{
		{"prepare_script", "echo Running on $(hostname)\n"},
		{"get_sources", "echo Skipping Git repository setup\n"},
		{"build_script", "echo hello\n"},
		{"cleanup_file_variables", "rm -f /builds/group/project.tmp/gitlab_runner_env\n"},
	} {
		mustPass(b, j.run(st.stage, runnerScript(st.body)))
	}
	mustPass(b, j.cleanup())
	return time.Since(start)
}

func mustPass(b *testing.B, r result) {
	b.Helper()
	if r.Code != 0 {
		b.Fatalf("driver call failed: %s", r)
	}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
