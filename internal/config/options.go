package config

import (
	"fmt"
	"maps"
	"net"
	"net/netip"
	pathpkg "path"
	"regexp"
	"slices"
	"strings"

	"github.com/bmatcuk/doublestar/v4"

	"github.com/warmcache/warmcache/internal/dockerflag"
	"github.com/warmcache/warmcache/internal/naming"
	"github.com/warmcache/warmcache/internal/protocol"
)

// ContainerOptions are the container and network options of
// gitlab-runner's [runners.docker], under the same names, types and
// meaning, applied to the containers the Docker executor applies them to
// (build container, helper, services). They sit in [docker]; package
// driver's plan turns them into container and network specs.
type ContainerOptions struct {
	// Privileged runs the build container (and, unless
	// ServicesPrivileged says otherwise, the services) privileged.
	Privileged bool `toml:"privileged"`
	// ServicesPrivileged, when set, overrides Privileged for services.
	ServicesPrivileged *bool `toml:"services_privileged"`
	// User runs the build container as this user ("name", "uid" or
	// "uid:gid") whatever the job's image:docker:user says; with no
	// docker.allowed_users it is also the only user a job may name.
	User string `toml:"user"`

	// Volumes are mounted into the build container and the services, as
	// the runner parses them: "/host:/dst[:ro|rw]" binds a host path,
	// "name:/dst[:ro|rw]" a named volume (created by the engine if
	// absent, kept after the job), "/dst" a volume of the job's own,
	// removed at cleanup.
	Volumes []string `toml:"volumes"`
	// VolumeDriver is the driver of the volumes the engine creates for
	// Volumes.
	VolumeDriver string `toml:"volume_driver"`

	CapAdd              []string `toml:"cap_add"`
	CapDrop             []string `toml:"cap_drop"`
	SecurityOpt         []string `toml:"security_opt"`
	ServicesSecurityOpt []string `toml:"services_security_opt"`
	// Devices are host devices ("/dev/x[:/dev/y[:rwm]]") of the build
	// container.
	Devices []string `toml:"devices"`
	// ServicesDevices maps a glob of service images to the devices the
	// services of those images get.
	ServicesDevices   map[string][]string `toml:"services_devices"`
	DeviceCgroupRules []string            `toml:"device_cgroup_rules"`
	Runtime           string              `toml:"runtime"`
	// Gpus is the docker CLI's --gpus value ("all", a count, or
	// "device=0,1,capabilities=...").
	Gpus           string            `toml:"gpus"`
	GroupAdd       []string          `toml:"group_add"`
	UsernsMode     string            `toml:"userns_mode"`
	Sysctls        map[string]string `toml:"sysctls"`
	Ulimit         map[string]string `toml:"ulimit"`
	OomKillDisable bool              `toml:"oom_kill_disable"`
	OomScoreAdjust int               `toml:"oom_score_adjust"`

	DNS        []string `toml:"dns"`
	DNSSearch  []string `toml:"dns_search"`
	ExtraHosts []string `toml:"extra_hosts"`
	// NetworkMTU is the MTU of the job's own network; 0 keeps the
	// engine's default.
	NetworkMTU int `toml:"network_mtu"`
	// EnableIPv6 gives the job's own network IPv6.
	EnableIPv6    bool              `toml:"enable_ipv6"`
	Tmpfs         map[string]string `toml:"tmpfs"`
	ServicesTmpfs map[string]string `toml:"services_tmpfs"`
	MacAddress    string            `toml:"mac_address"`
}

// ServicesArePrivileged says whether services run privileged: by
// services_privileged when it is set, else by privileged.
func (o ContainerOptions) ServicesArePrivileged() bool {
	if o.ServicesPrivileged != nil {
		return *o.ServicesPrivileged
	}
	return o.Privileged
}

// ReservedVolumeTargets are the directories of the job containers that
// warmcache mounts itself: a volume there (or above or below one) would
// hide or expose them. The cache profiles' paths are checked too, here
// for [[cache.custom]] and, with the job's own mount points, at prepare.
var ReservedVolumeTargets = []string{protocol.BuildsDir, protocol.CacheDir, SecretsDir}

// SecretsDir is where the job's credential files are mounted (package
// credentials mounts it).
const SecretsDir = "/run/warmcache"

var (
	capabilityExp  = regexp.MustCompile(`^[A-Za-z_]+$`)
	wordExp        = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.+-]*$`)
	cgroupRuleExp  = regexp.MustCompile(`^([acb]) ([0-9]+|\*):([0-9]+|\*) ([rwm]{1,3})$`)
	sysctlExp      = regexp.MustCompile(`^[a-z0-9_]+(?:[./][A-Za-z0-9_-]+)+$`)
	dnsDomainExp   = regexp.MustCompile(`^(?:\.|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?\.?)$`)
	volumeDriverOK = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:/-]*$`)
)

func (c Config) validateOptions() []string {
	o := c.Docker.ContainerOptions
	var p []string
	if strings.ContainsAny(o.User, " \t\n") || strings.Count(o.User, ":") > 1 {
		p = append(p, fmt.Sprintf("docker.user: %q is not a user; write a name, a uid or uid:gid", o.User))
	}
	reserved := append([]string(nil), ReservedVolumeTargets...)
	for _, cp := range c.Cache.Custom {
		reserved = append(reserved, cp.Paths...)
	}
	dests := map[string]int{}
	for i, spec := range o.Volumes {
		key := fmt.Sprintf("docker.volumes[%d]", i)
		v, err := dockerflag.ParseVolume(spec)
		if err != nil {
			p = append(p, fmt.Sprintf("%s: %v", key, err))
			continue
		}
		if r := dockerflag.Overlapping(v.Destination, reserved); r != "" {
			p = append(p, fmt.Sprintf("%s: %q would hide or bind %s, which warmcache mounts itself", key, spec, r))
		}
		if !v.IsBind() && strings.HasPrefix(v.Source, naming.Prefix) {
			p = append(p, fmt.Sprintf("%s: %q names a volume of warmcache's own (%s-...)", key, spec, naming.Prefix))
		}
		if j, ok := dests[pathpkg.Clean(v.Destination)]; ok {
			p = append(p, fmt.Sprintf("%s: %q mounts %s again (docker.volumes[%d])", key, spec, v.Destination, j))
		}
		dests[pathpkg.Clean(v.Destination)] = i
	}
	if o.VolumeDriver != "" && !volumeDriverOK.MatchString(o.VolumeDriver) {
		p = append(p, fmt.Sprintf("docker.volume_driver: %q is not a volume driver name", o.VolumeDriver))
	}
	for _, k := range []struct {
		key  string
		list []string
	}{{"docker.cap_add", o.CapAdd}, {"docker.cap_drop", o.CapDrop}} {
		for i, c := range k.list {
			if !capabilityExp.MatchString(c) {
				p = append(p, fmt.Sprintf("%s[%d]: %q is not a capability such as NET_ADMIN or ALL", k.key, i, c))
			}
		}
	}
	p = append(p, dockerflag.SecurityOptProblems("docker.security_opt", o.SecurityOpt)...)
	p = append(p, dockerflag.SecurityOptProblems("docker.services_security_opt", o.ServicesSecurityOpt)...)
	p = append(p, dockerflag.DeviceProblems("docker.devices", o.Devices)...)
	for _, glob := range slices.Sorted(maps.Keys(o.ServicesDevices)) {
		key := fmt.Sprintf("docker.services_devices.%q", glob)
		if !doublestar.ValidatePattern(glob) {
			p = append(p, fmt.Sprintf("%s: %q is not an image pattern", key, glob))
		}
		p = append(p, dockerflag.DeviceProblems(key, o.ServicesDevices[glob])...)
	}
	for i, r := range o.DeviceCgroupRules {
		if !cgroupRuleExp.MatchString(r) {
			p = append(p, fmt.Sprintf("docker.device_cgroup_rules[%d]: %q is not a rule such as \"c 1:3 rwm\"", i, r))
		}
	}
	if o.Runtime != "" && !wordExp.MatchString(o.Runtime) {
		p = append(p, fmt.Sprintf("docker.runtime: %q is not a runtime name such as runc", o.Runtime))
	}
	if _, err := dockerflag.ParseGpus(o.Gpus); err != nil {
		p = append(p, fmt.Sprintf("docker.gpus: %v", err))
	}
	for i, g := range o.GroupAdd {
		if !wordExp.MatchString(g) {
			p = append(p, fmt.Sprintf("docker.group_add[%d]: %q is not a group name or id", i, g))
		}
	}
	if o.UsernsMode != "" && o.UsernsMode != "host" {
		p = append(p, fmt.Sprintf("docker.userns_mode: %q is not \"host\" (or empty: the engine's default)", o.UsernsMode))
	}
	for _, k := range sortedKeys(o.Sysctls) {
		if !sysctlExp.MatchString(k) {
			p = append(p, fmt.Sprintf("docker.sysctls: %q is not a sysctl name such as net.ipv4.ip_forward", k))
		}
	}
	if _, err := dockerflag.Ulimits(o.Ulimit); err != nil {
		p = append(p, fmt.Sprintf("docker.ulimit: %v", err))
	}
	if o.OomScoreAdjust < -1000 || o.OomScoreAdjust > 1000 {
		p = append(p, fmt.Sprintf("docker.oom_score_adjust: %d is out of range -1000..1000", o.OomScoreAdjust))
	}
	for i, s := range o.DNS {
		if _, err := netip.ParseAddr(s); err != nil {
			p = append(p, fmt.Sprintf("docker.dns[%d]: %q is not an IP address", i, s))
		}
	}
	for i, s := range o.DNSSearch {
		if !dnsDomainExp.MatchString(s) {
			p = append(p, fmt.Sprintf("docker.dns_search[%d]: %q is not a domain", i, s))
		}
	}
	for i, s := range o.ExtraHosts {
		if err := dockerflag.CheckExtraHost(s); err != nil {
			p = append(p, fmt.Sprintf("docker.extra_hosts[%d]: %v", i, err))
		}
	}
	if o.NetworkMTU != 0 && (o.NetworkMTU < 68 || o.NetworkMTU > 65535) {
		p = append(p, fmt.Sprintf("docker.network_mtu: %d is out of range 68..65535 (0: the engine's default)", o.NetworkMTU))
	}
	p = append(p, dockerflag.TmpfsProblems("docker.tmpfs", o.Tmpfs, reserved)...)
	p = append(p, dockerflag.TmpfsProblems("docker.services_tmpfs", o.ServicesTmpfs, nil)...)
	if o.MacAddress != "" {
		if hw, err := net.ParseMAC(o.MacAddress); err != nil || len(hw) != 6 {
			p = append(p, fmt.Sprintf("docker.mac_address: %q is not a MAC address such as 92:d0:c6:0a:29:33", o.MacAddress))
		}
	}
	if o.MacAddress != "" && c.Docker.NetworkMode == "host" {
		p = append(p, "docker.mac_address: the host's network (docker.network_mode = \"host\") has no MAC address of its own to set")
	}
	return p
}
