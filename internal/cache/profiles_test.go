package cache

import (
	"fmt"

	"github.com/warmcache/warmcache/internal/cache/profile"
	"github.com/warmcache/warmcache/internal/config"
)

// The profiles the cache tests claim, as package profile defines them (its
// own tests pin every definition).
var (
	wantCacheDir = profile.CacheDir
	wantGo       = builtin("go")
	wantNpm      = builtin("npm")
	wantPip      = builtin("pip")
)

// builtin is the built-in profile name.
func builtin(name string) Profile {
	ps, err := profile.Load(config.Cache{Enabled: true, Profiles: []string{name}})
	if err != nil {
		panic(err)
	}
	for _, p := range ps {
		if p.Name == name {
			return p
		}
	}
	panic(fmt.Sprintf("no built-in profile %q", name))
}

var testKey = Key{Instance: "gitlab.example.com", ProjectID: 1001, ProjectPath: "group/project", Trust: Unprotected}
