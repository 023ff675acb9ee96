package fake

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/warmcache/warmcache/internal/engine"
)

// builtinNetworks are the network modes that need no network resource.
var builtinNetworks = []string{"", "default", "bridge", "host", "none"}

// AddNetwork creates a network without recording a call.
func (f *Engine) AddNetwork(name string, labels map[string]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.addNetwork(name, labels)
}

// addNetwork gives the network a fresh id, as Docker does: a network made
// again under the same name is another network. f.mu must be held.
func (f *Engine) addNetwork(name string, labels map[string]string) {
	f.lastID++
	f.networks[name] = maps.Clone(labels)
	f.networkIDs[name] = fmt.Sprintf("netid%04d", f.lastID)
}

// NetworkID returns the id of the network, or "" if it does not exist.
func (f *Engine) NetworkID(name string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.networkIDs[name]
}

// networkNamed returns the name of the network that ref names by its id or
// its name, as Docker accepts either, or "". f.mu must be held.
func (f *Engine) networkNamed(ref string) string {
	for name, id := range f.networkIDs {
		if id == ref {
			return name
		}
	}
	if _, ok := f.networks[ref]; ok {
		return ref
	}
	return ""
}

// HasNetwork reports whether the network exists.
func (f *Engine) HasNetwork(name string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.networks[name]
	return ok
}

// SetIP sets the address ContainerIP reports for a container on its
// network (default: the one it got when it first started), e.g. a
// loopback address where the test listens. It holds for every container
// of that name.
func (f *Engine) SetIP(container, ip string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ips[container] = ip
}

// SetLogs sets what a container has written, for ContainerLogs, until it
// is removed.
func (f *Engine) SetLogs(container, output string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.logs[container] = output
}

// CreateNetwork implements engine.Engine. An existing name is an error,
// as with Docker (which checks duplicates on request).
func (f *Engine) CreateNetwork(ctx context.Context, n engine.NetworkSpec) error {
	if err := f.begin(ctx, MethodCreateNetwork, n.Name); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.networks[n.Name]; ok || slices.Contains(builtinNetworks, n.Name) {
		return fmt.Errorf("creating network %s: network with name %s already exists", n.Name, n.Name)
	}
	f.addNetwork(n.Name, n.Labels)
	f.netSpecs[n.Name] = engine.NetworkSpec{Name: n.Name, Labels: maps.Clone(n.Labels), MTU: n.MTU, EnableIPv6: n.EnableIPv6}
	return nil
}

// Network returns the spec a network was created with by CreateNetwork,
// and whether it was.
func (f *Engine) Network(name string) (engine.NetworkSpec, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, ok := f.netSpecs[name]
	n.Labels = maps.Clone(n.Labels)
	return n, ok
}

// ContainerIP implements engine.Engine: while the container runs, its
// address on its network (the default bridge for NetworkMode "" or
// "default", or a user-defined one), else "", as with Docker. The address
// is the one SetIP set, or else a distinct private one given at its first
// start.
func (f *Engine) ContainerIP(ctx context.Context, name, network string) (string, error) {
	if err := f.begin(ctx, MethodContainerIP, name); err != nil {
		return "", err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.existing(name, "inspecting container")
	if err != nil {
		return "", err
	}
	if c.State != Running || c.Disconnected || networkOf(c.Spec.NetworkMode) != network || !f.hasAddress(network) {
		return "", nil
	}
	if ip, ok := f.ips[name]; ok {
		return ip, nil
	}
	return f.addrs[name], nil
}

// networkOf names the network a container of that NetworkMode is on.
func networkOf(mode string) string {
	if mode == "" || mode == "default" {
		return "bridge"
	}
	return mode
}

// hasAddress says whether a container of that NetworkMode gets an
// address: on the default bridge or a user-defined network, not on the
// host's, none or another container's. f.mu must be held.
func (f *Engine) hasAddress(mode string) bool {
	_, userDefined := f.networks[mode]
	return networkOf(mode) == "bridge" || userDefined
}

// ContainerLogs implements engine.Engine: the last lines of what SetLogs
// gave the container, and at most their last 16 KiB, as from Docker.
func (f *Engine) ContainerLogs(ctx context.Context, name string, lines int) (string, error) {
	if err := f.begin(ctx, MethodContainerLogs, name); err != nil {
		return "", err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, err := f.existing(name, "reading the logs of"); err != nil {
		return "", err
	}
	all := strings.SplitAfter(f.logs[name], "\n")
	if all[len(all)-1] == "" {
		all = all[:len(all)-1]
	}
	out := strings.Join(all[max(0, len(all)-lines):], "")
	return out[max(0, len(out)-maxLogBytes):], nil
}

// maxLogBytes bounds what ContainerLogs returns, as in the Docker engine.
const maxLogBytes = 16 << 10

// InspectNetwork implements engine.Engine: the network's running
// containers are those started on it and not disconnected since.
func (f *Engine) InspectNetwork(ctx context.Context, name string) (engine.NetworkInfo, error) {
	if err := f.begin(ctx, MethodInspectNetwork, name); err != nil {
		return engine.NetworkInfo{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	net := f.networkNamed(name)
	if net == "" {
		return engine.NetworkInfo{}, fmt.Errorf("inspecting network %s: %w", name, engine.ErrNotFound)
	}
	info := engine.NetworkInfo{ID: f.networkIDs[net], Labels: maps.Clone(f.networks[net])}
	for _, cname := range sortedKeys(f.containers) {
		if c := f.containers[cname]; c.State == Running && !c.Disconnected && c.Spec.NetworkMode == net {
			info.Containers = append(info.Containers, cname)
		}
	}
	return info, nil
}

// DisconnectNetwork implements engine.Engine.
func (f *Engine) DisconnectNetwork(ctx context.Context, network, container string) error {
	if err := f.begin(ctx, MethodDisconnect, container); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	net := f.networkNamed(network)
	if net == "" {
		return fmt.Errorf("disconnecting from network %s: %w", network, engine.ErrNotFound)
	}
	if c, ok := f.containers[container]; ok && c.State != Removed && c.Spec.NetworkMode == net {
		c.Disconnected = true
		delete(f.addrs, container)
	}
	return nil
}

// RenameContainer implements engine.Engine.
func (f *Engine) RenameContainer(ctx context.Context, name, newName string) error {
	if err := f.begin(ctx, MethodRenameContainer, name); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.existing(name, "renaming container")
	if err != nil {
		return err
	}
	if n, ok := f.containers[newName]; ok && n.State != Removed {
		return fmt.Errorf("renaming container %s: the name %s is in use", name, newName)
	}
	c.Spec.Name = newName
	f.containers[newName] = c
	delete(f.containers, name)
	for _, m := range []map[string]string{f.logs, f.addrs} {
		if v, ok := m[name]; ok {
			m[newName] = v
			delete(m, name)
		}
	}
	return nil
}
