package enginetest

import (
	"errors"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/warmcache/warmcache/internal/engine"
)

// imageChecks cover Ping, InspectImage and PullImage. A pull check that
// opts leave out has no run.
func imageChecks(opts Options) []check {
	checks := []check{
		{"Ping", "reports the versions", func(t *testing.T, x *env) {
			info, err := x.e.Ping(x.ctx)
			if err != nil || info.ServerVersion == "" || info.APIVersion == "" {
				t.Errorf("Ping = %+v, %v; want the server and API versions", info, err)
			}
		}},
		{"InspectImage", "describes a local image", func(t *testing.T, x *env) {
			got, err := x.e.InspectImage(x.ctx, x.opts.Image)
			if err != nil {
				t.Fatalf("InspectImage(%s): %v", x.opts.Image, err)
			}
			if want := x.opts.ImageInfo; got.User != want.User || !slices.Equal(got.ExposedPorts, want.ExposedPorts) {
				t.Errorf("InspectImage(%s) = %+v, want %+v", x.opts.Image, got, want)
			}
		}},
		{"InspectImage", "a missing image wraps ErrNotFound", func(t *testing.T, x *env) {
			ref := x.name("missing") + ":0"
			_, err := x.e.InspectImage(x.ctx, ref)
			wantErr(t, "InspectImage("+ref+")", err, engine.ErrNotFound)
		}},
		{"PullImage", "fetches a served image, with status lines", nil},
		{"PullImage", "fails for an image no registry serves", nil},
	}
	if ref := opts.PullableImage; ref != "" {
		checks[3].run = func(t *testing.T, x *env) {
			var lines []string
			var mu sync.Mutex
			err := x.e.PullImage(x.ctx, ref, nil, func(s string) { mu.Lock(); lines = append(lines, s); mu.Unlock() })
			if err != nil {
				t.Fatalf("PullImage(%s): %v", ref, err)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(lines) == 0 {
				t.Errorf("PullImage(%s) reported no status", ref)
			}
			if _, err := x.e.InspectImage(x.ctx, ref); err != nil {
				t.Errorf("InspectImage(%s) after the pull: %v", ref, err)
			}
		}
	}
	if ref := opts.UnpullableImage; ref != "" {
		checks[4].run = func(t *testing.T, x *env) {
			if err := x.e.PullImage(x.ctx, ref, nil, nil); err == nil {
				t.Errorf("PullImage(%s) succeeded", ref)
			}
			_, err := x.e.InspectImage(x.ctx, ref)
			wantErr(t, "InspectImage("+ref+") after the failed pull", err, engine.ErrNotFound)
		}
	}
	return checks
}

func volumeChecks() []check {
	return []check{
		{"EnsureVolume", "creates a volume with its labels", func(t *testing.T, x *env) {
			before := time.Now()
			name := x.volume("v", map[string]string{"a": "1"})
			got, err := x.e.InspectVolume(x.ctx, name)
			if err != nil {
				t.Fatalf("InspectVolume(%s): %v", name, err)
			}
			if want := x.labels(map[string]string{"a": "1"}); got.Name != name || !maps.Equal(got.Labels, want) {
				t.Errorf("InspectVolume = %+v, want name %s and labels %v", got, name, want)
			}
			if got.Mountpoint == "" || got.Tmpfs {
				t.Errorf("InspectVolume = %+v, want a mount point and no tmpfs", got)
			}
			// Engines keep the creation time to the second.
			if got.CreatedAt.Before(before.Add(-time.Second)) || got.CreatedAt.After(time.Now().Add(time.Second)) {
				t.Errorf("CreatedAt = %s, want about %s", got.CreatedAt, before)
			}
		}},
		{"EnsureVolume", "keeps an existing volume and its labels", func(t *testing.T, x *env) {
			name := x.volume("v", map[string]string{"a": "1"})
			if err := x.e.EnsureVolume(x.ctx, engine.VolumeSpec{Name: name, Labels: x.labels(map[string]string{"a": "2", "b": "3"})}); err != nil {
				t.Fatalf("EnsureVolume of an existing volume: %v", err)
			}
			got, err := x.e.InspectVolume(x.ctx, name)
			if want := x.labels(map[string]string{"a": "1"}); err != nil || !maps.Equal(got.Labels, want) {
				t.Errorf("InspectVolume = %+v, %v; want the first labels %v", got, err, want)
			}
		}},
		{"EnsureVolume", "a tmpfs volume says so", func(t *testing.T, x *env) {
			v := engine.VolumeSpec{Name: x.name("v"), Labels: x.labels(nil), Tmpfs: true}
			x.removeAtCleanup(engine.Resource{Type: engine.Volume, Name: v.Name})
			if err := x.e.EnsureVolume(x.ctx, v); err != nil {
				t.Fatal(err)
			}
			if got, err := x.e.InspectVolume(x.ctx, v.Name); err != nil || !got.Tmpfs {
				t.Errorf("InspectVolume = %+v, %v; want Tmpfs", got, err)
			}
		}},
		{"EnsureVolume", "concurrent calls for one name all succeed", func(t *testing.T, x *env) {
			v := engine.VolumeSpec{Name: x.name("v"), Labels: x.labels(nil)}
			x.removeAtCleanup(engine.Resource{Type: engine.Volume, Name: v.Name})
			errs := make([]error, 8)
			var wg sync.WaitGroup
			for i := range errs {
				wg.Go(func() { errs[i] = x.e.EnsureVolume(x.ctx, v) })
			}
			wg.Wait()
			if err := errors.Join(errs...); err != nil {
				t.Errorf("concurrent EnsureVolume: %v", err)
			}
			rs, err := x.e.List(x.ctx, x.labels(nil))
			if err != nil || len(rs) != 1 || rs[0].Name != v.Name {
				t.Errorf("List = %v, %v; want the one volume", rs, err)
			}
		}},
		{"InspectVolume", "a missing volume wraps ErrNotFound", func(t *testing.T, x *env) {
			_, err := x.e.InspectVolume(x.ctx, x.name("missing"))
			wantErr(t, "InspectVolume", err, engine.ErrNotFound)
		}},
	}
}

func networkChecks() []check {
	return []check{
		{"CreateNetwork", "creates a labelled network with an id", func(t *testing.T, x *env) {
			name := x.network("n", map[string]string{"a": "1"})
			rs, err := x.e.List(x.ctx, x.labels(nil))
			if err != nil {
				t.Fatal(err)
			}
			if want := x.labels(map[string]string{"a": "1"}); len(rs) != 1 || rs[0].Type != engine.Network ||
				rs[0].Name != name || rs[0].ID == "" || !maps.Equal(rs[0].Labels, want) {
				t.Errorf("List = %+v, want network %s with an id and labels %v", rs, name, want)
			}
		}},
		{"CreateNetwork", "fails when the name exists", func(t *testing.T, x *env) {
			name := x.network("n", nil)
			if err := x.e.CreateNetwork(x.ctx, engine.NetworkSpec{Name: name, Labels: x.labels(nil)}); err == nil {
				t.Error("a second network of the same name was created")
			}
			if rs, err := x.e.List(x.ctx, x.labels(nil)); err != nil || len(rs) != 1 {
				t.Errorf("List = %+v, %v; want one network", rs, err)
			}
		}},
		{"ContainerIP", "an address on the container's network while it runs", func(t *testing.T, x *env) {
			net, other := x.network("n", nil), x.network("other", nil)
			a, b := x.spec("a", keepRunning), x.spec("b", keepRunning)
			a.NetworkMode, b.NetworkMode = net, net
			a.NetworkAliases = []string{"alias-a"}
			x.create(a)
			if ip := x.ip(a.Name, net); ip != "" {
				t.Errorf("ContainerIP of a created container = %q, want none", ip)
			}
			x.startCreated(a.Name)
			x.start(b)
			ipA, ipB := x.ip(a.Name, net), x.ip(b.Name, net)
			if !isIP(ipA) || !isIP(ipB) || ipA == ipB {
				t.Errorf("ContainerIP = %q and %q, want two addresses", ipA, ipB)
			}
			for _, n := range []string{other, "bridge"} {
				if ip := x.ip(a.Name, n); ip != "" {
					t.Errorf("ContainerIP on %s, a network it is not on = %q, want none", n, ip)
				}
			}
		}},
		{"ContainerIP", "an address on the default bridge", func(t *testing.T, x *env) {
			name := x.running("c")
			if ip := x.ip(name, "bridge"); !isIP(ip) {
				t.Errorf("ContainerIP on bridge = %q, want an address", ip)
			}
		}},
		{"InspectNetwork", "its id, labels and running containers; a missing one wraps ErrNotFound", func(t *testing.T, x *env) {
			net := x.network("n", map[string]string{"a": "1"})
			a, b := x.spec("a", keepRunning), x.spec("b", keepRunning)
			a.NetworkMode, b.NetworkMode = net, net
			x.start(a)
			x.create(b) // never started: no endpoint
			info, err := x.e.InspectNetwork(x.ctx, net)
			if err != nil {
				t.Fatal(err)
			}
			if want := x.labels(map[string]string{"a": "1"}); info.ID == "" || !maps.Equal(info.Labels, want) || !slices.Equal(info.Containers, []string{a.Name}) {
				t.Errorf("InspectNetwork = %+v, want an id, labels %v and container %s", info, want, a.Name)
			}
			if byID, err := x.e.InspectNetwork(x.ctx, info.ID); err != nil || byID.ID != info.ID {
				t.Errorf("InspectNetwork by id = %+v, %v", byID, err)
			}
			_, err = x.e.InspectNetwork(x.ctx, x.name("missing"))
			wantErr(t, "InspectNetwork", err, engine.ErrNotFound)
		}},
		{"DisconnectNetwork", "takes a running container off; missing or off is success", func(t *testing.T, x *env) {
			net := x.network("n", nil)
			a := x.spec("a", keepRunning)
			a.NetworkMode = net
			x.start(a)
			for range 2 { // the second time it is off already
				if err := x.e.DisconnectNetwork(x.ctx, net, a.Name); err != nil {
					t.Fatalf("DisconnectNetwork: %v", err)
				}
			}
			if ip := x.ip(a.Name, net); ip != "" {
				t.Errorf("ContainerIP after the disconnect = %q, want none", ip)
			}
			if info, err := x.e.InspectNetwork(x.ctx, net); err != nil || len(info.Containers) != 0 {
				t.Errorf("InspectNetwork after the disconnect = %+v, %v; want no container", info, err)
			}
			if err := x.e.DisconnectNetwork(x.ctx, net, x.name("missing")); err != nil {
				t.Errorf("DisconnectNetwork of a missing container: %v", err)
			}
			if err := x.e.Remove(x.ctx, engine.Resource{Type: engine.Network, Name: net}); err != nil {
				t.Errorf("removing the network its only container left: %v", err)
			}
		}},
		{"RenameContainer", "keeps labels and state, frees the old name", func(t *testing.T, x *env) {
			net := x.network("n", nil)
			a := x.spec("a", keepRunning)
			a.NetworkMode = net
			x.start(a)
			renamed := x.name("renamed")
			if err := x.e.RenameContainer(x.ctx, a.Name, renamed); err != nil {
				t.Fatal(err)
			}
			x.removeAtCleanup(engine.Resource{Type: engine.Container, Name: renamed})
			if st := x.state(renamed); st != "running" {
				t.Errorf("state after the rename = %q, want running", st)
			}
			if info, err := x.e.InspectNetwork(x.ctx, net); err != nil || !slices.Equal(info.Containers, []string{renamed}) {
				t.Errorf("InspectNetwork after the rename = %+v, %v; want %s", info, err, renamed)
			}
			rs, err := x.e.List(x.ctx, x.labels(nil))
			if err != nil || !slices.ContainsFunc(rs, func(r engine.Resource) bool { return r.Type == engine.Container && r.Name == renamed }) {
				t.Errorf("List after the rename = %+v, %v; want %s by its labels", rs, err, renamed)
			}
			x.create(a) // the old name is free
		}},
		{"ContainerIP", "a missing container wraps ErrNotFound", func(t *testing.T, x *env) {
			_, err := x.e.ContainerIP(x.ctx, x.name("missing"), "bridge")
			wantErr(t, "ContainerIP", err, engine.ErrNotFound)
		}},
	}
}

// ip is the container's address on network; an error fails the subtest.
func (x *env) ip(name, network string) string {
	x.t.Helper()
	ip, err := x.e.ContainerIP(x.ctx, name, network)
	if err != nil {
		x.t.Fatalf("ContainerIP(%s, %s): %v", name, network, err)
	}
	return ip
}

// isIP says whether s is an IP address.
func isIP(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil
}
