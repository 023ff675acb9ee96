package config

import (
	"fmt"
	"strings"

	"github.com/bmatcuk/doublestar/v4"
)

// Rules are what the admin allows a job to ask for, and the services the
// admin starts for every job, with the names, types and meaning of
// gitlab-runner's [runners.docker] keys. They are part of [docker].
type Rules struct {
	// AllowedImages are doublestar patterns (e.g. "golang:*",
	// "registry.example.com/**") a job's image must match; empty allows
	// every image. The default image is always allowed.
	AllowedImages []string `toml:"allowed_images"`
	// AllowedServices are the same for a job's services; the admin's own
	// services (docker.services) are always allowed.
	AllowedServices []string `toml:"allowed_services"`
	// AllowedUsers lists the users (exact names or ids) a job's
	// image:docker:user may name; empty allows every user.
	AllowedUsers []string `toml:"allowed_users"`
	// AllowedPrivilegedImages are the images whose build container runs
	// privileged when the runner makes containers privileged; the others
	// run unprivileged. Empty: every image.
	AllowedPrivilegedImages []string `toml:"allowed_privileged_images"`
	// AllowedPrivilegedServices are the same for service containers.
	AllowedPrivilegedServices []string `toml:"allowed_privileged_services"`
	// DisableEntrypointOverwrite ignores every image:entrypoint and
	// services:entrypoint: the images' own entrypoints run.
	DisableEntrypointOverwrite bool `toml:"disable_entrypoint_overwrite"`
	// Services are started for every job, before the job's own services.
	Services []AdminService `toml:"services"`
}

// AdminService is one of the services the admin starts for every job, as
// gitlab-runner's [[runners.docker.services]].
type AdminService struct {
	// Name is the image; $VAR and ${VAR} are expanded from the job's
	// variables.
	Name string `toml:"name"`
	// Alias lists extra host names, separated by spaces or commas;
	// expanded like Name.
	Alias string `toml:"alias"`
	// Entrypoint and Command replace the image's, when set.
	Entrypoint []string `toml:"entrypoint"`
	Command    []string `toml:"command"`
	// Environment is "NAME=value" entries set in the service container.
	Environment []string `toml:"environment"`
}

func (r Rules) validate() []string {
	var p []string
	for _, l := range []struct {
		key  string
		list []string
	}{
		{"docker.allowed_images", r.AllowedImages},
		{"docker.allowed_services", r.AllowedServices},
		{"docker.allowed_privileged_images", r.AllowedPrivilegedImages},
		{"docker.allowed_privileged_services", r.AllowedPrivilegedServices},
	} {
		for i, pattern := range l.list {
			if strings.TrimSpace(pattern) == "" || !doublestar.ValidatePattern(pattern) {
				p = append(p, fmt.Sprintf("%s[%d]: %q is not a valid pattern (e.g. \"golang:*\" or \"registry.example.com/**\")", l.key, i, pattern))
			}
		}
	}
	for i, u := range r.AllowedUsers {
		if strings.TrimSpace(u) == "" || strings.ContainsAny(u, " \t\n") {
			p = append(p, fmt.Sprintf("docker.allowed_users[%d]: %q must be a user name or id", i, u))
		}
	}
	for i, s := range r.Services {
		key := fmt.Sprintf("docker.services[%d]", i)
		if strings.TrimSpace(s.Name) == "" || strings.ContainsAny(s.Name, " \t\n") {
			p = append(p, fmt.Sprintf("%s.name: %q must be an image name", key, s.Name))
		}
		for _, a := range strings.FieldsFunc(s.Alias, func(r rune) bool { return r == ',' || r == ' ' }) {
			if !validHostName(a) && !strings.Contains(a, "$") {
				p = append(p, fmt.Sprintf("%s.alias: %q is not a valid host name", key, a))
			}
		}
		for j, e := range s.Environment {
			if name, _, ok := strings.Cut(e, "="); !ok || !validEnvName(name) {
				p = append(p, fmt.Sprintf("%s.environment[%d]: %q must be NAME=value", key, j, e))
			}
		}
	}
	return p
}

// validHostName accepts what Docker's embedded DNS answers for (as the
// job's own service aliases): letters, digits, '.', '-' and '_', not
// starting or ending with '.' or '-'.
func validHostName(a string) bool {
	if a == "" || len(a) > 253 || strings.ContainsAny(a[:1]+a[len(a)-1:], ".-") {
		return false
	}
	for _, r := range a {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}
