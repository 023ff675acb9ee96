package driver

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/warmcache/warmcache/internal/cache/profile"
	"github.com/warmcache/warmcache/internal/config"
	"github.com/warmcache/warmcache/internal/dockerflag"
	"github.com/warmcache/warmcache/internal/engine"
)

// checkVolumeTargets refuses, before anything is made, a docker.volumes
// or docker.tmpfs entry at, above or below a cache's mount point: it
// would hide the cache, or the engine would make the cache's mount point
// inside a host directory. The config's own checks (at load) cover
// /builds, /cache, the credentials and [[cache.custom]]; the built-in
// profiles' paths, and where they move for a job that does not run as
// root, are known here.
func checkVolumeTargets(cfg config.Config) error {
	profiles, err := profile.Load(cfg.Cache)
	if err != nil {
		return err
	}
	var targets []string
	for _, p := range profiles {
		for _, path := range p.Paths {
			for _, nonRoot := range []bool{false, true} {
				if t := profile.Target(path, nonRoot); !slices.Contains(targets, t) {
					targets = append(targets, t)
				}
			}
		}
	}
	o := cfg.Docker.ContainerOptions
	check := func(key, spec, dst string) error {
		for _, t := range targets {
			if dockerflag.Overlaps(dst, t) {
				return fmt.Errorf("%s: %q would hide or bind the cache mounted at %s (cache.profiles); mount it elsewhere", key, spec, t)
			}
		}
		return nil
	}
	for i, spec := range o.Volumes {
		v, err := dockerflag.ParseVolume(spec)
		if err != nil {
			return fmt.Errorf("docker.volumes[%d]: %w", i, err)
		}
		if err := check(fmt.Sprintf("docker.volumes[%d]", i), spec, v.Destination); err != nil {
			return err
		}
	}
	for _, path := range slices.Sorted(maps.Keys(o.Tmpfs)) {
		if err := check("docker.tmpfs", path, path); err != nil {
			return err
		}
	}
	return nil
}

// securityOpts reads each seccomp profile that a security option names
// by its file into the option, as the Docker executor (and the docker
// CLI) do: the engine takes a profile's JSON, not a path on the runner's
// host.
func securityOpts(key string, opts []string) ([]string, error) {
	var out []string
	for _, opt := range opts {
		name, value, ok := strings.Cut(opt, "=")
		if !ok || name != "seccomp" || strings.HasPrefix(value, "{") || value == "unconfined" || value == "builtin" {
			out = append(out, opt)
			continue
		}
		profile, err := os.ReadFile(value)
		if err != nil {
			return nil, fmt.Errorf("%s: reading the seccomp profile: %w", key, err)
		}
		if !json.Valid(profile) {
			return nil, fmt.Errorf("%s: the seccomp profile %s is not JSON", key, value)
		}
		out = append(out, "seccomp="+string(profile))
	}
	return out, nil
}

// explainPrivileged turns the engine's refusal of a privileged container
// into the one line the job log needs: which container, the runtime's
// reason, and what it means. It stays a system failure: the job is not
// at fault, the host is.
func explainPrivileged(err error, describe func(container string) string) error {
	var refused *engine.PrivilegedRefusedError
	if !errors.As(err, &refused) {
		return err
	}
	return fmt.Errorf("%v: %s (%s); this host's Docker cannot run privileged containers, so jobs that need them (docker.privileged, docker.services_privileged) must run on a runner whose engine can",
		engine.ErrPrivilegedRefused, describe(refused.Container), refused.Cause)
}
