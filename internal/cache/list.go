package cache

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/naming"
)

// Entry is one cache volume as `warmcache cache ls` shows it.
type Entry struct {
	Volume      string    `json:"volume"`
	Instance    string    `json:"instance"`
	ProjectID   string    `json:"project_id"`
	ProjectPath string    `json:"project_path"`
	Profile     string    `json:"profile"`
	Path        string    `json:"path"`
	Trust       string    `json:"trust"`
	SizeBytes   int64     `json:"size_bytes"`
	SizeKnown   bool      `json:"size_known"`
	LastUsed    time.Time `json:"last_used,omitzero"`
	// QuotaBytes is the volume's hard limit (cache.quota when it was
	// made), 0 for none; QuotaUsedBytes is what its filesystem holds.
	QuotaBytes     int64 `json:"quota_bytes,omitempty"`
	QuotaUsedBytes int64 `json:"quota_used_bytes,omitempty"`
}

// List returns every cache volume on the engine, most recently used
// first, with its size and last use from the driver's own records (a
// volume without one, made by an older version, shows its size as not
// measured). It reads labels and one small file per volume: no file of a
// cache is walked, and nothing a job can write is believed.
func (m *Manager) List(ctx context.Context) ([]Entry, error) {
	rs, err := m.engine.List(ctx, map[string]string{naming.LabelKind: string(naming.KindCache)})
	if err != nil {
		return nil, fmt.Errorf("listing cache volumes: %w", err)
	}
	var out []Entry
	for _, r := range rs {
		if r.Type != engine.Volume {
			continue
		}
		en := Entry{
			Volume: r.Name, Instance: r.Labels[naming.LabelCacheInstance], ProjectID: r.Labels[naming.LabelCacheProjectID],
			ProjectPath: r.Labels[naming.LabelCacheProjectPath], Profile: r.Labels[naming.LabelCacheProfile],
			Path: r.Labels[naming.LabelCachePath], Trust: r.Labels[naming.LabelCacheTrust],
		}
		if rec, err := m.records.Get(r.Name); err == nil {
			en.LastUsed = rec.LastUsed
			en.SizeBytes, en.SizeKnown = rec.SizeBytes, !rec.Measured.IsZero()
		}
		if m.cfg.Quota > 0 {
			// One stat and statfs per volume, only with quotas on.
			if q, _, err := m.host.Quota(ctx, r.Name); err == nil {
				en.QuotaBytes, en.QuotaUsedBytes = q.Limit, q.Used
			}
		}
		out = append(out, en)
	}
	sortEntries(out)
	return out, nil
}

// sortEntries orders entries most recently used first.
func sortEntries(entries []Entry) {
	slices.SortFunc(entries, func(a, b Entry) int {
		if c := b.LastUsed.Compare(a.LastUsed); c != 0 {
			return c
		}
		return strings.Compare(a.Volume, b.Volume)
	})
}
