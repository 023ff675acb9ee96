// Package e2e runs the real warmcache binary against the real Docker
// engine, playing gitlab-runner's part. It fails, never skips, when the
// engine or the test images are missing: `make test` installs them.
package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/engine/docker"
	"github.com/warmcache/warmcache/internal/host"
	"github.com/warmcache/warmcache/internal/naming"
	"github.com/warmcache/warmcache/test/runnersim"
)

// Test images, built locally by test/images/build.sh.
const (
	debianImage     = "warmcache-test/debian:1"
	busyboxImage    = "warmcache-test/busybox:1"
	entrypointImage = "warmcache-test/entrypoint:1"
	httpdImage      = "warmcache-test/httpd:1"  // a service: busybox httpd on 8080, its env in /www/env.txt
	silentImage     = "warmcache-test/silent:1" // a service that EXPOSEs 9999 and never listens
)

// defaultConfig is the suite's warmcache TOML: local images only.
const defaultConfig = `
[docker]
helper_image = "` + debianImage + `"
pull_policy = ["if-not-present"]
`

var (
	driverBin string
	eng       *docker.Docker
)

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	var err error
	eng, err = docker.New("unix:///var/run/docker.sock", docker.Options{})
	if err == nil {
		_, err = eng.Ping(context.Background())
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: the Docker engine is required (run `make test`, which installs and starts it): %v\n", err)
		return 1
	}
	for _, img := range []string{debianImage, busyboxImage, entrypointImage, httpdImage, silentImage} {
		if _, err := eng.InspectImage(context.Background(), img); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: test image %s is missing: run test/images/build.sh (make test does)\n", img)
			return 1
		}
	}
	dir, err := os.MkdirTemp("", "warmcache-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	driverBin = filepath.Join(dir, "warmcache")
	build := exec.Command("go", "build", "-ldflags", "-X main.version=e2e", "-o", driverBin, "../../cmd/warmcache")
	// Static, as make build has it: the binary is also the stage agent
	// inside job containers, whatever libc their images have (or none).
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: building the driver: %v\n", err)
		return 1
	}

	before, err := managedResources()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	code := m.Run()
	// The slots' networks outlive their jobs: they are the suite's runner's.
	if err := removeSlotNetworks(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: removing the suite's slot networks: %v\n", err)
		return 1
	}
	var leaked []string
	// The last jobs' resources may still be on their way out (see
	// jobResources).
	for deadline := time.Now().Add(removalBound); ; time.Sleep(50 * time.Millisecond) {
		after, err := managedResources()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		leaked = difference(after, before)
		if !beingRemoved(leaked) || time.Now().After(deadline) {
			break
		}
	}
	if len(leaked) > 0 {
		fmt.Fprintf(os.Stderr, "e2e: the suite left resources behind: %v\n", leaked)
		return 1
	}
	return code
}

// removeSlotNetworks removes the networks of this process's runner's
// slots, which no job's cleanup removes. The last jobs' containers may
// still be on them, on their way out: it retries those, for removalBound
// at most; one still in use then is an error (a leak).
func removeSlotNetworks() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rs, err := eng.List(ctx, map[string]string{naming.LabelKind: string(naming.KindSlotNetwork), naming.LabelRunnerID: runnersim.RunnerID})
	if err != nil {
		return err
	}
	var errs []error
	for _, r := range rs {
		for deadline := time.Now().Add(removalBound); ; time.Sleep(50 * time.Millisecond) {
			err := eng.Remove(ctx, engine.Resource{Type: engine.Network, Name: r.ID})
			if !errors.Is(err, engine.ErrInUse) || time.Now().After(deadline) {
				errs = append(errs, err)
				break
			}
		}
	}
	return errors.Join(errs...)
}

// managedResources names every container, volume and network warmcache
// manages on this engine.
func managedResources() ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rs, err := eng.List(ctx, map[string]string{naming.LabelManaged: "true"})
	if err != nil {
		return nil, err
	}
	var names []string
	for _, r := range rs {
		names = append(names, string(r.Type)+" "+r.Name)
	}
	sort.Strings(names)
	return names, nil
}

func difference(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

// removeProjectCaches removes the persistent cache volumes of a test's
// project, which cleanup rightly keeps.
func removeProjectCaches(t testing.TB, projectID int64) {
	t.Helper()
	ctx := context.Background()
	// The sample response's instance: never a real project's caches.
	rs, err := eng.List(ctx, map[string]string{naming.LabelCacheProjectID: fmt.Sprint(projectID), naming.LabelCacheInstance: "127.0.0.1:42891"})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		// A quota'd cache's filesystem is unmounted first, as the GC does.
		if err := host.New(eng, nil).ReleaseQuota(ctx, r.Name); err != nil {
			t.Errorf("releasing the quota of test cache: %v", err)
		}
		if err := eng.Remove(ctx, r); err != nil {
			t.Errorf("removing test cache: %v", err)
		}
	}
}

// removalBound is how long the detached process cleanup starts may take
// to remove a job's resources.
const removalBound = 10 * time.Second

// jobResources lists what the engine still holds of one job. Once no
// container of the job is left but ones cleanup marked ended
// (naming.Ended), what is left is being removed by the detached process
// cleanup started: it polls, for removalBound at most, until that is
// done. Its outcome is observed, not waited for with a sleep: the
// process is detached, nothing can wait for it.
func jobResources(t testing.TB, j *job) []string {
	t.Helper()
	for deadline := time.Now().Add(removalBound); ; time.Sleep(50 * time.Millisecond) {
		rs, err := eng.List(context.Background(), map[string]string{naming.LabelJobID: fmt.Sprint(j.ID)})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, r := range rs {
			names = append(names, string(r.Type)+" "+r.Name)
		}
		if !beingRemoved(names) || time.Now().After(deadline) {
			return names
		}
	}
}

// beingRemoved says whether a non-empty list of "type name" entries holds
// no container but ones marked ended: what a detached removal has still
// to remove.
func beingRemoved(rs []string) bool {
	return len(rs) > 0 && !slices.ContainsFunc(rs, func(r string) bool {
		name, container := strings.CutPrefix(r, string(engine.Container)+" ")
		return container && !naming.IsEnded(name)
	})
}
