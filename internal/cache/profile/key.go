package profile

import (
	"strconv"

	"github.com/warmcache/warmcache/internal/job"
	"github.com/warmcache/warmcache/internal/naming"
)

// Trust classes. Protected refs and unprotected refs never share a
// writable cache: what an unprotected pipeline writes could poison what a
// protected (deploying) job runs.
const (
	Protected   = "protected"
	Unprotected = "unprotected"
)

// Key is the identity of a project's caches. It is built only from the
// trusted job response, never from CUSTOM_ENV_ values a job can set.
type Key struct {
	Instance    string // GitLab host[:port]
	ProjectID   int64
	ProjectPath string
	Trust       string
	// Slot is the concurrency slot, used only by profiles that are not
	// safe with concurrent writers.
	Slot int
	// ProjectSlot is the concurrency slot among the project's jobs, used
	// only by profiles with Profile.ProjectSlot (the git checkout).
	ProjectSlot int
	// Pool is the admin's name for a group of caches (cache.pool): runners
	// of different pools never share a volume, and a GC can be limited to
	// one pool. Empty is the default pool, named as before pools existed.
	Pool string
}

// KeyFor derives the cache key of a job.
func KeyFor(j job.Job) Key {
	trust := Unprotected
	if j.Protected {
		trust = Protected
	}
	return Key{Instance: j.Instance(), ProjectID: j.ProjectID, ProjectPath: j.ProjectPath, Trust: trust, Slot: j.ConcurrentID, ProjectSlot: j.ConcurrentProjectID}
}

// Volume is one cache volume a job mounts.
type Volume struct {
	Name    string
	Profile string
	Path    string
	Labels  map[string]string
}

// Plan lists the cache volumes of key for profiles, one per profile path.
// Names are deterministic, so every job of the project finds the same ones.
func Plan(key Key, profiles []Profile) []Volume {
	var out []Volume
	for _, p := range profiles {
		slot := "shared"
		switch {
		case p.ProjectSlot:
			slot = strconv.Itoa(key.ProjectSlot)
		case !p.ConcurrentSafe:
			slot = strconv.Itoa(key.Slot)
		}
		for _, path := range p.Paths {
			parts := []string{key.Instance, strconv.FormatInt(key.ProjectID, 10), key.Trust, p.Name, path, slot}
			if key.Pool != "" {
				parts = append(parts, "pool="+key.Pool)
			}
			labels := map[string]string{
				naming.LabelManaged:          "true",
				naming.LabelKind:             string(naming.KindCache),
				naming.LabelCacheInstance:    key.Instance,
				naming.LabelCacheProjectID:   strconv.FormatInt(key.ProjectID, 10),
				naming.LabelCacheProjectPath: key.ProjectPath,
				naming.LabelCacheProfile:     p.Name,
				naming.LabelCachePath:        path,
				naming.LabelCacheTrust:       key.Trust,
				naming.LabelCacheSlot:        slot,
			}
			if key.Pool != "" {
				labels[naming.LabelCachePool] = key.Pool
			}
			out = append(out, Volume{Name: naming.CacheVolume(p.Name, parts...), Profile: p.Name, Path: path, Labels: labels})
		}
	}
	return out
}
