// Package fake is an in-memory engine.Engine for unit tests that need no
// Docker daemon.
//
// It keeps images, volumes, containers and networks in maps and enforces
// the call order of the engine.Engine contract the way the Docker engine
// does: a container is created from a local image, started, then exec'd
// into; a name is used once; removing a missing resource succeeds; a volume
// or network still used by a container cannot be removed. Where Docker is
// lenient in a way that hides bugs it is stricter, and says so below.
//
// A test can make any call fail (FailNext, SetHook), script what Exec
// returns (SetExec) and read back the calls made (Calls). All methods are
// safe for concurrent use.
package fake

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/warmcache/warmcache/internal/engine"
)

// Method names accepted by FailNext and passed to a Hook; they are the
// names of the engine.Engine methods.
const (
	MethodPing            = "Ping"
	MethodInspectImage    = "InspectImage"
	MethodPullImage       = "PullImage"
	MethodEnsureVolume    = "EnsureVolume"
	MethodInspectVolume   = "InspectVolume"
	MethodCreateContainer = "CreateContainer"
	MethodStartContainer  = "StartContainer"
	MethodContainerState  = "ContainerState"
	MethodExec            = "Exec"
	MethodList            = "List"
	MethodRemove          = "Remove"
	MethodCreateNetwork   = "CreateNetwork"
	MethodContainerIP     = "ContainerIP"
	MethodContainerLogs   = "ContainerLogs"
	MethodInspectNetwork  = "InspectNetwork"
	MethodDisconnect      = "DisconnectNetwork"
	MethodRenameContainer = "RenameContainer"
)

var methods = []string{
	MethodPing, MethodInspectImage, MethodPullImage, MethodEnsureVolume, MethodInspectVolume,
	MethodCreateContainer, MethodStartContainer, MethodContainerState, MethodExec, MethodList, MethodRemove,
	MethodCreateNetwork, MethodContainerIP, MethodContainerLogs,
	MethodInspectNetwork, MethodDisconnect, MethodRenameContainer,
}

// State is the life-cycle state of a fake container.
type State string

// Container states.
const (
	Created State = "created" // created, never started
	Running State = "running" // started
	Exited  State = "exited"  // stopped behind the driver's back (see Stop)
	Removed State = "removed" // removed; the name may be used again
)

// Container is what the fake knows about one container.
type Container struct {
	Spec  engine.ContainerSpec
	State State
	// Disconnected says DisconnectNetwork took it off the network of its
	// Spec.NetworkMode.
	Disconnected bool
}

// Call is one recorded Engine call. Name is the image, volume, container
// or resource name the call was about; for List it is the label filter as
// sorted "key=value" pairs joined by ","; for Ping it is empty.
type Call struct {
	Method string
	Name   string
}

// Hook is called at the start of every Engine call, after it is recorded
// and before it takes effect; a non-nil result is returned by the call as
// is. It runs without the fake's lock held, so it may call the fake.
type Hook func(method, name string) error

// Engine is the fake engine.Engine. The zero value is not usable; call New.
type Engine struct {
	mu         sync.Mutex
	info       engine.Info
	images     map[string]bool             // present locally
	imageInfo  map[string]engine.ImageInfo // what InspectImage reports
	now        func() time.Time
	volumeRoot string
	volumes    map[string]engine.VolumeInfo
	volumeOpts map[string]map[string]string // DriverOpts by volume
	containers map[string]*Container
	networks   map[string]map[string]string
	networkIDs map[string]string // network name -> its id, fresh for each network made
	netSpecs   map[string]engine.NetworkSpec
	volDrivers map[string]string // volume -> the driver it was created with
	refusePriv bool
	lastID     int
	failNext   map[string][]error
	hook       Hook
	exec       ExecFunc
	execStream ExecStreamFunc
	calls      []Call
	pullAuth   map[string]*engine.RegistryAuth
	ips        map[string]string // container -> address on its network, set by SetIP
	addrs      map[string]string // container -> address on its network, given at its first start
	lastAddr   int
	logs       map[string]string // container -> its output
}

var _ engine.Engine = (*Engine)(nil)

// New returns an empty engine: no images, volumes, containers or networks;
// every pull succeeds and every Exec exits 0 with no output.
func New() *Engine {
	return &Engine{
		info: engine.Info{ServerVersion: "fake", APIVersion: "fake", StorageDriver: "overlay2",
			CgroupDriver: "cgroupfs", CgroupVersion: "1"},
		images:     map[string]bool{},
		imageInfo:  map[string]engine.ImageInfo{},
		now:        time.Now,
		volumes:    map[string]engine.VolumeInfo{},
		volumeOpts: map[string]map[string]string{},
		containers: map[string]*Container{},
		networks:   map[string]map[string]string{},
		networkIDs: map[string]string{},
		netSpecs:   map[string]engine.NetworkSpec{},
		volDrivers: map[string]string{},
		failNext:   map[string][]error{},
		pullAuth:   map[string]*engine.RegistryAuth{},
		ips:        map[string]string{},
		addrs:      map[string]string{},
		logs:       map[string]string{},
	}
}

// AddImage makes refs present locally, as if pulled earlier.
func (f *Engine) AddImage(refs ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range refs {
		f.images[r] = true
	}
}

// SetImageInfo sets what InspectImage reports for ref once it is present
// (added or pulled); without it the report is the zero ImageInfo. It does
// not make ref present.
func (f *Engine) SetImageInfo(ref string, info engine.ImageInfo) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.imageInfo[ref] = info
}

// HasImage reports whether ref is present locally.
func (f *Engine) HasImage(ref string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.images[ref]
}

// Volume returns what InspectVolume would, without recording a call.
func (f *Engine) Volume(name string) (engine.VolumeInfo, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.volumes[name]
	v.Labels = maps.Clone(v.Labels)
	return v, ok
}

// SetInfo sets what Ping reports.
func (f *Engine) SetInfo(info engine.Info) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.info = info
}

// SetClock makes now the source of volume creation times (default
// time.Now).
func (f *Engine) SetClock(now func() time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = now
}

// SetVolumeRoot makes every volume created from now on a real directory
// root/<name>, reported as its Mountpoint, for code that reads a volume
// beside a local engine. Without it Mountpoint is empty.
func (f *Engine) SetVolumeRoot(root string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.volumeRoot = root
}

// Container returns a copy of what the fake knows about a container,
// including removed ones.
func (f *Engine) Container(name string) (Container, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.containers[name]
	if !ok {
		return Container{}, false
	}
	return Container{Spec: cloneSpec(c.Spec), State: c.State}, true
}

// Stop makes a running container exit, as a daemon restart or an
// entrypoint that does not exec its arguments would; Exec then fails with
// engine.ErrNotRunning. It reports whether the container was running.
func (f *Engine) Stop(name string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.containers[name]
	if !ok || c.State != Running {
		return false
	}
	c.State = Exited
	return true
}

// FailNext makes the next call of method return err instead of acting.
// Calls queue up: FailNext twice fails the next two calls. It panics on a
// method name the Engine interface does not have.
func (f *Engine) FailNext(method string, err error) {
	if !slices.Contains(methods, method) {
		panic(fmt.Sprintf("fake: FailNext: no Engine method %q", method))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failNext[method] = append(f.failNext[method], err)
}

// SetHook installs h (nil removes it). FailNext errors take precedence.
func (f *Engine) SetHook(h Hook) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hook = h
}

// PullAuth returns the registry login passed to the last PullImage of ref
// (nil for none), and whether ref was pulled at all.
func (f *Engine) PullAuth(ref string) (*engine.RegistryAuth, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a, ok := f.pullAuth[ref]
	return a, ok
}

// Calls returns the calls made so far, in order, failed ones included.
func (f *Engine) Calls() []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// begin records a call, then returns the context's error, a queued
// failure or the hook's error, in that order.
func (f *Engine) begin(ctx context.Context, method, name string) error {
	f.mu.Lock()
	f.calls = append(f.calls, Call{Method: method, Name: name})
	var queued error
	hasQueued := len(f.failNext[method]) > 0
	if hasQueued {
		queued = f.failNext[method][0]
		f.failNext[method] = f.failNext[method][1:]
	}
	hook := f.hook
	f.mu.Unlock()

	if err := ctx.Err(); err != nil {
		return err
	}
	if hasQueued {
		return queued
	}
	if hook != nil {
		return hook(method, name)
	}
	return nil
}

// Ping implements engine.Engine.
func (f *Engine) Ping(ctx context.Context) (engine.Info, error) {
	if err := f.begin(ctx, MethodPing, ""); err != nil {
		return engine.Info{}, err
	}
	return f.info, nil
}

// InspectImage implements engine.Engine. An image that is not present
// locally is an error wrapping engine.ErrNotFound, as from Docker.
func (f *Engine) InspectImage(ctx context.Context, ref string) (engine.ImageInfo, error) {
	if err := f.begin(ctx, MethodInspectImage, ref); err != nil {
		return engine.ImageInfo{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.images[ref] {
		return engine.ImageInfo{}, fmt.Errorf("inspecting image %s: %w", ref, engine.ErrNotFound)
	}
	return f.imageInfo[ref], nil
}

// PullImage implements engine.Engine. Every reference can be pulled
// unless a test makes the call fail; a pulled image is then present and
// status gets one line.
func (f *Engine) PullImage(ctx context.Context, ref string, auth *engine.RegistryAuth, status func(string)) error {
	f.mu.Lock()
	f.pullAuth[ref] = auth
	f.mu.Unlock()
	if err := f.begin(ctx, MethodPullImage, ref); err != nil {
		return err
	}
	f.AddImage(ref)
	if status != nil {
		status("Status: Downloaded newer image for " + ref)
	}
	return nil
}

// EnsureVolume implements engine.Engine. An existing volume keeps its
// labels, as with Docker's local driver.
func (f *Engine) EnsureVolume(ctx context.Context, v engine.VolumeSpec) error {
	if err := f.begin(ctx, MethodEnsureVolume, v.Name); err != nil {
		return err
	}
	if v.Name == "" {
		return errors.New("creating volume: empty name")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.volumes[v.Name]; ok {
		return nil
	}
	info := engine.VolumeInfo{Name: v.Name, Labels: maps.Clone(v.Labels), CreatedAt: f.now(), Tmpfs: v.Tmpfs}
	if f.volumeRoot != "" {
		info.Mountpoint = filepath.Join(f.volumeRoot, v.Name)
		if err := os.MkdirAll(info.Mountpoint, 0o755); err != nil {
			return fmt.Errorf("creating volume %s: %w", v.Name, err)
		}
	}
	f.volumes[v.Name] = info
	f.volumeOpts[v.Name] = maps.Clone(v.DriverOpts)
	f.volDrivers[v.Name] = v.Driver
	return nil
}

// VolumeDriver returns the driver a volume was created with ("" for the
// default one).
func (f *Engine) VolumeDriver(name string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.volDrivers[name]
}

// RefusePrivileged makes StartContainer of a privileged container fail,
// as an engine that lacks capabilities itself does (see
// engine.ErrPrivilegedRefused).
func (f *Engine) RefusePrivileged(refuse bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refusePriv = refuse
}

// VolumeDriverOpts returns the driver options a volume was created with.
func (f *Engine) VolumeDriverOpts(name string) map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.volumeOpts[name])
}

// InspectVolume implements engine.Engine.
func (f *Engine) InspectVolume(ctx context.Context, name string) (engine.VolumeInfo, error) {
	if err := f.begin(ctx, MethodInspectVolume, name); err != nil {
		return engine.VolumeInfo{}, err
	}
	v, ok := f.Volume(name)
	if !ok {
		return engine.VolumeInfo{}, fmt.Errorf("inspecting volume %s: %w", name, engine.ErrNotFound)
	}
	return v, nil
}

// CreateContainer implements engine.Engine. The image must be present
// locally and the name unused. Stricter than Docker: every mounted volume
// and a named network must exist, because Docker would silently create an
// unlabelled volume that cleanup could never find.
func (f *Engine) CreateContainer(ctx context.Context, c engine.ContainerSpec) error {
	if err := f.begin(ctx, MethodCreateContainer, c.Name); err != nil {
		return err
	}
	if c.Name == "" {
		return errors.New("creating container: empty name")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if old, ok := f.containers[c.Name]; ok && old.State != Removed {
		return fmt.Errorf("creating container %s: the name is already in use", c.Name)
	}
	if !f.images[c.Image] {
		return fmt.Errorf("creating container %s: image %s: %w", c.Name, c.Image, engine.ErrNotFound)
	}
	for _, m := range c.Mounts {
		if _, ok := f.volumes[m.Volume]; !ok {
			return fmt.Errorf("creating container %s: volume %s: %w", c.Name, m.Volume, engine.ErrNotFound)
		}
	}
	_, userDefined := f.networks[c.NetworkMode]
	if !userDefined && !slices.Contains(builtinNetworks, c.NetworkMode) && !strings.HasPrefix(c.NetworkMode, "container:") {
		return fmt.Errorf("creating container %s: network %s: %w", c.Name, c.NetworkMode, engine.ErrNotFound)
	}
	if len(c.NetworkAliases) > 0 && !userDefined {
		return fmt.Errorf("creating container %s: network-scoped aliases need a user-defined network, not %q", c.Name, c.NetworkMode)
	}
	if err := checkOptions(c); err != nil {
		return fmt.Errorf("creating container %s: %w", c.Name, err)
	}
	// As Docker, a named volume that a bind names is created (without
	// labels) if it does not exist, and kept after the container.
	for _, b := range c.Binds {
		if _, ok := f.volumes[b.Source]; !ok && !strings.HasPrefix(b.Source, "/") {
			f.volumes[b.Source] = engine.VolumeInfo{Name: b.Source, CreatedAt: f.now()}
			f.volDrivers[b.Source] = c.VolumeDriver
		}
	}
	f.containers[c.Name] = &Container{Spec: cloneSpec(c), State: Created}
	return nil
}

// checkOptions refuses what Docker refuses at create: network options of
// a container in another's network stack, a MAC address on the host's,
// two volumes or binds at one path, a bind without a source or with a
// relative target.
func checkOptions(c engine.ContainerSpec) error {
	shared := strings.HasPrefix(c.NetworkMode, "container:")
	switch {
	case shared && len(c.DNS) > 0:
		return errors.New("conflicting options: dns and the network mode")
	case shared && len(c.ExtraHosts) > 0:
		return errors.New("conflicting options: custom host-to-IP mapping and the network mode")
	case (shared || c.NetworkMode == "host") && c.MacAddress != "":
		return errors.New("conflicting options: mac-address and the network mode")
	}
	targets := map[string]bool{}
	taken := func(target string) error {
		t := filepath.Clean(target)
		if !filepath.IsAbs(t) {
			return fmt.Errorf("invalid mount config: mount path %q must be absolute", target)
		}
		if targets[t] {
			return fmt.Errorf("Duplicate mount point: %s", t)
		}
		targets[t] = true
		return nil
	}
	for _, m := range c.Mounts {
		if err := taken(m.Target); err != nil {
			return err
		}
	}
	for _, b := range c.Binds {
		if b.Source == "" {
			return fmt.Errorf("invalid volume specification: %q", b.Source+":"+b.Target)
		}
		if err := taken(b.Target); err != nil {
			return err
		}
	}
	// Docker takes a tmpfs at a volume's path (the tmpfs wins).
	return nil
}

// StartContainer implements engine.Engine. Starting a running container
// succeeds, as with Docker. A container started on the default bridge or
// a user-defined network gets an address there, as with Docker (see
// ContainerIP).
func (f *Engine) StartContainer(ctx context.Context, name string) error {
	if err := f.begin(ctx, MethodStartContainer, name); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.existing(name, "starting container")
	if err != nil {
		return err
	}
	if c.Spec.Privileged && f.refusePriv {
		return &engine.PrivilegedRefusedError{Container: name, Cause: "unable to apply caps: operation not permitted"}
	}
	if _, ok := f.addrs[name]; !ok && f.hasAddress(c.Spec.NetworkMode) {
		f.lastAddr++
		f.addrs[name] = fmt.Sprintf("172.30.%d.%d", f.lastAddr/250, f.lastAddr%250+2)
	}
	c.State = Running
	return nil
}

// existing is the container name unless it was never created or was
// removed: then an error wrapping engine.ErrNotFound, "<doing> <name>",
// as the engine words it. The caller holds f.mu.
func (f *Engine) existing(name, doing string) (*Container, error) {
	c, ok := f.containers[name]
	if !ok || c.State == Removed {
		return nil, fmt.Errorf("%s %s: %w", doing, name, engine.ErrNotFound)
	}
	return c, nil
}

// ContainerState implements engine.Engine: the fake's State names are
// Docker's.
func (f *Engine) ContainerState(ctx context.Context, name string) (string, error) {
	if err := f.begin(ctx, MethodContainerState, name); err != nil {
		return "", err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.existing(name, "inspecting container")
	if err != nil {
		return "", err
	}
	return string(c.State), nil
}

// List implements engine.Engine: the containers (not removed), volumes
// and networks whose labels include every given label, containers first,
// each kind sorted by name.
func (f *Engine) List(ctx context.Context, labels map[string]string) ([]engine.Resource, error) {
	if err := f.begin(ctx, MethodList, filterString(labels)); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []engine.Resource
	for _, name := range sortedKeys(f.containers) {
		c := f.containers[name]
		if c.State != Removed && hasLabels(c.Spec.Labels, labels) {
			out = append(out, engine.Resource{Type: engine.Container, Name: name, Labels: maps.Clone(c.Spec.Labels)})
		}
	}
	for _, name := range sortedKeys(f.volumes) {
		if v := f.volumes[name]; hasLabels(v.Labels, labels) {
			out = append(out, engine.Resource{Type: engine.Volume, Name: name, Labels: maps.Clone(v.Labels), Mountpoint: v.Mountpoint})
		}
	}
	for _, name := range sortedKeys(f.networks) {
		if l := f.networks[name]; hasLabels(l, labels) {
			out = append(out, engine.Resource{Type: engine.Network, Name: name, Labels: maps.Clone(l), ID: f.networkIDs[name]})
		}
	}
	return out, nil
}

// Remove implements engine.Engine. A container is removed whatever its
// state; a missing resource is success; a volume that a container (not
// removed) still mounts is an error wrapping engine.ErrInUse, as with
// Docker. So is a network that a container (not removed) is on: stricter
// than Docker, which refuses only while the container runs, and lets a
// created or exited one lose its network and fail to start.
func (f *Engine) Remove(ctx context.Context, r engine.Resource) error {
	if err := f.begin(ctx, MethodRemove, r.Name); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch r.Type {
	case engine.Container:
		// A container made again under the name is another one: it has
		// written nothing and has no address yet.
		if c, ok := f.containers[r.Name]; ok && c.State != Removed {
			c.State = Removed
			delete(f.logs, r.Name)
			delete(f.addrs, r.Name)
		}
	case engine.Volume:
		if _, ok := f.volumes[r.Name]; !ok {
			return nil
		}
		if user := f.userOf(func(s engine.ContainerSpec) bool {
			return slices.ContainsFunc(s.Mounts, func(m engine.Mount) bool { return m.Volume == r.Name }) ||
				slices.ContainsFunc(s.Binds, func(b engine.Bind) bool { return b.Source == r.Name })
		}); user != "" {
			return fmt.Errorf("removing volume %s: %w by container %s", r.Name, engine.ErrInUse, user)
		}
		// As Docker's local driver, the data goes with the volume.
		if mp := f.volumes[r.Name].Mountpoint; mp != "" {
			if err := os.RemoveAll(mp); err != nil {
				return fmt.Errorf("removing volume %s: %w", r.Name, err)
			}
		}
		delete(f.volumes, r.Name)
		delete(f.volDrivers, r.Name)
	case engine.Network:
		name := f.networkNamed(r.Name)
		if name == "" {
			return nil
		}
		if user := f.onNetwork(name); user != "" {
			return fmt.Errorf("removing network %s: %w: active endpoints (container %s)", r.Name, engine.ErrInUse, user)
		}
		delete(f.networks, name)
		delete(f.networkIDs, name)
		delete(f.netSpecs, name)
	default:
		return fmt.Errorf("removing %s: unknown resource type %q", r.Name, r.Type)
	}
	return nil
}

// onNetwork returns the name of the first container, not removed, that is
// on the network (its NetworkMode, and not disconnected since), or "".
// f.mu must be held.
func (f *Engine) onNetwork(network string) string {
	for _, name := range sortedKeys(f.containers) {
		if c := f.containers[name]; c.State != Removed && !c.Disconnected && c.Spec.NetworkMode == network {
			return name
		}
	}
	return ""
}

// userOf returns the name of the first container, not removed, for which
// uses is true, or "". f.mu must be held.
func (f *Engine) userOf(uses func(engine.ContainerSpec) bool) string {
	for _, name := range sortedKeys(f.containers) {
		if c := f.containers[name]; c.State != Removed && uses(c.Spec) {
			return name
		}
	}
	return ""
}

func hasLabels(have, want map[string]string) bool {
	for k, v := range want {
		if got, ok := have[k]; !ok || got != v {
			return false
		}
	}
	return true
}

func filterString(labels map[string]string) string {
	pairs := make([]string, 0, len(labels))
	for k, v := range labels {
		pairs = append(pairs, k+"="+v)
	}
	slices.Sort(pairs)
	return strings.Join(pairs, ",")
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

func cloneSpec(s engine.ContainerSpec) engine.ContainerSpec {
	s.Entrypoint = slices.Clone(s.Entrypoint)
	s.Cmd = slices.Clone(s.Cmd)
	s.Env = slices.Clone(s.Env)
	s.Labels = maps.Clone(s.Labels)
	s.Mounts = slices.Clone(s.Mounts)
	s.NetworkAliases = slices.Clone(s.NetworkAliases)
	s.CapAdd = slices.Clone(s.CapAdd)
	s.CapDrop = slices.Clone(s.CapDrop)
	s.SecurityOpt = slices.Clone(s.SecurityOpt)
	s.Devices = slices.Clone(s.Devices)
	s.DeviceCgroupRules = slices.Clone(s.DeviceCgroupRules)
	if s.GPUs != nil {
		g := *s.GPUs
		g.DeviceIDs = slices.Clone(g.DeviceIDs)
		g.Capabilities = slices.Clone(g.Capabilities)
		g.Options = maps.Clone(g.Options)
		s.GPUs = &g
	}
	s.GroupAdd = slices.Clone(s.GroupAdd)
	s.Sysctls = maps.Clone(s.Sysctls)
	s.Ulimits = slices.Clone(s.Ulimits)
	s.DNS = slices.Clone(s.DNS)
	s.DNSSearch = slices.Clone(s.DNSSearch)
	s.ExtraHosts = slices.Clone(s.ExtraHosts)
	s.Tmpfs = maps.Clone(s.Tmpfs)
	s.Binds = slices.Clone(s.Binds)
	for i := range s.Binds {
		s.Binds[i].Options = slices.Clone(s.Binds[i].Options)
	}
	return s
}
