package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"

	"go.uber.org/zap"

	"github.com/warmcache/warmcache/internal/cache"
	"github.com/warmcache/warmcache/internal/cache/gc"
	"github.com/warmcache/warmcache/internal/cache/record"
	"github.com/warmcache/warmcache/internal/cache/remote"
	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/human"
)

// CacheGC is `warmcache cache gc`: it evicts least recently used caches
// of the configured pool until every cache.gc limit holds, and says on
// stdout what it removed (with dryRun, what it would remove) and what it
// had to leave.
func CacheGC(ctx context.Context, d Deps, dryRun bool) error {
	if !d.Config.Cache.GC.Limited() {
		fmt.Fprintln(d.Stdout, "No cache.gc limit is set: nothing to evict.")
		return nil
	}
	now := time.Now()
	verb := "Evicted"
	if dryRun {
		verb = "Would evict"
	}
	cands, res, err := d.Caches.GC(ctx, dryRun, nil, func(ev gc.Eviction) {
		fmt.Fprintf(d.Stdout, "%s %s\n", verb, describeEviction(ev, now))
	})
	if dryRun {
		for _, ev := range res.Evicted {
			fmt.Fprintf(d.Stdout, "%s %s\n", verb, describeEviction(ev, now))
		}
	}
	for _, s := range res.Skipped {
		what := "Kept"
		if errors.Is(s.Err, gc.ErrGone) {
			what = "Not counted"
		}
		fmt.Fprintf(d.Stdout, "%s %s: %s\n", what, describeEviction(s.Eviction, now), skipReason(s.Err))
	}
	var total, freed int64
	for _, c := range cands {
		total += c.Record.SizeBytes
	}
	for _, ev := range res.Evicted {
		freed += ev.SizeBytes
	}
	fmt.Fprintf(d.Stdout, "%d cache volumes, %s; %d evicted (%s)\n", len(cands), human.Bytes(total), len(res.Evicted), human.Bytes(freed))
	if err != nil {
		return fmt.Errorf("cache gc: %w", err)
	}
	return nil
}

func describeEviction(ev gc.Eviction, now time.Time) string {
	size := "size not measured"
	if ev.SizeKnown {
		size = human.Bytes(ev.SizeBytes)
	}
	return fmt.Sprintf("%s (%s %s, %s, last used %s): %s", ev.Volume, ev.Project, ev.Profile,
		size, human.Ago(ev.LastUsed, now), ev.Reason)
}

func skipReason(err error) string {
	switch {
	case errors.Is(err, engine.ErrInUse):
		return "in use by a job's container"
	case errors.Is(err, record.ErrLeased):
		return "just claimed by a job being prepared"
	case errors.Is(err, gc.ErrGone):
		return "already removed (by another gc pass)"
	default:
		return err.Error()
	}
}

// CacheList prints the cache volumes on stdout, as a table or as JSON.
func CacheList(ctx context.Context, d Deps, asJSON bool) error {
	entries, err := d.Caches.List(ctx)
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSON(d.Stdout, entries)
	}
	return writeTable(d.Stdout, entries, time.Now())
}

// writeTable prints entries for people; the QUOTA column only where some
// cache has a quota.
func writeTable(w io.Writer, entries []cache.Entry, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	quotas := slices.ContainsFunc(entries, func(e cache.Entry) bool { return e.QuotaBytes > 0 })
	head := "VOLUME\tPROJECT\tPROFILE\tPATH\tTRUST\tSIZE\tLAST USED"
	if quotas {
		head += "\tQUOTA"
	}
	fmt.Fprintln(tw, head)
	for _, e := range entries {
		size := "?"
		if e.SizeKnown {
			size = human.Bytes(e.SizeBytes)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s", e.Volume, e.ProjectPath, e.Profile, e.Path, e.Trust, size, human.Ago(e.LastUsed, now))
		if quotas {
			fmt.Fprintf(tw, "\t%s", quotaColumn(e))
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

// quotaColumn is a cache's use of its quota: "12.0 MiB of 100 MiB", or "-"
// for none.
func quotaColumn(e cache.Entry) string {
	if e.QuotaBytes == 0 {
		return "-"
	}
	return fmt.Sprintf("%s of %s", human.Bytes(e.QuotaUsedBytes), human.Limit(e.QuotaBytes))
}

// writeJSON prints entries for scripts: one JSON array.
func writeJSON(w io.Writer, entries []cache.Entry) error {
	if entries == nil {
		entries = []cache.Entry{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(entries)
}

// CacheListRemote prints the newest snapshot of every cache key in the
// fleet cache (cache.remote), as a table or as JSON.
func CacheListRemote(ctx context.Context, d Deps, asJSON bool) error {
	tier := remote.New(d.Config.Cache.Remote, nil, zap.NewNop())
	if tier == nil {
		return errors.New("no fleet cache: cache.remote.url is not set")
	}
	snaps, err := tier.List(ctx)
	if err != nil {
		return err
	}
	if asJSON {
		if snaps == nil {
			snaps = []remote.Snapshot{}
		}
		enc := json.NewEncoder(d.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(snaps)
	}
	tw := tabwriter.NewWriter(d.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "POOL\tINSTANCE\tPROJECT\tPROFILE\tPATH\tTRUST\tSIZE\tSTORED\tAGE")
	now := time.Now()
	for _, s := range snaps {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Pool, s.Instance, s.ProjectID, s.Profile, s.Path, s.Trust,
			human.Bytes(s.ContentBytes), human.Bytes(s.StoredBytes), human.Ago(s.Created, now))
	}
	return tw.Flush()
}

// CacheGCRemote is `warmcache cache gc --remote`: it bounds the fleet
// cache (see remote.GC) and says what it removed (with dryRun, would).
func CacheGCRemote(ctx context.Context, d Deps, dryRun bool) error {
	tier := remote.New(d.Config.Cache.Remote, nil, zap.NewNop())
	if tier == nil {
		return errors.New("no fleet cache: cache.remote.url is not set")
	}
	removed, err := tier.GC(ctx, d.Config.Cache.GC.MaxIdle, dryRun, time.Now())
	verb := "removed"
	if dryRun {
		verb = "would remove"
	}
	for _, r := range removed {
		fmt.Fprintf(d.Stdout, "%s %s: %s\n", verb, r.Key, r.Reason)
	}
	fmt.Fprintf(d.Stdout, "fleet cache: %s %d objects\n", verb, len(removed))
	return err
}
