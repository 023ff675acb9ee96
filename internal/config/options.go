package config

import (
	"fmt"
	"maps"
	"net"
	"net/netip"
	pathpkg "path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/bmatcuk/doublestar/v4"
	"github.com/docker/go-units"

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

// Volume is one entry of docker.volumes, parsed.
type Volume struct {
	// Source is an absolute host path (a bind), a volume name, or ""
	// (a volume of the job's own).
	Source      string
	Destination string
	// Mode is "ro", "rw" or "".
	Mode string
	// Label is an SELinux relabel option, "z" or "Z", or "".
	Label string
	// Propagation is a bind propagation mode, or "".
	Propagation string
}

// IsBind says whether the volume binds a host path.
func (v Volume) IsBind() bool { return strings.HasPrefix(v.Source, "/") }

// IsAnonymous says whether the volume is one of the job's own.
func (v Volume) IsAnonymous() bool { return v.Source == "" }

// ReadOnly says whether the volume is mounted read-only.
func (v Volume) ReadOnly() bool { return strings.EqualFold(v.Mode, "ro") }

// The grammar of a Linux volume spec the runner accepts:
// [source:]destination[:mode][(:|,)label][(:|,)propagation].
var (
	volumeDir  = `/(?:[^\\/:*?"<>|\r\n]+/?)*`
	volumeName = `[^\\/:*?"<>|\r\n]+`
	volumeExp  = regexp.MustCompile(`^(?:(?P<source>` + volumeDir + `|` + volumeName + `):)?` +
		`(?P<destination>` + volumeDir + `)` +
		`(?::(?P<mode>(?i:ro|rw|O)))?` +
		`(?:[:,](?P<label>(?i:z)))?` +
		`(?:[:,](?P<propagation>(?i:shared|slave|private|rshared|rslave|rprivate)))?$`)
)

// ParseVolume parses one docker.volumes entry as the runner does.
func ParseVolume(spec string) (Volume, error) {
	m := volumeExp.FindStringSubmatch(spec)
	if m == nil {
		return Volume{}, fmt.Errorf("%q is not a volume such as /host:/dst[:ro|rw], name:/dst or /dst", spec)
	}
	group := func(name string) string { return m[volumeExp.SubexpIndex(name)] }
	v := Volume{Source: group("source"), Destination: group("destination"),
		Mode: group("mode"), Label: group("label"), Propagation: group("propagation")}
	switch {
	case pathpkg.Clean(v.Destination) == "/":
		return Volume{}, fmt.Errorf("%q: the destination must not be /", spec)
	case v.Mode == "O" || v.Mode == "o":
		return Volume{}, fmt.Errorf("%q: mode O (an overlay, podman's) is not one Docker knows; use ro or rw", spec)
	case strings.Contains(v.Destination, "$"):
		return Volume{}, fmt.Errorf("%q: job variables in the destination are not expanded here; write the path", spec)
	}
	return v, nil
}

// ReservedVolumeTargets are the directories of the job containers that
// warmcache mounts itself: a volume there (or above or below one) would
// hide or expose them. The cache profiles' paths are checked too, here
// for [[cache.custom]] and, with the job's own mount points, at prepare.
var ReservedVolumeTargets = []string{protocol.BuildsDir, protocol.CacheDir, SecretsDir}

// SecretsDir is where the job's credential files are mounted (package
// credentials mounts it).
const SecretsDir = "/run/warmcache"

// Overlaps says whether one of two absolute paths is the other or lies
// under it: a mount at either would hide or bind the other.
func Overlaps(a, b string) bool {
	a, b = pathpkg.Clean(a), pathpkg.Clean(b)
	if a == b {
		return true
	}
	under := func(x, y string) bool { return strings.HasPrefix(x, strings.TrimSuffix(y, "/")+"/") }
	return under(a, b) || under(b, a)
}

var (
	capabilityExp  = regexp.MustCompile(`^[A-Za-z_]+$`)
	wordExp        = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.+-]*$`)
	cgroupRuleExp  = regexp.MustCompile(`^([acb]) ([0-9]+|\*):([0-9]+|\*) ([rwm]{1,3})$`)
	sysctlExp      = regexp.MustCompile(`^[a-z0-9_]+(?:[./][A-Za-z0-9_-]+)+$`)
	dnsDomainExp   = regexp.MustCompile(`^(?:\.|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?\.?)$`)
	hostNameExp    = regexp.MustCompile(`^[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$`)
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
		v, err := ParseVolume(spec)
		if err != nil {
			p = append(p, fmt.Sprintf("%s: %v", key, err))
			continue
		}
		if r := overlapping(v.Destination, reserved); r != "" {
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
	p = append(p, securityOptProblems("docker.security_opt", o.SecurityOpt)...)
	p = append(p, securityOptProblems("docker.services_security_opt", o.ServicesSecurityOpt)...)
	p = append(p, deviceProblems("docker.devices", o.Devices)...)
	for _, glob := range slices.Sorted(maps.Keys(o.ServicesDevices)) {
		key := fmt.Sprintf("docker.services_devices.%q", glob)
		if !doublestar.ValidatePattern(glob) {
			p = append(p, fmt.Sprintf("%s: %q is not an image pattern", key, glob))
		}
		p = append(p, deviceProblems(key, o.ServicesDevices[glob])...)
	}
	for i, r := range o.DeviceCgroupRules {
		if !cgroupRuleExp.MatchString(r) {
			p = append(p, fmt.Sprintf("docker.device_cgroup_rules[%d]: %q is not a rule such as \"c 1:3 rwm\"", i, r))
		}
	}
	if o.Runtime != "" && !wordExp.MatchString(o.Runtime) {
		p = append(p, fmt.Sprintf("docker.runtime: %q is not a runtime name such as runc", o.Runtime))
	}
	if _, err := ParseGpus(o.Gpus); err != nil {
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
	if _, err := Ulimits(o.Ulimit); err != nil {
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
		if err := checkExtraHost(s); err != nil {
			p = append(p, fmt.Sprintf("docker.extra_hosts[%d]: %v", i, err))
		}
	}
	if o.NetworkMTU != 0 && (o.NetworkMTU < 68 || o.NetworkMTU > 65535) {
		p = append(p, fmt.Sprintf("docker.network_mtu: %d is out of range 68..65535 (0: the engine's default)", o.NetworkMTU))
	}
	p = append(p, tmpfsProblems("docker.tmpfs", o.Tmpfs, reserved)...)
	p = append(p, tmpfsProblems("docker.services_tmpfs", o.ServicesTmpfs, nil)...)
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

// overlapping returns the first of paths that target overlaps, or "".
func overlapping(target string, paths []string) string {
	for _, r := range paths {
		if Overlaps(target, r) {
			return r
		}
	}
	return ""
}

func securityOptProblems(key string, opts []string) []string {
	var p []string
	for i, s := range opts {
		name, _, hasValue := strings.Cut(s, "=")
		if !hasValue {
			name, _, hasValue = strings.Cut(s, ":")
		}
		if name == "" || !hasValue && name != "no-new-privileges" || strings.ContainsAny(name, " \t\n") {
			p = append(p, fmt.Sprintf("%s[%d]: %q is not an option such as seccomp=unconfined or no-new-privileges", key, i, s))
		}
	}
	return p
}

// Device is one entry of docker.devices, parsed as the docker CLI does.
type Device struct {
	Host, Container, Permissions string
}

// ParseDevice parses "/dev/host[:/dev/container][:rwm]".
func ParseDevice(s string) (Device, error) {
	parts := strings.Split(s, ":")
	d := Device{Permissions: "rwm"}
	switch len(parts) {
	case 3:
		d.Permissions = parts[2]
		fallthrough
	case 2:
		if len(parts) == 2 && validDevicePermissions(parts[1]) {
			d.Permissions = parts[1]
		} else {
			d.Container = parts[1]
		}
		fallthrough
	case 1:
		d.Host = parts[0]
	default:
		return Device{}, fmt.Errorf("%q is not a device such as /dev/kvm or /dev/fuse:/dev/fuse:rwm", s)
	}
	if d.Container == "" {
		d.Container = d.Host
	}
	if !strings.HasPrefix(d.Host, "/") || !strings.HasPrefix(d.Container, "/") || !validDevicePermissions(d.Permissions) {
		return Device{}, fmt.Errorf("%q is not a device such as /dev/kvm or /dev/fuse:/dev/fuse:rwm", s)
	}
	return d, nil
}

func validDevicePermissions(s string) bool {
	if s == "" || len(s) > 3 {
		return false
	}
	for _, r := range s {
		if !strings.ContainsRune("rwm", r) || strings.Count(s, string(r)) > 1 {
			return false
		}
	}
	return true
}

func deviceProblems(key string, list []string) []string {
	var p []string
	for i, s := range list {
		if _, err := ParseDevice(s); err != nil {
			p = append(p, fmt.Sprintf("%s[%d]: %v", key, i, err))
		}
	}
	return p
}

// Ulimit is one resource limit of docker.ulimit.
type Ulimit struct {
	Name       string
	Soft, Hard int64
}

// Ulimits parses docker.ulimit ("nofile" = "1024:2048" or "1024"), in
// name order.
func Ulimits(m map[string]string) ([]Ulimit, error) {
	var out []Ulimit
	for _, name := range sortedKeys(m) {
		u, err := units.ParseUlimit(name + "=" + m[name])
		switch {
		case err != nil && strings.Contains(err.Error(), "invalid ulimit type"):
			return nil, fmt.Errorf("%q is not a limit such as nofile, nproc, core, memlock or stack", name)
		case err != nil:
			return nil, fmt.Errorf("%s = %q is not soft[:hard] such as \"1024:2048\"", name, m[name])
		}
		out = append(out, Ulimit{Name: u.Name, Soft: u.Soft, Hard: u.Hard})
	}
	return out, nil
}

// Gpus is docker.gpus parsed as the docker CLI parses --gpus.
type Gpus struct {
	// Count is -1 for all GPUs, 0 when DeviceIDs name them.
	Count        int
	Driver       string
	DeviceIDs    []string
	Capabilities []string
	Options      map[string]string
}

// ParseGpus parses "all", a count or a comma-separated list of
// count=, device=, driver=, capabilities= and options; nil for "".
func ParseGpus(s string) (*Gpus, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	g := &Gpus{}
	bad := func() (*Gpus, error) {
		return nil, fmt.Errorf("%q is not a GPU request such as all, 2 or \"device=0,1\"", s)
	}
	fields := splitGpus(s)
	for _, f := range fields {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			if len(fields) != 1 {
				return bad()
			}
			k, v = "count", f
		}
		switch k {
		case "count":
			if v == "all" {
				g.Count = -1
			} else if n, err := strconv.Atoi(v); err == nil && n > 0 {
				g.Count = n
			} else {
				return bad()
			}
		case "device":
			g.DeviceIDs = strings.Split(v, ",")
		case "driver":
			g.Driver = v
		case "capabilities":
			g.Capabilities = strings.Split(v, ",")
		default:
			if g.Options == nil {
				g.Options = map[string]string{}
			}
			g.Options[k] = v
		}
	}
	if g.Count != 0 && len(g.DeviceIDs) > 0 {
		return nil, fmt.Errorf("%q sets both a count and devices", s)
	}
	if g.Count == 0 && len(g.DeviceIDs) == 0 {
		g.Count = -1
	}
	if len(g.Capabilities) == 0 {
		g.Capabilities = []string{"gpu"}
	}
	return g, nil
}

// splitGpus splits the --gpus value on commas outside double quotes, as
// the CLI's CSV reader does ("device=0,1" quoted keeps both ids).
func splitGpus(s string) []string {
	var out []string
	var cur strings.Builder
	quoted := false
	for _, r := range s {
		switch {
		case r == '"':
			quoted = !quoted
		case r == ',' && !quoted:
			out = append(out, cur.String())
			cur.Reset()
		default:
			cur.WriteRune(r)
		}
	}
	return append(out, cur.String())
}

func checkExtraHost(s string) error {
	// Docker accepts host:ip and host=ip; an IPv6 address has colons.
	name, addr, ok := strings.Cut(s, "=")
	if !ok {
		name, addr, ok = strings.Cut(s, ":")
	}
	if !ok || !hostNameExp.MatchString(name) {
		return fmt.Errorf("%q is not host:IP such as registry.corp:10.0.0.5", s)
	}
	addr = strings.TrimSuffix(strings.TrimPrefix(addr, "["), "]")
	if addr == "host-gateway" {
		return nil
	}
	if _, err := netip.ParseAddr(addr); err != nil {
		return fmt.Errorf("%q is not host:IP such as registry.corp:10.0.0.5", s)
	}
	return nil
}

func tmpfsProblems(key string, m map[string]string, reserved []string) []string {
	var p []string
	for _, path := range sortedKeys(m) {
		switch {
		case !strings.HasPrefix(path, "/") || pathpkg.Clean(path) == "/":
			p = append(p, fmt.Sprintf("%s: %q must be an absolute directory other than /", key, path))
		case overlapping(path, reserved) != "":
			p = append(p, fmt.Sprintf("%s: %q would hide or bind %s, which warmcache mounts itself", key, path, overlapping(path, reserved)))
		case strings.ContainsAny(m[path], " \t\n"):
			p = append(p, fmt.Sprintf("%s: %q: the options %q must be comma-separated, such as rw,size=64m", key, path, m[path]))
		}
	}
	return p
}
