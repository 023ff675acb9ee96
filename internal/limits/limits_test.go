package limits

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestNanoCPUs(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		err  string
	}{
		{"", 0, ""},
		{"1.5", 1_500_000_000, ""},
		{" 0.5 ", 500_000_000, ""},
		{"2", 2_000_000_000, ""},
		{"0.01", 10_000_000, ""},
		{"0.333333333", 333_333_333, ""},
		{"0", 0, `"0" is less than 0.01 CPUs`},
		{"-1", 0, `"-1" is less than 0.01 CPUs`},
		{"0.001", 0, `"0.001" is less than 0.01 CPUs`},
		{"5000", 0, `"5000" is more than 4096 CPUs`},
		{"one", 0, `"one" is not a number of CPUs such as "1.5"`},
		{"NaN", 0, `"NaN" is not a number of CPUs such as "1.5"`},
		{"1,5", 0, `"1,5" is not a number of CPUs such as "1.5"`},
	} {
		got, err := NanoCPUs(tc.in)
		if got != tc.want || errString(err) != tc.err {
			t.Errorf("NanoCPUs(%q) = %d, %q; want %d, %q", tc.in, got, errString(err), tc.want, tc.err)
		}
	}
}

func TestMemoryBytes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		err  string
	}{
		{"", 0, ""},
		{"512m", 512 << 20, ""},
		{"2g", 2 << 30, ""},
		{"2G", 2 << 30, ""},
		{"1.5GiB", 3 << 29, ""},
		{"64kb", 64 << 10, ""},
		{"1t", 1 << 40, ""},
		{"1048576", 1 << 20, ""},
		{"100b", 100, ""},
		{"12 m", 12 << 20, ""},
		{"20GB", 20 << 30, ""}, // binary whatever the spelling, as Docker reads it
		{"1p", 1 << 50, ""},
		{"1ib", 0, `"1ib" is not a size such as "512m" or "2g"`},
		{"1mbb", 0, `"1mbb" is not a size such as "512m" or "2g"`},
		{"-1m", 0, `"-1m" is not a size such as "512m" or "2g"`},
		{"+1m", 0, `"+1m" is not a size such as "512m" or "2g"`},
		{"2x", 0, `"2x" is not a size such as "512m" or "2g"`},
		{"g", 0, `"g" is not a size such as "512m" or "2g"`},
		{"lots", 0, `"lots" is not a size such as "512m" or "2g"`},
		{"99999999t", 0, `"99999999t" is too large`},
	} {
		got, err := MemoryBytes(tc.in)
		if got != tc.want || errString(err) != tc.err {
			t.Errorf("MemoryBytes(%q) = %d, %q; want %d, %q", tc.in, got, errString(err), tc.want, tc.err)
		}
	}
}

func TestFormat(t *testing.T) {
	for in, want := range map[int64]string{0: "unlimited", 512 << 20: "512 MiB", 512<<20 - 8192: "512 MiB", 1 << 30: "1 GiB", 3 << 29: "1.5 GiB", 12 << 30: "12 GiB", 100 << 10: "0 MiB", 600 << 10: "1 MiB"} {
		if got := MiB(in); got != want {
			t.Errorf("MiB(%d) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[int64]string{0: "unlimited CPUs", 500_000_000: "0.5 CPUs", 1e9: "1 CPU", 2e9: "2 CPUs", 333_333_333: "0.33 CPUs"} {
		if got := CPUs(in); got != want {
			t.Errorf("CPUs(%d) = %q, want %q", in, got, want)
		}
	}
}

func TestProblems(t *testing.T) {
	c := Default()
	c.ConcurrentJobs = 0
	c.Job = JobSet{CPUs: "x", CpusetCpus: "3-1", Memory: "1k", PidsLimit: -1}
	c.Build = Set{MemorySwap: "1g"}
	c.Helper = Set{Memory: "1g", MemorySwap: "512m", MemoryReservation: "2g", ShmSize: "big"}
	c.Services = Set{CpusetCpus: "a"}
	c.Projects = []Project{{Path: "[", Build: Set{CPUs: "0"}}, {}, {ID: -4, Path: "x"}}
	want := []string{
		"limits.concurrent_jobs: 0 is out of range 1..1024",
		`limits.job.cpus: "x" is not a number of CPUs such as "1.5"`,
		`limits.job.cpuset_cpus: "3-1" is not a CPU list such as "0-3,6"`,
		`limits.job.memory: "1k" is less than the engine's minimum of 6m`,
		"limits.job.pids_limit: -1 is out of range 0..4194304 (0 = no limit)",
		"limits.build.memory_swap: needs memory to be set as well",
		`limits.helper.shm_size: "big" is not a size such as "512m" or "2g"`,
		"limits.helper.memory_swap: 512m is less than memory 1g (it counts memory plus swap)",
		"limits.helper.memory_reservation: 2g is more than memory 1g",
		`limits.services.cpuset_cpus: "a" is not a CPU list such as "0-3,6"`,
		`limits.project[0].path: "[" is not a valid glob`,
		`limits.project[0].build.cpus: "0" is less than 0.01 CPUs`,
		"limits.project[1]: set path, id or both",
		"limits.project[2].id: -4 is not a project id",
	}
	if got := c.Problems(); !reflect.DeepEqual(got, want) {
		t.Errorf("Problems() =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	ok := Default()
	ok.Job = JobSet{CPUs: "2", CpusetCpus: "0-1,3", Memory: "4g", PidsLimit: 512}
	ok.Build = Set{Memory: "1g", MemorySwap: "-1", MemoryReservation: "512m", ShmSize: "64m"}
	ok.Projects = []Project{{Path: "group/*"}, {ID: 7}}
	if p := ok.Problems(); len(p) != 0 {
		t.Errorf("valid config: %v", p)
	}
}

// A project override is checked as a matching job gets it: on top of the
// general sets, under its own key.
func TestProblemsOfMergedSets(t *testing.T) {
	c := Default()
	c.Job = JobSet{CpusetCpus: "0-1"}
	c.Build = Set{Memory: "1g", MemorySwap: "2g", CpusetCpus: "2"}
	c.Helper = Set{MemorySwap: "1g"}
	c.Projects = []Project{
		// Valid on its own keys, but above the general memory_swap.
		{Path: "big/*", Build: Set{Memory: "4g", CpusetCpus: "1"}},
		// Needs the general memory to be valid: it is.
		{ID: 7, Build: Set{MemorySwap: "4g", CpusetCpus: "1"}},
		// A wider job cpuset makes the general build cpuset fit; its own
		// services cpuset does not.
		{ID: 8, Job: JobSet{CpusetCpus: "0-1,2-3"}, Services: Set{CpusetCpus: "1-4"}},
	}
	want := []string{
		"limits.helper.memory_swap: needs memory to be set as well",
		`limits.build.cpuset_cpus: "2" is not within the job's cpuset_cpus "0-1"`,
		"limits.project[0].build.memory_swap: 2g is less than memory 4g (it counts memory plus swap)",
		`limits.project[2].services.cpuset_cpus: "1-4" is not within the job's cpuset_cpus "0-1,2-3"`,
	}
	if got := c.Problems(); !reflect.DeepEqual(got, want) {
		t.Errorf("Problems() =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Should one slip through, the job's error names the override's key.
	_, err := Resolve(c, "big/app", 1, Host{}, Request{})
	if err == nil || !strings.Contains(err.Error(), "limits.project[0].build.memory_swap: 2g is less than memory 4g") {
		t.Errorf("Resolve error %v, want one naming limits.project[0].build.memory_swap", err)
	}
}

func TestCpusetWithin(t *testing.T) {
	for _, tc := range []struct {
		inner, outer string
		want         bool
	}{
		{"", "0-1", true},
		{"3", "", true},
		{"0-1", "0-3", true},
		{"1-2", "0-1,2-3", true},
		{"0,2", "0-2", true},
		{"2-3", "0-2", false},
		{"0,4", "0-3,5", false},
		{"x", "0", true}, // reported as unreadable on its own
	} {
		if got := cpusetWithin(tc.inner, tc.outer); got != tc.want {
			t.Errorf("cpusetWithin(%q, %q) = %v, want %v", tc.inner, tc.outer, got, tc.want)
		}
	}
}

func TestDefaultShare(t *testing.T) {
	for _, tc := range []struct {
		host       Host
		concurrent int
		want       Host
	}{
		{Host{2e9, 24 << 30}, 1, Host{2e9, 24 << 30}},
		{Host{2e9, 24 << 30}, 4, Host{500_000_000, 6 << 30}},
		{Host{2e9, 1<<30 + 12345}, 3, Host{660_000_000, 341 << 20}},
		{Host{}, 2, Host{}},
		{Host{1e9, 1 << 30}, 0, Host{1e9, 1 << 30}},
	} {
		if got := DefaultShare(tc.host, tc.concurrent); got != tc.want {
			t.Errorf("DefaultShare(%+v, %d) = %+v, want %+v", tc.host, tc.concurrent, got, tc.want)
		}
	}
}

func TestResolve(t *testing.T) {
	host := Host{NanoCPUs: 2e9, Memory: 8 << 30}
	base := Default()
	base.ConcurrentJobs = 2
	base.Build = Set{Memory: "2g", ShmSize: "64m"}
	base.Helper = Set{CPUs: "0.5"}
	admin := base
	admin.Job = JobSet{CPUs: "1.5", Memory: "2g", PidsLimit: 256}
	admin.Projects = []Project{
		{ID: 42, Job: JobSet{Memory: "6g"}},
		{ID: 9, Path: "big/*", Job: JobSet{CPUs: "0.25"}},
		{Path: "big/*", Job: JobSet{CPUs: "2"}, Build: Set{Memory: "4g"}},
		{Path: "deep/**", Job: JobSet{CPUs: "0.5"}},
	}
	for _, tc := range []struct {
		name    string
		cfg     Config
		path    string
		id      int64
		req     Request
		job     Job
		build   Container
		granted string
	}{
		{"default share", base, "g/p", 1, Request{}, Job{NanoCPUs: 1e9, Memory: 4 << 30},
			Container{Memory: 2 << 30, ShmSize: 64 << 20},
			"Resource limits for this job: 1 CPU, 4 GiB memory"},
		{"admin maximum", admin, "g/p", 1, Request{}, Job{NanoCPUs: 1.5e9, Memory: 2 << 30, PidsLimit: 256},
			Container{Memory: 2 << 30, ShmSize: 64 << 20},
			"Resource limits for this job: 1.5 CPUs, 2 GiB memory, 256 processes"},
		{"request below maximum", admin, "g/p", 1, Request{CPUs: "0.5", Memory: "512m"}, Job{NanoCPUs: 5e8, Memory: 512 << 20, PidsLimit: 256},
			Container{Memory: 2 << 30, ShmSize: 64 << 20},
			"Resource limits for this job: 0.5 CPUs, 512 MiB memory, 256 processes"},
		{"request clamped", admin, "g/p", 1, Request{CPUs: "4", Memory: "16g"}, Job{NanoCPUs: 1.5e9, Memory: 2 << 30, PidsLimit: 256},
			Container{Memory: 2 << 30, ShmSize: 64 << 20},
			"Resource limits for this job: 1.5 CPUs, 2 GiB memory, 256 processes (WARMCACHE_CPUS=4 is above the maximum of 1.5 CPUs: clamped; WARMCACHE_MEMORY=16g is above the maximum of 2 GiB: clamped)"},
		{"request clamped to the default share", base, "g/p", 1, Request{CPUs: "3"}, Job{NanoCPUs: 1e9, Memory: 4 << 30},
			Container{Memory: 2 << 30, ShmSize: 64 << 20},
			"Resource limits for this job: 1 CPU, 4 GiB memory (WARMCACHE_CPUS=3 is above the maximum of 1 CPU: clamped)"},
		{"project by id", admin, "g/p", 42, Request{}, Job{NanoCPUs: 1.5e9, Memory: 6 << 30, PidsLimit: 256},
			Container{Memory: 2 << 30, ShmSize: 64 << 20},
			"Resource limits for this job: 1.5 CPUs, 6 GiB memory, 256 processes"},
		{"project by glob", admin, "big/app", 7, Request{CPUs: "2"}, Job{NanoCPUs: 2e9, Memory: 2 << 30, PidsLimit: 256},
			Container{Memory: 4 << 30, ShmSize: 64 << 20},
			"Resource limits for this job: 2 CPUs, 2 GiB memory, 256 processes"},
		{"glob does not cross a slash", admin, "big/sub/app", 7, Request{}, Job{NanoCPUs: 1.5e9, Memory: 2 << 30, PidsLimit: 256},
			Container{Memory: 2 << 30, ShmSize: 64 << 20},
			"Resource limits for this job: 1.5 CPUs, 2 GiB memory, 256 processes"},
		{"** crosses slashes", admin, "deep/sub/group/app", 7, Request{}, Job{NanoCPUs: 5e8, Memory: 2 << 30, PidsLimit: 256},
			Container{Memory: 2 << 30, ShmSize: 64 << 20},
			"Resource limits for this job: 0.5 CPUs, 2 GiB memory, 256 processes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan, err := Resolve(tc.cfg, tc.path, tc.id, host, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if plan.Job != tc.job || plan.Build != tc.build || plan.Granted != tc.granted {
				t.Errorf("Resolve = %+v %+v %q\nwant %+v %+v %q", plan.Job, plan.Build, plan.Granted, tc.job, tc.build, tc.granted)
			}
			if plan.Helper != (Container{NanoCPUs: 5e8}) {
				t.Errorf("helper = %+v", plan.Helper)
			}
		})
	}
}

func TestResolveBadRequest(t *testing.T) {
	for req, want := range map[Request]string{
		{CPUs: "lots"}:   `bad resource request: WARMCACHE_CPUS: "lots" is not a number of CPUs such as "1.5"`,
		{Memory: "1k"}:   `bad resource request: WARMCACHE_MEMORY: "1k" is less than 6m`,
		{Memory: "2 GB"}: ``,
		{Memory: "-2g"}:  `bad resource request: WARMCACHE_MEMORY: "-2g" is not a size such as "512m" or "2g"`,
	} {
		_, err := Resolve(Default(), "g/p", 1, Host{1e9, 1 << 30}, req)
		if errString(err) != want || (want != "" && !errors.Is(err, ErrBadRequest)) {
			t.Errorf("Resolve(%+v) error %v, want %q", req, err, want)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
