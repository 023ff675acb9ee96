package naming

import (
	"regexp"
	"testing"
)

var (
	jobNameRE   = regexp.MustCompile(`^warmcache-[a-z0-9]{1,16}-[0-9a-f]{6}-p-?\d+-c-?\d+-j-?\d+-[a-z]+$`)
	cacheNameRE = regexp.MustCompile(`^warmcache-[a-z0-9-]{0,20}-[0-9a-f]{12}$`)
)

// FuzzNames: whatever a job puts in the values names are built from, the
// names stay valid Docker names of bounded length, and different cache
// keys give different names.
func FuzzNames(f *testing.F) {
	f.Add("fakegitla", int64(1001), 0, int64(22961), "go", "/go/pkg/mod", "gitlab.example.com")
	f.Add("../../etc\n", int64(-5), -1, int64(0), "Go Cache!", "/root/.cache/go-build", "")
	f.Add("ÄÖÜ\x00\xff", int64(1<<62), 1<<20, int64(1<<62), "", "", "a;b")
	f.Fuzz(func(t *testing.T, runner string, project int64, slot int, jobID int64, profile, path, instance string) {
		k := JobKey{Runner: runner, ProjectID: project, Slot: slot, JobID: jobID}
		for _, kind := range []Kind{KindHelper, KindBuild, KindBuilds} {
			name := k.Name(kind)
			if !jobNameRE.MatchString(name) || len(name) > 128 {
				t.Fatalf("job resource name %q", name)
			}
		}
		a := CacheVolume(profile, instance, path, "protected")
		b := CacheVolume(profile, instance, path, "unprotected")
		if !cacheNameRE.MatchString(a) || a == b {
			t.Fatalf("cache names %q and %q", a, b)
		}
	})
}
