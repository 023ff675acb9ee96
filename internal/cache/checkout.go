package cache

import (
	"context"
	"errors"
	"time"

	"go.uber.org/zap"

	"github.com/warmcache/warmcache/internal/cache/gitcheck"
	"github.com/warmcache/warmcache/internal/cache/record"
	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/host"
)

// checkCheckout replaces the warm git checkout st with an empty one when
// gitcheck.Damage finds it damaged, saying so in one line; ok is false when
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
	why := gitcheck.Damage(fsys)
	if why == "" {
		return st, true
	}
	return m.replaceCheckout(ctx, st, why, now, say)
}

// replaceCheckout replaces the warm git checkout st with an empty one,
// saying why in one line; ok is false when it could not, and the job
// should do without it.
func (m *Manager) replaceCheckout(ctx context.Context, st Status, why string, now time.Time, say Say) (Status, bool) {
	// The volume is this slot's alone and mounted by no container yet:
	// a job on the slot would hold it, and the engine refuses to remove a
	// volume in use.
	if err := m.engine.Remove(ctx, engine.Resource{Type: engine.Volume, Name: st.Name}); err != nil && !errors.Is(err, engine.ErrNotFound) {
		m.log.Warn("removing a damaged git checkout", zap.String("volume", st.Name), zap.Error(err))
		say("Cache git %s: damaged (%s) and not replaceable now: this job starts from an empty builds directory of its own", st.Path, why)
		return st, false
	}
	if _, _, err := m.ensureVolume(ctx, st.Volume, false, now); err != nil {
		m.log.Warn("re-creating a git checkout", zap.String("volume", st.Name), zap.Error(err))
		say("Cache git %s: damaged (%s) and not replaceable now: this job starts from an empty builds directory of its own", st.Path, why)
		return st, false
	}
	if err := m.records.Update(st.Name, func(r *record.Record) error {
		r.SizeBytes, r.Measured, r.StoreID = 0, time.Time{}, ""
		return nil
	}); err != nil {
		m.log.Warn("resetting the record of a git checkout", zap.String("volume", st.Name), zap.Error(err))
	}
	say("Cache git %s: damaged (%s): replaced by a fresh checkout", st.Path, why)
	st.Warm, st.Record = false, record.Record{}
	return st, true
}
