package stages

import (
	"context"
	"time"

	"github.com/warmcache/warmcache/cachevol"
)

// CacheList prints the cache volumes on stdout, as a table or as JSON.
func CacheList(ctx context.Context, d Deps, asJSON bool) error {
	entries, err := cachevol.List(ctx, d.Engine)
	if err != nil {
		return err
	}
	entries = cacheRecords(d).Trusted(entries)
	if asJSON {
		return cachevol.WriteJSON(d.Stdout, entries)
	}
	return cachevol.WriteTable(d.Stdout, entries, time.Now())
}
