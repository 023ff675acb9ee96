package cache

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/warmcache/warmcache/internal/cache/gitcheck"
	"github.com/warmcache/warmcache/internal/cache/profile"
	"github.com/warmcache/warmcache/internal/cache/record"
	"github.com/warmcache/warmcache/internal/job"
	"github.com/warmcache/warmcache/internal/protocol"
)

// The git object store: one per project and trust class, shared by the
// project's checkouts (one per project slot) through git's alternates.
// A job mounts it read-only; its fetch writes new objects into its own
// checkout, and once the job is done (Measure, at cleanup) warmcache moves
// them into the store, so the next fetch of any slot of the project asks
// the server only for what none has had. Protected and unprotected jobs
// have stores of their own, fed by jobs of their class only.

// isStore says whether v is a git object store volume.
func isStore(v Volume) bool {
	return v.Profile == profile.GitStore.Name && v.Path == protocol.GitStoreDir
}

// isCheckout says whether v is a warm git checkout volume.
func isCheckout(v Volume) bool {
	return v.Profile == profile.Git.Name && v.Path == protocol.BuildsDir
}

// workTree is the job's checkout relative to the root of builds_dir, or
// "" when the runner did not say where it is.
func workTree(j job.Job) string {
	return strings.TrimPrefix(j.ProjectDir, protocol.BuildsDir+"/")
}

// linkCheckout links the claimed checkout st to the project's store: its
// repository's alternates name the store, made first if need be. A warm
// checkout linked to another store (evicted since, and made anew) may
// miss objects: it is replaced by a fresh one. ok is false when the
// checkout could not be replaced and the job should do without it.
func (m *Manager) linkCheckout(ctx context.Context, j job.Job, st Status, store Status, now time.Time, say Say) (Status, bool) {
	if m.host == nil || workTree(j) == "" {
		return st, true
	}
	id, err := m.storeID(ctx, store.Name)
	if err != nil {
		m.log.Warn("making the git object store", zap.String("volume", store.Name), zap.Error(err))
		if st.Warm && st.Record.StoreID != "" {
			return m.replaceCheckout(ctx, st, "its object store is unreadable", now, say)
		}
		return st, true
	}
	if st.Warm && st.Record.StoreID != "" && st.Record.StoreID != id {
		var ok bool
		if st, ok = m.replaceCheckout(ctx, st, "its object store was evicted", now, say); !ok {
			return st, false
		}
	}
	if err := m.inRoot(ctx, st.Name, func(r *os.Root) error {
		return gitcheck.LinkStore(r, workTree(j), protocol.GitStoreDir+"/objects")
	}); err != nil {
		m.log.Warn("linking a git checkout to its object store", zap.String("volume", st.Name), zap.Error(err))
		if st.Warm && st.Record.StoreID != "" {
			return m.replaceCheckout(ctx, st, "its link to the object store is broken", now, say)
		}
		return st, true
	}
	if err := m.records.Update(st.Name, func(r *record.Record) error {
		r.StoreID = id
		return nil
	}); err != nil {
		m.log.Warn("recording a git checkout's object store", zap.String("volume", st.Name), zap.Error(err))
	}
	st.Record.StoreID = id
	return st, true
}

// storeID is the id of the git store in volume, made if need be.
func (m *Manager) storeID(ctx context.Context, volume string) (id string, err error) {
	err = m.inRoot(ctx, volume, func(r *os.Root) (err error) {
		id, err = gitcheck.InitStore(r)
		return err
	})
	return id, err
}

// inRoot calls fn with the directory of volume as a root.
func (m *Manager) inRoot(ctx context.Context, volume string, fn func(*os.Root) error) error {
	r, err := m.host.OpenRoot(ctx, volume)
	if err != nil {
		return err
	}
	defer r.Close()
	return fn(r)
}

// feedStore moves the objects the job's fetch added to its checkout into
// the project's store, and settles the checkout's index for the next job
// (gitcheck.SettleIndex). Once the job is done, off its critical path.
func (m *Manager) feedStore(ctx context.Context, j job.Job, vols []Volume) {
	if m.host == nil || workTree(j) == "" {
		return
	}
	var checkout, store *Volume
	for i := range vols {
		switch {
		case isCheckout(vols[i]):
			checkout = &vols[i]
		case isStore(vols[i]):
			store = &vols[i]
		}
	}
	if checkout == nil || store == nil {
		return
	}
	start := time.Now()
	var settled bool
	err := m.inRoot(ctx, checkout.Name, func(r *os.Root) (err error) {
		settled, err = gitcheck.SettleIndex(ctx, r, workTree(j), start)
		return err
	})
	if err != nil {
		m.log.Warn("settling a git checkout's index", zap.String("volume", checkout.Name), zap.Error(err))
	}
	rec, err := m.records.Get(checkout.Name)
	if err != nil || rec.StoreID == "" {
		return // never linked to a store
	}
	if !m.host.Has(ctx, store.Name) {
		return
	}
	id, err := m.storeID(ctx, store.Name)
	if err != nil || id != rec.StoreID {
		return // linked to another store: its objects stay in the checkout
	}
	var res gitcheck.FeedResult
	err = m.inRoot(ctx, checkout.Name, func(src *os.Root) error {
		return m.inRoot(ctx, store.Name, func(dst *os.Root) (err error) {
			res, err = gitcheck.FeedStore(ctx, src, dst, workTree(j), fmt.Sprintf("slot-%d", j.ConcurrentProjectID))
			return err
		})
	})
	if err != nil {
		m.log.Warn("feeding the git object store", zap.String("volume", store.Name), zap.Error(err))
	}
	m.log.Debug("git store fed", zap.String("store", store.Name), zap.Int("packs", res.Packs), zap.Int("loose", res.Loose),
		zap.Int64("bytes", res.Bytes), zap.Bool("index_settled", settled), zap.Duration("took", time.Since(start)))
}
