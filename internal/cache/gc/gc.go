// Package gc plans and carries out the eviction of cache volumes: which
// volumes go so that every cache.gc limit holds, judged from labels and
// the driver's own records only, and their removal under each volume's
// record lock, so that a prepare's lease always wins.
package gc

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/warmcache/warmcache/internal/cache/record"
	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/naming"
)

// Engine is what the GC needs from the container engine.
type Engine interface {
	List(ctx context.Context, labels map[string]string) ([]engine.Resource, error)
	InspectVolume(ctx context.Context, name string) (engine.VolumeInfo, error)
	Remove(ctx context.Context, r engine.Resource) error
}

// Limits bound the disk the caches in scope use; zero is no limit.
type Limits struct {
	MaxVolumeBytes int64
	BudgetBytes    int64
	MaxIdle        time.Duration
	// MinFreeBytes is the free space the Docker data root should keep.
	MinFreeBytes int64
}

// Candidate is a cache volume the GC may evict, as the GC knows it: its
// labels and warmcache's own record, never the job-writable stamp.
type Candidate struct {
	Volume string
	Labels map[string]string
	Record record.Record
	// Forked says a live fork stands on the volume (as its lower cache or
	// its layer): no container mounts it, yet removing it would pull the
	// ground from under a running job.
	Forked bool
}

// LastUsed is the record's last use. Candidates seeds the record of a
// volume that has none; without one, it is the volume's creation.
func (c Candidate) LastUsed() time.Time {
	if !c.Record.LastUsed.IsZero() {
		return c.Record.LastUsed
	}
	t, _ := time.Parse(time.RFC3339, c.Labels[naming.LabelCreated])
	return t
}

// Eviction is one volume a GC plan removes, and why.
type Eviction struct {
	Volume    string
	Project   string
	Profile   string
	SizeBytes int64
	SizeKnown bool // the size was measured
	LastUsed  time.Time
	Reason    string
}

// Reasons of an eviction.
const (
	ReasonTooBig   = "over max_volume_size"
	ReasonIdle     = "idle over max_idle"
	ReasonBudget   = "over budget"
	ReasonFreeDisk = "disk under min_free_disk"
)

// Scope selects the cache volumes one GC considers: every warmcache cache
// on the engine, or those of one pool.
func Scope(pool string) map[string]string {
	s := map[string]string{naming.LabelKind: string(naming.KindCache)}
	if pool != "" {
		s[naming.LabelCachePool] = pool
	}
	return s
}

// Candidates lists the cache volumes in scope with their records. It reads
// one small file per volume and walks no cache. A volume without a record
// (made before records were kept) gets one, last used now: its real last
// use is unknown, and its creation would make the oldest cache look idle.
// Its size stays unknown (not measured) until a job's cleanup measures it.
func Candidates(ctx context.Context, e Engine, recs record.Records, scope map[string]string, now time.Time) ([]Candidate, error) {
	rs, err := e.List(ctx, scope)
	if err != nil {
		return nil, fmt.Errorf("listing cache volumes: %w", err)
	}
	forks, err := e.List(ctx, map[string]string{naming.LabelKind: string(naming.KindFork)})
	if err != nil {
		return nil, fmt.Errorf("listing fork volumes: %w", err)
	}
	forked := map[string]bool{}
	for _, f := range forks {
		forked[f.Labels[naming.LabelForkLower]], forked[f.Labels[naming.LabelForkLayer]] = true, true
	}
	var out []Candidate
	var errs []error
	for _, r := range rs {
		if r.Type != engine.Volume {
			continue
		}
		rec, err := recs.Get(r.Name)
		if err == nil && rec.LastUsed.IsZero() {
			err = recs.Update(r.Name, func(cur *record.Record) error {
				if cur.LastUsed.IsZero() {
					cur.LastUsed = now.UTC()
				}
				rec = *cur
				return nil
			})
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, Candidate{Volume: r.Name, Labels: r.Labels, Record: rec, Forked: forked[r.Name]})
	}
	return out, errors.Join(errs...)
}

// Plan lists the evictions that bring the candidates within lim, in
// order: volumes over the size limit, then idle ones, then the least
// recently used while the total is over budget or the free space (free
// bytes now; negative when unknown) under the mark. Volumes leased at now,
// forked or in skip are never planned but still count towards the total.
func Plan(cands []Candidate, lim Limits, free int64, now time.Time, skip map[string]bool) []Eviction {
	sorted := slices.Clone(cands)
	// Oldest first; the name breaks ties so that plans are reproducible.
	slices.SortFunc(sorted, func(a, b Candidate) int {
		return cmp.Or(a.LastUsed().Compare(b.LastUsed()), cmp.Compare(a.Volume, b.Volume))
	})
	var total int64
	for _, c := range sorted {
		total += c.Record.SizeBytes
	}
	var plan []Eviction
	var freed int64
	evict := func(c Candidate, reason string) {
		plan = append(plan, Eviction{Volume: c.Volume, Project: c.Labels[naming.LabelCacheProjectPath], Profile: c.Labels[naming.LabelCacheProfile],
			SizeBytes: c.Record.SizeBytes, SizeKnown: !c.Record.Measured.IsZero(), LastUsed: c.LastUsed(), Reason: reason})
		freed += c.Record.SizeBytes
	}
	var rest []Candidate
	for _, c := range sorted {
		switch {
		case c.Record.Leased(now) || c.Forked || skip[c.Volume]:
		case lim.MaxVolumeBytes > 0 && c.Record.SizeBytes > lim.MaxVolumeBytes:
			evict(c, ReasonTooBig)
			continue
		case lim.MaxIdle > 0 && now.Sub(c.LastUsed()) > lim.MaxIdle:
			evict(c, ReasonIdle)
			continue
		default:
			rest = append(rest, c)
		}
	}
	for _, c := range rest {
		switch {
		case lim.BudgetBytes > 0 && total-freed > lim.BudgetBytes:
			evict(c, ReasonBudget)
		case lim.MinFreeBytes > 0 && free >= 0 && free+freed < lim.MinFreeBytes:
			evict(c, ReasonFreeDisk)
		}
	}
	return plan
}

// Result is what a GC pass did.
type Result struct {
	Evicted []Eviction
	// Skipped are planned volumes left in place: in use by a container,
	// just claimed by a prepare, already removed by another pass (ErrGone),
	// or failing to be removed (Err).
	Skipped []Skipped
}

// ErrGone is returned by Evict for a volume that no longer exists.
var ErrGone = errors.New("already removed")

// Skipped is a planned eviction that did not happen.
type Skipped struct {
	Eviction
	Err error
}

// Evict removes the volume name unless a prepare has claimed it less than
// LeaseGrace before now (ErrLeased) or a container mounts it (the engine
// refuses: engine.ErrInUse). The record's lock is held throughout, so a
// prepare's claim of the same volume comes either before (and the volume
// stays) or after (and its EnsureVolume creates it anew).
//
// A volume already gone (another GC pass evicted it since this one listed
// the candidates) is ErrGone: only the pass that removed it counts it.
func Evict(ctx context.Context, e Engine, rs record.Records, name string, now time.Time) error {
	return rs.Update(name, func(r *record.Record) error {
		if r.Leased(now) {
			return record.ErrLeased
		}
		if _, err := e.InspectVolume(ctx, name); errors.Is(err, engine.ErrNotFound) {
			return ErrGone
		}
		if err := e.Remove(ctx, engine.Resource{Type: engine.Volume, Name: name}); err != nil {
			return err
		}
		*r = record.Record{}
		return nil
	})
}

// Run evicts per Plan. A volume that cannot go (in use, just claimed) is
// skipped and the plan made again without it, so that the next least
// recently used takes its place, until the plan is done or ctx ends.
// Volumes in keep are never planned (a job about to claim them). onEvict,
// when set, is called after each removal. cands is left as it is.
func Run(ctx context.Context, e Engine, recs record.Records, cands []Candidate, lim Limits, free int64, now time.Time, keep map[string]bool, onEvict func(Eviction)) (Result, error) {
	var res Result
	cands = slices.Clone(cands)
	skip := maps.Clone(keep)
	if skip == nil {
		skip = map[string]bool{}
	}
	for {
		plan := Plan(cands, lim, free, now, skip)
		if len(plan) == 0 {
			return res, nil
		}
		for _, ev := range plan {
			if err := ctx.Err(); err != nil {
				return res, err
			}
			skip[ev.Volume] = true
			if err := Evict(ctx, e, recs, ev.Volume, now); err != nil {
				res.Skipped = append(res.Skipped, Skipped{ev, err})
				if errors.Is(err, ErrGone) {
					// Nothing there to count towards the limits.
					cands = slices.DeleteFunc(cands, func(c Candidate) bool { return c.Volume == ev.Volume })
				}
				// A skipped volume changes what the rest must free.
				break
			}
			res.Evicted = append(res.Evicted, ev)
			if free >= 0 {
				free += ev.SizeBytes
			}
			cands = slices.DeleteFunc(cands, func(c Candidate) bool { return c.Volume == ev.Volume })
			if onEvict != nil {
				onEvict(ev)
			}
		}
	}
}
