package cache

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

// Label keys of cache volumes (besides naming.LabelManaged and LabelKind).
const (
	LabelInstance    = naming.LabelPrefix + "cache.instance"
	LabelProjectID   = naming.LabelPrefix + "cache.project.id"
	LabelProjectPath = naming.LabelPrefix + "cache.project.path"
	LabelProfile     = naming.LabelPrefix + "cache.profile"
	LabelPath        = naming.LabelPrefix + "cache.path"
	LabelTrust       = naming.LabelPrefix + "cache.trust"
	LabelSlot        = naming.LabelPrefix + "cache.slot"
	LabelPool        = naming.LabelPrefix + "cache.pool"
	LabelCreated     = naming.LabelCreated
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
	return Key{Instance: j.Instance(), ProjectID: j.ProjectID, ProjectPath: j.ProjectPath, Trust: trust, Slot: j.ConcurrentID}
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
		if !p.ConcurrentSafe {
			slot = strconv.Itoa(key.Slot)
		}
		for _, path := range p.Paths {
			parts := []string{key.Instance, strconv.FormatInt(key.ProjectID, 10), key.Trust, p.Name, path, slot}
			if key.Pool != "" {
				parts = append(parts, "pool="+key.Pool)
			}
			labels := map[string]string{
				naming.LabelManaged: "true",
				naming.LabelKind:    string(naming.KindCache),
				LabelInstance:       key.Instance,
				LabelProjectID:      strconv.FormatInt(key.ProjectID, 10),
				LabelProjectPath:    key.ProjectPath,
				LabelProfile:        p.Name,
				LabelPath:           path,
				LabelTrust:          key.Trust,
				LabelSlot:           slot,
			}
			if key.Pool != "" {
				labels[LabelPool] = key.Pool
			}
			out = append(out, Volume{Name: naming.CacheVolume(p.Name, parts...), Profile: p.Name, Path: path, Labels: labels})
		}
	}
	return out
}
