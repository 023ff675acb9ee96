package config

import (
	"strings"
	"testing"
)

// The engine comes from the file when it sets docker.host, else from
// DOCKER_HOST, DOCKER_TLS_VERIFY and DOCKER_CERT_PATH, as gitlab-runner
// resolves it; with neither, the default socket.
func TestEngine(t *testing.T) {
	tlsEnv := map[string]string{
		EnvDockerHost: "tcp://10.0.0.5:2376", EnvDockerTLSVerify: "1", EnvDockerCertPath: "/home/ci/.docker/remote",
	}
	tests := []struct {
		name string
		toml string
		env  map[string]string
		want Engine
	}{
		{"defaults, empty environment", "", nil, Engine{Host: "unix:///var/run/docker.sock"}},
		{"file host without TLS", "[docker]\nhost = \"tcp://docker:2375\"\n", nil, Engine{Host: "tcp://docker:2375"}},
		{"file host with TLS", "[docker]\nhost = \"tcp://docker:2376\"\ntls_verify = true\ntls_cert_path = \"/etc/certs\"\n", nil,
			Engine{Host: "tcp://docker:2376", TLSVerify: true, CertPath: "/etc/certs"}},
		{"file TLS without a cert path: system roots, no client certificate",
			"[docker]\nhost = \"tcp://docker:2376\"\ntls_verify = true\n", nil,
			Engine{Host: "tcp://docker:2376", TLSVerify: true}},
		{"cert path without tls_verify is not used", "[docker]\nhost = \"tcp://docker:2375\"\ntls_cert_path = \"/etc/certs\"\n", nil,
			Engine{Host: "tcp://docker:2375"}},
		{"file host wins over the environment", "[docker]\nhost = \"unix:///run/other.sock\"\n", tlsEnv,
			Engine{Host: "unix:///run/other.sock"}},
		{"file TLS keys alone do not stop the environment", "[docker]\ntls_verify = true\ntls_cert_path = \"/etc/certs\"\n", tlsEnv,
			Engine{Host: "tcp://10.0.0.5:2376", TLSVerify: true, CertPath: "/home/ci/.docker/remote", FromEnv: true}},
		{"environment with TLS", "", tlsEnv,
			Engine{Host: "tcp://10.0.0.5:2376", TLSVerify: true, CertPath: "/home/ci/.docker/remote", FromEnv: true}},
		{"environment without TLS verify ignores the cert path", "",
			map[string]string{EnvDockerHost: "tcp://10.0.0.5:2375", EnvDockerCertPath: "/certs"},
			Engine{Host: "tcp://10.0.0.5:2375", FromEnv: true}},
		{"DOCKER_TLS_VERIFY=0 is off", "",
			map[string]string{EnvDockerHost: "tcp://10.0.0.5:2375", EnvDockerTLSVerify: "0", EnvDockerCertPath: "/certs"},
			Engine{Host: "tcp://10.0.0.5:2375", FromEnv: true}},
		{"TLS variables without DOCKER_HOST are not used", "",
			map[string]string{EnvDockerTLSVerify: "1", EnvDockerCertPath: "/certs"},
			Engine{Host: "unix:///var/run/docker.sock"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse(tt.toml)
			if err != nil {
				t.Fatal(err)
			}
			got, err := cfg.Docker.Engine(func(k string) string { return tt.env[k] })
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("Engine = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// A bad environment fails with one line naming the variable.
func TestEngineBadEnvironment(t *testing.T) {
	tests := []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{EnvDockerHost: "ssh://ci@remote"},
			`DOCKER_HOST: "ssh://ci@remote" must start with unix:// or tcp:// (docker.host is not set in the config)`},
		{map[string]string{EnvDockerHost: "tcp://remote:2376", EnvDockerTLSVerify: "yes"},
			`DOCKER_TLS_VERIFY: "yes" is not a boolean (1, true, 0, false)`},
		{map[string]string{EnvDockerHost: "tcp://remote:2376", EnvDockerTLSVerify: "true", EnvDockerCertPath: "certs"},
			`DOCKER_CERT_PATH: "certs" must be an absolute directory`},
	}
	for _, tt := range tests {
		_, err := Default().Docker.Engine(func(k string) string { return tt.env[k] })
		if err == nil || err.Error() != tt.want || strings.Contains(err.Error(), "\n") {
			t.Errorf("env %v: error = %v, want %q", tt.env, err, tt.want)
		}
	}
}
