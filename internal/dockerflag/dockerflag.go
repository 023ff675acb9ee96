// Package dockerflag parses the values the docker CLI, and gitlab-runner's
// [runners.docker] after it, accept for volumes, devices, ulimits, GPUs
// and extra hosts: config validates with it, and package plan turns the
// parsed values into container specs.
package dockerflag

import (
	"fmt"
	"maps"
	"net/netip"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/docker/go-units"
)

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
	case path.Clean(v.Destination) == "/":
		return Volume{}, fmt.Errorf("%q: the destination must not be /", spec)
	case v.Mode == "O" || v.Mode == "o":
		return Volume{}, fmt.Errorf("%q: mode O (an overlay, podman's) is not one Docker knows; use ro or rw", spec)
	case strings.Contains(v.Destination, "$"):
		return Volume{}, fmt.Errorf("%q: job variables in the destination are not expanded here; write the path", spec)
	}
	return v, nil
}

// Overlaps says whether one of two absolute paths is the other or lies
// under it: a mount at either would hide or bind the other.
func Overlaps(a, b string) bool {
	a, b = path.Clean(a), path.Clean(b)
	if a == b {
		return true
	}
	under := func(x, y string) bool { return strings.HasPrefix(x, strings.TrimSuffix(y, "/")+"/") }
	return under(a, b) || under(b, a)
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

// Ulimit is one resource limit of docker.ulimit.
type Ulimit struct {
	Name       string
	Soft, Hard int64
}

// Ulimits parses docker.ulimit ("nofile" = "1024:2048" or "1024"), in
// name order.
func Ulimits(m map[string]string) ([]Ulimit, error) {
	var out []Ulimit
	for _, name := range slices.Sorted(maps.Keys(m)) {
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

func CheckExtraHost(s string) error {
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

// hostNameExp is a host name as an extra_hosts entry names it.
var hostNameExp = regexp.MustCompile(`^[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$`)

// Overlapping returns the first of paths that target overlaps, or "".
func Overlapping(target string, paths []string) string {
	for _, r := range paths {
		if Overlaps(target, r) {
			return r
		}
	}
	return ""
}

// SecurityOptProblems checks security_opt entries (key names the config
// key in the lines): name=value, name:value or no-new-privileges.
func SecurityOptProblems(key string, opts []string) []string {
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

// DeviceProblems checks device entries, one line per bad entry.
func DeviceProblems(key string, list []string) []string {
	var p []string
	for i, s := range list {
		if _, err := ParseDevice(s); err != nil {
			p = append(p, fmt.Sprintf("%s[%d]: %v", key, i, err))
		}
	}
	return p
}

// TmpfsProblems checks tmpfs mounts: absolute directories other than /,
// none over the reserved paths, comma-separated options.
func TmpfsProblems(key string, m map[string]string, reserved []string) []string {
	var p []string
	for _, dir := range slices.Sorted(maps.Keys(m)) {
		switch {
		case !strings.HasPrefix(dir, "/") || path.Clean(dir) == "/":
			p = append(p, fmt.Sprintf("%s: %q must be an absolute directory other than /", key, dir))
		case Overlapping(dir, reserved) != "":
			p = append(p, fmt.Sprintf("%s: %q would hide or bind %s, which warmcache mounts itself", key, dir, Overlapping(dir, reserved)))
		case strings.ContainsAny(m[dir], " \t\n"):
			p = append(p, fmt.Sprintf("%s: %q: the options %q must be comma-separated, such as rw,size=64m", key, dir, m[dir]))
		}
	}
	return p
}
