package cgroup

import (
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"

	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	"golang.org/x/sys/unix"
)

// Capacity is what the runner may hand out to jobs: the host's CPUs and
// memory, or the limits of the cgroup the driver runs in (the runner's)
// where those are lower. Zero means unknown.
func (h Host) Capacity() (nanoCPUs, memory int64) {
	nanoCPUs = int64(goruntime.NumCPU()) * 1e9
	var si unix.Sysinfo_t
	if unix.Sysinfo(&si) == nil {
		memory = int64(si.Totalram) * int64(si.Unit)
	}
	cpus, mem := h.ownLimits()
	if cpus > 0 && cpus < nanoCPUs {
		nanoCPUs = cpus
	}
	if mem > 0 && (memory == 0 || mem < memory) {
		memory = mem
	}
	return nanoCPUs, memory
}

// ownLimits reads the CPU quota and memory limit of this process's own
// cgroup; zero where there is none or it cannot be read.
func (h Host) ownLimits() (nanoCPUs, memory int64) {
	if h.Unified {
		group, err := cgroup2.PidGroupPath(os.Getpid())
		if err != nil {
			return 0, 0
		}
		m, err := cgroup2.Load(group, cgroup2.WithMountpoint(h.Root))
		if err != nil {
			return 0, 0
		}
		if st, err := m.StatFiltered(cgroup2.StatMemory); err == nil && st.Memory != nil {
			memory = unlimited(st.Memory.UsageLimit)
		}
		// cpu.max is "max 100000" or "<quota> <period>"; the library's
		// stats do not carry it.
		if b, err := os.ReadFile(filepath.Join(h.Root, group, "cpu.max")); err == nil {
			f := strings.Fields(string(b))
			if len(f) == 2 {
				nanoCPUs = quotaToNano(f[0], f[1])
			}
		}
		return nanoCPUs, memory
	}
	paths, err := cgroup1.ParseCgroupFile("/proc/self/cgroup")
	if err != nil {
		return 0, 0
	}
	own := func() ([]cgroup1.Subsystem, error) { return []cgroup1.Subsystem{cgroup1.NewMemory(h.Root)}, nil }
	if cg, err := cgroup1.Load(cgroup1.StaticPath(paths["memory"]), cgroup1.WithHierarchy(own)); err == nil {
		if st, err := cg.Stat(cgroup1.IgnoreNotExist); err == nil && st.Memory != nil && st.Memory.Usage != nil {
			memory = unlimited(st.Memory.Usage.Limit)
		}
	}
	dir := filepath.Join(cgroup1.NewCpu(h.Root).Path(paths["cpu"]))
	quota, err1 := os.ReadFile(filepath.Join(dir, "cpu.cfs_quota_us"))
	period, err2 := os.ReadFile(filepath.Join(dir, "cpu.cfs_period_us"))
	if err1 == nil && err2 == nil {
		nanoCPUs = quotaToNano(strings.TrimSpace(string(quota)), strings.TrimSpace(string(period)))
	}
	return nanoCPUs, memory
}

// quotaToNano converts a CFS quota and period (µs) to nano-CPUs; "max" or
// -1 is no limit.
func quotaToNano(quota, period string) int64 {
	q, err1 := strconv.ParseInt(quota, 10, 64)
	p, err2 := strconv.ParseInt(period, 10, 64)
	if err1 != nil || err2 != nil || q <= 0 || p <= 0 {
		return 0
	}
	return q * 1e9 / p
}
