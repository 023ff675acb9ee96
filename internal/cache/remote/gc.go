package remote

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
)

// Removal is one key GC removes (or, in a dry run, would remove) from
// the store, and why.
type Removal struct {
	Key    string
	Reason string
}

// GC bounds the store: a cache key whose newest snapshot is older than
// maxIdle (0: no limit) goes whole, pointer first; of every other key,
// the snapshots beyond the newest keep go, never the one its pointer
// names. With dryRun it removes nothing and says what it would.
// S3 lifecycle rules on the prefix are the alternative (see the README).
func (t *Tier) GC(ctx context.Context, maxIdle time.Duration, dryRun bool, now time.Time) ([]Removal, error) {
	c, err := t.client()
	if err != nil {
		return nil, err
	}
	root := "v1/"
	if t.cfg.Prefix != "" {
		root = strings.Trim(t.cfg.Prefix, "/") + "/" + root
	}
	snapshots := map[string][]string{} // by key prefix
	for o := range c.ListObjects(ctx, t.cfg.Bucket, minio.ListObjectsOptions{Prefix: root, Recursive: true}) {
		if o.Err != nil {
			return nil, fmt.Errorf("listing bucket %s: %v", t.cfg.Bucket, oneLine(o.Err))
		}
		if base, _, ok := strings.Cut(o.Key, "/snapshots/"); ok {
			snapshots[base] = append(snapshots[base], o.Key)
		} else if base, ok := strings.CutSuffix(o.Key, "/latest"); ok && snapshots[base] == nil {
			snapshots[base] = []string{}
		}
	}
	var out []Removal
	remove := func(key, reason string) error {
		out = append(out, Removal{Key: key, Reason: reason})
		if dryRun {
			return nil
		}
		return c.RemoveObject(ctx, t.cfg.Bucket, key, minio.RemoveObjectOptions{})
	}
	for _, base := range slices.Sorted(maps.Keys(snapshots)) {
		names := snapshots[base]
		slices.Sort(names)
		p, err := t.readPointer(ctx, c, base)
		switch {
		case err == nil && maxIdle > 0 && now.Sub(p.Created) > maxIdle:
			reason := fmt.Sprintf("newest snapshot %s old, over cache.gc.max_idle", now.Sub(p.Created).Round(time.Minute))
			if err := remove(base+"/latest", reason); err != nil {
				return out, err
			}
			for _, n := range names {
				if err := remove(n, reason); err != nil {
					return out, err
				}
			}
		case err == nil:
			for _, n := range names[:max(0, len(names)-keep)] {
				if n != p.Snapshot {
					if err := remove(n, fmt.Sprintf("beyond the newest %d of its key", keep)); err != nil {
						return out, err
					}
				}
			}
		}
	}
	return out, nil
}
