package job

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/distribution/reference"
	"github.com/warmcache/warmcache/internal/protocol"
)

// servicesFromEnv reads the services from CUSTOM_ENV_CI_JOB_SERVICES, for
// a response that carries none at all (not even an empty list). The job
// can set that variable, which is harmless: it can declare any services
// in its YAML anyway.
func servicesFromEnv(value string) ([]Image, error) {
	if strings.TrimSpace(value) == "" {
		return nil, nil
	}
	var s []Image
	if err := json.Unmarshal([]byte(value), &s); err != nil {
		return nil, fmt.Errorf("%s is not a JSON list of services: %w", protocol.EnvJobServices, err)
	}
	return s, nil
}

// UserAliases returns the aliases the job gave a service: `alias:` may
// list several, separated by commas or spaces.
func (img Image) UserAliases() []string {
	return strings.FieldsFunc(img.Alias, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' })
}

// ServiceAliases returns the host names a service is reachable by, as the
// Docker executor gives them: its image name without tag, digest and
// registry port, with "/" replaced by "__" and, as a second name, by "-";
// then the job's own aliases. Names that are not valid host names are
// left out, and each name appears once.
func ServiceAliases(img Image) []string {
	var out []string
	add := func(a string) {
		if validAlias(a) && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	if name := imageName(img.Name); name != "" {
		add(strings.ReplaceAll(name, "/", "__"))
		add(strings.ReplaceAll(name, "/", "-"))
	}
	for _, a := range img.UserAliases() {
		add(a)
	}
	return out
}

// imageName strips an image reference to its repository path without
// tag, digest or registry port: "reg.example.com:5000/db/pg:16" gives
// "reg.example.com/db/pg". The reference is read as the Docker executor
// reads it (distribution/reference, not normalised: "postgres" stays
// "postgres"); one it cannot read gives "".
func imageName(ref string) string {
	r, err := reference.Parse(strings.TrimSpace(ref))
	if err != nil {
		return ""
	}
	named, ok := r.(reference.Named)
	if !ok {
		return ""
	}
	domain := reference.Domain(named)
	if domain == "" {
		return reference.Path(named)
	}
	host, _, _ := strings.Cut(domain, ":")
	return host + "/" + reference.Path(named)
}

// validAlias accepts what Docker's embedded DNS can answer for: letters,
// digits, '.', '-' and '_', not starting or ending with '.' or '-', at
// most 253 characters.
func validAlias(a string) bool {
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

// ServiceEnv returns a service container's environment, as the Docker
// executor builds it: the job's public variables (not the project's own
// CI/CD variables, nor the job token) and then the service's variables,
// each expanded ($VAR, ${VAR}) against that list unless it is raw.
// DOCKER_AUTH_CONFIG (registry logins for the pulls) is left out even when
// public: a container's environment shows in `docker inspect`.
func (j Job) ServiceEnv(img Image) []string {
	var vars []Variable
	for _, v := range j.Variables {
		if v.Public && v.Key != "DOCKER_AUTH_CONFIG" {
			vars = append(vars, v)
		}
	}
	vars = append(vars, img.Variables...)
	values := map[string]string{}
	for _, v := range vars {
		values[v.Key] = v.Value
	}
	env := make([]string, 0, len(vars))
	for _, v := range vars {
		val := v.Value
		if !v.Raw {
			val = os.Expand(val, func(k string) string { return expandVar(values, k) })
		}
		env = append(env, v.Key+"="+val)
	}
	return env
}

// expandVar is the value of $k in a service variable, as the runner
// expands it: "$$" is a literal "$", and the shell's special parameters
// ($*, $#, $1 ...) are empty.
func expandVar(values map[string]string, k string) string {
	if k == "$" {
		return "$"
	}
	return values[k]
}
