package migrate

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// meaningfulZero are [runners.docker] keys whose zero value is not the
// runner's default: services_privileged = false takes privileges from
// services of a privileged runner, services_limit = 0 allows none.
var meaningfulZero = []string{"services_privileged", "services_limit"}

// limitKeys are the resource keys warmcache keeps under [limits], one set
// per kind of container. The Docker executor applies its own to the build
// and helper containers, and the service_ ones to services.
var limitKeys = []string{"cpus", "cpuset_cpus", "memory", "memory_swap", "memory_reservation"}

// dockerEntries turns each set key of [runners.docker] into an entry: the
// same key under [docker] unless warmcache names or shapes it differently.
// Keys with no place at all in warmcache are noted on c.
func dockerEntries(docker map[string]any, c *carrier) []entry {
	var out []entry
	for _, key := range slices.Sorted(maps.Keys(docker)) {
		v := docker[key]
		from := "runners.docker." + key
		if isZero(v) && !slices.Contains(meaningfulZero, key) {
			continue
		}
		if e, ok := mapped(from, key, v, c); ok {
			out = append(out, e...)
			continue
		}
		out = append(out, entry{from: from, to: [][]string{{"docker", key}}, value: v})
	}
	return out
}

// mapped gives the entries of a key warmcache has under another name or
// shape; ok is false for a key that goes to [docker] as it is.
func mapped(from, key string, v any, c *carrier) ([]entry, bool) {
	one := func(to []string, value any, how string) []entry {
		return []entry{{from: from, to: [][]string{to}, value: value, mapped: how}}
	}
	switch {
	case key == "image":
		return one([]string{"docker", "default_image"}, v, "carried as docker.default_image (the image of jobs that name none)"), true
	case key == "pull_policy":
		// The runner takes one policy or a list; warmcache always a list.
		if s, ok := v.(string); ok {
			v = []any{s}
		}
		return one([]string{"docker", "pull_policy"}, v, ""), true
	case slices.Contains(limitKeys, key):
		return []entry{{
			from: from, value: v,
			to:     [][]string{{"limits", "build", key}, {"limits", "helper", key}},
			mapped: fmt.Sprintf("carried as limits.build.%s and limits.helper.%s (warmcache limits each kind of container under [limits]; the Docker executor applies it to both)", key, key),
		}}, true
	case strings.HasPrefix(key, "service_") && slices.Contains(limitKeys, strings.TrimPrefix(key, "service_")):
		k := strings.TrimPrefix(key, "service_")
		return one([]string{"limits", "services", k}, v, fmt.Sprintf("carried as limits.services.%s", k)), true
	case key == "shm_size":
		// The runner's is a number of bytes; warmcache's a size string.
		if n, ok := v.(int64); ok {
			v = fmt.Sprint(n)
		}
		return []entry{{
			from: from, value: v,
			to:     [][]string{{"limits", "build", key}, {"limits", "helper", key}, {"limits", "services", key}},
			mapped: "carried as limits.build.shm_size, limits.helper.shm_size and limits.services.shm_size (bytes; the Docker executor gives every container the same)",
		}}, true
	case key == "services_limit":
		if n, ok := v.(int64); ok && n < 0 {
			c.notef(from, "not carried: %d (no limit) has no equivalent; warmcache always caps services per job (services.max_per_job, left at its default)", n)
			return nil, true
		}
		return one([]string{"services", "max_per_job"}, v, "carried as services.max_per_job"), true
	case key == "wait_for_services_timeout":
		n, ok := v.(int64)
		if !ok {
			return one([]string{"services", "wait_timeout"}, v, ""), true
		}
		if n < 0 {
			return one([]string{"services", "wait_timeout"}, "0s", fmt.Sprintf("carried as services.wait_timeout = \"0s\" (%d: no wait)", n)), true
		}
		return one([]string{"services", "wait_timeout"}, fmt.Sprintf("%ds", n), fmt.Sprintf("carried as services.wait_timeout = \"%ds\"", n)), true
	case key == "disable_cache":
		b, ok := v.(bool)
		if !ok {
			return one([]string{"cache", "enabled"}, v, ""), true
		}
		return one([]string{"cache", "enabled"}, !b, "carried as cache.enabled = false: no persistent cache_dir and no warm caches, like the runner's jobs had; set it to true for warmcache's caches"), true
	case key == "helper_image" && strings.Contains(fmt.Sprint(v), "${"):
		// The runner expands ${CI_RUNNER_VERSION} and the like in it;
		// warmcache takes the name as it is.
		c.notef(from, "not carried: warmcache does not expand variables in docker.helper_image; leave it out for the official helper image of the runner's version, or write the tag out")
		return nil, true
	case key == "cache_dir":
		c.notef(from, "not carried: warmcache keeps cache_dir (/cache in the job containers) and its caches in volumes it manages itself ([cache])")
		return nil, true
	}
	return nil, false
}

// globalEntries are the settings outside [[runners]] that warmcache has.
func globalEntries(file map[string]any) []entry {
	var out []entry
	if v, ok := file["concurrent"]; ok && !isZero(v) {
		out = append(out, entry{
			from: "concurrent", to: [][]string{{"limits", "concurrent_jobs"}}, value: v,
			mapped: "carried as limits.concurrent_jobs (jobs the host runs at once; a job's default share of the host is divided by it)",
		})
	}
	return out
}

// otherSections are the runner's sections of other executors and
// providers, which a custom executor does not read.
var otherSections = []string{"autoscaler", "instance", "kubernetes", "machine", "parallels", "ssh", "virtualbox"}

// runnerNotes says what becomes of the runner's own settings that touch
// what warmcache does. The rest (url, token, limit, scripts, ...) stays in
// gitlab-runner's config.toml and works as before.
func runnerNotes(runner map[string]any, c *carrier) {
	for _, key := range []string{"builds_dir", "cache_dir"} {
		if v, ok := runner[key]; ok && !isZero(v) {
			c.notef("runners."+key, "not carried: warmcache's config stage gives the runner its own %s (inside the job containers), which the custom executor uses instead", key)
		}
	}
	if v, ok := runner["environment"]; ok && !isZero(v) {
		c.notef("runners.environment", "kept in gitlab-runner's config.toml: the runner adds these variables to every job under the custom executor too (copy one to [env] extra only if service containers need it)")
	}
	// Without a Type the runner keeps `cache:` archives in cache_dir,
	// which warmcache keeps persistent itself.
	if v, ok := runner["cache"].(map[string]any); ok {
		if kind, _ := v["Type"].(string); kind != "" {
			c.notef("runners.cache", "kept in gitlab-runner's config.toml: the runner still uploads and downloads the %s cache of `cache:` itself, under any executor; warmcache's warm caches ([cache]) come on top", kind)
		}
	}
	if v, ok := runner["feature_flags"].(map[string]any); ok && len(v) > 0 {
		c.notef("runners.feature_flags", "kept in gitlab-runner's config.toml; flags of the Docker executor (FF_NETWORK_PER_BUILD and the like) do nothing under the custom executor")
	}
	for _, s := range otherSections {
		if _, ok := runner[s]; ok {
			c.notef("runners."+s, "not applicable: the custom executor does not read it; warmcache runs every job on the one engine at docker.host")
		}
	}
	if _, ok := runner["custom"]; ok {
		c.notef("runners.custom", "replaced by the [runners.custom] block at the end of stdout")
	}
}
