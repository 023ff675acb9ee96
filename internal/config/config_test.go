package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/warmcache/warmcache/internal/limits"
)

func TestParseFullFixture(t *testing.T) {
	data, err := os.ReadFile("testdata/full.toml")
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse(string(data))
	if err != nil {
		t.Fatalf("Parse(full.toml): %v", err)
	}
	want := Config{
		Docker: Docker{
			Host:                "tcp://docker.example.com:2376",
			DefaultImage:        "alpine:3.20",
			HelperImage:         "registry.example.com/gitlab-runner-helper:x86_64-v19.4.0",
			PullPolicy:          []string{PullAlways, PullIfNotPresent},
			AllowedPullPolicies: []string{PullAlways, PullIfNotPresent},
			NetworkMode:         "ci-jobs",
			NetworkPerJob:       true,
			PullAttempts:        5,
			CleanupTimeout:      90 * time.Second,
			StageAgent:          false,
			Registries: []Registry{
				{Host: "registry.example.com:5000", Username: "ci", PasswordFile: "/etc/warmcache/registry.password"},
				{Host: "ghcr.io", Username: "bot", PasswordFile: "/etc/warmcache/ghcr.password"},
			},
			Rules: Rules{
				AllowedImages:              []string{"golang:*", "registry.example.com/**"},
				AllowedServices:            []string{"postgres:16", "redis:*"},
				AllowedUsers:               []string{"1000", "build"},
				AllowedPrivilegedImages:    []string{"docker:*"},
				AllowedPrivilegedServices:  []string{"docker:*-dind"},
				DisableEntrypointOverwrite: true,
				Services: []AdminService{{
					Name: "registry.example.com/tools/proxy:1", Alias: "proxy, cache-proxy",
					Entrypoint: []string{"/bin/proxy"}, Command: []string{"--port", "3128"},
					Environment: []string{"PROXY_MODE=cache", "EMPTY="},
				}},
			},
			EngineTLS: EngineTLS{TLSVerify: true, TLSCertPath: "/etc/warmcache/docker-certs", HostInFile: true},
			ContainerOptions: ContainerOptions{
				Privileged:          true,
				User:                "1000:1000",
				ServicesPrivileged:  new(false),
				Volumes:             []string{"/var/run/docker.sock:/var/run/docker.sock", "/srv/ref:/ref:ro", "ccache:/ccache", "/scratch"},
				VolumeDriver:        "local",
				CapAdd:              []string{"NET_ADMIN"},
				CapDrop:             []string{"MKNOD"},
				SecurityOpt:         []string{"no-new-privileges"},
				ServicesSecurityOpt: []string{"seccomp=unconfined"},
				Devices:             []string{"/dev/kvm"},
				ServicesDevices:     map[string][]string{"registry.example.com/emulator:*": {"/dev/kvm", "/dev/net/tun:/dev/net/tun:rw"}},
				DeviceCgroupRules:   []string{"c 10:232 rwm"},
				Runtime:             "runc",
				Gpus:                "all",
				GroupAdd:            []string{"kvm", "993"},
				UsernsMode:          "host",
				Sysctls:             map[string]string{"net.ipv4.ip_forward": "1"},
				Ulimit:              map[string]string{"nofile": "1024:2048"},
				OomKillDisable:      true,
				OomScoreAdjust:      500,
				DNS:                 []string{"10.0.0.53", "fd00::53"},
				DNSSearch:           []string{"corp.example"},
				ExtraHosts:          []string{"registry.corp.example:10.0.0.5"},
				NetworkMTU:          1400,
				EnableIPv6:          true,
				Tmpfs:               map[string]string{"/var/lib/mysql": "rw,noexec"},
				ServicesTmpfs:       map[string]string{"/var/lib/postgresql/data": "rw,size=256m"},
				MacAddress:          "92:d0:c6:0a:29:33",
			},
		},
		Cache: Cache{
			Enabled:  false,
			Profiles: []string{"npm", "bazel"},
			Custom: []CustomProfile{{
				Name:           "bazel",
				Paths:          []string{"/root/.cache/bazel", "/root/.cache/bazelisk"},
				Env:            map[string]string{"BAZEL_CACHE": "/root/.cache/bazel"},
				ConcurrentSafe: true,
			}},
			Pool:            "team-a",
			StateDir:        "/srv/warmcache/state",
			Fork:            "keep",
			CommitOnSuccess: true,
			MetricsFile:     "/var/lib/node_exporter/textfile/warmcache.prom",
			GC: CacheGC{MaxVolumeSize: 20 << 30, Budget: 100 << 30, MaxIdle: 720 * time.Hour,
				MinFreeDisk: 10 << 30, AtStages: false},
			CacheMetrics: CacheMetrics{MetricsPerProject: true},
			CacheQuota:   CacheQuota{Quota: 20 << 30},
			Remote: CacheRemote{URL: "https://s3.eu-west-1.amazonaws.com", Bucket: "ci-caches", Region: "eu-west-1",
				Prefix: "fleet-a", AccessKeyFile: "/etc/warmcache/s3.access", SecretKeyFile: "/etc/warmcache/s3.secret",
				Publish: "all", MinInterval: 30 * time.Minute},
		},
		Reap: Reap{Grace: 30 * time.Minute, AtPrepare: false},
		Log:  Log{File: "/var/log/warmcache.log", Level: "debug", FileInFile: true},

		Services: Services{WaitTimeout: 45 * time.Second, MaxPerJob: 3},
		Env: Env{
			HTTPProxy:  "http://proxy.example.com:3128",
			HTTPSProxy: "http://proxy.example.com:3129",
			NoProxy:    "internal.example.com, .corp.example, 10.0.0.0/8",
			GoProxy:    "https://goproxy.corp.example,https://proxy.golang.org|direct",
			GoPrivate:  "git.corp.example,*.internal.example",
			GoNoProxy:  "git.corp.example",
			GoNoSumDB:  "git.corp.example,*.internal.example",
			GoSumDB:    "sum.golang.org",
			GoFlags:    "-mod=mod -trimpath",
			JobToken:   false,
			Extra:      map[string]string{"GOTOOLCHAIN": "local", "PIP_INDEX_URL": "https://pypi.corp.example/simple"},
			Tokens: []Token{{
				Host: "git.corp.example", Login: "ci-bot", TokenFile: "/etc/warmcache/git-token",
				NPMRegistry: "https://git.corp.example/api/v4/packages/npm/",
			}},
		},
		Limits: limits.Config{
			ConcurrentJobs: 4,
			Job:            limits.JobSet{CPUs: "1.5", CpusetCpus: "0-1", Memory: "4g", PidsLimit: 2048},
			Build:          limits.Set{CPUs: "1", CpusetCpus: "1", Memory: "3g", MemorySwap: "4g", MemoryReservation: "1g", PidsLimit: 1024, ShmSize: "256m"},
			Helper:         limits.Set{CPUs: "0.5", CpusetCpus: "0", Memory: "512m", MemorySwap: "-1", MemoryReservation: "256m", PidsLimit: 256, ShmSize: "64m"},
			Services:       limits.Set{CPUs: "0.75", CpusetCpus: "0,1", Memory: "1g", MemorySwap: "2g", MemoryReservation: "512m", PidsLimit: 512, ShmSize: "128m"},
			Projects: []limits.Project{
				{
					Path:     "big-group/*",
					ID:       42,
					Job:      limits.JobSet{CPUs: "2", CpusetCpus: "0-1", Memory: "8g", PidsLimit: 4096},
					Build:    limits.Set{CPUs: "2", CpusetCpus: "0-1", Memory: "6g", MemorySwap: "-1", MemoryReservation: "2g", PidsLimit: 2048, ShmSize: "1g"},
					Helper:   limits.Set{CPUs: "1", CpusetCpus: "0", Memory: "1g", MemorySwap: "2g", MemoryReservation: "512m", PidsLimit: 512, ShmSize: "128m"},
					Services: limits.Set{CPUs: "1", CpusetCpus: "1", Memory: "2g", MemorySwap: "3g", MemoryReservation: "1g", PidsLimit: 1024, ShmSize: "256m"},
				},
			},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Parse(full.toml) =\n%+v\nwant\n%+v", got, want)
	}
	// The fixture must keep setting every key, so that a new key without a
	// TOML tag or a test shows up here.
	everyFieldSet(t, "Config", reflect.ValueOf(got), reflect.ValueOf(Default()))
}

// everyFieldSet fails for each leaf of got equal to the same leaf of def.
// Elements of slices of structs are compared with the zero value.
func everyFieldSet(t *testing.T, path string, got, def reflect.Value) {
	t.Helper()
	switch {
	case got.Kind() == reflect.Struct:
		for i := range got.NumField() {
			name := got.Type().Field(i).Name
			everyFieldSet(t, path+"."+name, got.Field(i), def.Field(i))
		}
	case got.Kind() == reflect.Slice && got.Type().Elem().Kind() == reflect.Struct:
		if got.Len() == 0 {
			t.Errorf("full.toml does not set %s", path)
		}
		for i := range got.Len() {
			everyFieldSet(t, fmt.Sprintf("%s[%d]", path, i), got.Index(i), reflect.Zero(got.Type().Elem()))
		}
	case reflect.DeepEqual(got.Interface(), def.Interface()):
		t.Errorf("full.toml leaves %s at its default %v", path, def.Interface())
	}
}

func TestParseEmptyIsDefault(t *testing.T) {
	for _, text := range []string{"", "# only a comment\n", "[docker]\n[log]\n"} {
		got, err := Parse(text)
		if err != nil {
			t.Fatalf("Parse(%q): %v", text, err)
		}
		if !reflect.DeepEqual(got, Default()) {
			t.Errorf("Parse(%q) = %+v, want Default()", text, got)
		}
	}
}

func TestParseInvalid(t *testing.T) {
	const policies = "always, if-not-present, never"
	tests := []struct {
		name, text, want string
	}{
		// Unknown keys, all reported with their full path.
		{"unknown top-level key", "bogus = 1\n", "unknown key bogus"},
		{"misspelt docker key", "[docker]\npulll_policy = [\"always\"]\n", "unknown key docker.pulll_policy"},
		{"unknown log key", "[log]\npath = \"/x\"\n", "unknown key log.path"},
		{"unknown registry key", "[[docker.registry]]\nhost = \"r.example.com\"\nusername = \"u\"\npassword_file = \"/p\"\npassword = \"x\"\n",
			"unknown key docker.registry.password"},
		{"every problem at once", "[docker]\nhots = \"x\"\npull_attempts = 0\n[log]\nlevel = \"verbose\"\n",
			`unknown key docker.hots; docker.pull_attempts: 0 is out of range 1..10; log.level: "verbose" is not one of debug, info, warn, error`},

		{"docker.user with a space", "[docker]\nuser = \"ci user\"\n", `docker.user: "ci user" is not a user; write a name, a uid or uid:gid`},

		// Pull policies.
		{"bad pull policy", "[docker]\npull_policy = [\"sometimes\"]\n",
			`docker.pull_policy[0]: "sometimes" is not one of ` + policies},
		{"bad allowed policy", "[docker]\nallowed_pull_policies = [\"always\", \"Never\"]\n",
			`docker.allowed_pull_policies[1]: "Never" is not one of ` + policies},
		{"empty pull policy", "[docker]\npull_policy = []\n",
			"docker.pull_policy: must list at least one of " + policies},
		{"empty allowed policies", "[docker]\nallowed_pull_policies = []\n",
			"docker.allowed_pull_policies: must list at least one of " + policies},
		{"empty intersection", "[docker]\npull_policy = [\"always\"]\nallowed_pull_policies = [\"if-not-present\", \"never\"]\n",
			"docker.pull_policy: none of [always] is in docker.allowed_pull_policies [if-not-present never]"},

		// Host, image, numbers.
		{"http host", "[docker]\nhost = \"http://docker:2375\"\n",
			`docker.host: "http://docker:2375" must start with unix:// or tcp://`},
		{"bare path host", "[docker]\nhost = \"/var/run/docker.sock\"\n",
			`docker.host: "/var/run/docker.sock" must start with unix:// or tcp://`},
		{"reap grace too short", "[reap]\ngrace = \"10m\"\n", `reap.grace: 10m0s is too short (at least 15m, e.g. "1h")`},
		{"ssh host", "[docker]\nhost = \"ssh://ci@docker-host\"\n",
			`docker.host: "ssh://ci@docker-host" must start with unix:// or tcp://`},
		{"empty host", "[docker]\nhost = \"\"\n", "docker.host: must not be empty"},
		{"relative tls_cert_path", "[docker]\ntls_verify = true\ntls_cert_path = \"certs\"\n",
			`docker.tls_cert_path: "certs" must be an absolute directory (holding ca.pem, cert.pem and key.pem)`},
		{"misspelt tls key", "[docker]\ntls_verfy = true\n", "unknown key docker.tls_verfy"},
		{"tls_verify not a bool", "[docker]\ntls_verify = \"yes\"\n",
			`toml: line 2 (last key "docker.tls_verify"): incompatible types: TOML value has type string; destination has type boolean`},
		{"blank default image", "[docker]\ndefault_image = \"  \"\n", "docker.default_image: must not be empty"},
		{"zero pull attempts", "[docker]\npull_attempts = 0\n", "docker.pull_attempts: 0 is out of range 1..10"},
		{"too many pull attempts", "[docker]\npull_attempts = 11\n", "docker.pull_attempts: 11 is out of range 1..10"},

		// Services.
		{"negative service wait", "[services]\nwait_timeout = \"-1s\"\n", "services.wait_timeout: -1s is out of range 0s..1h (0s skips the wait)"},
		{"service wait too long", "[services]\nwait_timeout = \"2h\"\n", "services.wait_timeout: 2h0m0s is out of range 0s..1h (0s skips the wait)"},
		{"too many services allowed", "[services]\nmax_per_job = 51\n", "services.max_per_job: 51 is out of range 0..50"},
		{"negative services cap", "[services]\nmax_per_job = -1\n", "services.max_per_job: -1 is out of range 0..50"},
		{"unknown services key", "[services]\ntimeout = \"5s\"\n", "unknown key services.timeout"},
		// Rules and the admin's services.
		{"bad image pattern", "[docker]\nallowed_images = [\"golang:*\", \"[bad\", \"\"]\n",
			`docker.allowed_images[1]: "[bad" is not a valid pattern (e.g. "golang:*" or "registry.example.com/**"); ` +
				`docker.allowed_images[2]: "" is not a valid pattern (e.g. "golang:*" or "registry.example.com/**")`},
		{"bad service pattern", "[docker]\nallowed_services = [\"{a,b\"]\n",
			`docker.allowed_services[0]: "{a,b" is not a valid pattern (e.g. "golang:*" or "registry.example.com/**")`},
		{"bad privileged patterns", "[docker]\nallowed_privileged_images = [\"a[\"]\nallowed_privileged_services = [\" \"]\n",
			`docker.allowed_privileged_images[0]: "a[" is not a valid pattern (e.g. "golang:*" or "registry.example.com/**"); ` +
				`docker.allowed_privileged_services[0]: " " is not a valid pattern (e.g. "golang:*" or "registry.example.com/**")`},
		{"bad allowed user", "[docker]\nallowed_users = [\"build\", \"a b\"]\n", `docker.allowed_users[1]: "a b" must be a user name or id`},
		{"admin service problems at once", "[[docker.services]]\nname = \"\"\nalias = \"ok, -bad\"\nenvironment = [\"A=1\", \"NOVALUE\", \"1X=2\"]\n",
			`docker.services[0].name: "" must be an image name; docker.services[0].alias: "-bad" is not a valid host name; ` +
				`docker.services[0].environment[1]: "NOVALUE" must be NAME=value; docker.services[0].environment[2]: "1X=2" must be NAME=value`},
		{"unknown admin service key", "[[docker.services]]\nname = \"redis:7\"\nports = [6379]\n", "unknown key docker.services.ports"},

		// The [env] section.
		{"proxy without scheme", "[env]\nhttp_proxy = \"proxy.example.com:3128\"\n",
			`env.http_proxy: "proxy.example.com:3128" must be a URL starting with one of http:// https:// socks5:// socks5h://`},
		{"proxy with a password", "[env]\nhttps_proxy = \"http://u:hunter22@proxy.example.com:3128\"\n",
			"env.https_proxy: must not hold a user name or password (it would show in docker inspect); use [[env.token]]"},
		{"goproxy with a token as user name", "[env]\ngoproxy = \"https://TOKEN@goproxy.corp.example,direct\"\n",
			"env.goproxy: must not hold a user name or password (it would show in docker inspect); use [[env.token]]"},
		{"gosumdb with a user", "[env]\ngosumdb = \"sum.corp.example+abc https://u@sum.corp.example\"\n",
			"env.gosumdb: must not hold a user name or password (it would show in docker inspect); use [[env.token]]"},
		{"extra sets git config", "[env]\nextra = { GIT_CONFIG_KEY_0 = \"credential.helper\" }\n",
			"env.extra: GIT_CONFIG_KEY_0 is set by warmcache from the other env keys; set it there"},
		{"no_proxy with a URL", "[env]\nno_proxy = \"a.example, http://b.example\"\n",
			`env.no_proxy: entry 1 "http://b.example" must be a host, .domain, IP or CIDR`},
		{"goproxy entries", "[env]\ngoproxy = \"https://p.example|dirrect,off\"\n",
			`env.goproxy: "dirrect" must be a URL starting with one of http:// https:// file://`},
		{"goprivate pattern", "[env]\ngoprivate = \"git.example.com,[bad\"\n",
			`env.goprivate: "[bad" is not a module path pattern (e.g. gitlab.example.com,*.corp.example)`},
		{"goflags", "[env]\ngoflags = \"-mod=mod trimpath\"\n", `env.goflags: "trimpath" must start with - (e.g. "-mod=mod -trimpath")`},
		{"extra sets an owned name", "[env]\nextra = { http_proxy = \"http://x.example\", \"1BAD\" = \"x\", NPM_CONFIG_PROXY = \"y\" }\n",
			`env.extra: "1BAD" is not a valid variable name; env.extra: NPM_CONFIG_PROXY is set by warmcache from the other env keys; set it there; env.extra: http_proxy is set by warmcache from the other env keys; set it there`},
		{"token problems at once", "[[env.token]]\nhost = \"https://git.example.com\"\nlogin = \"a b\"\ntoken_file = \"token\"\nnpm_registry = \"npm.example.com\"\n",
			`env.token[0].host: "https://git.example.com" must be a host or host:port such as git.example.com; env.token[0].login: must be one word; env.token[0].token_file: must be the absolute path of a file holding the token; env.token[0].npm_registry: "npm.example.com" must be a URL starting with one of http:// https://`},
		{"token host twice", "[[env.token]]\nhost = \"git.example.com\"\nlogin = \"a\"\ntoken_file = \"/t\"\n[[env.token]]\nhost = \"Git.Example.com\"\nlogin = \"b\"\ntoken_file = \"/u\"\n",
			`env.token[1].host: "Git.Example.com" is listed twice`},
		{"token in the TOML", "[[env.token]]\nhost = \"git.example.com\"\nlogin = \"a\"\ntoken = \"glpat-123\"\ntoken_file = \"/t\"\n",
			"unknown key env.token.token"},

		// Log level.
		{"bad level", "[log]\nlevel = \"trace\"\n", `log.level: "trace" is not one of debug, info, warn, error`},
		{"upper-case level", "[log]\nlevel = \"INFO\"\n", `log.level: "INFO" is not one of debug, info, warn, error`},

		// Wrong TOML types name the key.
		{"string for int", "[docker]\npull_attempts = \"3\"\n",
			`toml: line 2 (last key "docker.pull_attempts"): incompatible types: TOML value has type string; destination has type integer`},
		{"float for int", "[docker]\npull_attempts = 1.5\n",
			`toml: line 2 (last key "docker.pull_attempts"): incompatible types: TOML value has type float64; destination has type integer`},
		{"string for list", "[docker]\npull_policy = \"always\"\n",
			`toml: line 2 (last key "docker.pull_policy"): incompatible types: TOML value has type string; destination has type slice`},
		{"int in list", "[docker]\npull_policy = [1]\n",
			`toml: line 2 (last key "docker.pull_policy"): incompatible types: TOML value has type int64; destination has type string`},
		{"bool for string", "[log]\nlevel = true\n",
			`toml: line 2 (last key "log.level"): incompatible types: TOML value has type bool; destination has type string`},
		{"value for table", "docker = 1\n",
			`toml: line 1 (last key "docker"): type mismatch for config.Docker: expected table but found int64`},
		{"value for table array", "[docker]\nregistry = 1\n",
			`toml: line 2 (last key "docker.registry"): incompatible types: TOML value has type int64; destination has type slice`},

		// Durations.
		{"unparsable duration", "[docker]\ncleanup_timeout = \"5 minutes\"\n",
			`line 2, key docker.cleanup_timeout: invalid duration: "5 minutes"`},
		{"integer duration has no unit", "[docker]\ncleanup_timeout = 300\n",
			`docker.cleanup_timeout: 300 has no unit; write "5m"`},
		{"negative duration", "[docker]\ncleanup_timeout = \"-1s\"\n",
			`docker.cleanup_timeout: -1s is too short (at least 1s, e.g. "5m")`},
		{"sub-second duration", "[docker]\ncleanup_timeout = \"999ms\"\n",
			`docker.cleanup_timeout: 999ms is too short (at least 1s, e.g. "5m")`},

		// Registries.
		{"registry without login", "[[docker.registry]]\nhost = \"registry.example.com\"\n",
			"docker.registry[0].username: must not be empty; docker.registry[0].password_file: must name a file holding the password"},
		{"empty registry entry", "[[docker.registry]]\n",
			`docker.registry[0].host: "" must be a registry host such as registry.example.com:5000; ` +
				"docker.registry[0].username: must not be empty; docker.registry[0].password_file: must name a file holding the password"},
		{"registry host is a URL", "[[docker.registry]]\nhost = \"https://registry.example.com\"\nusername = \"u\"\npassword_file = \"/p\"\n",
			`docker.registry[0].host: "https://registry.example.com" must be a registry host such as registry.example.com:5000`},
		{"second registry incomplete", "[[docker.registry]]\nhost = \"a.example.com\"\nusername = \"u\"\npassword_file = \"/p\"\n" +
			"[[docker.registry]]\nhost = \"b.example.com\"\nusername = \"u\"\n",
			"docker.registry[1].password_file: must name a file holding the password"},

		// Cache profiles.
		{"unknown profile", "[cache]\nprofiles = [\"go\", \"rust\"]\n",
			`cache.profiles[1]: unknown profile "rust" (built in: go, npm, pip, maven, gradle, cargo, git; or define it under [[cache.custom]])`},
		{"bad custom name", "[[cache.custom]]\nname = \"My_Cache\"\npaths = [\"/c\"]\n",
			`cache.custom[0].name: "My_Cache" must be 1-20 characters of a-z, 0-9 and -, starting with a letter`},
		{"custom shadows builtin", "[[cache.custom]]\nname = \"go\"\npaths = [\"/c\"]\n",
			`cache.custom[0].name: "go" is already defined`},
		{"custom defined twice", "[[cache.custom]]\nname = \"x\"\npaths = [\"/c\"]\n[[cache.custom]]\nname = \"x\"\npaths = [\"/d\"]\n",
			`cache.custom[1].name: "x" is already defined`},
		{"custom without paths", "[[cache.custom]]\nname = \"x\"\n",
			"cache.custom[0].paths: must list at least one absolute directory"},
		{"custom relative and reserved paths", "[[cache.custom]]\nname = \"x\"\npaths = [\"cache\", \"/builds/\", \"/a/../etc\"]\n",
			`cache.custom[0].paths[0]: "cache" must be an absolute directory other than [/ /builds /cache /proc /sys /dev /etc /tmp]; ` +
				`cache.custom[0].paths[1]: "/builds/" must be an absolute directory other than [/ /builds /cache /proc /sys /dev /etc /tmp]; ` +
				`cache.custom[0].paths[2]: "/a/../etc" must be an absolute directory other than [/ /builds /cache /proc /sys /dev /etc /tmp]`},
		{"custom root and unclean reserved paths", "[[cache.custom]]\nname = \"x\"\npaths = [\"/\", \"//builds\", \"/etc/.\"]\n",
			`cache.custom[0].paths[0]: "/" must be an absolute directory other than [/ /builds /cache /proc /sys /dev /etc /tmp]; ` +
				`cache.custom[0].paths[1]: "//builds" must be an absolute directory other than [/ /builds /cache /proc /sys /dev /etc /tmp]; ` +
				`cache.custom[0].paths[2]: "/etc/." must be an absolute directory other than [/ /builds /cache /proc /sys /dev /etc /tmp]`},
		// Cache limits.
		{"bad size", "[cache.gc]\nbudget = \"lots\"\n", `line 2, key cache.gc.budget: "lots" is not a size such as "512m" or "2g"`},
		{"NaN size", "[cache.gc]\nbudget = \"nan\"\n", `line 2, key cache.gc.budget: "nan" is not a size such as "512m" or "2g"`},
		{"infinite size", "[cache.gc]\nmax_volume_size = \"inf\"\n", `line 2, key cache.gc.max_volume_size: "inf" is not a size such as "512m" or "2g"`},
		{"negative size string", "[cache.gc]\nbudget = \"-1g\"\n", `line 2, key cache.gc.budget: "-1g" is not a size such as "512m" or "2g"`},
		{"relative log file", "[log]\nfile = \"warmcache.log\"\n", `log.file: "warmcache.log" must be an absolute path ("" for none)`},
		{"negative size", "[cache.gc]\nmin_free_disk = -1\n", `cache.gc.min_free_disk: -1 is not a size; write one with a unit such as "20g"`},
		{"quota too small", "[cache]\nquota = \"1MiB\"\n", "cache.quota: 1048576 bytes is under the least, 16MiB"},
		{"bad quota", "[cache]\nquota = \"lots\"\n", `line 2, key cache.quota: "lots" is not a size such as "512m" or "2g"`},
		{"remote tier", "[cache.remote]\nurl = \"s3.example.com/x\"\nbucket = \"B\"\nprefix = \"/a/../b\"\naccess_key_file = \"key\"\npublish = \"yes\"\nmin_interval = \"-1m\"\n",
			`cache.remote.url: "s3.example.com/x" must be an http:// or https:// endpoint with no path; ` +
				`cache.remote.access_key_file: with cache.remote.url, both access_key_file and secret_key_file must be set; ` +
				`cache.remote.bucket: "B" must be 3-63 characters of a-z, 0-9, '.' and '-'; ` +
				`cache.remote.prefix: "/a/../b" must be a relative key prefix without '..' or '//'; ` +
				`cache.remote.access_key_file: "key" must be an absolute path; ` +
				`cache.remote.publish: "yes" is not one of protected, all, none; ` +
				`cache.remote.min_interval: -1m0s must not be negative`},
		{"remote unknown key", "[cache.remote]\nendpoint = \"x\"\n", "unknown key cache.remote.endpoint"},
		{"bad fork mode", "[cache]\nfork = \"yes\"\n", `cache.fork: "yes" is not one of off, keep, discard`},
		{"volume limit over budget", "[cache.gc]\nbudget = \"1GiB\"\nmax_volume_size = \"2GiB\"\n",
			"cache.gc.max_volume_size: must not exceed cache.gc.budget"},
		{"bad pool, state dir and metrics file", "[cache]\npool = \"Team A\"\nstate_dir = \"state\"\nmetrics_file = \"m.prom\"\n[cache.gc]\nmax_idle = \"-1h\"\n",
			`cache.pool: "Team A" must be at most 40 characters of a-z, 0-9, '.', '_' and '-'; cache.state_dir: "state" must be an absolute directory; cache.metrics_file: "m.prom" must be an absolute path; cache.gc.max_idle: -1h0m0s must not be negative`},
		{"profile listed twice", "[cache]\nprofiles = [\"go\", \"npm\", \"go\"]\n",
			`cache.profiles[2]: "go" is listed twice`},
		{"custom bad env name", "[[cache.custom]]\nname = \"x\"\npaths = [\"/c\"]\nenv = { \"1X\" = \"v\" }\n",
			`cache.custom[0].env: "1X" is not a valid variable name`},

		// Limits: the keys are named, every problem at once.
		{"unknown limits key", "[limits.build]\nmemroy = \"1g\"\n", "unknown key limits.build.memroy"},
		{"bad limits", "[limits]\nconcurrent_jobs = 0\n[limits.job]\nmemory = \"2 apples\"\n[limits.build]\ncpus = \"0\"\n",
			`limits.concurrent_jobs: 0 is out of range 1..1024; limits.job.memory: "2 apples" is not a size such as "512m" or "2g"; limits.build.cpus: "0" is less than 0.01 CPUs`},
		{"project override without match", "[[limits.project]]\n[limits.project.job]\ncpus = \"1\"\n",
			"limits.project[0]: set path, id or both"},

		// Syntax errors stay on one line.
		{"unclosed table", "[docker\nhost = 5\n", `line 2: expected '.' or ']' to end table name, but got '\n' instead`},
		{"missing value", "[docker]\nhost = \n", `line 2, key docker.host: expected value but found '\n' instead`},
		{"duplicate key", "[docker]\nhost = \"unix:///a\"\nhost = \"unix:///b\"\n",
			"line 3, key docker.host: Key 'docker.host' has already been defined."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.text)
			if err == nil {
				t.Fatalf("Parse accepted it: %+v", got)
			}
			if err.Error() != tt.want {
				t.Errorf("error =\n%s\nwant\n%s", err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans several lines: %q", err)
			}
			if !reflect.DeepEqual(got, Config{}) {
				t.Errorf("Parse returned a config with its error: %+v", got)
			}
		})
	}
}

func TestResolve(t *testing.T) {
	tests := []struct {
		name, flag, env string
		wantPath        string
		wantOptional    bool
	}{
		{"flag wins over env", "/flag.toml", "/env.toml", "/flag.toml", false},
		{"flag alone", "/flag.toml", "", "/flag.toml", false},
		{"env when no flag", "", "/env.toml", "/env.toml", false},
		{"default path may be missing", "", "", DefaultPath, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			getenv := func(k string) string {
				if k == EnvVar {
					return tt.env
				}
				return "unexpected"
			}
			path, optional := Resolve(tt.flag, getenv)
			if path != tt.wantPath || optional != tt.wantOptional {
				t.Errorf("Resolve(%q) = %q, %v; want %q, %v", tt.flag, path, optional, tt.wantPath, tt.wantOptional)
			}
		})
	}
	if EnvVar != "WARMCACHE_CONFIG" || DefaultPath != "/etc/warmcache/config.toml" {
		t.Errorf("EnvVar %q, DefaultPath %q: these are documented names", EnvVar, DefaultPath)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.toml")
	bad := filepath.Join(dir, "bad.toml")
	good := filepath.Join(dir, "good.toml")
	if err := os.WriteFile(bad, []byte("[docker]\npulll_policy = [\"never\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(good, []byte("[docker]\npull_attempts = 7\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	t.Run("missing explicit file is an error", func(t *testing.T) {
		_, err := Load(missing, false)
		want := "reading config: open " + missing + ": no such file or directory"
		if err == nil || err.Error() != want {
			t.Fatalf("error = %v, want %q", err, want)
		}
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("error %v does not wrap fs.ErrNotExist", err)
		}
	})
	t.Run("missing optional file gives the defaults", func(t *testing.T) {
		got, err := Load(missing, true)
		if err != nil || !reflect.DeepEqual(got, Default()) {
			t.Fatalf("Load = %+v, %v; want Default()", got, err)
		}
	})
	t.Run("unreadable optional path is still an error", func(t *testing.T) {
		_, err := Load(dir, true)
		want := "reading config: read " + dir + ": is a directory"
		if err == nil || err.Error() != want {
			t.Fatalf("error = %v, want %q", err, want)
		}
	})
	t.Run("invalid file names the file and the key", func(t *testing.T) {
		for _, optional := range []bool{false, true} {
			_, err := Load(bad, optional)
			want := "config " + bad + ": unknown key docker.pulll_policy"
			if err == nil || err.Error() != want {
				t.Errorf("optional=%v: error = %v, want %q", optional, err, want)
			}
		}
	})
	t.Run("valid file is read over the defaults", func(t *testing.T) {
		got, err := Load(good, false)
		want := Default()
		want.Docker.PullAttempts = 7
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("Load = %+v, %v; want %+v", got, err, want)
		}
	})
}

func TestDefaultIsValid(t *testing.T) {
	d := Default()
	if p := d.validate(); len(p) != 0 {
		t.Errorf("Default() is invalid: %v", p)
	}
	// Each call returns fresh slices: a caller changing one must not
	// change the next.
	d.Docker.PullPolicy[0] = PullNever
	if Default().Docker.PullPolicy[0] != PullIfNotPresent {
		t.Error("Default() shares its slices between calls")
	}
}

func TestIntersect(t *testing.T) {
	all := []string{PullAlways, PullIfNotPresent, PullNever}
	tests := []struct {
		want, allowed, got []string
	}{
		{[]string{PullAlways, PullIfNotPresent}, all, []string{PullAlways, PullIfNotPresent}},
		{[]string{PullIfNotPresent, PullAlways}, all, []string{PullIfNotPresent, PullAlways}}, // want's order
		{[]string{PullAlways, PullNever}, []string{PullNever}, []string{PullNever}},
		{[]string{PullAlways, PullAlways, PullNever}, all, []string{PullAlways, PullNever}}, // no duplicates
		{[]string{PullAlways}, []string{PullNever}, nil},
		{nil, all, nil},
		{all, nil, nil},
	}
	for _, tt := range tests {
		if got := Intersect(tt.want, tt.allowed); !slices.Equal(got, tt.got) {
			t.Errorf("Intersect(%v, %v) = %v, want %v", tt.want, tt.allowed, got, tt.got)
		}
	}
}

func TestIsPullPolicy(t *testing.T) {
	for s, want := range map[string]bool{
		"always": true, "if-not-present": true, "never": true,
		"": false, "Always": false, "if_not_present": false, "missing": false,
	} {
		if got := IsPullPolicy(s); got != want {
			t.Errorf("IsPullPolicy(%q) = %v, want %v", s, got, want)
		}
	}
}
