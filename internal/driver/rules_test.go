package driver

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/warmcache/warmcache/internal/engine/fake"
	"github.com/warmcache/warmcache/internal/naming"
	"github.com/warmcache/warmcache/internal/protocol"
)

// The sample job runs golang:1.26; the admin's rules refuse it, or not,
// before the engine is asked anything.
func TestPrepareRules(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(j map[string]any)
		allowed []string
		users   []string
		want    string // the build failure; "" when the job may run
	}{
		{"no rules", nil, nil, nil, ""},
		{"image matches", nil, []string{"debian:*", "golang:*"}, nil, ""},
		{"image does not match", nil, []string{"golang:1.2?-alpine", "debian:*"}, nil,
			`image "golang:1.26" is not allowed by docker.allowed_images (allowed: "golang:1.2?-alpine", "debian:*")`},
		{"a path does not match a single star", func(j map[string]any) {
			j["image"].(map[string]any)["name"] = "evil/golang:1"
		}, []string{"*:*"}, nil, `image "evil/golang:1" is not allowed by docker.allowed_images (allowed: "*:*")`},
		{"the default image always may", func(j map[string]any) {
			delete(j, "image")
			for _, v := range j["variables"].([]any) {
				if v.(map[string]any)["key"] == "CI_JOB_IMAGE" {
					v.(map[string]any)["value"] = ""
				}
			}
		}, []string{"golang:*"}, nil, ""},
		{"user listed", func(j map[string]any) { setUser(j, "1000") }, nil, []string{"1000", "build"}, ""},
		{"user not listed", func(j map[string]any) { setUser(j, "root") }, nil, []string{"1000", "build"},
			`user "root" is not allowed by docker.allowed_users (allowed: "1000", "build")`},
		{"the image's own user is not checked", nil, nil, []string{"1000"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.edit)
			h.cfg.Docker.AllowedImages = tt.allowed
			h.cfg.Docker.AllowedUsers = tt.users
			h.f.AddImage("golang:1.26")
			h.f.AddImage("debian:bookworm")
			err := Prepare(context.Background(), h.deps())
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Prepare: %v", err)
				}
				return
			}
			var bf *protocol.BuildFailure
			if err == nil || err.Error() != tt.want || !errors.As(err, &bf) {
				t.Fatalf("Prepare = %v, want the build failure %q", err, tt.want)
			}
			for _, c := range methods(h.f, "") {
				if c != fake.MethodPing { // the full-disk check of a failure
					t.Fatalf("engine calls before the refusal: %v", methods(h.f, ""))
				}
			}
		})
	}
}

func setUser(j map[string]any, user string) {
	j["image"].(map[string]any)["executor_opts"] = map[string]any{"docker": map[string]any{"user": user}}
}

func TestPrepareDisableEntrypointOverwrite(t *testing.T) {
	h := newHarness(t, func(j map[string]any) {
		j["image"].(map[string]any)["entrypoint"] = []any{"/bin/sh", "-c"}
	})
	h.cfg.Docker.DisableEntrypointOverwrite = true
	if err := Prepare(context.Background(), h.deps()); err != nil {
		t.Fatal(err)
	}
	got, _ := h.f.Container(sampleKey.Name(naming.KindBuild))
	if got.Spec.Entrypoint != nil {
		t.Errorf("build entrypoint = %q, want the image's", got.Spec.Entrypoint)
	}
	want := `WARNING: image:entrypoint ["/bin/sh" "-c"] is ignored: docker.disable_entrypoint_overwrite is set`
	if !slices.Contains(h.stderrLines(), want) {
		t.Errorf("job log lacks %q:\n%q", want, h.stderrLines())
	}
}

func TestBuildUser(t *testing.T) {
	tests := []struct {
		admin, job string
		allowed    []string
		want, err  string
	}{
		{"", "", nil, "", ""},
		{"", "", []string{"1000"}, "", ""}, // the image's own user
		{"", "root", nil, "root", ""},
		{"", "build", []string{"build"}, "build", ""},
		{"", "0", []string{"root"}, "", `user "0" is not allowed by docker.allowed_users (allowed: "root")`},
		{"ci", "root", nil, "ci", ""},                // the admin's user wins
		{"ci", "", []string{"ci", "1000"}, "ci", ""}, // and is checked too
		{"ci", "", []string{"1000"}, "", `user "ci" is not allowed by docker.allowed_users (allowed: "1000")`},
	}
	for _, tt := range tests {
		got, err := buildUser(tt.admin, tt.job, tt.allowed)
		if got != tt.want || (err == nil) != (tt.err == "") || err != nil && err.Error() != tt.err {
			t.Errorf("buildUser(%q, %q, %q) = %q, %v; want %q, %q", tt.admin, tt.job, tt.allowed, got, err, tt.want, tt.err)
		}
	}
}

// TestPrepareAdminUser: docker.user is the build container's user whatever
// the job's image:docker:user says (as under the Docker executor), and must
// itself be in docker.allowed_users when that is set.
func TestPrepareAdminUser(t *testing.T) {
	tests := []struct {
		name     string
		jobUser  string
		allowed  []string
		wantUser string
		wantErr  string
	}{
		{"the job names none", "", nil, "1000:1000", ""},
		{"the job names the same", "1000:1000", nil, "1000:1000", ""},
		{"the job names another: the admin's wins", "root", nil, "1000:1000", ""},
		{"the admin's user outside allowed_users", "", []string{"build"}, "", `user "1000:1000" is not allowed by docker.allowed_users (allowed: "build")`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, func(j map[string]any) {
				if tt.jobUser != "" {
					setUser(j, tt.jobUser)
				}
			})
			h.cfg.Docker.User = "1000:1000"
			h.cfg.Docker.AllowedUsers = tt.allowed
			h.f.AddImage("golang:1.26", testHelperImage)
			err := Prepare(context.Background(), h.deps())
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("Prepare = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Prepare: %v", err)
			}
			c, ok := h.f.Container(sampleKey.Name(naming.KindBuild))
			if !ok || c.Spec.User != tt.wantUser {
				t.Errorf("build container user %q (%v), want %q", c.Spec.User, ok, tt.wantUser)
			}
		})
	}
}
