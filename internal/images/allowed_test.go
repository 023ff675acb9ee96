package images

import "testing"

func TestAllowed(t *testing.T) {
	tests := []struct {
		ref      string
		patterns []string
		want     bool
	}{
		{"anything/at:all", nil, true}, // an empty list allows every image
		{"golang:1.22", []string{"golang:*"}, true},
		{"golang", []string{"golang:*"}, false}, // no tag: the pattern wants one
		{"library/golang:1.22", []string{"golang:*"}, false},
		{"evil/x:1", []string{"golang:*", "debian:*"}, false},
		{"debian:bookworm", []string{"golang:*", "debian:*"}, true},
		// "*" stops at "/", "**" crosses it.
		{"registry.example.com/team/app:1", []string{"registry.example.com/*"}, false},
		{"registry.example.com/app:1", []string{"registry.example.com/*"}, true},
		{"registry.example.com/team/app:1", []string{"registry.example.com/**"}, true},
		{"my.registry.tld:5000/group/img:2", []string{"my.registry.tld:5000/*:*"}, false},
		{"my.registry.tld:5000/img:2", []string{"my.registry.tld:5000/*:*"}, true},
		{"postgres:16", []string{"postgres:1?"}, true},
		{"postgres:9", []string{"postgres:{9,16}"}, true},
		{"postgres:15", []string{"postgres:{9,16}"}, false},
		{"redis:7", []string{"[a-r]*:*"}, true},
		{"alpine@sha256:0123", []string{"alpine@sha256:*"}, true},
		{"golang:1.22", []string{"**"}, true},
		{"golang:1.22", []string{"[bad"}, false}, // the config rejects such a pattern
	}
	for _, tt := range tests {
		if got := Allowed(tt.ref, tt.patterns); got != tt.want {
			t.Errorf("Allowed(%q, %q) = %v, want %v", tt.ref, tt.patterns, got, tt.want)
		}
	}
}

func TestNotAllowed(t *testing.T) {
	got := NotAllowed("image", "evil/x:1", "docker.allowed_images", []string{"golang:*", "debian:*"})
	want := `image "evil/x:1" is not allowed by docker.allowed_images (allowed: "golang:*", "debian:*")`
	if got != want {
		t.Errorf("NotAllowed = %s\nwant        %s", got, want)
	}
}

func TestPrivileged(t *testing.T) {
	const key = "docker.allowed_privileged_services"
	tests := []struct {
		want     bool
		ref      string
		patterns []string
		got      bool
		note     string
	}{
		{false, "docker:dind", nil, false, ""},
		{false, "docker:dind", []string{"nothing"}, false, ""}, // nothing to withhold
		{true, "docker:dind", nil, true, ""},
		{true, "docker:27-dind", []string{"docker:*-dind"}, true, ""},
		{true, "evil/dind:1", []string{"docker:*-dind", "docker:dind"}, false,
			`WARNING: service "evil/dind:1" runs unprivileged: it is not in docker.allowed_privileged_services (allowed: "docker:*-dind", "docker:dind")`},
	}
	for _, tt := range tests {
		got, note := Privileged(tt.want, "service", tt.ref, key, tt.patterns)
		if got != tt.got || note != tt.note {
			t.Errorf("Privileged(%v, %q, %q) = %v, %q; want %v, %q", tt.want, tt.ref, tt.patterns, got, note, tt.got, tt.note)
		}
	}
}
