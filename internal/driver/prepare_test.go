package driver

import (
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/warmcache/warmcache/internal/cache/profile"
	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/engine/fake"
	"github.com/warmcache/warmcache/internal/job"
	"github.com/warmcache/warmcache/internal/naming"
	"github.com/warmcache/warmcache/internal/plan"
	"github.com/warmcache/warmcache/internal/protocol"
)

// checkLabels compares the labels of a job resource with what naming
// gives for kind, the creation time aside, which must lie in [from, to].
func checkLabels(t *testing.T, what string, got map[string]string, kind naming.Kind, from, to time.Time) {
	t.Helper()
	want := sampleKey.Labels(kind, naming.JobMeta{PipelineID: 1461, RunnerID: "12", TimeoutSeconds: 3600})
	created, err := time.Parse(time.RFC3339, got[naming.LabelCreated])
	if err != nil || created.Before(from.Truncate(time.Second)) || created.After(to) {
		t.Errorf("%s: created label %q (%v) not within the test", what, got[naming.LabelCreated], err)
	}
	got = maps.Clone(got)
	delete(got, naming.LabelCreated)
	delete(want, naming.LabelCreated)
	if !maps.Equal(got, want) {
		t.Errorf("%s: labels =\n%v\nwant\n%v", what, got, want)
	}
}

func TestPrepare(t *testing.T) {
	h := newHarness(t, nil)
	h.cfg.Docker.NetworkMode = "host"
	from := time.Now()
	if err := Prepare(context.Background(), h.deps()); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	to := time.Now()

	base := "warmcache-t3st-040bc7-p1001-c2-j22961" // 040bc7: the instance 127.0.0.1:42891
	builds, cachedir := base+"-builds", base+"-cachedir"
	helper, build := base+"-helper", base+"-build"

	// What exists: both containers running (the helper started, the
	// build container started too, with no background starter here), the
	// builds and cache_dir volumes, and no network (host networking).
	for _, name := range []string{helper, build} {
		if c, ok := h.f.Container(name); !ok || c.State != fake.Running {
			t.Errorf("%s: %+v, %v; want it running", name, c, ok)
		}
	}
	if rs, _ := h.f.List(t.Context(), map[string]string{naming.LabelKind: string(naming.KindNetwork)}); len(rs) != 0 {
		t.Errorf("networks %+v, want none with network_mode host", rs)
	}
	// Where the time goes: each image looked at once and pulled once (it
	// was absent), the build image inspected once more for its user, and
	// no exec (the image runs as root: no volume is opened up).
	if got := methods(h.f, "golang:1.26"); !slices.Equal(got, []string{"InspectImage", "PullImage", "InspectImage"}) {
		t.Errorf("build image calls = %v", got)
	}
	if got := methods(h.f, testHelperImage); !slices.Equal(got, []string{"InspectImage", "PullImage"}) {
		t.Errorf("helper image calls = %v", got)
	}
	if slices.Contains(methods(h.f, ""), "Exec") {
		t.Errorf("prepare of a root job ran an exec: %v", methods(h.f, ""))
	}

	for _, v := range []struct {
		name string
		kind naming.Kind
	}{{builds, naming.KindBuilds}, {cachedir, "cachedir"}} {
		info, ok := h.f.Volume(v.name)
		if !ok {
			t.Fatalf("volume %s missing", v.name)
		}
		checkLabels(t, v.name, info.Labels, v.kind, from, to)
	}

	mounts := []engine.Mount{{Volume: builds, Target: "/builds"}, {Volume: cachedir, Target: "/cache"}}
	for _, c := range []struct {
		name, image string
		kind        naming.Kind
		entrypoint  []string
	}{
		// The helper keeps its image's entrypoint; the job's [""] clears
		// the build image's (the Docker API reads [""] as "none").
		{helper, testHelperImage, naming.KindHelper, nil},
		{build, "golang:1.26", naming.KindBuild, []string{""}},
	} {
		got, ok := h.f.Container(c.name)
		if !ok || got.State != fake.Running {
			t.Fatalf("container %s: %+v, %v; want running", c.name, got, ok)
		}
		checkLabels(t, c.name, got.Spec.Labels, c.kind, from, to)
		got.Spec.Labels = nil
		want := engine.ContainerSpec{
			Name: c.name, Image: c.image, Entrypoint: c.entrypoint, Cmd: plan.KeepAlive,
			Mounts: mounts, NetworkMode: "host", KeepStdinOpen: true,
		}
		if !reflect.DeepEqual(got.Spec, want) {
			t.Errorf("container %s spec =\n%#v\nwant\n%#v", c.name, got.Spec, want)
		}
	}

	lines := h.stderrLines()
	wantLines := []string{
		"Preparing job 22961 of group/project on warmcache (image golang:1.26)",
		"Resource limits for this job: unlimited CPUs, unlimited memory",
		"Pulling image golang:1.26 (attempt 1 of 3)",
		"  Status: Downloaded newer image for golang:1.26",
		"Pulling image " + testHelperImage + " (attempt 1 of 3)",
		"  Status: Downloaded newer image for " + testHelperImage,
	}
	if len(lines) != len(wantLines)+1 || !slices.Equal(lines[:len(wantLines)], wantLines) ||
		!strings.HasPrefix(lines[len(wantLines)], "Job containers ready in ") {
		t.Errorf("job log =\n%s\nwant\n%s\nJob containers ready in ...", strings.Join(lines, "\n"), strings.Join(wantLines, "\n"))
	}
	if h.stdout.Len() != 0 {
		t.Errorf("stdout = %q, want nothing", h.stdout)
	}
}

func TestPrepareEntrypoint(t *testing.T) {
	tests := []struct {
		name       string
		entrypoint any // the job response's image.entrypoint; nil removes it
		want       []string
	}{
		{"job clears it", []any{""}, []string{""}},
		{"job sets its own", []any{"/bin/sh", "-c"}, []string{"/bin/sh", "-c"}},
		{"job says nothing: the image's", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, func(j map[string]any) {
				img := j["image"].(map[string]any)
				if tt.entrypoint == nil {
					delete(img, "entrypoint")
				} else {
					img["entrypoint"] = tt.entrypoint
				}
			})
			if err := Prepare(context.Background(), h.deps()); err != nil {
				t.Fatal(err)
			}
			got, _ := h.f.Container(sampleKey.Name(naming.KindBuild))
			if !reflect.DeepEqual(got.Spec.Entrypoint, tt.want) {
				t.Errorf("build entrypoint = %#v, want %#v", got.Spec.Entrypoint, tt.want)
			}
			if helper, _ := h.f.Container(sampleKey.Name(naming.KindHelper)); helper.Spec.Entrypoint != nil {
				t.Errorf("helper entrypoint = %#v, want the image's", helper.Spec.Entrypoint)
			}
		})
	}
}

func TestPrepareWithCaches(t *testing.T) {
	h := newHarness(t, nil)
	h.cfg.Cache.Enabled = true // Default(): the go profile
	if err := Prepare(context.Background(), h.deps()); err != nil {
		t.Fatal(err)
	}
	j, err := job.Load(h.deps().Getenv)
	if err != nil {
		t.Fatal(err)
	}
	profiles, err := profile.Load(h.cfg.Cache)
	if err != nil {
		t.Fatal(err)
	}
	planned := profile.Plan(profile.KeyFor(j), profiles)

	builds := engine.Mount{Volume: sampleKey.Name(naming.KindBuilds), Target: protocol.BuildsDir}
	wantBuild := []engine.Mount{builds}
	wantHelper := []engine.Mount{builds}
	for _, v := range planned {
		m := engine.Mount{Volume: v.Name, Target: v.Path, NoCopy: true}
		wantBuild = append(wantBuild, m)
		if v.Path == protocol.CacheDir {
			wantHelper = append(wantHelper, m)
		}
		info, ok := h.f.Volume(v.Name)
		if !ok || info.Labels[naming.LabelKind] != string(naming.KindCache) {
			t.Errorf("cache volume %s: %+v, %v", v.Name, info, ok)
		}
	}
	if len(wantHelper) != 2 {
		t.Fatalf("plan %+v has no cache_dir volume", planned)
	}
	build, _ := h.f.Container(sampleKey.Name(naming.KindBuild))
	helper, _ := h.f.Container(sampleKey.Name(naming.KindHelper))
	if !reflect.DeepEqual(build.Spec.Mounts, wantBuild) {
		t.Errorf("build mounts =\n%+v\nwant\n%+v", build.Spec.Mounts, wantBuild)
	}
	if !reflect.DeepEqual(helper.Spec.Mounts, wantHelper) {
		t.Errorf("helper mounts =\n%+v\nwant\n%+v", helper.Spec.Mounts, wantHelper)
	}
	if want := profile.Env(profiles, false); !slices.Equal(build.Spec.Env, want) || len(want) == 0 {
		t.Errorf("build env = %q, want %q", build.Spec.Env, want)
	}
	if _, ok := h.f.Volume(sampleKey.Name("cachedir")); ok {
		t.Error("a per-job cachedir volume was made although caches are on")
	}
}

func TestPrepareTwiceReplacesLeftovers(t *testing.T) {
	// The runner retries a failed prepare after a cleanup that may itself
	// have failed: the second attempt must start from a clean slate.
	h := newHarness(t, nil)
	d := h.deps()
	for attempt := 1; attempt <= 2; attempt++ {
		if err := Prepare(context.Background(), d); err != nil {
			t.Fatalf("attempt %d: %v", attempt, err)
		}
	}
	for _, kind := range []naming.Kind{naming.KindHelper, naming.KindBuild} {
		name := sampleKey.Name(kind)
		if got := methods(h.f, name); !slices.Equal(got, []string{"CreateContainer", "StartContainer", "Remove", "CreateContainer", "StartContainer"}) {
			t.Errorf("%s: calls %v", name, got)
		}
		if c, _ := h.f.Container(name); c.State != fake.Running {
			t.Errorf("%s is %s after the second prepare", name, c.State)
		}
	}
	// The images were present the second time: no pull, and the one
	// inspect that found it also gave its user.
	if got := methods(h.f, "golang:1.26"); !slices.Equal(got, []string{"InspectImage", "PullImage", "InspectImage", "InspectImage"}) {
		t.Errorf("image calls = %v", got)
	}
}

func TestPrepareFailures(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name      string
		edit      func(j map[string]any)
		setup     func(h *harness)
		wantErr   string
		wantBuild bool // a *protocol.BuildFailure: the job's fault, not retried
	}{
		{
			name:    "job response missing",
			setup:   func(h *harness) { delete(h.env, "JOB_RESPONSE_FILE") },
			wantErr: "JOB_RESPONSE_FILE is not set: warmcache stages must be started by gitlab-runner's custom executor",
		},
		{
			name: "pull policy not allowed",
			edit: func(j map[string]any) {
				j["image"].(map[string]any)["pull_policy"] = []string{"always"}
			},
			setup:     func(h *harness) { h.cfg.Docker.AllowedPullPolicies = []string{"if-not-present"} },
			wantErr:   "pull policy [always] from image:pull_policy is not allowed; the runner allows [if-not-present] (docker.allowed_pull_policies)",
			wantBuild: true,
		},
		{
			name:    "image missing under never",
			setup:   func(h *harness) { h.cfg.Docker.PullPolicy = []string{"never"} },
			wantErr: "image golang:1.26 is not present locally and the pull policy is never: load it on the runner host or allow another pull policy",
		},
		{
			name: "helper image fails",
			setup: func(h *harness) {
				h.f.AddImage("golang:1.26")
				h.f.SetHook(func(method, name string) error {
					if method == fake.MethodPullImage && name == testHelperImage {
						return boom
					}
					return nil
				})
				h.cfg.Docker.PullAttempts = 1
			},
			wantErr: "helper image: boom",
		},
		{
			name:    "no helper image",
			setup:   func(h *harness) { h.cfg.Docker.HelperImage = ""; delete(h.env, "CUSTOM_ENV_CI_RUNNER_VERSION") },
			wantErr: "cannot choose the helper image: CUSTOM_ENV_CI_RUNNER_VERSION is not set; set docker.helper_image in the warmcache config",
		},
		{
			name:    "leftovers cannot be listed",
			setup:   func(h *harness) { h.f.FailNext(fake.MethodList, boom) },
			wantErr: "removing leftovers of an earlier attempt: listing the job's resources: boom",
		},
		{
			name:    "volume fails",
			setup:   func(h *harness) { h.f.FailNext(fake.MethodEnsureVolume, boom) },
			wantErr: "boom",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.edit)
			tt.setup(h)
			err := Prepare(context.Background(), h.deps())
			if err == nil || err.Error() != tt.wantErr {
				t.Fatalf("Prepare = %v, want %q", err, tt.wantErr)
			}
			var bf *protocol.BuildFailure
			if errors.As(err, &bf) != tt.wantBuild {
				t.Errorf("build failure = %v, want %v", !tt.wantBuild, tt.wantBuild)
			}
			if got := methods(h.f, ""); slices.Contains(got, "CreateContainer") {
				t.Errorf("containers created after a failure: %v", got)
			}
		})
	}
}

func TestPrepareCreateFailureIsReported(t *testing.T) {
	h := newHarness(t, nil)
	h.cfg.Docker.NetworkPerJob = true
	boom := errors.New("boom")
	h.f.SetHook(func(method, name string) error {
		if method == fake.MethodStartContainer && name == sampleKey.Name(naming.KindBuild) {
			return boom
		}
		return nil
	})
	if err := Prepare(context.Background(), h.deps()); !errors.Is(err, boom) || err.Error() != "boom" {
		t.Fatalf("Prepare = %v, want boom", err)
	}
	// What was made stays for cleanup to find by its labels.
	found, err := h.f.List(context.Background(), map[string]string{naming.LabelJob: sampleKey.Base()})
	if err != nil || len(found) != 5 {
		t.Errorf("job resources after the failure = %+v, %v; want 2 containers, 2 volumes and the network", found, err)
	}
}

func TestPrepareNonRootUser(t *testing.T) {
	const marker = ": > /builds/.gitlab-build-uid-gid"
	tests := []struct {
		name        string
		imageUser   string // the image's default user
		jobUser     string // image:docker:user of the job
		wantUser    string // ContainerSpec.User of the build container
		wantNonRoot bool
	}{
		{"image runs as a uid", "1000", "", "", true},
		{"image runs as a name and group", "app:app", "", "", true},
		{"job asks for a user", "", "nobody", "nobody", true},
		{"job asks for root over a non-root image", "1000", "root", "root", false},
		{"image runs as uid 0", "0:0", "", "", false},
		{"image runs as root", "", "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, func(j map[string]any) {
				img := j["image"].(map[string]any)
				img["executor_opts"].(map[string]any)["docker"].(map[string]any)["user"] = tt.jobUser
			})
			h.cfg.Cache.Enabled = true
			root := t.TempDir()
			h.f.SetVolumeRoot(root)
			h.f.SetImageInfo("golang:1.26", engine.ImageInfo{User: tt.imageUser})
			var execs []execRecord
			h.f.SetExec(func(name string, cmd []string, stdin []byte) (engine.Exit, string, string) {
				execs = append(execs, execRecord{name, cmd, string(stdin)})
				return engine.Exit{}, "", ""
			})
			if err := Prepare(context.Background(), h.deps()); err != nil {
				t.Fatal(err)
			}

			build, _ := h.f.Container(sampleKey.Name(naming.KindBuild))
			if build.Spec.User != tt.wantUser {
				t.Errorf("build user = %q, want %q", build.Spec.User, tt.wantUser)
			}
			inspects := methods(h.f, "golang:1.26")
			if wantLookup := tt.jobUser == ""; slices.Equal(inspects, []string{"InspectImage", "PullImage", "InspectImage"}) != wantLookup {
				t.Errorf("image calls %v: the image's user should be looked up only when the job names none", inspects)
			}

			var wantExecs []execRecord
			if tt.wantNonRoot {
				wantExecs = []execRecord{{sampleKey.Name(naming.KindBuild), []string{"sh", "-c", marker}, ""}}
			}
			if !reflect.DeepEqual(execs, wantExecs) {
				t.Errorf("execs = %+v, want %+v", execs, wantExecs)
			}
			fi, err := os.Stat(filepath.Join(root, sampleKey.Name(naming.KindBuilds)))
			if err != nil {
				t.Fatal(err)
			}
			if opened := fi.Mode()&(os.ModePerm|os.ModeSticky) == os.ModeSticky|0o777; opened != tt.wantNonRoot {
				t.Errorf("builds volume mode %v, want opened to all users: %v", fi.Mode(), tt.wantNonRoot)
			}

			// Caches under /root move where a non-root user can reach them.
			j, err := job.Load(h.deps().Getenv)
			if err != nil {
				t.Fatal(err)
			}
			profiles, _ := profile.Load(h.cfg.Cache)
			for _, v := range profile.Plan(profile.KeyFor(j), profiles) {
				want := engine.Mount{Volume: v.Name, Target: profile.Target(v.Path, tt.wantNonRoot), NoCopy: true}
				if !slices.Contains(build.Spec.Mounts, want) {
					t.Errorf("build mounts %+v lack %+v", build.Spec.Mounts, want)
				}
			}
			if want := profile.Env(profiles, tt.wantNonRoot); !slices.Equal(build.Spec.Env, want) {
				t.Errorf("build env = %q, want %q", build.Spec.Env, want)
			}
		})
	}
}

func TestPrepareNonRootMarkerFails(t *testing.T) {
	h := newHarness(t, nil)
	h.f.SetImageInfo("golang:1.26", engine.ImageInfo{User: "1000"})
	h.f.SetExec(func(string, []string, []byte) (engine.Exit, string, string) {
		return engine.Exit{Code: 1}, "", "sh: can't create /builds/.gitlab-build-uid-gid: Permission denied\n"
	})
	err := Prepare(context.Background(), h.deps())
	if err == nil || err.Error() != "marking /builds for user 1000: exit code 1" {
		t.Fatalf("Prepare = %v", err)
	}
	if !strings.HasSuffix(h.stderr.String(), "sh: can't create /builds/.gitlab-build-uid-gid: Permission denied\n") {
		t.Errorf("the exec's output is not in the job log: %q", h.stderr.String())
	}
}
