// Package checkout keeps the warm git checkouts fit for the next job: a
// checkout found damaged is replaced by a fresh one (one line in the job
// log); each is linked, through git's alternates, to the object store of
// its project and trust class, which the project's slots share; and once
// a job is done, the objects its fetch added move into that store and its
// index is settled (see gitcheck). The mechanics on files are gitcheck's;
// here is what to do with them, and when.
//
// The store is mounted read-only in the jobs. Only warmcache writes it,
// after a job of its trust class, with that job's objects: protected and
// unprotected jobs have stores of their own. Within one class, a job's
// objects reach the class's later jobs on every slot (as its go build
// cache does): git does not check a loose object's content against its
// name when it reads it.
package checkout

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/warmcache/warmcache/internal/cache/gitcheck"
	"github.com/warmcache/warmcache/internal/cache/profile"
	"github.com/warmcache/warmcache/internal/cache/record"
	"github.com/warmcache/warmcache/internal/host"
	"github.com/warmcache/warmcache/internal/job"
	"github.com/warmcache/warmcache/internal/protocol"
)

// IsStore says whether v is a git object store volume.
func IsStore(v profile.Volume) bool {
	return v.Profile == profile.GitStore.Name && v.Path == protocol.GitStoreDir
}

// IsCheckout says whether v is a warm git checkout volume.
func IsCheckout(v profile.Volume) bool {
	return v.Profile == profile.Git.Name && v.Path == protocol.BuildsDir
}

// Store is the name of the git object store among vols, or "".
func Store(vols []profile.Volume) string {
	for _, v := range vols {
		if IsStore(v) {
			return v.Name
		}
	}
	return ""
}

// WorkTree is j's checkout relative to builds_dir, or "" when the runner
// did not say where it is.
func WorkTree(j job.Job) string {
	return strings.TrimPrefix(j.ProjectDir, protocol.BuildsDir+"/")
}

// Roots opens the directories of volumes (host.Host).
type Roots interface {
	FS(ctx context.Context, volume string) (fs.FS, error)
	OpenRoot(ctx context.Context, volume string) (*os.Root, error)
	Has(ctx context.Context, volume string) bool
}

// Deps is what the checkouts need from the cache manager.
type Deps struct {
	// Roots is nil when the engine is remote: then nothing is checked,
	// linked or fed, and a checkout holds its own objects.
	Roots   Roots
	Records record.Records
	Log     *zap.Logger
}

// Claim is a checkout a job claimed.
type Claim struct {
	Volume, Path string
	Warm         bool
	Record       record.Record
	// Store is the volume of the project's object store; WorkTree the
	// job's checkout below builds_dir ("" when unknown: no store then).
	Store, WorkTree string
	// Renew removes the checkout's volume and makes it anew, empty.
	Renew func(ctx context.Context) error
}

// Say writes one line to the job log.
type Say func(format string, args ...any)

// Ready makes the claimed checkout fit for the job: replaced by a fresh
// one when damaged (gitcheck.Damage) or linked to a store that is no more,
// handed back to root after a job of another user (gitcheck.Reclaim),
// then linked to the project's store. ok is false when a damaged checkout
// could not be replaced: the job should do without it.
func Ready(ctx context.Context, d Deps, c Claim, say Say) (Claim, bool) {
	if d.Roots == nil || !c.Warm {
		return link(ctx, d, c, say)
	}
	fsys, err := d.Roots.FS(ctx, c.Volume)
	if errors.Is(err, host.ErrNotLocal) {
		return c, true
	}
	if err != nil {
		d.Log.Warn("reading a git checkout", zap.String("volume", c.Volume), zap.Error(err))
		return c, true
	}
	why := gitcheck.Damage(fsys)
	if why == "" && c.WorkTree != "" {
		if err := inRoot(ctx, d, c.Volume, func(r *os.Root) error { return gitcheck.Reclaim(r, c.WorkTree) }); err != nil {
			d.Log.Warn("handing a git checkout back to root", zap.String("volume", c.Volume), zap.Error(err))
			why = "its owner could not be reset"
		}
	}
	if why != "" {
		var ok bool
		if c, ok = replace(ctx, d, c, why, say); !ok {
			return c, false
		}
	}
	return link(ctx, d, c, say)
}

// link links c to the project's store: its repository's alternates name
// the store, made first if need be. A warm checkout linked to another
// store (evicted or damaged since, and made anew) may miss objects: it is
// replaced.
func link(ctx context.Context, d Deps, c Claim, say Say) (Claim, bool) {
	if d.Roots == nil || c.Store == "" || c.WorkTree == "" {
		return c, true
	}
	linked := c.Warm && c.Record.StoreID != ""
	id, err := storeID(ctx, d, c.Store)
	if err != nil {
		d.Log.Warn("making the git object store", zap.String("volume", c.Store), zap.Error(err))
		if linked {
			return replace(ctx, d, c, "its object store is unreadable", say)
		}
		return c, true
	}
	if linked && c.Record.StoreID != id {
		var ok bool
		if c, ok = replace(ctx, d, c, "its object store was replaced", say); !ok {
			return c, false
		}
	}
	if err := inRoot(ctx, d, c.Volume, func(r *os.Root) error {
		return gitcheck.LinkStore(r, c.WorkTree, protocol.GitStoreDir+"/objects")
	}); err != nil {
		d.Log.Warn("linking a git checkout to its object store", zap.String("volume", c.Volume), zap.Error(err))
		if c.Warm && c.Record.StoreID != "" {
			return replace(ctx, d, c, "its link to the object store is broken", say)
		}
		return c, true
	}
	if err := d.Records.Update(c.Volume, func(r *record.Record) error {
		r.StoreID = id
		return nil
	}); err != nil {
		d.Log.Warn("recording a git checkout's object store", zap.String("volume", c.Volume), zap.Error(err))
	}
	c.Record.StoreID = id
	return c, true
}

// replace replaces the warm checkout c with an empty one, saying why in
// one line; ok is false when it could not.
func replace(ctx context.Context, d Deps, c Claim, why string, say Say) (Claim, bool) {
	// The volume is this slot's alone and mounted by no container yet:
	// a job on the slot would hold it, and the engine refuses to remove a
	// volume in use.
	if err := c.Renew(ctx); err != nil {
		d.Log.Warn("replacing a damaged git checkout", zap.String("volume", c.Volume), zap.Error(err))
		say("Cache git %s: damaged (%s) and not replaceable now: this job starts from an empty builds directory of its own", c.Path, why)
		return c, false
	}
	if err := d.Records.Update(c.Volume, func(r *record.Record) error {
		r.SizeBytes, r.Measured, r.StoreID = 0, time.Time{}, ""
		return nil
	}); err != nil {
		d.Log.Warn("resetting the record of a git checkout", zap.String("volume", c.Volume), zap.Error(err))
	}
	say("Cache git %s: damaged (%s): replaced by a fresh checkout", c.Path, why)
	c.Warm, c.Record = false, record.Record{}
	return c, true
}

// Done settles the index of j's checkout, among its cache volumes vols
// (gitcheck.SettleIndex), and moves the objects its fetch added into the
// project's store, naming its HEAD there as slot-<project slot>. Once the
// job is done (cleanup), off its critical path: nothing may use the
// checkout meanwhile.
func Done(ctx context.Context, d Deps, j job.Job, vols []profile.Volume) {
	checkout, store, workTree := "", Store(vols), WorkTree(j)
	for _, v := range vols {
		if IsCheckout(v) {
			checkout = v.Name
		}
	}
	if d.Roots == nil || workTree == "" || checkout == "" || store == "" {
		return
	}
	start := time.Now()
	var settled bool
	if err := inRoot(ctx, d, checkout, func(r *os.Root) (err error) {
		settled, err = gitcheck.SettleIndex(ctx, r, workTree, start)
		return err
	}); err != nil {
		d.Log.Warn("settling a git checkout's index", zap.String("volume", checkout), zap.Error(err))
	}
	rec, err := d.Records.Get(checkout)
	if err != nil || rec.StoreID == "" || !d.Roots.Has(ctx, store) {
		return // never linked to a store, or the store is gone
	}
	if id, err := storeID(ctx, d, store); err != nil || id != rec.StoreID {
		return // linked to another store: its objects stay in the checkout
	}
	var res gitcheck.FeedResult
	err = inRoot(ctx, d, checkout, func(src *os.Root) error {
		return inRoot(ctx, d, store, func(dst *os.Root) (err error) {
			res, err = gitcheck.FeedStore(ctx, src, dst, workTree, fmt.Sprintf("slot-%d", j.ConcurrentProjectID))
			return err
		})
	})
	if err != nil {
		d.Log.Warn("feeding the git object store", zap.String("volume", store), zap.Error(err))
	}
	d.Log.Debug("git store fed", zap.String("store", store), zap.Int("packs", res.Packs), zap.Int("loose", res.Loose),
		zap.Int64("bytes", res.Bytes), zap.Bool("index_settled", settled), zap.Duration("took", time.Since(start)))
}

// storeID is the id of the git store in volume, made if need be.
func storeID(ctx context.Context, d Deps, volume string) (id string, err error) {
	err = inRoot(ctx, d, volume, func(r *os.Root) (err error) {
		id, err = gitcheck.InitStore(r)
		return err
	})
	return id, err
}

// inRoot calls fn with the directory of volume as a root.
func inRoot(ctx context.Context, d Deps, volume string, fn func(*os.Root) error) error {
	r, err := d.Roots.OpenRoot(ctx, volume)
	if err != nil {
		return err
	}
	defer r.Close()
	return fn(r)
}
