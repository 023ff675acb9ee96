package fake

import (
	"errors"
	"reflect"
	"testing"

	"github.com/warmcache/warmcache/internal/engine"
)

// The fake keeps every option a container was created with, for tests to
// assert, as copies.
func TestOptionsAreKept(t *testing.T) {
	f := New()
	f.AddImage("img")
	spec := engine.ContainerSpec{
		Name: "c", Image: "img", Privileged: true,
		CapAdd: []string{"NET_ADMIN"}, CapDrop: []string{"MKNOD"}, SecurityOpt: []string{"no-new-privileges"},
		Devices: []engine.Device{{Host: "/dev/kvm", Container: "/dev/kvm", Permissions: "rwm"}}, DeviceCgroupRules: []string{"c 10:232 rwm"},
		GPUs: &engine.GPURequest{Count: -1, Capabilities: []string{"gpu"}}, Runtime: "runc", GroupAdd: []string{"kvm"}, UsernsMode: "host",
		Sysctls: map[string]string{"net.ipv4.ip_forward": "1"}, Ulimits: []engine.Ulimit{{Name: "nofile", Soft: 1, Hard: 2}},
		OomKillDisable: true, OomScoreAdj: 500, DNS: []string{"10.0.0.53"}, DNSSearch: []string{"corp.example"},
		ExtraHosts: []string{"a:10.0.0.1"}, MacAddress: "92:d0:c6:0a:29:33", Tmpfs: map[string]string{"/t": "rw"},
		Binds:        []engine.Bind{{Source: "/srv", Target: "/srv", ReadOnly: true, Options: []string{"z"}}, {Source: "named", Target: "/named"}},
		VolumeDriver: "local",
	}
	want := cloneSpec(spec)
	must(t, f.CreateContainer(ctx, spec))
	spec.CapAdd[0], spec.Sysctls["x"], spec.Binds[0].Options[0], spec.GPUs.Capabilities[0] = "ALL", "y", "Z", "compute"
	got, _ := f.Container("c")
	if !reflect.DeepEqual(got.Spec, want) {
		t.Errorf("kept spec =\n%+v\nwant\n%+v", got.Spec, want)
	}
	// The named volume a bind names is made, unlabelled, with the
	// container's volume driver, and in use while the container exists.
	if v, ok := f.Volume("named"); !ok || len(v.Labels) != 0 || f.VolumeDriver("named") != "local" {
		t.Errorf("named volume %+v, %v, driver %q", v, ok, f.VolumeDriver("named"))
	}
	if err := f.Remove(ctx, engine.Resource{Type: engine.Volume, Name: "named"}); !errors.Is(err, engine.ErrInUse) {
		t.Errorf("removing a bound volume: %v, want ErrInUse", err)
	}
	if _, ok := f.Volume("/srv"); ok {
		t.Error("a host bind made a volume")
	}
}

// What Docker refuses at create, the fake refuses.
func TestOptionsRefused(t *testing.T) {
	f := New()
	f.AddImage("img")
	must(t, f.CreateContainer(ctx, engine.ContainerSpec{Name: "owner", Image: "img"}))
	for name, spec := range map[string]engine.ContainerSpec{
		"dns in another's network":   {NetworkMode: "container:owner", DNS: []string{"10.0.0.53"}},
		"hosts in another's network": {NetworkMode: "container:owner", ExtraHosts: []string{"a:10.0.0.1"}},
		"mac in another's network":   {NetworkMode: "container:owner", MacAddress: "92:d0:c6:0a:29:33"},
		"mac on the host's network":  {NetworkMode: "host", MacAddress: "92:d0:c6:0a:29:33"},
		"two binds at one path":      {Binds: []engine.Bind{{Source: "/a", Target: "/x"}, {Source: "/b", Target: "/x/"}}},
		"a relative bind target":     {Binds: []engine.Bind{{Source: "/a", Target: "x"}}},
		"a bind without a source":    {Binds: []engine.Bind{{Target: "/x"}}},
	} {
		spec.Name, spec.Image = "c", "img"
		if err := f.CreateContainer(ctx, spec); err == nil {
			t.Errorf("%s: created", name)
			must(t, f.Remove(ctx, engine.Resource{Type: engine.Container, Name: "c"}))
		}
	}
	// A tmpfs at a volume's path is Docker's to take.
	must(t, f.EnsureVolume(ctx, engine.VolumeSpec{Name: "v"}))
	must(t, f.CreateContainer(ctx, engine.ContainerSpec{Name: "c", Image: "img", Mounts: []engine.Mount{{Volume: "v", Target: "/x"}}, Tmpfs: map[string]string{"/x": ""}}))
}

// An engine that cannot run privileged containers refuses to start them,
// and only them.
func TestRefusePrivileged(t *testing.T) {
	f := New()
	f.AddImage("img")
	f.RefusePrivileged(true)
	must(t, f.CreateContainer(ctx, engine.ContainerSpec{Name: "p", Image: "img", Privileged: true}))
	must(t, f.CreateContainer(ctx, engine.ContainerSpec{Name: "u", Image: "img"}))
	err := f.StartContainer(ctx, "p")
	var refused *engine.PrivilegedRefusedError
	if !errors.Is(err, engine.ErrPrivilegedRefused) || !errors.As(err, &refused) || refused.Container != "p" {
		t.Errorf("StartContainer(privileged) = %v", err)
	}
	if s, _ := f.ContainerState(ctx, "p"); s != string(Created) {
		t.Errorf("state after the refusal = %s", s)
	}
	must(t, f.StartContainer(ctx, "u"))
}

// A network keeps the MTU and IPv6 it was created with.
func TestNetworkOptionsAreKept(t *testing.T) {
	f := New()
	must(t, f.CreateNetwork(ctx, engine.NetworkSpec{Name: "n", Labels: map[string]string{"a": "1"}, MTU: 1400, EnableIPv6: true}))
	if n, ok := f.Network("n"); !ok || n.MTU != 1400 || !n.EnableIPv6 || n.Labels["a"] != "1" {
		t.Errorf("Network = %+v, %v", n, ok)
	}
	must(t, f.Remove(ctx, engine.Resource{Type: engine.Network, Name: "n"}))
	if _, ok := f.Network("n"); ok {
		t.Error("a removed network is still known")
	}
	must(t, f.EnsureVolume(ctx, engine.VolumeSpec{Name: "v", Driver: "nfs"}))
	if d := f.VolumeDriver("v"); d != "nfs" {
		t.Errorf("VolumeDriver = %q", d)
	}
}
