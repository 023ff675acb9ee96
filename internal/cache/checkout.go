package cache

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"time"

	"go.uber.org/zap"

	"github.com/warmcache/warmcache/internal/cache/record"
	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/host"
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

// CheckoutDamage says what is wrong with the checkouts in fsys, the root of
// a git cache volume, or "" when nothing is: a lock file an interrupted
// git command left, or a .git without HEAD or objects. It reads
// directories only, never following a link, and does not descend into a
// checkout's work tree.
func CheckoutDamage(fsys fs.FS) string {
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

// checkCheckout replaces the warm git checkout st with an empty one when
// CheckoutDamage finds it damaged, saying so in one line; ok is false when
// it could not be replaced, and the job should do without it. Only beside
// a local engine: elsewhere the runner's own script removes the lock files.
func (m *Manager) checkCheckout(ctx context.Context, st Status, now time.Time, say Say) (Status, bool) {
	if m.host == nil || !st.Warm {
		return st, true
	}
	fsys, err := m.host.FS(ctx, st.Name)
	if errors.Is(err, host.ErrNotLocal) {
		return st, true
	}
	if err != nil {
		m.log.Warn("reading a git checkout", zap.String("volume", st.Name), zap.Error(err))
		return st, true
	}
	why := CheckoutDamage(fsys)
	if why == "" {
		return st, true
	}
	// The volume is this slot's alone and mounted by no container yet:
	// a job on the slot would hold it, and the engine refuses to remove a
	// volume in use.
	if err := m.engine.Remove(ctx, engine.Resource{Type: engine.Volume, Name: st.Name}); err != nil && !errors.Is(err, engine.ErrNotFound) {
		m.log.Warn("removing a damaged git checkout", zap.String("volume", st.Name), zap.Error(err))
		say("Cache git %s: damaged (%s) and not replaceable now: this job starts from an empty builds directory of its own", st.Path, why)
		return st, false
	}
	if _, err := m.ensureVolume(ctx, st.Volume, now); err != nil {
		m.log.Warn("re-creating a git checkout", zap.String("volume", st.Name), zap.Error(err))
		say("Cache git %s: damaged (%s) and not replaceable now: this job starts from an empty builds directory of its own", st.Path, why)
		return st, false
	}
	if err := m.records.Update(st.Name, func(r *record.Record) error {
		r.SizeBytes, r.Measured = 0, time.Time{}
		return nil
	}); err != nil {
		m.log.Warn("resetting the record of a git checkout", zap.String("volume", st.Name), zap.Error(err))
	}
	say("Cache git %s: damaged (%s): replaced by a fresh checkout", st.Path, why)
	st.Warm, st.Record = false, record.Record{}
	return st, true
}
