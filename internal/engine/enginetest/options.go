package enginetest

import (
	"testing"

	"github.com/warmcache/warmcache/internal/engine"
)

// optionChecks hold the engines to what they refuse and make of the
// runner's container options (package driver's plan relies on it).
func optionChecks() []check {
	return []check{
		{"CreateContainer", "refuses dns and extra hosts in another container's network", func(t *testing.T, x *env) {
			owner := x.running("owner")
			for name, edit := range map[string]func(*engine.ContainerSpec){
				"dns":         func(c *engine.ContainerSpec) { c.DNS = []string{"10.0.0.53"} },
				"extra-hosts": func(c *engine.ContainerSpec) { c.ExtraHosts = []string{"gitlab.corp.example:10.0.0.7"} },
			} {
				c := x.spec(name, keepRunning)
				c.NetworkMode = "container:" + owner
				edit(&c)
				x.removeAtCleanup(engine.Resource{Type: engine.Container, Name: c.Name})
				if err := x.e.CreateContainer(x.ctx, c); err == nil {
					t.Errorf("a container with %s in another's network was created", name)
				}
			}
		}},
		{"CreateContainer", "refuses a volume and a bind at one path", func(t *testing.T, x *env) {
			c := x.spec("c", keepRunning)
			c.Mounts = []engine.Mount{{Volume: x.volume("v", nil), Target: "/data"}}
			c.Binds = []engine.Bind{{Source: x.volume("w", nil), Target: "/data/"}}
			x.removeAtCleanup(engine.Resource{Type: engine.Container, Name: c.Name})
			if err := x.e.CreateContainer(x.ctx, c); err == nil {
				t.Error("a container with a volume and a bind at /data was created")
			}
		}},
		{"CreateContainer", "a bind of a named volume makes it, and it outlives the container", func(t *testing.T, x *env) {
			vol := x.name("named")
			x.removeAtCleanup(engine.Resource{Type: engine.Volume, Name: vol})
			c := x.spec("c", keepRunning)
			c.Binds = []engine.Bind{{Source: vol, Target: "/named", ReadOnly: true}}
			c.Tmpfs = map[string]string{"/scratch": "rw,size=1m"}
			c.CapAdd, c.Sysctls = []string{"NET_ADMIN"}, map[string]string{"net.ipv4.ip_forward": "1"}
			x.create(c)
			if _, err := x.e.InspectVolume(x.ctx, vol); err != nil {
				t.Fatalf("InspectVolume of the bound volume: %v", err)
			}
			if err := x.e.Remove(x.ctx, engine.Resource{Type: engine.Container, Name: c.Name}); err != nil {
				t.Fatal(err)
			}
			if _, err := x.e.InspectVolume(x.ctx, vol); err != nil {
				t.Errorf("InspectVolume after the container's removal: %v", err)
			}
		}},
		{"CreateNetwork", "with an MTU and IPv4 only", func(t *testing.T, x *env) {
			n := engine.NetworkSpec{Name: x.name("n"), Labels: x.labels(nil), MTU: 1400}
			x.removeAtCleanup(engine.Resource{Type: engine.Network, Name: n.Name})
			if err := x.e.CreateNetwork(x.ctx, n); err != nil {
				t.Fatalf("CreateNetwork with MTU 1400: %v", err)
			}
			c := x.spec("c", keepRunning)
			c.NetworkMode = n.Name
			x.start(c)
			if ip := x.ip(c.Name, n.Name); !isIP(ip) {
				t.Errorf("ContainerIP = %q, want an address", ip)
			}
		}},
	}
}
