package e2e

import (
	"strings"
	"testing"

	"github.com/warmcache/warmcache/test/runnersim"
)

// TestRulesDeniedImage: an image, or a service, that the admin's
// allow-list refuses fails prepare as a build failure with one line that
// names the rule and the image, before anything is created.
func TestRulesDeniedImage(t *testing.T) {
	const rules = `allowed_images = ["golang:*", "debian:*"]
allowed_services = ["` + httpdImage + `"]
`
	tests := []struct {
		name string
		spec jobSpec
		want string
	}{
		{"image", jobSpec{Image: busyboxImage},
			`warmcache: image "` + busyboxImage + `" is not allowed by docker.allowed_images (allowed: "golang:*", "debian:*")` + "\n"},
		{"service", jobSpec{Image: debianImage, Services: []runnersim.Service{{Name: httpdImage}, {Name: silentImage}}},
			`warmcache: service "` + silentImage + `" is not allowed by docker.allowed_services (allowed: "` + httpdImage + `")` + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := tt.spec
			// debianImage is the default image, which is always allowed.
			spec.Config = defaultConfig + "default_image = \"" + debianImage + "\"\n" + rules
			j := newJob(t, spec)
			r := j.prepare()
			if r.Code != buildFailureCode {
				t.Fatalf("prepare: want exit %d, got %s", buildFailureCode, r)
			}
			if !strings.HasSuffix(r.Stderr, tt.want) {
				t.Errorf("stderr = %q, want it to end with %q", r.Stderr, tt.want)
			}
			if left := jobResources(t, j); len(left) != 0 {
				t.Errorf("a refused job created %v", left)
			}
		})
	}
}

// TestRulesAdminService: a service of docker.services starts for every
// job, before the job's own, and is reachable by its alias with its
// environment.
func TestRulesAdminService(t *testing.T) {
	j := newJob(t, jobSpec{
		Config: defaultConfig + `
[[docker.services]]
name = "` + httpdImage + `"
alias = "admin-web"
environment = ["ADMIN_VAR=for-$CI_PROJECT_PATH"]
`,
		Services: []runnersim.Service{{Name: httpdImage, Alias: "job-web"}},
	})
	r := j.prepare()
	if r.Code != 0 {
		t.Fatalf("prepare: %s", r)
	}
	admin := strings.Index(r.Stderr, "Starting service "+httpdImage+", reachable as warmcache-test__httpd, warmcache-test-httpd, admin-web\n")
	own := strings.Index(r.Stderr, "Starting service "+httpdImage+", reachable as warmcache-test__httpd, warmcache-test-httpd, job-web\n")
	if admin < 0 || own < 0 || admin > own {
		t.Errorf("prepare log: want the admin's service, then the job's:\n%s", r.Stderr)
	}
	script := fetch("http://admin-web:8080/env.txt") + " | grep '^ADMIN_VAR='\n" +
		fetch("http://job-web:8080/env.txt") + " | grep -c '^ADMIN_VAR=' || true\n"
	r = j.run("build_script", runnerScript(script))
	if want := "ADMIN_VAR=for-group/project\n0\n"; r.Code != 0 || r.Stdout != want {
		t.Errorf("build_script: want stdout %q, got %s", want, r)
	}
}

// TestRulesHealthcheckPort: HEALTHCHECK_TCP_PORT makes the readiness
// wait wait for that port, which the image does not EXPOSE, instead of
// the EXPOSEd one (which here never opens): the service listens on it
// only after a while, and the job's first try reaches it.
func TestRulesHealthcheckPort(t *testing.T) {
	j := newJob(t, jobSpec{
		Config: defaultConfig + "[services]\nwait_timeout = \"30s\"\n",
		Services: []runnersim.Service{{
			Name: httpdImage, Alias: "late",
			Command:   []string{"sh", "-c", "sleep 3; echo listening on 8081; exec httpd -f -p 8081 -h /www"},
			Variables: map[string]string{"HEALTHCHECK_TCP_PORT": "8081"},
		}},
	})
	r := j.prepare()
	if r.Code != 0 {
		t.Fatalf("prepare: %s", r)
	}
	t.Logf("prepare log:\n%s", r.Stderr)
	if !strings.Contains(r.Stderr, "Services ready in ") || strings.Contains(r.Stderr, "WARNING") {
		t.Errorf("prepare log: want the service ready, no warning:\n%s", r.Stderr)
	}
	if r := j.run("build_script", runnerScript(fetch("http://late:8081/index.html"))); r.Code != 0 || r.Stdout != "hello from the httpd service\n" {
		t.Errorf("build_script: %s", r)
	}
}
