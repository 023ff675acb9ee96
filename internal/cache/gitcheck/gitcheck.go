// Package gitcheck knows the files of warm git checkouts: whether the
// checkouts in a volume are fit for the next job (Damage: an interrupted
// git command leaves lock files, and a checkout without HEAD or objects is
// broken), git's index (Index, Racy, SettleIndex), and the project's
// object store the checkouts borrow from (InitStore, LinkStore,
// FeedStore). It works in the file systems and roots it is given (see
// host.Host.FS and OpenRoot), never outside them.
package gitcheck

import (
	"fmt"
	"io/fs"
	"path"
)

// Bounds of the look for checkouts in a git cache volume: the project
// directory is builds_dir/<namespace>/<project> (nested groups go deeper,
// GIT_CLONE_PATH anywhere below builds_dir), and the look must stay cheap.
const (
	checkoutDepth = 8
	checkoutDirs  = 2000
)

// interrupted are the files a git command leaves in .git when it is
// killed while it writes: a fetch, checkout or clean that never finished.
var interrupted = []string{"index.lock", "shallow.lock", "HEAD.lock", "config.lock"}

// Damage says what is wrong with the checkouts in fsys, the root of
// a git cache volume, or "" when nothing is: a lock file an interrupted
// git command left, or a .git without HEAD or objects. It reads
// directories only, never following a link, and does not descend into a
// checkout's work tree.
func Damage(fsys fs.FS) string {
	dirs := []string{"."}
	for depth := 0; depth <= checkoutDepth && len(dirs) > 0; depth++ {
		var next []string
		for _, dir := range dirs {
			entries, err := fs.ReadDir(fsys, dir)
			if err != nil {
				continue // gone meanwhile, or unreadable: nothing to judge
			}
			if gitDir := findGitDir(entries); gitDir != nil {
				if why := gitDirDamage(fsys, path.Join(dir, ".git")); why != "" {
					return why
				}
				continue
			}
			for _, e := range entries {
				if e.IsDir() && len(next) < checkoutDirs {
					next = append(next, path.Join(dir, e.Name()))
				}
			}
		}
		dirs = next
	}
	return ""
}

func findGitDir(entries []fs.DirEntry) fs.DirEntry {
	for _, e := range entries {
		if e.Name() == ".git" && e.IsDir() {
			return e
		}
	}
	return nil
}

func gitDirDamage(fsys fs.FS, gitDir string) string {
	entries, err := fs.ReadDir(fsys, gitDir)
	if err != nil {
		return fmt.Sprintf("%s is unreadable", gitDir)
	}
	has := map[string]fs.DirEntry{}
	for _, e := range entries {
		has[e.Name()] = e
	}
	if e, ok := has["objects"]; ok && e.IsDir() && len(entries) == 1 {
		return "" // linked to its store (LinkStore), not yet made by git init
	}
	for _, name := range interrupted {
		if _, ok := has[name]; ok {
			return fmt.Sprintf("%s/%s: a git command was interrupted", gitDir, name)
		}
	}
	if e, ok := has["HEAD"]; !ok || !e.Type().IsRegular() {
		return fmt.Sprintf("%s/HEAD is missing", gitDir)
	}
	if e, ok := has["objects"]; !ok || !e.IsDir() {
		return fmt.Sprintf("%s/objects is missing", gitDir)
	}
	return ""
}
