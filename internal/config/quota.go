package config

import "fmt"

// CacheQuota is the hard limit on each cache volume ([cache] quota),
// enforced by the filesystem where the host can (see host.CreateQuota).
type CacheQuota struct {
	// Quota is the size each cache volume created from now on may hold
	// at most; 0 ("") is no limit. A job that fills a cache gets ENOSPC
	// there, and a line in its log.
	Quota Size `toml:"quota"`
}

// minQuota leaves room for the filesystem's own tables and journal.
const minQuota = 16 << 20

func (q CacheQuota) validate() []string {
	if q.Quota > 0 && q.Quota < minQuota {
		return []string{fmt.Sprintf("cache.quota: %d bytes is under the least, 16MiB", q.Quota)}
	}
	return nil
}
