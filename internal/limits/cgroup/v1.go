package cgroup

import (
	"errors"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/opencontainers/runtime-spec/specs-go"
)

// cfsPeriod is the CFS period the CPU quota is expressed in (100 ms, the
// kernel's and Docker's default).
const cfsPeriod = 100_000

func (h Host) create1(base string, l Limits) error {
	res := &specs.LinuxResources{}
	if l.NanoCPUs > 0 || l.CpusetCpus != "" {
		res.CPU = &specs.LinuxCPU{Cpus: l.CpusetCpus}
		if l.NanoCPUs > 0 {
			period, quota := uint64(cfsPeriod), l.NanoCPUs*cfsPeriod/1e9
			res.CPU.Period, res.CPU.Quota = &period, &quota
		}
	}
	if l.Memory > 0 {
		res.Memory = &specs.LinuxMemory{Limit: &l.Memory}
	}
	if l.PidsLimit > 0 {
		res.Pids = &specs.LinuxPids{Limit: &l.PidsLimit}
	}
	// Every mounted hierarchy: Docker puts the containers' cgroups below
	// this one in each of them.
	_, err := cgroup1.New(cgroup1.StaticPath(h.group(base)), res, cgroup1.WithHierarchy(h.hierarchies1))
	return err
}

// hierarchies1 is every v1 hierarchy mounted under h.Root, as the
// library's default finds them under the system's mount point.
func (h Host) hierarchies1() ([]cgroup1.Subsystem, error) {
	all := []cgroup1.Subsystem{
		cgroup1.NewNamed(h.Root, "systemd"), cgroup1.NewFreezer(h.Root), cgroup1.NewPids(h.Root),
		cgroup1.NewNetCls(h.Root), cgroup1.NewNetPrio(h.Root), cgroup1.NewPerfEvent(h.Root),
		cgroup1.NewCpuset(h.Root), cgroup1.NewCpu(h.Root), cgroup1.NewCpuacct(h.Root),
		cgroup1.NewMemory(h.Root), cgroup1.NewBlkio(h.Root), cgroup1.NewRdma(h.Root), cgroup1.NewDevices(h.Root),
	}
	if hugetlb, err := cgroup1.NewHugetlb(h.Root); err == nil {
		all = append(all, hugetlb)
	}
	var mounted []cgroup1.Subsystem
	for _, s := range all {
		if p, ok := s.(interface{ Path(string) string }); ok {
			if _, err := os.Lstat(p.Path("/")); err == nil {
				mounted = append(mounted, s)
			}
		}
	}
	return mounted, nil
}

// accounting1 is the v1 hierarchies usage is read from.
func (h Host) accounting1() ([]cgroup1.Subsystem, error) {
	return []cgroup1.Subsystem{cgroup1.NewCpu(h.Root), cgroup1.NewCpuacct(h.Root), cgroup1.NewMemory(h.Root)}, nil
}

func (h Host) usage1(base string) (Usage, error) {
	cg, err := cgroup1.Load(cgroup1.StaticPath(h.group(base)), cgroup1.WithHierarchy(h.accounting1))
	if err != nil {
		return Usage{}, err
	}
	st, err := cg.Stat(cgroup1.IgnoreNotExist)
	if err != nil {
		return Usage{}, err
	}
	var u Usage
	if st.CPU != nil && st.CPU.Usage != nil {
		u.CPU = time.Duration(st.CPU.Usage.Total)
	}
	held, err := throttled(cgroup1.NewCpu(h.Root).Path(h.group(base)), "throttled_time")
	if err != nil {
		return Usage{}, err
	}
	u.Throttled = time.Duration(held)
	if st.Memory != nil && st.Memory.Usage != nil {
		u.PeakMemory = int64(st.Memory.Usage.Max)
		u.MemoryLimit = unlimited(st.Memory.Usage.Limit)
	}
	err = h.oomKills1(base, &u)
	return u, err
}

// oomKills1 adds up the OOM kills of the job's cgroup and every cgroup
// below it. Under v1 the kernel counts a kill only in the victim's own
// cgroup (a container's), not in its parents, so the job's counter alone
// would miss them.
func (h Host) oomKills1(base string, u *Usage) error {
	memory := cgroup1.NewMemory(h.Root)
	root := memory.Path(h.group(base))
	dirs, err := below(root)
	if err != nil {
		return err
	}
	var cgs []string
	for _, d := range dirs {
		rel, _ := filepath.Rel(memory.Path("/"), d)
		cgs = append(cgs, "/"+rel)
	}
	oneLevel := func() ([]cgroup1.Subsystem, error) { return []cgroup1.Subsystem{memory}, nil }
	for _, g := range cgs {
		cg, err := cgroup1.Load(cgroup1.StaticPath(g), cgroup1.WithHierarchy(oneLevel))
		if err != nil {
			continue // removed meanwhile
		}
		st, err := cg.Stat(cgroup1.IgnoreNotExist)
		if err != nil || st.MemoryOomControl == nil || st.Memory == nil || st.Memory.Usage == nil {
			continue
		}
		if st.MemoryOomControl.OomKill == 0 {
			continue
		}
		u.OOMKills += st.MemoryOomControl.OomKill
		noteOOM(u, unlimited(st.Memory.Usage.Limit), int64(st.Memory.Usage.Max))
	}
	return nil
}

// noteOOM records which limit an OOM kill hit: the lowest limit on the
// victim's path, a container's own or the job's.
func noteOOM(u *Usage, limit, peak int64) {
	if limit == 0 || u.MemoryLimit != 0 && u.MemoryLimit <= limit {
		limit, peak = u.MemoryLimit, u.PeakMemory
	}
	if u.OOMLimit == 0 || limit < u.OOMLimit {
		u.OOMLimit, u.OOMPeak = limit, peak
	}
}

func (h Host) remove1(base string) error {
	cg, err := cgroup1.Load(cgroup1.StaticPath(h.group(base)), cgroup1.WithHierarchy(h.hierarchies1))
	if errors.Is(err, cgroup1.ErrCgroupDeleted) {
		return nil
	}
	if err != nil {
		return err
	}
	return cg.Delete()
}
