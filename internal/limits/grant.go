package limits

import (
	"errors"
	"fmt"
	"strings"
)

// Job variables through which a job asks for resources.
const (
	RequestCPUsVar   = "WARMCACHE_CPUS"
	RequestMemoryVar = "WARMCACHE_MEMORY"
)

// ErrBadRequest is returned (wrapped) when a job's request variable cannot
// be read: the job's own input, so a build failure.
var ErrBadRequest = errors.New("bad resource request")

// Host is what the runner may hand out: the host's CPUs and memory, or the
// runner's own cgroup limits where they are lower. Zero means unknown.
type Host struct {
	NanoCPUs int64
	Memory   int64
}

// Request is what a job asked for (WARMCACHE_CPUS, WARMCACHE_MEMORY);
// empty fields ask for nothing.
type Request struct {
	CPUs   string
	Memory string
}

// Plan is the limits one job gets.
type Plan struct {
	Job      Job
	Build    Container
	Helper   Container
	Services Container
	// Granted is the one job-log line saying what the job got.
	Granted string
}

// Resolve works out a job's limits: the sets for its project, the job-wide
// maximum (the admin's, else the host's capacity divided by the number of
// concurrent jobs), and the job's request clamped to that maximum.
func Resolve(c Config, projectPath string, projectID int64, host Host, req Request) (Plan, error) {
	plan, problems := sets(c.forProject(projectPath, projectID))
	if len(problems) > 0 {
		// Config validation rejects these earlier; this is a safety net.
		return Plan{}, fmt.Errorf("limits for project %s: %s", projectPath, strings.Join(problems, "; "))
	}

	share := DefaultShare(host, c.ConcurrentJobs)
	if plan.Job.NanoCPUs == 0 {
		plan.Job.NanoCPUs = share.NanoCPUs
	}
	if plan.Job.Memory == 0 {
		plan.Job.Memory = share.Memory
	}

	var notes []string
	askedCPUs, err := NanoCPUs(req.CPUs)
	if err != nil {
		return Plan{}, fmt.Errorf("%w: %s: %v", ErrBadRequest, RequestCPUsVar, err)
	}
	askedMemory, err := MemoryBytes(req.Memory)
	if err == nil && askedMemory > 0 && askedMemory < minMemory {
		err = fmt.Errorf("%q is less than 6m", req.Memory)
	}
	if err != nil {
		return Plan{}, fmt.Errorf("%w: %s: %v", ErrBadRequest, RequestMemoryVar, err)
	}
	var clamped bool
	if plan.Job.NanoCPUs, clamped = clamp(askedCPUs, plan.Job.NanoCPUs); clamped {
		notes = append(notes, fmt.Sprintf("%s=%s is above the maximum of %s: clamped", RequestCPUsVar, req.CPUs, CPUs(plan.Job.NanoCPUs)))
	}
	if plan.Job.Memory, clamped = clamp(askedMemory, plan.Job.Memory); clamped {
		notes = append(notes, fmt.Sprintf("%s=%s is above the maximum of %s: clamped", RequestMemoryVar, req.Memory, MiB(plan.Job.Memory)))
	}
	plan.Granted = grantedLine(plan.Job, notes)
	return plan, nil
}

// DefaultShare is one job's share of the host when the admin sets no
// job-wide limit: its capacity divided by the number of concurrent jobs,
// CPUs rounded down to 0.01 and memory to 1 MiB.
func DefaultShare(host Host, concurrent int) Host {
	if concurrent < 1 {
		concurrent = 1
	}
	n := int64(concurrent)
	return Host{
		NanoCPUs: host.NanoCPUs / n / 1e7 * 1e7,
		Memory:   host.Memory / n >> 20 << 20,
	}
}

// clamp grants asked within max; zero asked takes max, zero max is no
// limit. It reports whether asked was cut down.
func clamp(asked, max int64) (int64, bool) {
	switch {
	case asked == 0:
		return max, false
	case max == 0 || asked <= max:
		return asked, false
	default:
		return max, true
	}
}

func grantedLine(j Job, notes []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Resource limits for this job: %s, %s memory", CPUs(j.NanoCPUs), MiB(j.Memory))
	if j.PidsLimit > 0 {
		fmt.Fprintf(&b, ", %d processes", j.PidsLimit)
	}
	if j.CpusetCpus != "" {
		fmt.Fprintf(&b, ", on CPUs %s", j.CpusetCpus)
	}
	if len(notes) > 0 {
		fmt.Fprintf(&b, " (%s)", strings.Join(notes, "; "))
	}
	return b.String()
}
