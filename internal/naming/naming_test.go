package naming

import (
	"flag"
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/names.golden")

// allKinds are the per-job kinds in the order the golden file lists them.
var allKinds = []Kind{KindHelper, KindBuild, KindBuilds, KindNetwork, KindService, KindCache}

// goldenKeys are the job keys of testdata/names.golden.
var goldenKeys = []JobKey{
	{Runner: "t3st", ProjectID: 1001, Slot: 2, JobID: 22961},
	{Runner: "glrt-AbCdEf_123.xyz", ProjectID: 1, Slot: 0, JobID: 1},
	{Runner: "", ProjectID: 9_007_199_254_740_993, Slot: 1 << 20, JobID: 9_223_372_036_854_775_807},
	{Runner: "../../etc/passwd\n", ProjectID: 7, Slot: 3, JobID: 42},
}

// TestNamesGolden pins every generated name: a change of a name makes
// the next stages and the reaper lose track of resources made by the
// previous version, so it must be deliberate (go test -update).
func TestNamesGolden(t *testing.T) {
	var b strings.Builder
	b.WriteString("# JobKey -> Base and Name(kind); CacheVolume; Hash. Regenerate with: go test ./naming -update\n")
	for _, k := range goldenKeys {
		fmt.Fprintf(&b, "\nJobKey{Runner: %q, ProjectID: %d, Slot: %d, JobID: %d}\n", k.Runner, k.ProjectID, k.Slot, k.JobID)
		fmt.Fprintf(&b, "  base     %s\n", k.Base())
		for _, kind := range allKinds {
			fmt.Fprintf(&b, "  %-8s %s\n", kind, k.Name(kind))
		}
		fmt.Fprintf(&b, "  %-8s %s\n", "service0", k.ServiceName(0))
		fmt.Fprintf(&b, "  %-8s %s\n", "service9", k.ServiceName(9))
	}
	b.WriteString("\n")
	for _, c := range []struct {
		profile string
		key     []string
	}{
		{"go", []string{"gitlab.example.com", "1001", "unprotected", "go", "/go/pkg/mod", "shared"}},
		{"cache-dir", []string{"gitlab.example.com", "1001", "protected", "cache-dir", "/cache", "shared"}},
		{"Maven Repo!", []string{"gitlab.example.com", "1001", "unprotected", "maven", "/root/.m2/repository", "3"}},
	} {
		fmt.Fprintf(&b, "CacheVolume(%q, %q) = %s\n", c.profile, c.key, CacheVolume(c.profile, c.key...))
	}
	b.WriteString("\n")
	for _, parts := range [][]string{nil, {""}, {"", ""}, {"ab", "c"}, {"a", "bc"}, {"gitlab.example.com", "1001", "go"}} {
		fmt.Fprintf(&b, "Hash(%q) = %s\n", parts, Hash(parts...))
	}
	got := b.String()

	const path = "testdata/names.golden"
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("names differ from %s (run go test ./naming -update if the change is deliberate):\n%s", path, got)
	}
}

func TestBaseAndName(t *testing.T) {
	tests := []struct {
		key  JobKey
		base string
	}{
		{JobKey{Runner: "t3st", Instance: "127.0.0.1:42891", ProjectID: 1001, Slot: 2, JobID: 22961}, "warmcache-t3st-040bc7-p1001-c2-j22961"},
		// The same ids on another GitLab instance are another job.
		{JobKey{Runner: "t3st", Instance: "gitlab.example.com", ProjectID: 1001, Slot: 2, JobID: 22961}, "warmcache-t3st-" + Hash("gitlab.example.com")[:6] + "-p1001-c2-j22961"},
		{JobKey{Runner: "ABC", ProjectID: 5, Slot: 0, JobID: 6}, "warmcache-abc-5578a4-p5-c0-j6"},
		{JobKey{ProjectID: 5, JobID: 6}, "warmcache-r-5578a4-p5-c0-j6"}, // no runner token
	}
	for _, tt := range tests {
		if got := tt.key.Base(); got != tt.base {
			t.Errorf("%+v.Base() = %q, want %q", tt.key, got, tt.base)
		}
		for _, kind := range allKinds {
			if got, want := tt.key.Name(kind), tt.base+"-"+string(kind); got != want {
				t.Errorf("%+v.Name(%s) = %q, want %q", tt.key, kind, got, want)
			}
		}
	}
}

func TestHostileRunnerTokens(t *testing.T) {
	tests := []struct {
		runner string
		want   string // the runner part of Base
	}{
		{"../../etc/passwd", "etcpasswd"},
		{"a/b\nc\rd\te", "abcde"},
		{"x-y_z.w:v@u", "xyzwvu"},
		{"glrt-AbC_123", "glrtabc123"},
		{"0123456789abcdefXYZ", "0123456789abcdef"},
		{"Ünïcödé", "ncd"},
		{"日本語", "r"},
		{"////", "r"},
		{"\x00\x01\x7f", "r"},
		{strings.Repeat("A/", 512<<10), strings.Repeat("a", 16)}, // 1 MiB
		{strings.Repeat("é", 512<<10), "r"},                      // 1 MiB, nothing kept
		{"\u212a\u0130", "ki"},                                   // Kelvin sign and dotted I lower-case to ASCII
	}
	baseRE := regexp.MustCompile(`^warmcache-([a-z0-9]{1,16})-[0-9a-f]{6}-p7-c3-j9$`)
	dockerName := regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)
	labelRE := regexp.MustCompile(`^[a-z0-9]{0,32}$`)
	for _, tt := range tests {
		name := tt.runner
		if len(name) > 20 {
			name = name[:20] + "..."
		}
		t.Run(fmt.Sprintf("%q", name), func(t *testing.T) {
			k := JobKey{Runner: tt.runner, ProjectID: 7, Slot: 3, JobID: 9}
			m := baseRE.FindStringSubmatch(k.Base())
			if m == nil {
				t.Fatalf("Base() = %.80q, not of the form %s", k.Base(), baseRE)
			}
			if m[1] != tt.want {
				t.Errorf("runner part = %q, want %q", m[1], tt.want)
			}
			for _, kind := range allKinds {
				if n := k.Name(kind); !dockerName.MatchString(n) || len(n) > 64 {
					t.Errorf("Name(%s) = %q is not a short Docker name", kind, n)
				}
			}
			// The runner id label gets the same treatment, up to 32.
			got := k.Labels(KindBuild, JobMeta{RunnerID: tt.runner})[LabelRunnerID]
			if !labelRE.MatchString(got) {
				t.Errorf("runner id label = %.80q", got)
			}
		})
	}
}

func TestLabels(t *testing.T) {
	k := JobKey{Runner: "t3st", ProjectID: 1001, Slot: 2, JobID: 22961}
	created := time.Date(2026, 11, 26, 23, 31, 10, 999, time.FixedZone("CET", 3600))
	got := k.Labels(KindBuild, JobMeta{PipelineID: 1461, RunnerID: "R-12/x", TimeoutSeconds: 3600, Created: created})
	want := map[string]string{
		"io.warmcache.managed":     "true",
		"io.warmcache.kind":        "build",
		"io.warmcache.job":         "warmcache-t3st-5578a4-p1001-c2-j22961",
		"io.warmcache.job.id":      "22961",
		"io.warmcache.project.id":  "1001",
		"io.warmcache.pipeline.id": "1461",
		"io.warmcache.runner.id":   "r12x",
		"io.warmcache.created":     "2026-11-26T22:31:10Z",
		"io.warmcache.job.timeout": "3600",
	}
	if !maps.Equal(got, want) {
		t.Errorf("Labels =\n%v\nwant\n%v", got, want)
	}
	// The constants are the names above: cleanup and the reaper of an
	// older or newer version select on them.
	consts := []string{LabelManaged, LabelKind, LabelJob, LabelJobID, LabelProjectID, LabelPipelineID, LabelRunnerID, LabelCreated, LabelTimeout}
	if keys := slices.Sorted(maps.Keys(want)); !slices.Equal(slices.Sorted(slices.Values(consts)), keys) {
		t.Errorf("label constants %v, want %v", consts, keys)
	}

	for _, kind := range allKinds {
		l := k.Labels(kind, JobMeta{})
		if l[LabelKind] != string(kind) || l[LabelJob] != k.Base() || l[LabelManaged] != "true" {
			t.Errorf("Labels(%s) = %v", kind, l)
		}
	}
}

func TestHash(t *testing.T) {
	// Golden values: sha256 of "<len>:<part>;" per part, first 12 hex digits,
	// e.g. printf '2:ab;1:c;' | sha256sum.
	golden := []struct {
		parts []string
		want  string
	}{
		{nil, "e3b0c44298fc"},
		{[]string{""}, "5578a44007e3"},
		{[]string{"ab", "c"}, "edff684daf2c"},
		{[]string{"a", "bc"}, "22820a03ed72"},
		{[]string{"gitlab.example.com", "1001", "go"}, "18f6580c6a31"},
	}
	hexRE := regexp.MustCompile(`^[0-9a-f]{12}$`)
	for _, g := range golden {
		got := Hash(g.parts...)
		if got != g.want {
			t.Errorf("Hash(%q) = %s, want %s", g.parts, got, g.want)
		}
		if !hexRE.MatchString(got) {
			t.Errorf("Hash(%q) = %q is not 12 hex digits", g.parts, got)
		}
		if again := Hash(slices.Clone(g.parts)...); again != got {
			t.Errorf("Hash(%q) is not stable: %s then %s", g.parts, got, again)
		}
	}
	// Inputs that a plain concatenation or separator would confuse.
	distinct := [][]string{
		{"ab", "c"}, {"a", "bc"}, {"abc"}, {"a", "b", "c"},
		{}, {""}, {"", ""},
		{"a;1:b"}, {"a", "b"}, {"1:a;", "b"},
	}
	seen := map[string][]string{}
	for _, parts := range distinct {
		h := Hash(parts...)
		if prev, ok := seen[h]; ok {
			t.Errorf("Hash(%q) == Hash(%q) = %s", parts, prev, h)
		}
		seen[h] = parts
	}
}

func TestCacheVolume(t *testing.T) {
	key := []string{"gitlab.example.com", "1001", "unprotected", "go", "/go/pkg/mod", "shared"}
	tests := []struct {
		profile, want string
	}{
		{"go", "warmcache-go-" + Hash(key...)},
		{"cache-dir", "warmcache-cache-dir-" + Hash(key...)},
		{"My Cache!/..", "warmcache-mycache-" + Hash(key...)},
		{strings.Repeat("x", 1<<20), "warmcache-" + strings.Repeat("x", 20) + "-" + Hash(key...)},
	}
	for _, tt := range tests {
		if got := CacheVolume(tt.profile, key...); got != tt.want {
			t.Errorf("CacheVolume(%.30q) = %q, want %q", tt.profile, got, tt.want)
		}
	}
	// Any part of the key changes the name.
	base := CacheVolume("go", key...)
	for i := range key {
		other := slices.Clone(key)
		other[i] += "x"
		if CacheVolume("go", other...) == base {
			t.Errorf("changing key part %d (%s) kept the name %s", i, key[i], base)
		}
	}
}

// A slot's network is its runner's and slot's, under its options; the
// name cleanup gives an ended job's container is told apart from every
// job container's name.
func TestSlotNetworkAndEnded(t *testing.T) {
	a := SlotNetwork("t3st", "12", 2, "0123abcd")
	for _, other := range []string{SlotNetwork("t3st", "13", 2, "0123abcd"), SlotNetwork("t4st", "12", 2, "0123abcd"),
		SlotNetwork("t3st", "12", 3, "0123abcd"), SlotNetwork("t3st", "12", 2, "ffffffff")} {
		if other == a {
			t.Errorf("%s is shared", a)
		}
	}
	key := JobKey{Runner: "t3st", Instance: "x", ProjectID: 1, Slot: 2, JobID: 3}
	for _, name := range []string{key.Name(KindHelper), key.Name(KindBuild), key.ServiceName(0), "other-ended-x"} {
		if IsEnded(name) {
			t.Errorf("IsEnded(%q)", name)
		}
	}
	if e := Ended(key.Name(KindHelper), "k2x9"); !IsEnded(e) || IsEnded(e+"-") {
		t.Errorf("Ended = %q: IsEnded does not tell it", e)
	}
}
