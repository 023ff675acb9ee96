package driver

import (
	"fmt"
	"slices"

	"github.com/warmcache/warmcache/internal/images"
	"github.com/warmcache/warmcache/internal/job"
	"github.com/warmcache/warmcache/internal/protocol"
)

// checkRules applies the admin's rules (config.Rules) to the job's build
// container before anything is created, as the Docker executor applies
// them: the image must be in docker.allowed_images (the default image
// always is), image:docker:user in docker.allowed_users; docker.user,
// when set, is the build container's user whatever the job says. A job that
// breaks one fails as a build failure with one line naming the rule.
// Under docker.disable_entrypoint_overwrite the job's image:entrypoint
// is dropped, with a warning, and the job goes on (services.Plan does
// the same for the services).
func checkRules(d Deps, j job.Job, image string) (job.Job, error) {
	r := d.Config.Docker.Rules
	if image != d.Config.Docker.DefaultImage && !images.Allowed(image, r.AllowedImages) {
		return j, &protocol.BuildFailure{Reason: images.NotAllowed("image", image, "docker.allowed_images", r.AllowedImages)}
	}
	user, err := buildUser(d.Config.Docker.User, j.Image.ExecutorOpts.Docker.User, r.AllowedUsers)
	if err != nil {
		return j, err
	}
	// The job as the rules leave it: prepare and the plan read the build
	// container's user from here.
	j.Image.ExecutorOpts.Docker.User = user
	if r.DisableEntrypointOverwrite && len(j.Image.Entrypoint) > 0 {
		d.say("WARNING: image:entrypoint %q is ignored: docker.disable_entrypoint_overwrite is set", j.Image.Entrypoint)
		j.Image.Entrypoint = nil
	}
	return j, nil
}

// buildUser is the user the build container runs as, as the Docker
// executor decides it: the admin's user (docker.user) if set, else the
// job's image:docker:user, else "" (the image's own, always allowed).
// A user that docker.allowed_users does not list is refused; an empty
// list allows every user, unless the admin set a user, which is then the
// only one allowed. Users are compared as written: "1000" is not "build".
func buildUser(admin, fromJob string, allowed []string) (string, error) {
	user := admin
	if user == "" {
		user = fromJob
	}
	if user == "" {
		return "", nil
	}
	list := allowed
	if len(list) == 0 && admin != "" {
		list = []string{admin}
	}
	if len(list) > 0 && !slices.Contains(list, user) {
		return "", &protocol.BuildFailure{Reason: fmt.Sprintf("user %q is not allowed by docker.allowed_users (allowed: %s)", user, images.QuoteList(list))}
	}
	return user, nil
}
