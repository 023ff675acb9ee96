// Package cgroup manages the cgroup that holds all of one job's
// containers (helper, build, services): Docker is told to put each of them
// under it (--cgroup-parent), so one job-wide limit covers them together
// and its accounting (peak memory, CPU time, OOM kills) outlives any single
// container. It uses github.com/containerd/cgroups/v3 for cgroup v1
// (cgroup1) and v2 (cgroup2).
//
// The cgroup's name derives from the job's resource name (package naming),
// so run, cleanup and the reaper find it with no local state.
//
// What is tested where: cgroup v1 with Docker's cgroupfs driver for real
// (this project's hosts, end-to-end) and on synthetic trees; cgroup v2 with
// cgroupfs on synthetic trees in unit tests; systemd slice names in unit
// tests. Creating a slice with limits under the systemd driver goes through
// systemd's D-Bus API (cgroup v2 only) and has not run on a systemd host;
// under v1 with systemd warmcache makes no cgroup and leaves Docker's slice
// to systemd.
package cgroup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/cgroups/v3"
)

// parentName groups every job cgroup: /warmcache/<job> with the cgroupfs
// driver, warmcache.slice/warmcache-<job>.slice with systemd.
const parentName = "warmcache"

// ErrNoCgroup is returned (wrapped) when the job has no cgroup.
var ErrNoCgroup = errors.New("the job has no cgroup")

// ErrUnsupported is returned (wrapped) by Create where warmcache cannot set
// job-wide limits (cgroup v1 with systemd; a tree it may not write to);
// per-container limits still apply.
var ErrUnsupported = errors.New("job-wide cgroup limits are not supported here")

// Host is the cgroup set-up of the machine the engine runs on (the driver
// runs beside a local engine).
type Host struct {
	// Unified is cgroup v2; false is v1 (legacy or hybrid).
	Unified bool
	// Systemd is Docker's systemd cgroup driver; false is cgroupfs.
	Systemd bool
	// Root is where the hierarchies are mounted, /sys/fs/cgroup.
	Root string
}

// Detect describes this machine; driver is the engine's cgroup driver as
// it reports it ("cgroupfs" or "systemd"; "" when unknown: the stages
// after prepare find the job's cgroup under either name).
func Detect(driver string) Host {
	return Host{Unified: cgroups.Mode() == cgroups.Unified, Systemd: driver == "systemd", Root: "/sys/fs/cgroup"}
}

// Limits is what the job's cgroup enforces; zero fields set no limit.
type Limits struct {
	NanoCPUs   int64
	CpusetCpus string
	Memory     int64
	PidsLimit  int64
}

// Usage is the job's accounting, read from its cgroup.
type Usage struct {
	PeakMemory  int64 // high-water mark of the job's memory, bytes
	MemoryLimit int64 // 0: none
	CPU         time.Duration
	Throttled   time.Duration // time the CPU limit held the job back
	OOMKills    uint64        // processes the kernel killed for memory
	// OOMLimit and OOMPeak describe the cgroup whose limit was hit, when
	// OOMKills > 0: a container's own limit may be lower than the job's.
	OOMLimit int64
	OOMPeak  int64
}

// Parent is the value Docker takes as the cgroup parent of the job's
// containers, for the job whose resources are named base.
func (h Host) Parent(base string) string {
	if h.Systemd {
		return sliceName(base)
	}
	return "/" + parentName + "/" + base
}

// sliceName turns a job base into a systemd slice name. systemd reads each
// dash of a slice name as one level of nesting (a-b.slice lives in
// a.slice), so the base's own dashes become underscores: the job's slice
// sits directly in warmcache.slice.
func sliceName(base string) string {
	rest := strings.TrimPrefix(base, parentName+"-")
	return parentName + "-" + strings.ReplaceAll(rest, "-", "_") + ".slice"
}

// group is the job cgroup's path below a hierarchy's root.
func (h Host) group(base string) string {
	if h.Systemd {
		return "/" + parentName + ".slice/" + sliceName(base)
	}
	return "/" + parentName + "/" + base
}

// Create makes the job's cgroup with its limits, replacing a leftover of
// an earlier attempt.
func (h Host) Create(base string, l Limits) error {
	var err error
	switch {
	case h.Systemd && !h.Unified:
		return fmt.Errorf("%w: cgroup v1 with the systemd driver", ErrUnsupported)
	case h.Unified:
		err = h.create2(base, l)
	default:
		err = h.create1(base, l)
	}
	if notPermitted(err) {
		// A non-root runner, a rootless engine, a read-only cgroup mount:
		// no job gets a cgroup here, but each container's limits still
		// hold. What a half-made cgroup left is removed where it can be.
		_ = h.Remove(base)
		return fmt.Errorf("%w: creating the job's cgroup %s: %w", ErrUnsupported, h.group(base), err)
	}
	if err != nil {
		return fmt.Errorf("creating the job's cgroup %s: %w", h.group(base), err)
	}
	return nil
}

// notPermitted says whether err is the system refusing a change to the
// cgroup tree, as opposed to a fault worth failing the job for.
func notPermitted(err error) bool {
	return errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS)
}

// Usage reads the job's accounting. The cgroup is looked for under both
// drivers' names, so callers need not ask the engine which one it uses.
func (h Host) Usage(base string) (Usage, error) {
	h, ok := h.locate(base)
	if !ok {
		return Usage{}, fmt.Errorf("%w (%s)", ErrNoCgroup, h.group(base))
	}
	var u Usage
	var err error
	if h.Unified {
		u, err = h.usage2(base)
	} else {
		u, err = h.usage1(base)
	}
	if err != nil {
		return Usage{}, fmt.Errorf("reading the job's cgroup %s: %w", h.group(base), err)
	}
	return u, nil
}

// Remove deletes the job's cgroup once its containers are gone; a missing
// cgroup is success.
func (h Host) Remove(base string) error {
	h, ok := h.locate(base)
	if !ok || h.Systemd && !h.Unified {
		// Under v1 with systemd, warmcache made no cgroup: the slice
		// Docker had systemd make is systemd's to remove.
		return nil
	}
	var err error
	if h.Unified {
		err = h.remove2(base)
	} else {
		err = h.remove1(base)
	}
	if err != nil {
		return fmt.Errorf("removing the job's cgroup %s: %w", h.group(base), err)
	}
	return nil
}

// Job is a job cgroup found on the host.
type Job struct {
	Base     string
	Modified time.Time // when its directory last changed (creation, for an idle cgroup)
}

// Jobs lists the job cgroups present, for the reaper.
func (h Host) Jobs() ([]Job, error) {
	var out []Job
	for _, sd := range []bool{false, true} {
		if sd && !h.Unified {
			continue // none of warmcache's making (see Remove)
		}
		h.Systemd = sd
		dir := filepath.Dir(h.dir(h.group("x")))
		entries, err := os.ReadDir(dir)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("listing job cgroups: %w", err)
		}
		for _, e := range entries {
			base, ok := baseOf(e.Name(), sd)
			if !e.IsDir() || !ok {
				continue
			}
			info, err := e.Info()
			if err != nil {
				continue // removed meanwhile
			}
			out = append(out, Job{Base: base, Modified: info.ModTime()})
		}
	}
	return out, nil
}

// baseOf inverts group's last element.
func baseOf(name string, systemd bool) (string, bool) {
	if !systemd {
		return name, strings.HasPrefix(name, parentName+"-")
	}
	rest, ok := strings.CutPrefix(name, parentName+"-")
	rest, ok2 := strings.CutSuffix(rest, ".slice")
	if !ok || !ok2 {
		return "", false
	}
	return parentName + "-" + strings.ReplaceAll(rest, "_", "-"), true
}

// dir is the directory of group in the hierarchy that holds the memory
// controller: the v2 tree, or v1's memory hierarchy (present wherever
// the others are).
func (h Host) dir(group string) string {
	if h.Unified {
		return filepath.Join(h.Root, group)
	}
	return filepath.Join(h.Root, "memory", group)
}

// locate finds which driver's name the job's cgroup has.
func (h Host) locate(base string) (Host, bool) {
	for _, sd := range []bool{h.Systemd, !h.Systemd} {
		c := h
		c.Systemd = sd
		if _, err := os.Stat(c.dir(c.group(base))); err == nil {
			return c, true
		}
	}
	return h, false
}

// below lists dir and every cgroup directory under it (the job's cgroup,
// its containers' and theirs). A cgroup removed during the walk is left
// out.
func below(dir string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) { // a container went meanwhile
				return nil
			}
			return err
		}
		if d.IsDir() {
			out = append(out, p)
		}
		return nil
	})
	return out, err
}

// throttled reads the CPU time a quota held the job back, from the
// counter key of cpu.stat ("throttled_time" in ns under v1,
// "throttled_usec" under v2) in the job's cgroup dir and its containers'.
// The kernel counts throttling in the cgroup whose quota it enforces: a
// build container with the job's quota as its own is often throttled in
// its own cgroup, not the job's. A process held back by both quotas at
// once is counted in both, so the two are not added: the job's count
// stands, or the containers' together where higher (they are disjoint).
func throttled(dir, key string) (uint64, error) {
	own, err := statCounter(filepath.Join(dir, "cpu.stat"), key)
	if err != nil {
		return 0, err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var containers uint64
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		n, err := statCounter(filepath.Join(dir, e.Name(), "cpu.stat"), key)
		if err != nil {
			return 0, err
		}
		containers += n
	}
	return max(own, containers), nil
}

// statCounter reads one counter of a flat-keyed file such as cpu.stat; a
// file gone with its container reads 0.
func statCounter(file, key string) (uint64, error) {
	b, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), key+" "); ok {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s in %s: %w", key, file, err)
			}
			return n, nil
		}
	}
	return 0, nil
}

// unlimited treats the kernel's "no limit" values (v1's page-rounded
// max int64, v2's "max") as no limit.
func unlimited(v uint64) int64 {
	if v >= 1<<62 {
		return 0
	}
	return int64(v)
}
