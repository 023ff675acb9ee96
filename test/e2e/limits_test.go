package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/warmcache/warmcache/internal/limits/cgroup"
	"github.com/warmcache/warmcache/internal/naming"
	"github.com/warmcache/warmcache/test/runnersim"
)

// The host runs cgroup v1 with Docker's cgroupfs driver: these tests read
// the job's cgroup where the kernel keeps it.
const cgroupRoot = "/sys/fs/cgroup"

// limitsConfig is the suite's config with a [limits] section appended.
func limitsConfig(section string) string {
	return defaultConfig + "\n[limits]\n" + section
}

// jobCgroup is the job's cgroup directory in one v1 controller.
func jobCgroup(j *job, controller string) string {
	key := naming.JobKey{Runner: "e2etoken", Instance: "127.0.0.1:42891", ProjectID: j.ID, JobID: j.ID} // newJob: project id = job id
	return filepath.Join(cgroupRoot, controller, "warmcache", key.Base())
}

func readInt(t *testing.T, path string) int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return n
}

// subdirs lists the cgroups directly below dir: one per container.
func subdirs(t *testing.T, dir string) int {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if e.IsDir() {
			n++
		}
	}
	return n
}

// TestLimitsOOM: a step that allocates past the job's memory limit fails
// as a build failure saying so plainly, with 137 as the job's exit code;
// the kill is read from the cgroup's OOM counter.
func TestLimitsOOM(t *testing.T) {
	j := newJob(t, jobSpec{Config: limitsConfig("[limits.job]\nmemory = \"512m\"\n")})
	if r := j.prepare(); r.Code != 0 {
		t.Fatalf("prepare: %s", r)
	}
	// tail keeps a line with no newline whole in memory: a real allocation.
	r := j.run("build_script", runnerScript("echo allocating\nhead -c 1G /dev/zero | tail > /dev/null\necho survived\n"))
	if r.Code != buildFailureCode {
		t.Fatalf("run build_script: want exit %d, got %s", buildFailureCode, r)
	}
	if !strings.Contains(r.Stderr, "warmcache: out of memory: limit 512 MiB, peak 512 MiB\n") {
		t.Errorf("job log lacks the out-of-memory line:\n%s", r)
	}
	if strings.Contains(r.Stdout, "survived") {
		t.Errorf("the allocation was not stopped:\n%s", r)
	}
	if got := j.BuildExitCode(); got != "137" {
		t.Errorf("BUILD_EXIT_CODE_FILE = %q, want 137", got)
	}
	// after_script still runs and ends the steps: the usage line counts the kill.
	after := j.run("after_script", runnerScript("echo after\n"))
	if after.Code != 0 || !regexp.MustCompile(`Job resources used: peak memory 512 MiB of 512 MiB, .*, 1 process\(es\) OOM-killed`).MatchString(after.Stderr) {
		t.Errorf("after_script: %s", after)
	}
}

// TestLimitsCPU: a CPU-bound step under cpus = "0.5" gets half a core,
// measured from the job cgroup's CPU accounting over the loop's own wall
// time. Two busy loops would take two cores if the limit did not hold.
//
// The cap is checked tightly from above. From below, 0.5 ± 0.15 holds
// when the cap was what held the job back, that is when the kernel
// throttled it in at least half the CFS periods; on a host busy with other
// work the job may get less than its cap, and then only a generous bound
// is asserted.
func TestLimitsCPU(t *testing.T) {
	j := newJob(t, jobSpec{Config: limitsConfig("[limits.job]\ncpus = \"0.5\"\n")})
	if r := j.prepare(); r.Code != 0 {
		t.Fatalf("prepare: %s", r)
	}
	usage := filepath.Join(jobCgroup(j, "cpuacct"), "cpuacct.usage")
	if q := readInt(t, filepath.Join(jobCgroup(j, "cpu"), "cpu.cfs_quota_us")); q != 50000 {
		t.Errorf("cpu.cfs_quota_us = %d, want 50000", q)
	}
	// The quota binds in the job's cgroup or in the build container's
	// (capped at the job's): the one the kernel throttles most. A
	// container's cgroup that appears meanwhile counts from zero.
	statsBefore := throttling(t, jobCgroup(j, "cpu"))
	before := readInt(t, usage)
	r := j.run("build_script", runnerScript(
		"start=$(date +%s%N)\n"+
			"timeout 3 sh -c 'while :; do :; done' &\n"+
			"timeout 3 sh -c 'while :; do :; done' &\n"+
			"wait || true\n"+
			"echo wall=$(( $(date +%s%N) - start ))\n"))
	if r.Code != 0 {
		t.Fatalf("run build_script: %s", r)
	}
	cpu := readInt(t, usage) - before
	var periods, throttled int64
	for dir, st := range throttling(t, jobCgroup(j, "cpu")) {
		p, th := st[0]-statsBefore[dir][0], st[1]-statsBefore[dir][1]
		if p > 0 && (periods == 0 || float64(th)/float64(p) > float64(throttled)/float64(periods)) {
			periods, throttled = p, th
		}
	}
	m := regexp.MustCompile(`wall=(\d+)`).FindStringSubmatch(r.Stdout)
	if m == nil {
		t.Fatalf("no wall time in %s", r)
	}
	wall, _ := strconv.ParseInt(m[1], 10, 64)
	cores := float64(cpu) / float64(wall)
	capped := periods > 0 && float64(throttled) >= 0.5*float64(periods)
	t.Logf("CPU %.2fs over %.2fs wall: %.2f cores; throttled in %d of %d periods", float64(cpu)/1e9, float64(wall)/1e9, cores, throttled, periods)
	switch {
	case cores > 0.65:
		t.Errorf("the job used %.2f cores, above its 0.5 (+0.15)", cores)
	case capped && cores < 0.35:
		t.Errorf("the job used %.2f cores while held at its cap, want 0.5 ± 0.15", cores)
	case cores < 0.1:
		t.Errorf("the job used %.2f cores: it barely ran", cores)
	}
	// The usage line counts the throttling wherever the kernel did it,
	// mostly in the build container's cgroup.
	after := j.run("after_script", runnerScript("true\n"))
	m = regexp.MustCompile(`(?m)^Job resources used: .*, throttled ([0-9.]+)s, `).FindStringSubmatch(after.Stderr)
	if after.Code != 0 || m == nil {
		t.Fatalf("after_script lacks the usage line: %s", after)
	}
	t.Logf("usage line: throttled %ss", m[1])
	if th, _ := strconv.ParseFloat(m[1], 64); capped && th < 0.1 {
		t.Errorf("usage line says throttled %ss, but the kernel throttled the job in %d of %d periods", m[1], throttled, periods)
	}
}

// throttling reads nr_periods and nr_throttled of a v1 cpu cgroup and of
// each cgroup below it (the job's containers).
func throttling(t *testing.T, dir string) map[string][2]int64 {
	t.Helper()
	out := map[string][2]int64{}
	dirs := []string{dir}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() {
			dirs = append(dirs, filepath.Join(dir, e.Name()))
		}
	}
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "cpu.stat"))
		if err != nil {
			t.Fatal(err)
		}
		var st [2]int64
		for _, line := range strings.Split(string(b), "\n") {
			k, v, _ := strings.Cut(line, " ")
			n, _ := strconv.ParseInt(v, 10, 64)
			switch k {
			case "nr_periods":
				st[0] = n
			case "nr_throttled":
				st[1] = n
			}
		}
		out[d] = st
	}
	return out
}

// TestLimitsForkBomb: a process flood under pids_limit fails the job,
// stays within the limit, and the host can still start processes.
func TestLimitsForkBomb(t *testing.T) {
	j := newJob(t, jobSpec{Config: limitsConfig("[limits.job]\npids_limit = 64\n")})
	if r := j.prepare(); r.Code != 0 {
		t.Fatalf("prepare: %s", r)
	}
	pids := jobCgroup(j, "pids")
	if n := readInt(t, filepath.Join(pids, "pids.max")); n != 64 {
		t.Errorf("pids.max = %d, want 64", n)
	}
	// Bounded: at most 500 processes of 60 s each, removed at cleanup.
	// dash does not retry a failed fork, so the step fails at once.
	r := j.run("build_script", runnerScript("sh -c 'i=0; while [ $i -lt 500 ]; do sleep 60 & i=$((i+1)); done; wait'\necho not reached\n"))
	if r.Code != buildFailureCode || strings.Contains(r.Stdout, "not reached") {
		t.Fatalf("run build_script: want the build to fail, got %s", r)
	}
	if !strings.Contains(r.Stderr, "Cannot fork") {
		t.Errorf("job log does not show the failed fork:\n%s", r)
	}
	if n := readInt(t, filepath.Join(pids, "pids.current")); n > 64 {
		t.Errorf("pids.current = %d, above the limit", n)
	}
	if err := exec.Command("true").Run(); err != nil {
		t.Errorf("the host cannot start a process: %v", err)
	}
	if r := j.cleanup(); r.Code != 0 {
		t.Fatalf("cleanup: %s", r)
	}
	if err := gone(pids); !os.IsNotExist(err) {
		t.Errorf("the job's cgroup outlived cleanup: %v", err)
	}
}

// gone polls, for removalBound at most, until path no longer exists, and
// returns the last Stat's error: a job's cgroup goes last in the detached
// process its cleanup started, after the job's containers.
func gone(path string) error {
	for deadline := time.Now().Add(removalBound); ; time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(path); err != nil || time.Now().After(deadline) {
			return err
		}
	}
}

// TestLimitsRequestClamped: a job asking for more than the admin allows
// gets the maximum and the job log says so; what it gets is what the
// kernel enforces, and every container of the job (helper, build and a
// service) sits in its cgroup.
func TestLimitsRequestClamped(t *testing.T) {
	j := newJob(t, jobSpec{
		Config:   limitsConfig("[limits.job]\ncpus = \"1\"\nmemory = \"256m\"\n[limits.services]\nmemory = \"64m\"\n"),
		Vars:     map[string]string{"WARMCACHE_CPUS": "4", "WARMCACHE_MEMORY": "128m"},
		Services: []runnersim.Service{{Name: httpdImage}},
	})
	r := j.prepare()
	if r.Code != 0 {
		t.Fatalf("prepare: %s", r)
	}
	want := "Resource limits for this job: 1 CPU, 128 MiB memory (WARMCACHE_CPUS=4 is above the maximum of 1 CPU: clamped)\n"
	if !strings.Contains(r.Stderr, want) {
		t.Errorf("prepare's job log lacks %q:\n%s", want, r)
	}
	if q := readInt(t, filepath.Join(jobCgroup(j, "cpu"), "cpu.cfs_quota_us")); q != 100000 {
		t.Errorf("cpu.cfs_quota_us = %d, want 100000", q)
	}
	mem := jobCgroup(j, "memory")
	if n := readInt(t, filepath.Join(mem, "memory.limit_in_bytes")); n != 128<<20 {
		t.Errorf("memory.limit_in_bytes = %d, want %d", n, 128<<20)
	}
	// The build container starts in the background, so wait for it
	// through a stage, as the runner would.
	if r := j.run("build_script", runnerScript("true\n")); r.Code != 0 {
		t.Fatalf("run: %s", r)
	}
	if n := subdirs(t, mem); n != 3 {
		t.Errorf("the job's cgroup holds %d containers, want helper, build and the service", n)
	}
	// The service's own limit sits below the job's.
	found := false
	entries, _ := os.ReadDir(mem)
	for _, e := range entries {
		if e.IsDir() && readInt(t, filepath.Join(mem, e.Name(), "memory.limit_in_bytes")) == 64<<20 {
			found = true
		}
	}
	if !found {
		t.Errorf("no container of the job has the service's 64 MiB limit")
	}
}

// TestLimitsBadRequest: a request the driver cannot read fails the job as
// the job's own error, naming the variable.
func TestLimitsBadRequest(t *testing.T) {
	j := newJob(t, jobSpec{Vars: map[string]string{"WARMCACHE_MEMORY": "lots"}})
	r := j.prepare()
	want := `warmcache: bad resource request: WARMCACHE_MEMORY: "lots" is not a size such as "512m" or "2g"` + "\n"
	if r.Code != buildFailureCode || !strings.HasSuffix(r.Stderr, want) {
		t.Errorf("prepare: want exit %d ending in %q, got %s", buildFailureCode, want, r)
	}
}

// TestLimitsUsageLine: a passing job gets one usage line, after its last
// step stage (after_script here), counting what the build container used
// before a restart, and cleanup removes the job's cgroup in every
// hierarchy.
func TestLimitsUsageLine(t *testing.T) {
	j := newJob(t, jobSpec{Config: limitsConfig("[limits.job]\nmemory = \"512m\"\n")})
	if r := j.prepare(); r.Code != 0 {
		t.Fatalf("prepare: %s", r)
	}
	build := j.run("build_script", runnerScript("head -c 100m /dev/zero | tail > /dev/null\n"))
	if build.Code != 0 || strings.Contains(build.Stderr, "Job resources used") {
		t.Fatalf("build_script (the job has an after_script, which ends the steps): %s", build)
	}
	// The accounting is the job's, not a container's: it survives the
	// build container's restart between two stages.
	name := naming.JobKey{Runner: "e2etoken", Instance: "127.0.0.1:42891", ProjectID: j.ID, JobID: j.ID}.Name(naming.KindBuild)
	if out, err := exec.Command("docker", "restart", "-t", "0", name).CombinedOutput(); err != nil {
		t.Fatalf("docker restart: %v\n%s", err, out)
	}
	after := j.run("after_script", runnerScript("echo after\n"))
	m := regexp.MustCompile(`(?m)^Job resources used: peak memory (\d+) MiB of 512 MiB, CPU [0-9.]+s, throttled [0-9.]+s, nothing OOM-killed$`).FindStringSubmatch(after.Stderr)
	if after.Code != 0 || m == nil {
		t.Fatalf("after_script lacks the usage line: %s", after)
	}
	if peak, _ := strconv.Atoi(m[1]); peak < 100 || peak > 512 {
		t.Errorf("peak memory %d MiB, want 100..512 (tail held 100 MiB)", peak)
	}
	if strings.Count(after.Stderr, "Job resources used") != 1 {
		t.Errorf("more than one usage line: %s", after)
	}
	if r := j.run("archive_cache", runnerScript("true\n")); strings.Contains(r.Stderr, "Job resources used") {
		t.Errorf("a usage line after the steps: %s", r)
	}
	if r := j.cleanup(); r.Code != 0 {
		t.Fatalf("cleanup: %s", r)
	}
	for _, c := range []string{"memory", "cpu", "cpuacct", "pids", "cpuset", "blkio", "devices", "freezer", "systemd"} {
		if err := gone(jobCgroup(j, c)); !os.IsNotExist(err) {
			t.Errorf("%s cgroup of the job outlived cleanup: %v", c, err)
		}
	}
	if r := j.cleanup(); r.Code != 0 {
		t.Errorf("second cleanup: %s", r)
	}
}

// TestLimitsReapOrphanCgroup: `warmcache reap` removes the cgroup of a job
// that left nothing in the engine (a prepare or cleanup killed half-way)
// once it is older than reap.grace, in every hierarchy, and leaves a young
// one alone: a prepare makes the cgroup just before its containers.
func TestLimitsReapOrphanCgroup(t *testing.T) {
	j := newJob(t, jobSpec{Config: defaultConfig + "[reap]\nat_prepare = false\n"})
	host := cgroup.Detect("cgroupfs")
	prefix := fmt.Sprintf("warmcache-e2eorphan-000000-p%d-c0-j", os.Getpid())
	old, young := prefix+"1", prefix+"2"
	for _, base := range []string{old, young} {
		if err := host.Create(base, cgroup.Limits{Memory: 64 << 20, PidsLimit: 16}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := host.Remove(base); err != nil {
				t.Errorf("removing test cgroup: %v", err)
			}
		})
	}
	dir := func(controller, base string) string { return filepath.Join(cgroupRoot, controller, "warmcache", base) }
	// The reaper dates a cgroup by its memory directory. (Made old only
	// now: the prepares of concurrent jobs on this host reap it too.)
	hoursAgo := time.Now().Add(-3 * time.Hour)
	if err := os.Chtimes(dir("memory", old), hoursAgo, hoursAgo); err != nil {
		t.Fatal(err)
	}
	if r := j.call("reap", "--dry-run"); r.Code != 0 || !strings.Contains(r.Stdout, "Would reap the cgroup of "+old+"\n") {
		t.Errorf("reap --dry-run: %s", r)
	}
	if _, err := os.Stat(dir("memory", old)); err != nil {
		t.Fatalf("--dry-run removed the cgroup: %v", err)
	}
	r := j.call("reap")
	if r.Code != 0 || !strings.Contains(r.Stdout, "Reaped the cgroup of "+old+"\n") || strings.Contains(r.Stdout, young) {
		t.Fatalf("reap: %s", r)
	}
	for _, c := range []string{"memory", "pids", "cpu", "freezer"} {
		if _, err := os.Stat(dir(c, old)); !os.IsNotExist(err) {
			t.Errorf("the old orphan's %s cgroup survived the reaper: %v", c, err)
		}
	}
	if _, err := os.Stat(dir("memory", young)); err != nil {
		t.Errorf("the reaper removed a young cgroup: %v", err)
	}
}
