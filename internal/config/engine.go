package config

import (
	"fmt"
	"path/filepath"
	"strconv"
)

// The environment the engine connection falls back to, as the Docker CLI
// and gitlab-runner read it.
const (
	EnvDockerHost      = "DOCKER_HOST"
	EnvDockerTLSVerify = "DOCKER_TLS_VERIFY"
	EnvDockerCertPath  = "DOCKER_CERT_PATH"
)

// EngineTLS are the [docker] keys of a remote engine over TLS, with the
// names and meaning of gitlab-runner's [runners.docker].
type EngineTLS struct {
	// TLSVerify connects over TLS and verifies the engine's certificate
	// (against TLSCertPath's ca.pem, else the system's roots). Without it,
	// a tcp:// host is plain HTTP and TLSCertPath is not used.
	TLSVerify bool `toml:"tls_verify"`
	// TLSCertPath is a directory holding ca.pem, cert.pem and key.pem
	// (the client's certificate and key).
	TLSCertPath string `toml:"tls_cert_path"`
	// HostInFile says the file sets docker.host. When it does not, the
	// engine, its TLS and certificates come from DOCKER_HOST,
	// DOCKER_TLS_VERIFY and DOCKER_CERT_PATH (see Docker.Engine). Not a key.
	HostInFile bool `toml:"-"`
}

// Engine is how the driver reaches the Docker engine, resolved.
type Engine struct {
	Host      string
	TLSVerify bool
	CertPath  string // "" when TLSVerify is off
	// FromEnv says Host and TLS came from the environment.
	FromEnv bool
}

// Engine resolves the engine connection as gitlab-runner does: the file's
// docker.host, tls_verify and tls_cert_path when it sets docker.host;
// otherwise all three from DOCKER_HOST, DOCKER_TLS_VERIFY and
// DOCKER_CERT_PATH, with docker.host's default when DOCKER_HOST is empty.
func (d Docker) Engine(getenv func(string) string) (Engine, error) {
	if d.HostInFile || getenv(EnvDockerHost) == "" {
		e := Engine{Host: d.Host, TLSVerify: d.TLSVerify}
		if e.TLSVerify {
			e.CertPath = d.TLSCertPath
		}
		return e, nil
	}
	e := Engine{Host: getenv(EnvDockerHost), FromEnv: true}
	if p := hostProblem(EnvDockerHost, e.Host); p != "" {
		return Engine{}, fmt.Errorf("%s (docker.host is not set in the config)", p)
	}
	if v := getenv(EnvDockerTLSVerify); v != "" {
		on, err := strconv.ParseBool(v)
		if err != nil {
			return Engine{}, fmt.Errorf("%s: %q is not a boolean (1, true, 0, false)", EnvDockerTLSVerify, v)
		}
		e.TLSVerify = on
	}
	if e.TLSVerify {
		e.CertPath = getenv(EnvDockerCertPath)
		if e.CertPath != "" && !filepath.IsAbs(e.CertPath) {
			return Engine{}, fmt.Errorf("%s: %q must be an absolute directory", EnvDockerCertPath, e.CertPath)
		}
	}
	return e, nil
}

// hostProblem checks an engine address; "" when it is fine.
func hostProblem(key, host string) string {
	if host == "" {
		return key + ": must not be empty"
	}
	// ssh:// needs the docker CLI as a connection helper, which this
	// driver does not use.
	if !hasAnyPrefix(host, "unix://", "tcp://") {
		return fmt.Sprintf("%s: %q must start with unix:// or tcp://", key, host)
	}
	return ""
}

func (t EngineTLS) validate() []string {
	if t.TLSCertPath != "" && !filepath.IsAbs(t.TLSCertPath) {
		return []string{fmt.Sprintf("docker.tls_cert_path: %q must be an absolute directory (holding ca.pem, cert.pem and key.pem)", t.TLSCertPath)}
	}
	return nil
}
