package driver

import (
	"context"
	"time"

	"github.com/warmcache/warmcache/internal/cache"
)

// CacheList prints the cache volumes on stdout, as a table or as JSON.
func CacheList(ctx context.Context, d Deps, asJSON bool) error {
	entries, err := cache.List(ctx, d.Engine)
	if err != nil {
		return err
	}
	entries = cacheRecords(d).Trusted(entries)
	if asJSON {
		return cache.WriteJSON(d.Stdout, entries)
	}
	return cache.WriteTable(d.Stdout, entries, time.Now())
}
