package services

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/warmcache/warmcache/internal/config"
	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/job"
)

// healthcheckPortVar names the one port to wait for, as under the Docker
// executor; its name is matched regardless of case.
const healthcheckPortVar = "HEALTHCHECK_TCP_PORT"

// maxWaitPorts bounds the EXPOSEd ports the wait tries, lowest first, as
// the Docker executor does.
const maxWaitPorts = 20

// waitPorts decides what the readiness wait of a service tries, given
// the service container's environment and the job's `ports:` for it:
// HEALTHCHECK_TCP_PORT, when set (the service's own variables win over
// the job's), names the one port, as under the Docker executor; else the
// job's `ports:` (all TCP: GitLab's protocols are http and https), which
// the job knows the service listens on, are tried; else nil, which
// means the image's EXPOSEd TCP ports.
func waitPorts(env []string, declared []job.Port) ([]engine.Port, error) {
	value, set := "", false
	for _, e := range env {
		if k, v, ok := strings.Cut(e, "="); ok && strings.EqualFold(k, healthcheckPortVar) {
			value, set = v, true
		}
	}
	if set {
		n, err := strconv.Atoi(strings.TrimSpace(value))
		if err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("%s %q is not a port number (1-65535)", healthcheckPortVar, value)
		}
		return []engine.Port{{Number: n, Protocol: "tcp"}}, nil
	}
	var out []engine.Port
	for _, p := range declared {
		if p.Number < 1 || p.Number > 65535 {
			return nil, fmt.Errorf("ports: %d is not a port number (1-65535)", p.Number)
		}
		port := engine.Port{Number: p.Number, Protocol: "tcp"}
		if !slices.Contains(out, port) {
			out = append(out, port)
		}
	}
	return out, nil
}

// exposedTCP are the EXPOSEd (sorted) ports the wait tries: the TCP
// ones, at most maxWaitPorts.
func exposedTCP(exposed []engine.Port) []engine.Port {
	out := []engine.Port{}
	for _, p := range exposed {
		if p.Protocol == "tcp" && len(out) < maxWaitPorts {
			out = append(out, p)
		}
	}
	return out
}

// adminImages are the admin's services (docker.services) as the job's
// own would be given: the name and alias expanded ($VAR, ${VAR}) from
// the job's variables, as the runner does, and the environment as the
// service's variables.
func adminImages(admin []config.AdminService, j job.Job) []job.Image {
	var out []job.Image
	for _, a := range admin {
		img := job.Image{
			Name:       os.Expand(a.Name, j.Variable),
			Alias:      os.Expand(a.Alias, j.Variable),
			Entrypoint: a.Entrypoint,
			Command:    a.Command,
		}
		for _, e := range a.Environment {
			k, v, _ := strings.Cut(e, "=")
			img.Variables = append(img.Variables, job.Variable{Key: k, Value: v, Public: true})
		}
		out = append(out, img)
	}
	return out
}
