package e2e

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestQuotaMetrics: with cache.quota, the metrics file has the quotas of
// the job's caches and their use, summed per profile and trust, after the
// step (the growth report) and after cleanup.
func TestQuotaMetrics(t *testing.T) {
	requireQuotas(t)
	pool := newGCPool(t)
	prom := filepath.Join(t.TempDir(), "warmcache.prom")
	cfg := strings.Replace(pool.quotaConfig(""), "[cache]\n", fmt.Sprintf("[cache]\nmetrics_file = %q\n", prom), 1)
	j := newJob(t, jobSpec{Config: cfg})
	if r := j.prepare(); r.Code != 0 || strings.Contains(r.Stderr, "not enforced") {
		t.Fatalf("prepare: %s", r)
	}
	if r := j.run("build_script", runnerScript(fmt.Sprintf("head -c %d /dev/urandom > /go/pkg/mod/blob\n", 20*mib))); r.Code != 0 {
		t.Fatalf("build_script: %s", r)
	}
	gauge := func(text, name, profile string) float64 {
		t.Helper()
		m := regexp.MustCompile(`(?m)^` + name + `\{profile="` + profile + `",trust="unprotected"\} (\S+)$`).FindStringSubmatch(text)
		if m == nil {
			t.Fatalf("metrics file lacks %s for %s:\n%s", name, profile, text)
		}
		v, err := strconv.ParseFloat(m[1], 64)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, when := range []string{"after the step", "after cleanup"} {
		if when == "after cleanup" {
			if r := j.cleanup(); r.Code != 0 {
				t.Fatalf("cleanup: %s", r)
			}
		}
		text := readFile(t, prom)
		// The go profile's two volumes (module and build caches) add up.
		if q := gauge(text, "warmcache_cache_quota_bytes", "go"); q != 2*quotaBytes {
			t.Errorf("%s: go quota %v, want %d", when, q, 2*quotaBytes)
		}
		if q := gauge(text, "warmcache_cache_quota_bytes", "cache-dir"); q != quotaBytes {
			t.Errorf("%s: cache-dir quota %v, want %d", when, q, quotaBytes)
		}
		// 20 MiB of module file, and each filesystem's own tables.
		used := gauge(text, "warmcache_cache_quota_used_bytes", "go")
		t.Logf("%s: go quota used %.1f MiB", when, used/mib)
		if used < 20*mib || used > 2*quotaBytes {
			t.Errorf("%s: go quota used %v, want 20 MiB and the filesystems' overhead", when, used)
		}
	}
}
