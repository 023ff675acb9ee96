package limits

import (
	"errors"
	"strings"
	"testing"
)

// FuzzRequest: whatever a job puts in WARMCACHE_CPUS and WARMCACHE_MEMORY,
// Resolve either refuses it as the job's own bad request, on one line, or
// grants something within the admin's maximum; nothing panics.
func FuzzRequest(f *testing.F) {
	for _, seed := range [][2]string{{"", ""}, {"0.5", "512m"}, {"4", "16g"}, {"1e308", "9e18t"}, {"-0", "0.1k"}, {"NaN", "1ib"}} {
		f.Add(seed[0], seed[1])
	}
	c := Default()
	c.Job = JobSet{CPUs: "1.5", Memory: "2g"}
	f.Fuzz(func(t *testing.T, cpus, memory string) {
		plan, err := Resolve(c, "g/p", 1, Host{NanoCPUs: 2e9, Memory: 8 << 30}, Request{CPUs: cpus, Memory: memory})
		if err != nil {
			if !errors.Is(err, ErrBadRequest) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %q is not a one-line bad request", err)
			}
			return
		}
		if plan.Job.NanoCPUs <= 0 || plan.Job.NanoCPUs > 1.5e9 || plan.Job.Memory <= 0 || plan.Job.Memory > 2<<30 {
			t.Fatalf("granted %+v outside the maximum", plan.Job)
		}
	})
}
