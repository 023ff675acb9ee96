package driver

import (
	"errors"

	"github.com/warmcache/warmcache/internal/images"
	"github.com/warmcache/warmcache/internal/job"
	"github.com/warmcache/warmcache/internal/protocol"
	"github.com/warmcache/warmcache/internal/services"
)

// serviceDeps is what package services is given by prepare.
func serviceDeps(d Deps) services.Deps {
	return services.Deps{Engine: d.Engine, Docker: d.Config.Docker, Services: d.Config.Services, Say: d.say, Log: d.Log}
}

// planServices checks the job's services before anything is created
// (see services.Plan), under the pull policies the admin allows. Problems
// of the job's own making are build failures (a retry cannot help).
func planServices(d Deps, j job.Job) ([]services.Service, error) {
	planned, err := services.Plan(serviceDeps(d), j, func(jobPolicies []string) ([]string, error) {
		return images.PullPolicies(jobPolicies, d.Config)
	})
	if r := (*services.Refusal)(nil); errors.As(err, &r) {
		return nil, &protocol.BuildFailure{Reason: r.Reason}
	}
	return planned, err
}
