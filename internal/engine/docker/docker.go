package docker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/api/types/versions"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
	"github.com/docker/docker/errdefs"
	"github.com/docker/docker/pkg/jsonmessage"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/docker/go-connections/nat"
	"github.com/warmcache/warmcache/internal/engine"
)

// Docker is the engine.Engine backed by the Docker Engine API.
type Docker struct {
	api *client.Client
}

// Options are the connection's settings besides its address.
type Options struct {
	// TLSVerify connects over TLS and verifies the engine's certificate,
	// as gitlab-runner's tls_verify: against CertPath's ca.pem (else the
	// system's roots), presenting its cert.pem and key.pem if CertPath is
	// set.
	TLSVerify bool
	CertPath  string
}

// New connects to the engine at host (e.g. unix:///var/run/docker.sock).
// The API version is negotiated on first use, so older engines work.
func New(host string, opts Options) (*Docker, error) {
	api, err := client.NewClientWithOpts(clientOpts(host, opts)...)
	if err != nil {
		return nil, fmt.Errorf("docker client for %s: %w", host, err)
	}
	return &Docker{api: api}, nil
}

// clientOpts are the SDK's options for host and opts.
func clientOpts(host string, opts Options) []client.Opt {
	o := []client.Opt{client.WithHost(host), client.WithAPIVersionNegotiation()}
	if opts.TLSVerify {
		var ca, cert, key string
		if opts.CertPath != "" {
			ca, cert, key = filepath.Join(opts.CertPath, "ca.pem"), filepath.Join(opts.CertPath, "cert.pem"), filepath.Join(opts.CertPath, "key.pem")
		}
		o = append(o, client.WithTLSClientConfig(ca, cert, key))
	}
	return o
}

// Close releases the client's connections.
func (d *Docker) Close() error { return d.api.Close() }

// Ping implements engine.Engine.
func (d *Docker) Ping(ctx context.Context) (engine.Info, error) {
	v, err := d.api.Info(ctx)
	if err != nil {
		return engine.Info{}, classify(err, "docker engine at "+d.api.DaemonHost())
	}
	return engine.Info{
		ServerVersion: v.ServerVersion, APIVersion: d.api.ClientVersion(),
		StorageDriver: v.Driver, CgroupDriver: v.CgroupDriver, CgroupVersion: v.CgroupVersion,
		RootDir: v.DockerRootDir,
	}, nil
}

// InspectImage implements engine.Engine.
func (d *Docker) InspectImage(ctx context.Context, ref string) (engine.ImageInfo, error) {
	var img image.InspectResponse
	err := retry(ctx, func() (err error) { img, err = d.api.ImageInspect(ctx, ref); return err })
	if err != nil {
		return engine.ImageInfo{}, classify(err, "inspecting image "+ref)
	}
	var info engine.ImageInfo
	if img.Config != nil {
		info.User = img.Config.User
		info.ExposedPorts = exposedPorts(img.Config.ExposedPorts)
	}
	return info, nil
}

// exposedPorts reads an image's ExposedPorts keys ("8080/tcp", "53/udp",
// or a bare "8080" meaning tcp); malformed keys are skipped.
func exposedPorts(m map[string]struct{}) []engine.Port {
	var ports []engine.Port
	for k := range m {
		// nat reads the keys as the engine writes them; a bare number is tcp.
		p := nat.Port(k)
		n, err := nat.ParsePort(p.Port())
		if err != nil || n < 1 {
			continue
		}
		ports = append(ports, engine.Port{Number: n, Protocol: strings.ToLower(p.Proto())})
	}
	slices.SortFunc(ports, func(a, b engine.Port) int {
		if a.Number != b.Number {
			return a.Number - b.Number
		}
		return strings.Compare(a.Protocol, b.Protocol)
	})
	return ports
}

// PullImage implements engine.Engine.
func (d *Docker) PullImage(ctx context.Context, ref string, auth *engine.RegistryAuth, status func(string)) error {
	opts := image.PullOptions{}
	if auth != nil {
		enc, err := encodeAuth(*auth)
		if err != nil {
			return err
		}
		opts.RegistryAuth = enc
	}
	rc, err := d.api.ImagePull(ctx, ref, opts)
	if err != nil {
		return classify(err, "pulling image "+ref)
	}
	defer rc.Close()
	if err := readPullStream(rc, status); err != nil {
		return fmt.Errorf("pulling image %s: %w", ref, err)
	}
	return nil
}

// resources maps a spec's limits and devices to the engine's.
func resources(c engine.ContainerSpec) container.Resources {
	r := container.Resources{
		CgroupParent: c.CgroupParent, NanoCPUs: c.NanoCPUs, CpusetCpus: c.CpusetCpus,
		Memory: c.Memory, MemorySwap: c.MemorySwap, MemoryReservation: c.MemoryReservation,
		DeviceCgroupRules: c.DeviceCgroupRules,
	}
	if c.PidsLimit > 0 {
		r.PidsLimit = &c.PidsLimit
	}
	if c.OomKillDisable {
		r.OomKillDisable = &c.OomKillDisable
	}
	for _, dev := range c.Devices {
		r.Devices = append(r.Devices, container.DeviceMapping{PathOnHost: dev.Host, PathInContainer: dev.Container, CgroupPermissions: dev.Permissions})
	}
	if g := c.GPUs; g != nil {
		r.DeviceRequests = []container.DeviceRequest{{Driver: g.Driver, Count: g.Count, DeviceIDs: g.DeviceIDs,
			Capabilities: [][]string{g.Capabilities}, Options: g.Options}}
	}
	for _, u := range c.Ulimits {
		r.Ulimits = append(r.Ulimits, &container.Ulimit{Name: u.Name, Soft: u.Soft, Hard: u.Hard})
	}
	return r
}

// hostConfig maps a spec's mounts, network and container options to the
// engine's: one line for each option.
func hostConfig(c engine.ContainerSpec) *container.HostConfig {
	host := &container.HostConfig{
		NetworkMode:  container.NetworkMode(c.NetworkMode),
		ShmSize:      c.ShmSize,
		Resources:    resources(c),
		Privileged:   c.Privileged,
		CapAdd:       c.CapAdd,
		CapDrop:      c.CapDrop,
		SecurityOpt:  c.SecurityOpt,
		Runtime:      c.Runtime,
		GroupAdd:     c.GroupAdd,
		UsernsMode:   container.UsernsMode(c.UsernsMode),
		Sysctls:      c.Sysctls,
		OomScoreAdj:  c.OomScoreAdj,
		DNS:          c.DNS,
		DNSSearch:    c.DNSSearch,
		ExtraHosts:   c.ExtraHosts,
		Tmpfs:        c.Tmpfs,
		VolumeDriver: c.VolumeDriver,
	}
	for _, m := range c.Mounts {
		mt := mount.Mount{Type: mount.TypeVolume, Source: m.Volume, Target: m.Target, ReadOnly: m.ReadOnly}
		if m.NoCopy {
			mt.VolumeOptions = &mount.VolumeOptions{NoCopy: true}
		}
		host.Mounts = append(host.Mounts, mt)
	}
	for _, b := range c.Binds {
		host.Binds = append(host.Binds, bindSpec(b))
	}
	return host
}

// bindSpec spells a bind as `docker run -v` does: source:target[:options].
func bindSpec(b engine.Bind) string {
	opts := slices.Clone(b.Options)
	if b.ReadOnly {
		opts = append([]string{"ro"}, opts...)
	}
	if len(opts) == 0 {
		return b.Source + ":" + b.Target
	}
	return b.Source + ":" + b.Target + ":" + strings.Join(opts, ",")
}

// readPullStream turns the pull progress stream (jsonmessage.JSONMessage
// values, as the engine sends them) into short status lines: per-layer
// progress ticks ("Downloading", "Extracting") are dropped, every other
// event becomes one line. jsonmessage's own renderer is not used: it draws
// a terminal's progress bars, or on a non-terminal every tick.
func readPullStream(r io.Reader, status func(string)) error {
	dec := json.NewDecoder(r)
	for {
		var m jsonmessage.JSONMessage
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading pull progress: %w", err)
		}
		// ErrorMessage ("error") is deprecated but still sent beside
		// errorDetail; a proxy may send only it.
		if m.Error != nil || m.ErrorMessage != "" {
			msg := m.ErrorMessage
			if m.Error != nil {
				msg = m.Error.Message
			}
			return fmt.Errorf("pull failed: %s", msg)
		}
		switch m.Status {
		case "Downloading", "Extracting", "Waiting", "Verifying Checksum":
			continue
		}
		if status != nil {
			if m.ID != "" {
				status(m.ID + ": " + m.Status)
			} else {
				status(m.Status)
			}
		}
	}
}

func encodeAuth(a engine.RegistryAuth) (string, error) {
	enc, err := registry.EncodeAuthConfig(registry.AuthConfig{
		Username: a.Username, Password: a.Password, ServerAddress: a.Server, IdentityToken: a.IdentityToken, RegistryToken: a.RegistryToken,
	})
	if err != nil {
		return "", fmt.Errorf("encoding registry login: %w", err)
	}
	return enc, nil
}

// EnsureVolume implements engine.Engine. Creating an existing volume with the
// local driver returns the existing one, so this is idempotent.
func (d *Docker) EnsureVolume(ctx context.Context, v engine.VolumeSpec) error {
	opts := volume.CreateOptions{Name: v.Name, Labels: v.Labels, DriverOpts: v.DriverOpts, Driver: v.Driver}
	if v.Tmpfs {
		opts.DriverOpts = map[string]string{"type": "tmpfs", "device": "tmpfs", "o": tmpfsOptions}
	}
	err := retry(ctx, func() error {
		_, err := d.api.VolumeCreate(ctx, opts)
		return err
	})
	if err != nil {
		return classify(err, "creating volume "+v.Name)
	}
	return nil
}

// tmpfsOptions are the mount options of a Tmpfs volume: small, sticky and
// world-writable like /tmp, and nothing in it can be executed.
const tmpfsOptions = "size=1m,mode=1777,nosuid,nodev,noexec"

// InspectVolume implements engine.Engine.
func (d *Docker) InspectVolume(ctx context.Context, name string) (engine.VolumeInfo, error) {
	var v volume.Volume
	err := retry(ctx, func() (err error) { v, err = d.api.VolumeInspect(ctx, name); return err })
	if err != nil {
		return engine.VolumeInfo{}, classify(err, "inspecting volume "+name)
	}
	created, _ := time.Parse(time.RFC3339, v.CreatedAt)
	return engine.VolumeInfo{Name: v.Name, Labels: v.Labels, Mountpoint: v.Mountpoint, CreatedAt: created, Tmpfs: v.Options["type"] == "tmpfs"}, nil
}

// CreateContainer implements engine.Engine.
func (d *Docker) CreateContainer(ctx context.Context, c engine.ContainerSpec) error {
	cfg := &container.Config{
		Image:     c.Image,
		Cmd:       c.Cmd,
		Env:       c.Env,
		Labels:    c.Labels,
		User:      c.User,
		OpenStdin: c.KeepStdinOpen,
		Tty:       false,
	}
	if c.Entrypoint != nil {
		cfg.Entrypoint = c.Entrypoint
		if len(c.Entrypoint) == 0 {
			// The API treats an empty list as "unset"; [""] clears it.
			cfg.Entrypoint = []string{""}
		}
	}
	host := hostConfig(c)
	nets := &network.NetworkingConfig{}
	if len(c.NetworkAliases) > 0 {
		nets.EndpointsConfig = map[string]*network.EndpointSettings{c.NetworkMode: {Aliases: c.NetworkAliases}}
	}
	if c.MacAddress != "" {
		// Before API 1.44 the address is the container's; since, its
		// endpoint's (the client drops the container's then).
		cfg.MacAddress = c.MacAddress //nolint:staticcheck // still the field before API 1.44
		d.api.NegotiateAPIVersion(ctx)
		if versions.GreaterThanOrEqualTo(d.api.ClientVersion(), "1.44") {
			on := c.NetworkMode
			if on == "" {
				on = network.NetworkDefault
			}
			if nets.EndpointsConfig == nil {
				nets.EndpointsConfig = map[string]*network.EndpointSettings{}
			}
			if nets.EndpointsConfig[on] == nil {
				nets.EndpointsConfig[on] = &network.EndpointSettings{}
			}
			nets.EndpointsConfig[on].MacAddress = c.MacAddress
		}
	}
	if _, err := d.api.ContainerCreate(ctx, cfg, host, nets, nil, c.Name); err != nil {
		return classify(err, "creating container "+c.Name)
	}
	return nil
}

// StartContainer implements engine.Engine.
func (d *Docker) StartContainer(ctx context.Context, name string) error {
	// Starting a running container is a no-op for the engine, so a retry
	// after a lost answer is safe.
	if err := retry(ctx, func() error { return d.api.ContainerStart(ctx, name, container.StartOptions{}) }); err != nil {
		if cause, ok := d.privilegedRefused(ctx, name, err); ok {
			return &engine.PrivilegedRefusedError{Container: name, Cause: cause}
		}
		return classify(err, "starting container "+name)
	}
	return nil
}

// privilegedRefused says whether a failed start is the engine refusing
// a privileged container (runc cannot grant it every capability), with
// the cause in the runtime's words, e.g. "unable to apply caps:
// operation not permitted".
func (d *Docker) privilegedRefused(ctx context.Context, name string, err error) (string, bool) {
	msg := err.Error()
	if !strings.Contains(msg, "operation not permitted") {
		return "", false
	}
	ins, ierr := d.api.ContainerInspect(ctx, name)
	if ierr != nil || ins.HostConfig == nil || !ins.HostConfig.Privileged {
		return "", false
	}
	return runtimeCause(msg), true
}

// runtimeCause keeps the end of an OCI runtime error, past the layers
// that wrap it ("failed to create shim task: OCI runtime create failed:
// runc create failed: unable to start container process: ...: unknown").
func runtimeCause(msg string) string {
	const marker = "unable to start container process: "
	if i := strings.LastIndex(msg, marker); i >= 0 {
		msg = msg[i+len(marker):]
	}
	return strings.TrimSuffix(strings.TrimSpace(msg), ": unknown")
}

// CreateNetwork implements engine.Engine. It is not retried: a retry after a
// lost answer would fail on the name the first call created.
func (d *Docker) CreateNetwork(ctx context.Context, n engine.NetworkSpec) error {
	opts := network.CreateOptions{Driver: "bridge", Labels: n.Labels}
	if n.MTU != 0 {
		opts.Options = map[string]string{"com.docker.network.driver.mtu": strconv.Itoa(n.MTU)}
	}
	if n.EnableIPv6 {
		opts.EnableIPv6 = &n.EnableIPv6
	}
	if _, err := d.api.NetworkCreate(ctx, n.Name, opts); err != nil {
		return classify(err, "creating network "+n.Name)
	}
	return nil
}

// InspectNetwork implements engine.Engine.
func (d *Docker) InspectNetwork(ctx context.Context, name string) (engine.NetworkInfo, error) {
	var n network.Inspect
	err := retry(ctx, func() (err error) { n, err = d.api.NetworkInspect(ctx, name, network.InspectOptions{}); return err })
	if err != nil {
		return engine.NetworkInfo{}, classify(err, "inspecting network "+name)
	}
	info := engine.NetworkInfo{ID: n.ID, Labels: n.Labels}
	for id, c := range n.Containers {
		if c.Name == "" {
			c.Name = id
		}
		info.Containers = append(info.Containers, c.Name)
	}
	slices.Sort(info.Containers)
	return info, nil
}

// DisconnectNetwork implements engine.Engine.
func (d *Docker) DisconnectNetwork(ctx context.Context, net, name string) error {
	err := retry(ctx, func() error { return d.api.NetworkDisconnect(ctx, net, name, true) })
	// A container that is not on the network is off it, as asked: the
	// engine (20.10) says so with a plain error (a later one with 403).
	if err == nil || errdefs.IsNotFound(err) || errdefs.IsForbidden(err) || strings.Contains(err.Error(), "is not connected to network") {
		return nil
	}
	return classify(err, fmt.Sprintf("disconnecting container %s from network %s", name, net))
}

// RenameContainer implements engine.Engine. It is not retried: a retry
// after a lost answer would find the old name gone.
func (d *Docker) RenameContainer(ctx context.Context, name, newName string) error {
	if err := d.api.ContainerRename(ctx, name, newName); err != nil {
		return classify(err, "renaming container "+name)
	}
	return nil
}

// ContainerIP implements engine.Engine.
func (d *Docker) ContainerIP(ctx context.Context, name, net string) (string, error) {
	var ins container.InspectResponse
	err := retry(ctx, func() (err error) { ins, err = d.api.ContainerInspect(ctx, name); return err })
	if err != nil {
		return "", classify(err, "inspecting container "+name)
	}
	if ins.NetworkSettings == nil || ins.NetworkSettings.Networks[net] == nil {
		return "", nil
	}
	return ins.NetworkSettings.Networks[net].IPAddress, nil
}

// maxLogBytes bounds what ContainerLogs returns.
const maxLogBytes = 16 << 10

// ContainerLogs implements engine.Engine.
func (d *Docker) ContainerLogs(ctx context.Context, name string, lines int) (string, error) {
	rc, err := d.api.ContainerLogs(ctx, name, container.LogsOptions{ShowStdout: true, ShowStderr: true, Tail: strconv.Itoa(lines)})
	if err != nil {
		return "", classify(err, "reading the logs of "+name)
	}
	defer rc.Close()
	var buf tailBuffer
	if _, err := stdcopy.StdCopy(&buf, &buf, rc); err != nil {
		return "", fmt.Errorf("reading the logs of %s: %w", name, err)
	}
	return string(buf.b), nil
}

// tailBuffer keeps the last maxLogBytes written to it.
type tailBuffer struct{ b []byte }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if over := len(t.b) - maxLogBytes; over > 0 {
		t.b = t.b[over:]
	}
	return len(p), nil
}

// ContainerState implements engine.Engine.
func (d *Docker) ContainerState(ctx context.Context, name string) (string, error) {
	var ins container.InspectResponse
	err := retry(ctx, func() (err error) { ins, err = d.api.ContainerInspect(ctx, name); return err })
	if err != nil {
		return "", classify(err, "inspecting container "+name)
	}
	if ins.State == nil {
		return "", fmt.Errorf("inspecting container %s: no state", name)
	}
	return ins.State.Status, nil
}

// ContainerPID is the host PID of a container's main process, 0 when it
// is not running (package agent reaches the container through it).
func (d *Docker) ContainerPID(ctx context.Context, name string) (int, error) {
	ins, err := d.api.ContainerInspect(ctx, name)
	if err != nil {
		return 0, classify(err, "inspecting container "+name)
	}
	if ins.State == nil || !ins.State.Running {
		return 0, nil
	}
	return ins.State.Pid, nil
}

// Exec implements engine.Engine. The stream order follows the engine's contract:
// attach, copy stdin then half-close it, drain both output streams, and
// only then read the exit code.
func (d *Docker) Exec(ctx context.Context, name string, cmd []string, stdin io.Reader, stdout, stderr io.Writer) (engine.Exit, error) {
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	created, err := d.api.ContainerExecCreate(ctx, name, container.ExecOptions{
		Cmd:          cmd,
		AttachStdin:  stdin != nil,
		AttachStdout: true,
		AttachStderr: true,
	})
	if err != nil {
		if errdefs.IsConflict(err) {
			return engine.Exit{}, fmt.Errorf("exec in %s: %w", name, engine.ErrNotRunning)
		}
		return engine.Exit{}, classify(err, "exec in "+name)
	}
	att, err := d.api.ContainerExecAttach(ctx, created.ID, container.ExecAttachOptions{})
	if err != nil {
		// The container may have stopped between create and start; the
		// engine then answers with a bare 500.
		if state, serr := d.ContainerState(ctx, name); serr == nil && state != "running" {
			return engine.Exit{}, fmt.Errorf("exec in %s: %w (it is %s)", name, engine.ErrNotRunning, state)
		}
		return engine.Exit{}, classify(err, "attaching to exec in "+name)
	}
	defer att.Close()

	stdinErr := make(chan error, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				stdinErr <- fmt.Errorf("internal error: %v", p)
			}
		}()
		if stdin == nil {
			stdinErr <- nil
			return
		}
		_, err := io.Copy(att.Conn, stdin)
		if cerr := att.CloseWrite(); err == nil {
			err = cerr
		}
		stdinErr <- err
	}()

	copied := make(chan error, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				copied <- fmt.Errorf("internal error: %v", p)
			}
		}()
		_, err := stdcopy.StdCopy(stdout, stderr, att.Reader)
		copied <- err
	}()
	select {
	case err := <-copied:
		if err != nil {
			return engine.Exit{}, fmt.Errorf("reading output of exec in %s: %w", name, err)
		}
	case <-ctx.Done():
		return engine.Exit{}, ctx.Err()
	}
	exit, err := d.execExit(ctx, name, created.ID)
	if err != nil {
		return exit, err
	}
	// A container that stopped under the exec (an entrypoint that does not
	// exec its arguments, a daemon restart) fails it with a runtime error
	// and a code like 126: that is not the script's failure.
	if exit.Code != 0 {
		if state, serr := d.ContainerState(ctx, name); serr == nil && state != "running" {
			return engine.Exit{}, fmt.Errorf("exec in %s: %w (it is %s)", name, engine.ErrNotRunning, state)
		}
	}
	// A shell that stopped reading early (and failed) explains a broken
	// pipe: its exit code is the result. Only a "success" with a script
	// that never arrived whole is a system failure.
	if werr := <-stdinErr; werr != nil && exit.Code == 0 && !shellStoppedReading(werr) {
		return engine.Exit{}, fmt.Errorf("writing script to exec in %s: %w", name, werr)
	}
	return exit, nil
}

// shellStoppedReading says whether a write error means the shell closed
// its end early (it exited 0 before reading the whole script, e.g. on an
// explicit exit 0), which is the script's business, not a system failure.
func shellStoppedReading(err error) bool {
	return errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrClosedPipe)
}

// execExit reads the exit code once the engine has recorded it. The output
// stream can close a moment before the engine marks the exec finished, so
// poll (1 ms, doubling to at most a second, until ctx ends) rather than
// read a stale "running, code 0".
func (d *Docker) execExit(ctx context.Context, name, id string) (engine.Exit, error) {
	for delay := time.Millisecond; ; delay = min(2*delay, time.Second) {
		ins, err := d.api.ContainerExecInspect(ctx, id)
		if err != nil {
			return engine.Exit{}, classify(err, "inspecting exec in "+name)
		}
		if !ins.Running {
			return engine.Exit{Code: ins.ExitCode}, nil
		}
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return engine.Exit{}, ctx.Err()
		}
	}
}

// List implements engine.Engine.
func (d *Docker) List(ctx context.Context, labels map[string]string) ([]engine.Resource, error) {
	args := filters.NewArgs()
	for k, v := range labels {
		args.Add("label", k+"="+v)
	}
	var out []engine.Resource
	var cs []container.Summary
	err := retry(ctx, func() (err error) {
		cs, err = d.api.ContainerList(ctx, container.ListOptions{All: true, Filters: args})
		return err
	})
	if err != nil {
		return nil, classify(err, "listing containers")
	}
	for _, c := range cs {
		name := c.ID
		if len(c.Names) > 0 {
			name = c.Names[0][1:]
		}
		out = append(out, engine.Resource{Type: engine.Container, Name: name, Labels: c.Labels})
	}
	var vs volume.ListResponse
	err = retry(ctx, func() (err error) { vs, err = d.api.VolumeList(ctx, volume.ListOptions{Filters: args}); return err })
	if err != nil {
		return nil, classify(err, "listing volumes")
	}
	for _, v := range vs.Volumes {
		out = append(out, engine.Resource{Type: engine.Volume, Name: v.Name, Labels: v.Labels, Mountpoint: v.Mountpoint})
	}
	var ns []network.Summary
	err = retry(ctx, func() (err error) { ns, err = d.api.NetworkList(ctx, network.ListOptions{Filters: args}); return err })
	if err != nil {
		return nil, classify(err, "listing networks")
	}
	for _, n := range ns {
		out = append(out, engine.Resource{Type: engine.Network, Name: n.Name, Labels: n.Labels, ID: n.ID})
	}
	return out, nil
}

// Remove implements engine.Engine.
func (d *Docker) Remove(ctx context.Context, r engine.Resource) error {
	var remove func() error
	switch r.Type {
	case engine.Container:
		remove = func() error {
			return d.api.ContainerRemove(ctx, r.Name, container.RemoveOptions{Force: true, RemoveVolumes: true})
		}
	case engine.Volume:
		// force only purges the engine's record when the volume driver
		// fails; a volume that a container mounts is refused anyway (409).
		remove = func() error { return d.api.VolumeRemove(ctx, r.Name, true) }
	case engine.Network:
		remove = func() error { return d.api.NetworkRemove(ctx, r.Name) }
	default:
		return fmt.Errorf("removing %s: unknown resource type %q", r.Name, r.Type)
	}
	err := retry(ctx, remove)
	if err == nil || errdefs.IsNotFound(err) {
		return nil
	}
	// A network with containers on it is "forbidden" to remove.
	if errdefs.IsConflict(err) || r.Type == engine.Network && errdefs.IsForbidden(err) {
		return fmt.Errorf("removing %s %s: %w: %v", r.Type, r.Name, engine.ErrInUse, err)
	}
	return classify(err, fmt.Sprintf("removing %s %s", r.Type, r.Name))
}

// classify wraps err with what was being done and marks the kinds callers
// act on (missing, unreachable) with our sentinel errors.
func classify(err error, doing string) error {
	switch {
	case errdefs.IsNotFound(err):
		return fmt.Errorf("%s: %w: %v", doing, engine.ErrNotFound, err)
	case client.IsErrConnectionFailed(err):
		return fmt.Errorf("%s: %w: %v", doing, engine.ErrUnreachable, err)
	case errdefs.IsUnauthorized(err) || errdefs.IsForbidden(err):
		return fmt.Errorf("%s: %w: %v", doing, engine.ErrDenied, err)
	default:
		return fmt.Errorf("%s: %w", doing, err)
	}
}

// retry runs an idempotent engine call up to three times when it failed
// for a passing reason (the engine's 500 or 503, a connection reset),
// about 100 ms and then 400 ms apart, with jitter. Anything else, an
// unreachable engine included, is returned at once.
func retry(ctx context.Context, call func() error) error {
	delay := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := call()
		if err == nil || attempt == 3 || !transient(err) {
			return err
		}
		select {
		case <-time.After(delay/2 + rand.N(delay)):
		case <-ctx.Done():
			return err
		}
		delay *= 4
	}
}

// transient says whether an engine error may go away by itself.
func transient(err error) bool {
	if client.IsErrConnectionFailed(err) {
		return false
	}
	return errdefs.IsSystem(err) || errdefs.IsUnavailable(err) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)
}
