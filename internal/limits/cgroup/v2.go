package cgroup

import (
	"errors"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/cgroups/v3/cgroup2"
)

func resources2(l Limits) *cgroup2.Resources {
	res := &cgroup2.Resources{}
	if l.NanoCPUs > 0 || l.CpusetCpus != "" {
		res.CPU = &cgroup2.CPU{Cpus: l.CpusetCpus}
		if l.NanoCPUs > 0 {
			period, quota := uint64(cfsPeriod), l.NanoCPUs*cfsPeriod/1e9
			res.CPU.Max = cgroup2.NewCPUMax(&quota, &period)
		}
	}
	if l.Memory > 0 {
		res.Memory = &cgroup2.Memory{Max: &l.Memory}
	}
	if l.PidsLimit > 0 {
		res.Pids = &cgroup2.Pids{Max: l.PidsLimit}
	}
	return res
}

func (h Host) create2(base string, l Limits) error {
	if h.Systemd {
		// systemd owns the slice: it is created, with its limits, as a
		// transient unit over D-Bus (the path the library computes for
		// it is not used: systemd nests slices by their names).
		_, err := cgroup2.NewSystemd("", sliceName(base), -1, resources2(l))
		return err
	}
	// Controllers are enabled on every level down from the root, so the
	// containers' cgroups below inherit them.
	_, err := cgroup2.NewManager(h.Root, h.group(base), resources2(l))
	return err
}

func (h Host) usage2(base string) (Usage, error) {
	m, err := cgroup2.Load(h.group(base), cgroup2.WithMountpoint(h.Root))
	if err != nil {
		return Usage{}, err
	}
	st, err := m.StatFiltered(cgroup2.StatCPU | cgroup2.StatMemory | cgroup2.StatMemoryEvents)
	if err != nil {
		return Usage{}, err
	}
	var u Usage
	if st.CPU != nil {
		u.CPU = time.Duration(st.CPU.UsageUsec) * time.Microsecond
	}
	held, err := throttled(filepath.Join(h.Root, h.group(base)), "throttled_usec")
	if err != nil {
		return Usage{}, err
	}
	u.Throttled = time.Duration(held) * time.Microsecond
	if st.Memory != nil {
		u.PeakMemory = int64(st.Memory.MaxUsage) // memory.peak, kernel 5.19 and later
		u.MemoryLimit = unlimited(st.Memory.UsageLimit)
	}
	// v2 counts a kill in the victim's cgroup and every parent: the job's
	// own counter has them all.
	if st.MemoryEvents != nil {
		u.OOMKills = st.MemoryEvents.OomKill
	}
	if u.OOMKills > 0 {
		h.oomLimit2(base, &u)
	}
	return u, nil
}

// oomLimit2 finds the lowest limit among the cgroups that saw a kill.
func (h Host) oomLimit2(base string, u *Usage) {
	dirs, _ := below(filepath.Join(h.Root, h.group(base)))
	for _, d := range dirs {
		rel, _ := filepath.Rel(h.Root, d)
		m, err := cgroup2.Load("/"+rel, cgroup2.WithMountpoint(h.Root))
		if err != nil {
			continue // removed meanwhile
		}
		st, err := m.StatFiltered(cgroup2.StatMemory | cgroup2.StatMemoryEvents)
		if err != nil || st.MemoryEvents == nil || st.MemoryEvents.OomKill == 0 || st.Memory == nil {
			continue
		}
		noteOOM(u, unlimited(st.Memory.UsageLimit), int64(st.Memory.MaxUsage))
	}
}

func (h Host) remove2(base string) error {
	if h.Systemd {
		m, err := cgroup2.LoadSystemd("", sliceName(base))
		if err != nil {
			return err
		}
		return m.DeleteSystemd()
	}
	m, err := cgroup2.Load(h.group(base), cgroup2.WithMountpoint(h.Root))
	if err != nil {
		return err
	}
	err = m.Delete()
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}
