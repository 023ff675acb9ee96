package e2e

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/warmcache/warmcache/test/runnersim"
)

const dindImage = "warmcache-test/dind:1"

// TestDindService: the docker:dind flow of the Docker executor. A
// privileged service runs dockerd (Debian's docker.io, built locally);
// the job, with a docker CLI bound from the host, talks to it over TCP
// and builds an image inside it. It runs only where this engine can start
// a privileged container: where a one-time probe shows it cannot (Docker
// 20.10 on a host whose capability bounding set lacks CAP_SYS_RESOURCE,
// as on the CI machine), it is reported as skipped with the probe's error,
// never as passed. TestPrivilegedRefused covers what such a host does.
func TestDindService(t *testing.T) {
	if out, err := exec.Command("docker", "run", "--rm", "--privileged", busyboxImage, "true").CombinedOutput(); err != nil {
		t.Skipf("this engine cannot start privileged containers, so the dind flow is not tried here: %v: %s", err, strings.TrimSpace(string(out)))
	}
	if out, err := exec.Command("../images/build.sh", "dind").CombinedOutput(); err != nil {
		t.Fatalf("building %s: %v\n%s", dindImage, err, out)
	}
	j := newJob(t, jobSpec{
		Config: defaultConfig + `privileged = true
volumes = ["/usr/bin/docker:/usr/bin/docker:ro"]
`,
		Services: []runnersim.Service{{Name: dindImage, Alias: "docker"}},
		Vars:     map[string]string{"DOCKER_HOST": "tcp://docker:2375"},
	})
	if r := j.prepare(); r.Code != 0 {
		t.Fatalf("prepare: %s", r)
	}
	tag := fmt.Sprintf("wc-dind-e2e:%d", j.ID)
	r := j.run("build_script", runnerScript(`for i in $(seq 60); do docker version >/dev/null 2>&1 && break; sleep 1; done
printf 'FROM scratch\nLABEL built=in-dind\n' | docker build -q -t `+tag+` -
docker image inspect --format '{{ index .Config.Labels "built" }}' `+tag+`
`))
	if r.Code != 0 || !strings.Contains(r.Stdout, "in-dind\n") {
		t.Fatalf("build_script: %s", r)
	}
	if cr := j.cleanup(); cr.Code != 0 {
		t.Fatalf("cleanup: %s", cr)
	}
}
