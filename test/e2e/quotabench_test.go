package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/warmcache/warmcache/internal/host"
	"github.com/warmcache/warmcache/internal/naming"
)

// BenchmarkGoProjectQuota: the warm go build of the sample project on
// quota'd caches (cache.quota: an ext4 filesystem on a loop device per
// cache) against plain volumes. The two projects' warm jobs run in pairs,
// back to back, the order alternating, so both of a pair see the same
// machine load; it reports the median build_script and whole-job times
// and the median of the pairs' ratios (target: at most 1.05x). `make
// bench` runs it with BenchmarkGoProject (-bench GoProject).
func BenchmarkGoProjectQuota(b *testing.B) {
	if err := host.New(eng, nil).QuotaSupport(); err != nil {
		b.Fatalf("this host should support quotas: %v", err)
	}
	proxy, srv := goModProxy(b), sampleGitServer(b)
	build := "go build -o /dev/null ./...\n"
	quotaConfig := hostNetworkConfig + "[cache]\nquota = \"4GiB\"\n"
	const pairs = 9
	for i := 0; i < b.N; i++ {
		plain, quota := nextJobID(), nextJobID()
		goProjectJob(b, srv, proxy, jobSpec{ProjectID: plain}, "", build, "")
		goProjectJob(b, srv, proxy, jobSpec{ProjectID: quota, Config: quotaConfig}, "", build, "")
		if !quotaImageExists(b, quota) {
			b.Fatal("the quota'd project's module cache has no filesystem image")
		}
		warm := map[string]string{"GOPROXY": "off"}
		var plainBuild, quotaBuild, plainJob, quotaJob []time.Duration
		var buildRatio, jobRatio []float64
		for p := range pairs {
			var pt, qt map[string]time.Duration
			runPlain := func() { pt = goProjectJob(b, srv, proxy, jobSpec{ProjectID: plain, Vars: warm}, "", build, "") }
			runQuota := func() {
				qt = goProjectJob(b, srv, proxy, jobSpec{ProjectID: quota, Config: quotaConfig, Vars: warm}, "", build, "")
			}
			if p%2 == 0 {
				runPlain()
				runQuota()
			} else {
				runQuota()
				runPlain()
			}
			plainBuild, quotaBuild = append(plainBuild, pt["build_script"]), append(quotaBuild, qt["build_script"])
			plainJob, quotaJob = append(plainJob, pt["job"]), append(quotaJob, qt["job"])
			buildRatio = append(buildRatio, float64(qt["build_script"])/float64(pt["build_script"]))
			jobRatio = append(jobRatio, float64(qt["job"])/float64(pt["job"]))
		}
		b.ReportMetric(float64(median(plainBuild).Milliseconds()), "ms/warm-build-plain")
		b.ReportMetric(float64(median(quotaBuild).Milliseconds()), "ms/warm-build-quota")
		b.ReportMetric(medianRatio(buildRatio), "quota-build/plain-build")
		b.ReportMetric(float64(median(plainJob).Milliseconds()), "ms/warm-job-plain")
		b.ReportMetric(float64(median(quotaJob).Milliseconds()), "ms/warm-job-quota")
		b.ReportMetric(medianRatio(jobRatio), "quota-job/plain-job")
		removeProjectCaches(b, plain)
		removeProjectCaches(b, quota)
	}
}

// medianRatio is the median of an odd number of ratios.
func medianRatio(rs []float64) float64 {
	rs = slices.Clone(rs)
	slices.Sort(rs)
	return rs[len(rs)/2]
}

// quotaImageExists says whether the module cache of project has a quota's
// filesystem image.
func quotaImageExists(b *testing.B, project int64) bool {
	b.Helper()
	rs, err := eng.List(b.Context(), map[string]string{naming.LabelCacheProjectID: fmt.Sprint(project), naming.LabelCachePath: "/go/pkg/mod"})
	if err != nil || len(rs) != 1 {
		b.Fatalf("the module cache of project %d: %v, %d volumes", project, err, len(rs))
	}
	info, err := eng.InspectVolume(b.Context(), rs[0].Name)
	if err != nil {
		b.Fatal(err)
	}
	_, err = os.Stat(filepath.Join(filepath.Dir(info.Mountpoint), "warmcache-quota.img"))
	return err == nil
}
