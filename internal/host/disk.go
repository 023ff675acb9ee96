package host

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// DiskSpace is the free and total bytes of the filesystem at path (the
// engine's data root), as an unprivileged process may use them.
func DiskSpace(path string) (free, total int64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, 0, fmt.Errorf("statfs %s: %w", path, err)
	}
	return int64(st.Bavail) * st.Bsize, int64(st.Blocks) * st.Bsize, nil
}
