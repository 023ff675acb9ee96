package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// probeName is the cgroup Writable makes and removes again. It does not
// start with "warmcache-", so the reaper never takes it for a job's.
const probeName = "doctor-probe"

// Writable checks, for doctor, that this process may create the jobs'
// cgroups: it makes a cgroup where they go, in each hierarchy, and removes
// it again. Only a real attempt tells: access(2) passes for root on a tree
// the kernel still refuses (a read-only bind mount, a container's view).
// Under systemd with cgroup v2 the slices are systemd's to make (over
// D-Bus) and are not probed; under v1 with systemd no cgroup is made.
func (h Host) Writable() error {
	if h.Systemd {
		return nil
	}
	var dirs []string
	if h.Unified {
		dirs = []string{h.Root}
	} else {
		subs, _ := h.hierarchies1()
		for _, s := range subs {
			if p, ok := s.(interface{ Path(string) string }); ok {
				dirs = append(dirs, p.Path("/"))
			}
		}
	}
	for _, d := range dirs {
		// Inside warmcache's own parent where it exists already: that is
		// where the jobs' cgroups go, and it may have been made writable.
		if _, err := os.Stat(filepath.Join(d, parentName)); err == nil {
			d = filepath.Join(d, parentName)
		}
		probe := filepath.Join(d, probeName)
		if err := os.Mkdir(probe, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return err // one is enough: the others fail alike
		}
		if err := os.Remove(probe); err != nil {
			return fmt.Errorf("removing a probe cgroup: %w", err)
		}
	}
	return nil
}
