package config

import (
	"strings"
	"testing"
)

func TestServicesArePrivileged(t *testing.T) {
	for _, tt := range []struct {
		privileged bool
		services   *bool
		want       bool
	}{{false, nil, false}, {true, nil, true}, {true, new(false), false}, {false, new(true), true}} {
		o := ContainerOptions{Privileged: tt.privileged, ServicesPrivileged: tt.services}
		if got := o.ServicesArePrivileged(); got != tt.want {
			t.Errorf("privileged %v, services_privileged %v: ServicesArePrivileged() = %v", tt.privileged, tt.services, got)
		}
	}
}

// TestParseOptionsInvalid: each bad value is refused at load, in one line
// naming the key.
func TestParseOptionsInvalid(t *testing.T) {
	tests := []struct{ name, text, want string }{
		{"unparsable volume", "[docker]\nvolumes = [\"relative:dir\"]\n",
			`docker.volumes[0]: "relative:dir" is not a volume such as /host:/dst[:ro|rw], name:/dst or /dst`},
		{"volume over /builds", "[docker]\nvolumes = [\"/srv/x:/builds/x\"]\n",
			`docker.volumes[0]: "/srv/x:/builds/x" would hide or bind /builds, which warmcache mounts itself`},
		{"volume at /cache (the runner's default config)", "[docker]\nvolumes = [\"/cache\"]\n",
			`docker.volumes[0]: "/cache" would hide or bind /cache, which warmcache mounts itself`},
		{"volume above the credentials", "[docker]\nvolumes = [\"/tmp/run:/run\"]\n",
			`docker.volumes[0]: "/tmp/run:/run" would hide or bind /run/warmcache, which warmcache mounts itself`},
		{"volume over a custom cache", "[docker]\nvolumes = [\"/srv/b:/root/.cache/bazel:ro\"]\n[[cache.custom]]\nname = \"bazel\"\npaths = [\"/root/.cache/bazel\"]\n",
			`docker.volumes[0]: "/srv/b:/root/.cache/bazel:ro" would hide or bind /root/.cache/bazel, which warmcache mounts itself`},
		{"warmcache's own volume", "[docker]\nvolumes = [\"warmcache-cache-0123:/x\"]\n",
			`docker.volumes[0]: "warmcache-cache-0123:/x" names a volume of warmcache's own (warmcache-...)`},
		{"same destination twice", "[docker]\nvolumes = [\"/a:/x\", \"b:/x/\"]\n",
			`docker.volumes[1]: "b:/x/" mounts /x/ again (docker.volumes[0])`},
		{"root destination", "[docker]\nvolumes = [\"/srv:/\"]\n", `docker.volumes[0]: "/srv:/": the destination must not be /`},
		{"bad volume driver", "[docker]\nvolume_driver = \"a b\"\n", `docker.volume_driver: "a b" is not a volume driver name`},
		{"bad capabilities", "[docker]\ncap_add = [\"NET ADMIN\"]\ncap_drop = [\"\"]\n",
			`docker.cap_add[0]: "NET ADMIN" is not a capability such as NET_ADMIN or ALL; docker.cap_drop[0]: "" is not a capability such as NET_ADMIN or ALL`},
		{"bad security opts", "[docker]\nsecurity_opt = [\"seccomp\"]\nservices_security_opt = [\"=x\"]\n",
			`docker.security_opt[0]: "seccomp" is not an option such as seccomp=unconfined or no-new-privileges; docker.services_security_opt[0]: "=x" is not an option such as seccomp=unconfined or no-new-privileges`},
		{"bad devices", "[docker]\ndevices = [\"kvm\"]\n[docker.services_devices]\n\"a/[b\" = [\"/dev/x:rwx\"]\n",
			`docker.devices[0]: "kvm" is not a device such as /dev/kvm or /dev/fuse:/dev/fuse:rwm; docker.services_devices."a/[b": "a/[b" is not an image pattern; docker.services_devices."a/[b"[0]: "/dev/x:rwx" is not a device such as /dev/kvm or /dev/fuse:/dev/fuse:rwm`},
		{"bad cgroup rule", "[docker]\ndevice_cgroup_rules = [\"c 1:3 rwx\"]\n", `docker.device_cgroup_rules[0]: "c 1:3 rwx" is not a rule such as "c 1:3 rwm"`},
		{"bad runtime and gpus", "[docker]\nruntime = \"run c\"\ngpus = \"many\"\n",
			`docker.runtime: "run c" is not a runtime name such as runc; docker.gpus: "many" is not a GPU request such as all, 2 or "device=0,1"`},
		{"bad group and userns", "[docker]\ngroup_add = [\"a b\"]\nuserns_mode = \"private\"\n",
			`docker.group_add[0]: "a b" is not a group name or id; docker.userns_mode: "private" is not "host" (or empty: the engine's default)`},
		{"bad sysctl and ulimit", "[docker]\nsysctls = { \"ip_forward\" = \"1\" }\nulimit = { nofile = \"lots\" }\n",
			`docker.sysctls: "ip_forward" is not a sysctl name such as net.ipv4.ip_forward; docker.ulimit: nofile = "lots" is not soft[:hard] such as "1024:2048"`},
		{"oom score out of range", "[docker]\noom_score_adjust = 1001\n", "docker.oom_score_adjust: 1001 is out of range -1000..1000"},
		{"bad dns", "[docker]\ndns = [\"dns.example\"]\ndns_search = [\"-bad\"]\n",
			`docker.dns[0]: "dns.example" is not an IP address; docker.dns_search[0]: "-bad" is not a domain`},
		{"bad extra hosts", "[docker]\nextra_hosts = [\"registry\", \"a:b\", \"ok:::1\", \"gw:host-gateway\"]\n",
			`docker.extra_hosts[0]: "registry" is not host:IP such as registry.corp:10.0.0.5; docker.extra_hosts[1]: "a:b" is not host:IP such as registry.corp:10.0.0.5`},
		{"bad mtu", "[docker]\nnetwork_mtu = 9\n", "docker.network_mtu: 9 is out of range 68..65535 (0: the engine's default)"},
		{"bad tmpfs", "[docker]\ntmpfs = { \"rel\" = \"\", \"/builds\" = \"rw\", \"/x\" = \"rw, size=1m\" }\nservices_tmpfs = { \"/\" = \"\" }\n",
			`docker.tmpfs: "/builds" would hide or bind /builds, which warmcache mounts itself; docker.tmpfs: "/x": the options "rw, size=1m" must be comma-separated, such as rw,size=64m; docker.tmpfs: "rel" must be an absolute directory other than /; docker.services_tmpfs: "/" must be an absolute directory other than /`},
		{"bad mac", "[docker]\nmac_address = \"92:d0:c6\"\n", `docker.mac_address: "92:d0:c6" is not a MAC address such as 92:d0:c6:0a:29:33`},
		{"mac on the host network", "[docker]\nnetwork_mode = \"host\"\nmac_address = \"92:d0:c6:0a:29:33\"\n",
			`docker.mac_address: the host's network (docker.network_mode = "host") has no MAC address of its own to set`},
		{"wrong type", "[docker]\nprivileged = \"true\"\n",
			`toml: line 2 (last key "docker.privileged"): incompatible types: TOML value has type string; destination has type boolean`},
		{"misspelt option", "[docker]\ncap_adds = [\"NET_ADMIN\"]\n", "unknown key docker.cap_adds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.text)
			if err == nil {
				t.Fatalf("Parse accepted it: %+v", got.Docker.ContainerOptions)
			}
			if err.Error() != tt.want {
				t.Errorf("error =\n%s\nwant\n%s", err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans several lines: %q", err)
			}
		})
	}
}

// TestParseOptionsValid: the shapes a runner's config.toml has load as
// they are.
func TestParseOptionsValid(t *testing.T) {
	text := `[docker]
privileged = true
volumes = ["/var/run/docker.sock:/var/run/docker.sock", "/certs/client", "/srv/ref:/ref:ro,z"]
cap_add = ["NET_ADMIN", "CAP_SYS_PTRACE", "ALL"]
security_opt = ["seccomp:unconfined", "apparmor=unconfined", "no-new-privileges:true"]
extra_hosts = ["gitlab.corp:10.1.2.3", "v6host:fd00::1", "gw=host-gateway"]
dns = ["1.1.1.1"]
dns_search = ["."]
ulimit = { nofile = "1024", nproc = "512:1024" }
gpus = "device=0"
oom_score_adjust = -500
tmpfs = { "/var/lib/mysql" = "" }
`
	cfg, err := Parse(text)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Docker.Privileged || len(cfg.Docker.Volumes) != 3 || !cfg.Docker.ServicesArePrivileged() {
		t.Errorf("options not loaded: %+v", cfg.Docker.ContainerOptions)
	}
}
