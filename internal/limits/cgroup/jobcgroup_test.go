package cgroup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

const base = "warmcache-e2etoken-1a2b3c-p42-c0-j7"

func TestNames(t *testing.T) {
	for _, tc := range []struct {
		systemd       bool
		parent, group string
	}{
		{false, "/warmcache/" + base, "/warmcache/" + base},
		// One level below warmcache.slice whatever dashes the base has.
		{true, "warmcache-e2etoken_1a2b3c_p42_c0_j7.slice", "/warmcache.slice/warmcache-e2etoken_1a2b3c_p42_c0_j7.slice"},
	} {
		h := Host{Systemd: tc.systemd, Root: "/sys/fs/cgroup"}
		if got := h.Parent(base); got != tc.parent {
			t.Errorf("Parent(systemd=%v) = %q, want %q", tc.systemd, got, tc.parent)
		}
		if got := h.group(base); got != tc.group {
			t.Errorf("group(systemd=%v) = %q, want %q", tc.systemd, got, tc.group)
		}
		back, ok := baseOf(filepath.Base(tc.group), tc.systemd)
		if !ok || back != base {
			t.Errorf("baseOf(%q) = %q, %v; want %q", filepath.Base(tc.group), back, ok, base)
		}
	}
	for _, name := range []string{"docker", "user.slice", "warmcache.slice"} {
		for _, sd := range []bool{false, true} {
			if b, ok := baseOf(name, sd); ok {
				t.Errorf("baseOf(%q, %v) = %q: not a job cgroup", name, sd, b)
			}
		}
	}
}

// fakeV2 lays out the files of a cgroup v2 root the library writes to:
// the kernel creates them, a temp dir needs them made.
func fakeV2(t *testing.T) Host {
	t.Helper()
	root := t.TempDir()
	for _, dir := range []string{root, filepath.Join(root, "warmcache")} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(dir, "cgroup.subtree_control"), "")
	}
	return Host{Unified: true, Root: root}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestV2CreateUsageRemove(t *testing.T) {
	h := fakeV2(t)
	if err := h.Create(base, Limits{NanoCPUs: 500_000_000, CpusetCpus: "0-1", Memory: 512 << 20, PidsLimit: 64}); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(h.Root, "warmcache", base)
	for file, want := range map[string]string{
		"cpu.max":     "50000 100000",
		"cpuset.cpus": "0-1",
		"memory.max":  "536870912",
		"pids.max":    "64",
	} {
		if got := read(t, filepath.Join(dir, file)); got != want {
			t.Errorf("%s = %q, want %q", file, got, want)
		}
	}
	// Controllers are enabled on the way down, for the containers' cgroups.
	for _, p := range []string{h.Root, filepath.Join(h.Root, "warmcache")} {
		got := strings.Fields(read(t, filepath.Join(p, "cgroup.subtree_control")))
		for _, c := range []string{"+cpu", "+memory", "+pids"} {
			if !slices.Contains(got, c) {
				t.Errorf("%s/cgroup.subtree_control = %v, missing %s", p, got, c)
			}
		}
	}

	// What the kernel would report after a build container (with a lower
	// limit of its own) lost a process to the OOM killer.
	write(t, filepath.Join(dir, "cpu.stat"), "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\nnr_periods 50\nnr_throttled 20\nthrottled_usec 1200000\n")
	write(t, filepath.Join(dir, "memory.peak"), "400000000\n")
	write(t, filepath.Join(dir, "memory.events"), "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
	ctr := filepath.Join(dir, "docker-abc.scope")
	write(t, filepath.Join(ctr, "memory.max"), "268435456\n")
	write(t, filepath.Join(ctr, "memory.peak"), "268435456\n")
	write(t, filepath.Join(ctr, "memory.events"), "max 3\noom 1\noom_kill 1\n")
	write(t, filepath.Join(ctr, "cgroup.procs"), "")
	write(t, filepath.Join(dir, "cgroup.procs"), "")
	// The container's own quota held it back too; the kernel counts that
	// in the container's cgroup only.
	write(t, filepath.Join(ctr, "cpu.stat"), "usage_usec 2000000\nnr_periods 40\nnr_throttled 30\nthrottled_usec 3000000\n")
	write(t, filepath.Join(dir, "memory.stat"), "anon 1000\n")
	write(t, filepath.Join(ctr, "memory.stat"), "anon 1000\n")

	u, err := h.Usage(base)
	if err != nil {
		t.Fatal(err)
	}
	want := Usage{PeakMemory: 400000000, MemoryLimit: 512 << 20, CPU: 2500 * time.Millisecond, Throttled: 3 * time.Second,
		OOMKills: 1, OOMLimit: 256 << 20, OOMPeak: 256 << 20}
	if u != want {
		t.Errorf("Usage = %+v\nwant    %+v", u, want)
	}

	jobs, err := h.Jobs()
	if err != nil || len(jobs) != 1 || jobs[0].Base != base {
		t.Errorf("Jobs() = %+v, %v; want the one job", jobs, err)
	}
	if err := h.Remove(base); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("job cgroup still there after Remove: %v", err)
	}
	if err := h.Remove(base); err != nil {
		t.Errorf("second Remove: %v", err)
	}
	if _, err := h.Usage(base); err == nil {
		t.Error("Usage of a removed cgroup succeeded")
	}
}

func TestV2RemoveRefusesLiveProcesses(t *testing.T) {
	h := fakeV2(t)
	if err := h.Create(base, Limits{Memory: 64 << 20}); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(h.Root, "warmcache", base)
	write(t, filepath.Join(dir, "docker-x.scope", "cgroup.procs"), "1234\n")
	if err := h.Remove(base); err == nil {
		t.Fatal("Remove succeeded while a container's process lives")
	}
	if _, err := os.Stat(dir); err != nil {
		t.Errorf("cgroup gone after a refused Remove: %v", err)
	}
}

func TestV2JobOOMAtJobLimit(t *testing.T) {
	h := fakeV2(t)
	if err := h.Create(base, Limits{Memory: 512 << 20}); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(h.Root, "warmcache", base)
	write(t, filepath.Join(dir, "cpu.stat"), "usage_usec 10\n")
	write(t, filepath.Join(dir, "memory.peak"), "536870912\n")
	write(t, filepath.Join(dir, "memory.events"), "oom_kill 2\n")
	// The container has no limit of its own: the job's was hit.
	ctr := filepath.Join(dir, "docker-abc.scope")
	write(t, filepath.Join(ctr, "memory.max"), "max\n")
	write(t, filepath.Join(ctr, "memory.peak"), "536000000\n")
	write(t, filepath.Join(ctr, "memory.events"), "oom_kill 2\n")
	write(t, filepath.Join(dir, "memory.stat"), "anon 1000\n")
	write(t, filepath.Join(ctr, "memory.stat"), "anon 1000\n")
	u, err := h.Usage(base)
	if err != nil {
		t.Fatal(err)
	}
	if u.OOMKills != 2 || u.OOMLimit != 512<<20 || u.OOMPeak != 512<<20 {
		t.Errorf("Usage = %+v; want 2 kills at the job's limit and peak", u)
	}
}

// The throttling figure is the job's own or its containers' together,
// whichever is higher: the kernel counts a process held back by both
// quotas in both.
func TestThrottled(t *testing.T) {
	dir := t.TempDir()
	stat := func(rel, ns string) {
		write(t, filepath.Join(dir, rel, "cpu.stat"), "nr_periods 10\nnr_throttled 5\nthrottled_time "+ns+"\n")
	}
	stat(".", "1000")
	stat("a", "500")
	stat("b", "800")
	stat("b/nested", "9000")                              // within b: counted in b already
	write(t, filepath.Join(dir, "c", "cgroup.procs"), "") // no cpu.stat yet
	if got, err := throttled(dir, "throttled_time"); got != 1300 || err != nil {
		t.Errorf("throttled = %d, %v; want the containers' 1300", got, err)
	}
	stat(".", "2000")
	if got, err := throttled(dir, "throttled_time"); got != 2000 || err != nil {
		t.Errorf("throttled = %d, %v; want the job's 2000", got, err)
	}
	write(t, filepath.Join(dir, "a", "cpu.stat"), "throttled_time lots\n")
	if _, err := throttled(dir, "throttled_time"); err == nil {
		t.Error("an unreadable counter went unnoticed")
	}
}

// A tree this process may not change (a non-root runner, a rootless
// engine, a read-only mount) is no job's failure: Create says it is
// unsupported, and the job goes on with its containers' own limits.
func TestCreateNotPermitted(t *testing.T) {
	// sysfs refuses a new directory at its top, to root as well (EPERM;
	// EROFS where it is mounted read-only): a tree the kernel will not
	// let this process write, whoever runs the test.
	h := Host{Unified: true, Root: "/sys"}
	err := h.Create(base, Limits{Memory: 1 << 30})
	if !errors.Is(err, ErrUnsupported) {
		t.Errorf("Create = %v, want ErrUnsupported", err)
	}
	if err := h.Writable(); !notPermitted(err) {
		t.Errorf("Writable = %v, want a permission error", err)
	}
	for err, want := range map[error]bool{
		&fs.PathError{Op: "mkdir", Path: "/x", Err: syscall.EACCES}:  true,
		&fs.PathError{Op: "mkdir", Path: "/x", Err: syscall.EPERM}:   true,
		fmt.Errorf("writing: %w", &fs.PathError{Err: syscall.EROFS}): true,
		&fs.PathError{Op: "write", Path: "/x", Err: syscall.ENOSPC}:  false,
		&fs.PathError{Op: "open", Path: "/x", Err: syscall.ENOENT}:   false,
		errors.New("cgroup: subsystem does not exist"):               false,
	} {
		if got := notPermitted(err); got != want {
			t.Errorf("notPermitted(%v) = %v, want %v", err, got, want)
		}
	}
}

// Writable makes its probe where the jobs' cgroups go and leaves nothing.
func TestWritable(t *testing.T) {
	h := fakeV2(t)
	if err := h.Writable(); err != nil {
		t.Fatalf("Writable = %v", err)
	}
	entries, err := os.ReadDir(filepath.Join(h.Root, "warmcache"))
	if err != nil || len(entries) != 1 { // cgroup.subtree_control
		t.Errorf("probe left behind: %v, %v", entries, err)
	}
}

func TestQuotaToNano(t *testing.T) {
	for _, tc := range []struct {
		q, p string
		want int64
	}{
		{"50000", "100000", 500_000_000},
		{"200000", "100000", 2_000_000_000},
		{"-1", "100000", 0},
		{"max", "100000", 0},
		{"1", "0", 0},
	} {
		if got := quotaToNano(tc.q, tc.p); got != tc.want {
			t.Errorf("quotaToNano(%s, %s) = %d, want %d", tc.q, tc.p, got, tc.want)
		}
	}
}

// Under cgroup v1 with systemd, the job's slice is systemd's: warmcache
// reads its accounting but neither lists nor removes it.
func TestV1SystemdSliceLeftToSystemd(t *testing.T) {
	h := Host{Systemd: true, Root: t.TempDir()}
	slice := filepath.Join(h.Root, "memory", "warmcache.slice", sliceName(base))
	write(t, filepath.Join(slice, "memory.stat"), "")
	if err := h.Create(base, Limits{Memory: 1 << 30}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Create = %v, want ErrUnsupported", err)
	}
	if jobs, err := h.Jobs(); err != nil || len(jobs) != 0 {
		t.Errorf("Jobs() = %v, %v; want none", jobs, err)
	}
	if err := h.Remove(base); err != nil {
		t.Errorf("Remove = %v", err)
	}
	if _, err := os.Stat(slice); err != nil {
		t.Errorf("Remove touched systemd's slice: %v", err)
	}
}

// TestV1SyntheticTree runs the v1 paths against hand-made hierarchies (the
// end-to-end suite runs them against the kernel's): limits written where
// the kernel reads them, a container's OOM kill found below the job, and
// removal in every hierarchy.
func TestV1SyntheticTree(t *testing.T) {
	h := Host{Root: t.TempDir()}
	for _, c := range []string{"memory", "pids", "cpu", "cpuacct", "freezer"} {
		write(t, filepath.Join(h.Root, c, "cgroup.procs"), "")
	}
	if err := h.Create(base, Limits{NanoCPUs: 1.5e9, Memory: 512 << 20, PidsLimit: 64}); err != nil {
		t.Fatal(err)
	}
	dir := func(c string, rest ...string) string {
		return filepath.Join(append([]string{h.Root, c, "warmcache", base}, rest...)...)
	}
	for path, want := range map[string]string{
		dir("memory", "memory.limit_in_bytes"): "536870912",
		dir("pids", "pids.max"):                "64",
		dir("cpu", "cpu.cfs_quota_us"):         "150000",
		dir("cpu", "cpu.cfs_period_us"):        "100000",
	} {
		if got := read(t, path); got != want {
			t.Errorf("%s = %q, want %q", path, got, want)
		}
	}
	if _, err := os.Stat(dir("freezer")); err != nil {
		t.Errorf("not created in every hierarchy: %v", err)
	}

	// The kernel's view after the build container (its own limit 256 MiB)
	// lost a process to the OOM killer: v1 counts it in the container only.
	write(t, dir("cpuacct", "cpuacct.usage"), "3000000000\n")
	write(t, dir("cpuacct", "cpuacct.usage_percpu"), "2000000000 1000000000\n")
	write(t, dir("cpuacct", "cpuacct.stat"), "user 250\nsystem 50\n")
	write(t, dir("cpu", "cpu.stat"), "nr_periods 30\nnr_throttled 20\nthrottled_time 700000000\n")
	// The build container has the job's quota as its own: the kernel
	// throttles it there, and counts that in its cgroup, not the job's.
	write(t, dir("cpu", "ctr", "cpu.stat"), "nr_periods 30\nnr_throttled 25\nthrottled_time 2000000000\n")
	memory := func(d, limit, peak, kills string) {
		write(t, filepath.Join(d, "memory.stat"), "cache 0\nrss 1\n")
		write(t, filepath.Join(d, "memory.limit_in_bytes"), limit)
		write(t, filepath.Join(d, "memory.max_usage_in_bytes"), peak)
		write(t, filepath.Join(d, "memory.usage_in_bytes"), "1000")
		write(t, filepath.Join(d, "memory.failcnt"), "0")
		write(t, filepath.Join(d, "memory.oom_control"), "oom_kill_disable 0\nunder_oom 0\noom_kill "+kills+"\n")
		write(t, filepath.Join(d, "cgroup.procs"), "")
	}
	memory(dir("memory"), "536870912\n", "300000000\n", "0")
	memory(dir("memory", "ctr"), "268435456\n", "268435456\n", "1")
	u, err := h.Usage(base)
	if err != nil {
		t.Fatal(err)
	}
	want := Usage{PeakMemory: 300000000, MemoryLimit: 512 << 20, CPU: 3 * time.Second, Throttled: 2 * time.Second,
		OOMKills: 1, OOMLimit: 256 << 20, OOMPeak: 256 << 20}
	if u != want {
		t.Errorf("Usage = %+v\nwant    %+v", u, want)
	}

	if err := h.Remove(base); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"memory", "pids", "cpu", "cpuacct", "freezer"} {
		if _, err := os.Stat(dir(c)); !os.IsNotExist(err) {
			t.Errorf("%s cgroup left after Remove: %v", c, err)
		}
	}
	if err := h.Remove(base); err != nil {
		t.Errorf("second Remove: %v", err)
	}
}
