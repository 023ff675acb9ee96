package limits

import (
	"fmt"
	"slices"
	"strings"

	"github.com/bmatcuk/doublestar/v4"
)

// Config is the [limits] section of warmcache's config.
type Config struct {
	// ConcurrentJobs is how many jobs the host runs at once (the runner's
	// `concurrent`); a job's default share of the host is divided by it.
	ConcurrentJobs int `toml:"concurrent_jobs"`
	// Job limits the whole job (helper, build and service containers
	// together, through the job's cgroup). Its cpus and memory are also the
	// most a job may request.
	Job JobSet `toml:"job"`
	// Build, Helper and Services limit each container of their kind.
	Build    Set `toml:"build"`
	Helper   Set `toml:"helper"`
	Services Set `toml:"services"`
	// Projects override the sets above for matching projects; the first
	// match wins.
	Projects []Project `toml:"project"`
}

// JobSet is the job-wide limits, set on the job's cgroup.
type JobSet struct {
	CPUs       string `toml:"cpus"`
	CpusetCpus string `toml:"cpuset_cpus"`
	Memory     string `toml:"memory"`
	PidsLimit  int64  `toml:"pids_limit"`
}

// Set is the limits of one container, as the admin writes them. Empty
// strings and zeros set no limit of the container's own.
type Set struct {
	CPUs              string `toml:"cpus"`
	CpusetCpus        string `toml:"cpuset_cpus"`
	Memory            string `toml:"memory"`
	MemorySwap        string `toml:"memory_swap"` // memory plus swap; "-1" = unlimited swap
	MemoryReservation string `toml:"memory_reservation"`
	PidsLimit         int64  `toml:"pids_limit"`
	ShmSize           string `toml:"shm_size"`
}

// Project overrides limits for the projects it matches: by path glob, by
// id, or (both set) by both. Only the keys it sets replace the general ones.
type Project struct {
	// Path is a glob on the project's full path with the runner's
	// (doublestar) semantics: "group/*" is the group's own projects,
	// "group/**" its subgroups' too.
	Path     string `toml:"path"`
	ID       int64  `toml:"id"`
	Job      JobSet `toml:"job"`
	Build    Set    `toml:"build"`
	Helper   Set    `toml:"helper"`
	Services Set    `toml:"services"`
}

// Default returns the built-in [limits] section: nothing set, one job at
// a time, so a job's default share is the whole host.
func Default() Config { return Config{ConcurrentJobs: 1} }

// Problems validates the section, naming each bad key.
func (c Config) Problems() []string {
	var p []string
	if c.ConcurrentJobs < 1 || c.ConcurrentJobs > 1024 {
		p = append(p, fmt.Sprintf("limits.concurrent_jobs: %d is out of range 1..1024", c.ConcurrentJobs))
	}
	_, general := sets("limits", c.Job, c.Build, c.Helper, c.Services)
	p = append(p, general...)
	for i, o := range c.Projects {
		key := fmt.Sprintf("limits.project[%d]", i)
		if !doublestar.ValidatePattern(o.Path) {
			p = append(p, fmt.Sprintf("%s.path: %q is not a valid glob", key, o.Path))
		}
		if o.Path == "" && o.ID == 0 {
			p = append(p, fmt.Sprintf("%s: set path, id or both", key))
		}
		if o.ID < 0 {
			p = append(p, fmt.Sprintf("%s.id: %d is not a project id", key, o.ID))
		}
		// What a matching job gets is the override on top of the general
		// sets, so that is what is checked: its own keys alone can be fine
		// and still clash with the general ones (build.memory above
		// build.memory_swap), or clash only without them. A problem the
		// general sets have already is said once, under their keys.
		_, merged := sets(key, o.Job.over(c.Job), o.Build.over(c.Build), o.Helper.over(c.Helper), o.Services.over(c.Services))
		for _, m := range merged {
			if !slices.Contains(general, "limits"+strings.TrimPrefix(m, key)) {
				p = append(p, m)
			}
		}
	}
	return p
}

// sets parses one job's sets, naming each bad key under prefix ("limits"
// or "limits.project[i]"), and checks the relations between them.
func sets(prefix string, jobSet JobSet, build, helper, services Set) (Plan, []string) {
	var plan Plan
	var problems, p []string
	plan.Job, p = jobSet.parse(prefix + ".job")
	problems = append(problems, p...)
	plan.Build, p = build.parse(prefix + ".build")
	problems = append(problems, p...)
	plan.Helper, p = helper.parse(prefix + ".helper")
	problems = append(problems, p...)
	plan.Services, p = services.parse(prefix + ".services")
	problems = append(problems, p...)
	// A container's cgroup is below the job's, and the kernel takes no
	// cpuset there that is not within its parent's.
	for _, c := range []struct {
		kind string
		set  Container
	}{{"build", plan.Build}, {"helper", plan.Helper}, {"services", plan.Services}} {
		if !cpusetWithin(c.set.CpusetCpus, plan.Job.CpusetCpus) {
			problems = append(problems, fmt.Sprintf("%s.%s.cpuset_cpus: %q is not within the job's cpuset_cpus %q",
				prefix, c.kind, c.set.CpusetCpus, plan.Job.CpusetCpus))
		}
	}
	return plan, problems
}

// Job is parsed job-wide limits; zero fields set no limit.
type Job struct {
	NanoCPUs   int64
	CpusetCpus string
	Memory     int64
	PidsLimit  int64
}

// Container is parsed container limits; zero fields set no limit.
type Container struct {
	NanoCPUs          int64
	CpusetCpus        string
	Memory            int64
	MemorySwap        int64 // -1: unlimited swap
	MemoryReservation int64
	PidsLimit         int64
	ShmSize           int64
}

func (s JobSet) parse(key string) (Job, []string) {
	c, p := Set{CPUs: s.CPUs, CpusetCpus: s.CpusetCpus, Memory: s.Memory, PidsLimit: s.PidsLimit}.parse(key)
	return Job{NanoCPUs: c.NanoCPUs, CpusetCpus: c.CpusetCpus, Memory: c.Memory, PidsLimit: c.PidsLimit}, p
}

func (s Set) parse(key string) (Container, []string) {
	var c Container
	var p []string
	note := func(field string, err error) {
		if err != nil {
			p = append(p, fmt.Sprintf("%s.%s: %v", key, field, err))
		}
	}
	var err error
	c.NanoCPUs, err = NanoCPUs(s.CPUs)
	note("cpus", err)
	note("cpuset_cpus", checkCpuset(s.CpusetCpus))
	c.CpusetCpus = s.CpusetCpus
	c.Memory, err = memoryLimit(s.Memory)
	note("memory", err)
	if s.MemorySwap == "-1" {
		c.MemorySwap = -1
	} else {
		c.MemorySwap, err = MemoryBytes(s.MemorySwap)
		note("memory_swap", err)
	}
	c.MemoryReservation, err = MemoryBytes(s.MemoryReservation)
	note("memory_reservation", err)
	c.ShmSize, err = MemoryBytes(s.ShmSize)
	note("shm_size", err)
	note("pids_limit", checkPids(s.PidsLimit))
	c.PidsLimit = s.PidsLimit
	// Relations the engine would reject at container creation, said now.
	switch {
	case c.MemorySwap != 0 && c.Memory == 0:
		note("memory_swap", fmt.Errorf("needs memory to be set as well"))
	case c.MemorySwap > 0 && c.MemorySwap < c.Memory:
		note("memory_swap", fmt.Errorf("%s is less than memory %s (it counts memory plus swap)", s.MemorySwap, s.Memory))
	}
	if c.Memory > 0 && c.MemoryReservation > c.Memory {
		note("memory_reservation", fmt.Errorf("%s is more than memory %s", s.MemoryReservation, s.Memory))
	}
	return c, p
}

func memoryLimit(s string) (int64, error) {
	n, err := MemoryBytes(s)
	if err == nil && n > 0 && n < minMemory {
		err = fmt.Errorf("%q is less than the engine's minimum of 6m", s)
	}
	return n, err
}

func checkPids(n int64) error {
	if n < 0 || n > 1<<22 {
		return fmt.Errorf("%d is out of range 0..%d (0 = no limit)", n, 1<<22)
	}
	return nil
}

// forProject returns the sets that apply to a project, the general ones
// with the first matching override's keys on top, and the key they are
// named under: "limits", or "limits.project[i]" for an override.
func (c Config) forProject(projectPath string, projectID int64) (string, JobSet, Set, Set, Set) {
	for i, o := range c.Projects {
		pathOK, _ := doublestar.Match(o.Path, projectPath)
		if (o.ID == 0 || o.ID == projectID) && (o.Path == "" || pathOK) {
			return fmt.Sprintf("limits.project[%d]", i), o.Job.over(c.Job), o.Build.over(c.Build), o.Helper.over(c.Helper), o.Services.over(c.Services)
		}
	}
	return "limits", c.Job, c.Build, c.Helper, c.Services
}

// over returns base with the keys s sets replaced.
func (s JobSet) over(base JobSet) JobSet {
	pick(&base.CPUs, s.CPUs)
	pick(&base.CpusetCpus, s.CpusetCpus)
	pick(&base.Memory, s.Memory)
	pick(&base.PidsLimit, s.PidsLimit)
	return base
}

func (s Set) over(base Set) Set {
	pick(&base.CPUs, s.CPUs)
	pick(&base.CpusetCpus, s.CpusetCpus)
	pick(&base.Memory, s.Memory)
	pick(&base.MemorySwap, s.MemorySwap)
	pick(&base.MemoryReservation, s.MemoryReservation)
	pick(&base.PidsLimit, s.PidsLimit)
	pick(&base.ShmSize, s.ShmSize)
	return base
}

func pick[T comparable](dst *T, v T) {
	var zero T
	if v != zero {
		*dst = v
	}
}
