package cache

import (
	"context"
	"errors"
	"time"

	"github.com/warmcache/warmcache/internal/cache/checkout"
	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/job"
)

// checkoutDeps is what package checkout gets of the manager.
func (m *Manager) checkoutDeps() checkout.Deps {
	d := checkout.Deps{Records: m.records, Log: m.log}
	if m.host != nil {
		d.Roots = m.host
	}
	return d
}

// readyCheckout makes the claimed checkout st fit for the job and links
// it to the project's store, the volume store (checkout.Ready); ok is
// false when the job should do without it.
func (m *Manager) readyCheckout(ctx context.Context, j job.Job, st Status, store string, now time.Time, say Say) (Status, bool) {
	c := checkout.Claim{Volume: st.Name, Path: st.Path, Warm: st.Warm, Record: st.Record, Store: store, WorkTree: checkout.WorkTree(j),
		Renew: func(ctx context.Context) error {
			if err := m.engine.Remove(ctx, engine.Resource{Type: engine.Volume, Name: st.Name}); err != nil && !errors.Is(err, engine.ErrNotFound) {
				return err
			}
			_, _, err := m.ensureVolume(ctx, st.Volume, false, now)
			return err
		}}
	c, ok := checkout.Ready(ctx, m.checkoutDeps(), c, checkout.Say(say))
	st.Warm, st.Record = c.Warm, c.Record
	return st, ok
}
