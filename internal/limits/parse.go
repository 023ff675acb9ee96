// Package limits turns the admin's resource settings and a job's requests
// into the numbers the engine and the job's cgroup take: pure converters
// ("1.5" CPUs to nano-CPUs, "2g" to bytes), per-project overrides, clamping
// a request to the admin's maximum and the default share of the host.
// Nothing here touches the system; package jobcgroup applies the result.
package limits

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/docker/go-units"
)

// maxCPUs bounds a CPU value: more than any host has, small enough that
// nano-CPUs never overflow.
const maxCPUs = 4096

// minMemory is the smallest memory limit the engine accepts (6 MiB).
const minMemory = 6 << 20

// NanoCPUs converts a CPU count such as "1.5" or "0.25" to billionths of a
// CPU. "" means no limit and gives 0.
func NanoCPUs(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("%q is not a number of CPUs such as \"1.5\"", s)
	}
	n := int64(math.Round(f * 1e9))
	switch {
	case n < 1e7: // the kernel's smallest CFS quota is 1 ms per 100 ms
		return 0, fmt.Errorf("%q is less than 0.01 CPUs", s)
	case f > maxCPUs:
		return 0, fmt.Errorf("%q is more than %d CPUs", s, maxCPUs)
	}
	return n, nil
}

// MemoryBytes converts a size such as "512m", "2g", "1.5GiB" or "1048576"
// to bytes with Docker's own parser (go-units RAMInBytes, which the Docker
// CLI and the Docker executor use): units are binary (k = 1024) whatever
// the spelling ("2GB" too), a number without a unit is bytes. It is the
// one size parser of the config (cache.gc sizes too). "" means no limit and
// gives 0; negative, signed and overflowing sizes are refused.
func MemoryBytes(s string) (int64, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, nil
	}
	n, err := units.RAMInBytes(t)
	// RAMInBytes reads "+1m" as 1m; a sign is refused here as a typo.
	if err != nil || strings.HasPrefix(t, "+") {
		return 0, fmt.Errorf("%q is not a size such as \"512m\" or \"2g\"", s)
	}
	// RAMInBytes converts an overflowing float as the CPU does: a negative
	// number on amd64, the largest int64 on arm64.
	if n < 0 || n >= math.MaxInt64/2 {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return n, nil
}

// checkCpuset validates a CPU list such as "0-3,6": what cgroups accept
// in cpuset.cpus.
func checkCpuset(s string) error {
	_, err := cpuRanges(s)
	return err
}

// cpuRanges reads a CPU list into its ranges, each [first, last].
func cpuRanges(s string) ([][2]uint64, error) {
	if s == "" {
		return nil, nil
	}
	bad := fmt.Errorf("%q is not a CPU list such as \"0-3,6\"", s)
	var out [][2]uint64
	for part := range strings.SplitSeq(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.ParseUint(lo, 10, 16)
		if err != nil {
			return nil, bad
		}
		b := a
		if isRange {
			b, err = strconv.ParseUint(hi, 10, 16)
			if err != nil || b < a {
				return nil, bad
			}
		}
		out = append(out, [2]uint64{a, b})
	}
	return out, nil
}

// cpusetWithin says whether every CPU of the list inner is in the list
// outer. An empty list is any CPU; a list that cannot be read is reported
// on its own, so it passes here.
func cpusetWithin(inner, outer string) bool {
	in, err1 := cpuRanges(inner)
	out, err2 := cpuRanges(outer)
	if err1 != nil || err2 != nil || inner == "" || outer == "" {
		return true
	}
	for _, r := range in {
		// Walk r's CPUs a covering range at a time; the lists may overlap
		// or touch ("0-1,2-3" holds "1-2").
		for cpu := r[0]; cpu <= r[1]; {
			i := slices.IndexFunc(out, func(o [2]uint64) bool { return o[0] <= cpu && cpu <= o[1] })
			if i < 0 {
				return false
			}
			cpu = out[i][1] + 1
		}
	}
	return true
}

// MiB formats bytes for a job log line: whole MiB below 1 GiB ("512
// MiB", so a peak a few pages short of its limit reads as the limit), GiB
// with two decimals above ("1.5 GiB").
func MiB(b int64) string {
	switch {
	case b <= 0:
		return "unlimited"
	case b >= 1<<30:
		return trimFloat(float64(b)/(1<<30)) + " GiB"
	default:
		return strconv.FormatInt((b+(1<<19))>>20, 10) + " MiB"
	}
}

// CPUs formats nano-CPUs as a CPU count: "1 CPU", "1.5 CPUs".
func CPUs(n int64) string {
	switch {
	case n <= 0:
		return "unlimited CPUs"
	case n == 1e9:
		return "1 CPU"
	default:
		return trimFloat(float64(n)/1e9) + " CPUs"
	}
}

func trimFloat(f float64) string {
	return strconv.FormatFloat(math.Round(f*100)/100, 'f', -1, 64)
}
