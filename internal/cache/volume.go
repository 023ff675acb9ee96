package cache

import "github.com/warmcache/warmcache/internal/cache/profile"

// The names the cache manager's callers use for what package profile
// plans: a project's cache key, one planned volume, a profile.
type (
	Key     = profile.Key
	Volume  = profile.Volume
	Profile = profile.Profile
)

// Trust classes (see profile.Protected).
const (
	Protected   = profile.Protected
	Unprotected = profile.Unprotected
)
