package e2e

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDoctor: on this host every check passes, with the facts an admin
// needs in one line each.
func TestDoctor(t *testing.T) {
	j := newJob(t, jobSpec{Config: defaultConfig + `default_image = "` + debianImage + `"` + "\n"})
	r := j.call("doctor")
	if r.Code != 0 {
		t.Fatalf("doctor: %s", r)
	}
	for _, re := range []string{
		`(?m)^ok   config: valid$`,
		// gitlab-runner's config.toml, read where there is one.
		`(?m)^(ok +|warn )runner config: `,
		`(?m)^ok   engine: Docker \S+ at unix:///var/run/docker.sock, API 1\.\d+$`,
		`(?m)^ok   storage driver: overlay2$`,
		`(?m)^ok   cgroups: version [12], \w+ driver$`,
		`(?m)^ok   image ` + regexp.QuoteMeta(debianImage) + `: present$`,
		`(?m)^(ok +|warn )disk: \S+ \S+ free of \S+ \S+ \(\d+%\) at /var/lib/docker`,
		`(?m)^(ok +|warn )networks: \d+ job networks`,
		`(?m)^ok   caches: \d+ volumes, `,
		// The suite's driver is built static, as make build's.
		`(?m)^ok   stage agent: /\S+, mounted into job containers`,
		// The probe cgroup was made and removed on the real tree.
		`(?m)^ok   limits: a job's default share is `,
	} {
		if !regexp.MustCompile(re).MatchString(r.Stdout) {
			t.Errorf("doctor output lacks %s:\n%s", re, r.Stdout)
		}
	}
	if strings.Contains(r.Stdout, "warn limits:") {
		t.Errorf("doctor finds the cgroup tree unwritable:\n%s", r.Stdout)
	}
}

// TestEngineUnreachable: with the engine gone, doctor says what to fix
// and prepare is a system failure with one clear line (the runner retries
// preparation); cleanup fails the same way, and changes nothing.
func TestEngineUnreachable(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "no-docker.sock")
	j := newJob(t, jobSpec{Config: defaultConfig + `host = "unix://` + sock + `"` + "\n"})
	d := j.call("doctor")
	if d.Code != systemFailureCode || !strings.Contains(d.Stdout, "FAIL engine: ") || !strings.Contains(d.Stdout, ": start dockerd, or fix docker.host (unix://"+sock+")") {
		t.Errorf("doctor: %s", d)
	}
	r := j.prepare()
	lines := strings.Split(strings.TrimSpace(r.Stderr), "\n")
	last := lines[len(lines)-1]
	if r.Code != systemFailureCode || strings.Count(r.Stderr, "warmcache: ") != 1 ||
		!strings.HasPrefix(last, "warmcache: ") || !strings.Contains(last, "docker engine unreachable") {
		t.Errorf("prepare: want exit %d and one error line, got %s", systemFailureCode, r)
	}
	if err := j.SetConfig(defaultConfig); err != nil { // for the deferred cleanup
		t.Fatal(err)
	}
}
