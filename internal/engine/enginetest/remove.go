package enginetest

import (
	"fmt"
	"maps"
	"slices"
	"testing"

	"github.com/warmcache/warmcache/internal/engine"
)

func listChecks() []check {
	return []check{
		{"List", "finds what carries every label, of each type", func(t *testing.T, x *env) {
			c := x.spec("c", keepRunning)
			c.Labels = x.labels(map[string]string{"role": "a", "tier": "x"})
			x.create(c)
			vol := x.volume("v", map[string]string{"role": "a", "tier": "y"})
			other := x.volume("other", map[string]string{"role": "b", "tier": "x"})
			net := x.network("n", map[string]string{"role": "a", "tier": "x"})
			for _, tt := range []struct {
				labels map[string]string
				want   []string
			}{
				{nil, []string{"container " + c.Name, "volume " + vol, "volume " + other, "network " + net}},
				{map[string]string{"role": "a"}, []string{"container " + c.Name, "volume " + vol, "network " + net}},
				{map[string]string{"role": "a", "tier": "x"}, []string{"container " + c.Name, "network " + net}},
				{map[string]string{"tier": "x"}, []string{"container " + c.Name, "volume " + other, "network " + net}},
				{map[string]string{"role": "b", "tier": "y"}, nil},
				{map[string]string{"role": "c"}, nil},
				{map[string]string{"absent": ""}, nil},
			} {
				filter := x.labels(tt.labels)
				rs, err := x.e.List(x.ctx, filter)
				if err != nil {
					t.Fatalf("List(%v): %v", filter, err)
				}
				var got []string
				for _, r := range rs {
					got = append(got, fmt.Sprintf("%s %s", r.Type, r.Name))
					if !hasLabels(r.Labels, filter) {
						t.Errorf("List(%v) gave %s %s with labels %v", filter, r.Type, r.Name, r.Labels)
					}
				}
				slices.Sort(got)
				slices.Sort(tt.want)
				if !slices.Equal(got, tt.want) {
					t.Errorf("List(%v) = %q, want %q", tt.labels, got, tt.want)
				}
			}
		}},
		{"List", "gives a volume's mount point and labels, a network's id", func(t *testing.T, x *env) {
			vol := x.volume("v", map[string]string{"a": "1"})
			x.network("n", map[string]string{"a": "1"})
			info, err := x.e.InspectVolume(x.ctx, vol)
			if err != nil {
				t.Fatal(err)
			}
			rs, err := x.e.List(x.ctx, x.labels(nil))
			if err != nil || len(rs) != 2 {
				t.Fatalf("List = %+v, %v; want a volume and a network", rs, err)
			}
			want := x.labels(map[string]string{"a": "1"})
			for _, r := range rs {
				if !maps.Equal(r.Labels, want) {
					t.Errorf("%s %s has labels %v, want %v", r.Type, r.Name, r.Labels, want)
				}
				switch r.Type {
				case engine.Volume:
					if r.Mountpoint == "" || r.Mountpoint != info.Mountpoint {
						t.Errorf("the listed volume's Mountpoint = %q, InspectVolume says %q", r.Mountpoint, info.Mountpoint)
					}
				case engine.Network:
					if r.ID == "" || r.ID == r.Name {
						t.Errorf("the listed network's ID = %q (name %s)", r.ID, r.Name)
					}
				}
			}
		}},
	}
}

func removeChecks() []check {
	return []check{
		{"Remove", "a container, whatever its state", func(t *testing.T, x *env) {
			created := x.create(x.spec("created", keepRunning))
			running := x.running("running")
			exited := x.start(x.spec("exited", "exit 5"))
			x.waitExited(exited)
			for _, name := range []string{created, running, exited} {
				if err := x.e.Remove(x.ctx, engine.Resource{Type: engine.Container, Name: name}); err != nil {
					t.Errorf("Remove(%s): %v", name, err)
				}
				_, err := x.e.ContainerState(x.ctx, name)
				wantErr(t, "ContainerState of "+name+" after Remove", err, engine.ErrNotFound)
			}
			if rs, err := x.e.List(x.ctx, x.labels(nil)); err != nil || len(rs) != 0 {
				t.Errorf("List after Remove = %+v, %v; want nothing", rs, err)
			}
		}},
		{"Remove", "a missing resource is success", func(t *testing.T, x *env) {
			for _, typ := range []engine.ResourceType{engine.Container, engine.Volume, engine.Network} {
				r := engine.Resource{Type: typ, Name: x.name("missing")}
				if err := x.e.Remove(x.ctx, r); err != nil {
					t.Errorf("Remove(missing %s): %v", typ, err)
				}
			}
			vol := x.volume("v", nil)
			for i := range 2 {
				if err := x.e.Remove(x.ctx, engine.Resource{Type: engine.Volume, Name: vol}); err != nil {
					t.Errorf("Remove #%d of a volume: %v", i+1, err)
				}
			}
		}},
		{"Remove", "a removed container's name makes a new container", func(t *testing.T, x *env) {
			first := x.start(x.spec("c", "echo first; "+keepRunning))
			x.waitLogs(first, "first\n")
			if err := x.e.Remove(x.ctx, engine.Resource{Type: engine.Container, Name: first}); err != nil {
				t.Fatal(err)
			}
			second := x.create(x.spec("c", "echo second; "+keepRunning))
			if s := x.state(second); s != "created" {
				t.Errorf("ContainerState of the new container = %q, want created", s)
			}
			if logs := x.logs(second, 10); logs != "" {
				t.Errorf("ContainerLogs of the new, never started container = %q, want none", logs)
			}
		}},
		{"Remove", "a volume any container mounts is in use", func(t *testing.T, x *env) {
			var containers []string
			for _, state := range []string{"created", "running", "exited"} {
				vol := x.volume(state, nil)
				c := x.spec(state, keepRunning)
				if state == "exited" {
					c.Cmd = []string{"exit 0"}
				}
				c.Mounts = []engine.Mount{{Volume: vol, Target: "/cache"}}
				x.create(c)
				if state != "created" {
					x.startCreated(c.Name)
				}
				if state == "exited" {
					x.waitExited(c.Name)
				}
				err := x.e.Remove(x.ctx, engine.Resource{Type: engine.Volume, Name: vol})
				wantErr(t, "Remove of a volume a "+state+" container mounts", err, engine.ErrInUse)
				if _, err := x.e.InspectVolume(x.ctx, vol); err != nil {
					t.Errorf("InspectVolume after the refused Remove: %v", err)
				}
				containers = append(containers, c.Name)
			}
			for i, state := range []string{"created", "running", "exited"} {
				if err := x.e.Remove(x.ctx, engine.Resource{Type: engine.Container, Name: containers[i]}); err != nil {
					t.Fatal(err)
				}
				if err := x.e.Remove(x.ctx, engine.Resource{Type: engine.Volume, Name: x.name(state)}); err != nil {
					t.Errorf("Remove of the volume once its container is gone: %v", err)
				}
				_, err := x.e.InspectVolume(x.ctx, x.name(state))
				wantErr(t, "InspectVolume after Remove", err, engine.ErrNotFound)
			}
		}},
		{"Remove", "a network a running container is on is in use", func(t *testing.T, x *env) {
			net := x.network("n", nil)
			c := x.spec("c", keepRunning)
			c.NetworkMode = net
			x.start(c)
			err := x.e.Remove(x.ctx, engine.Resource{Type: engine.Network, Name: net})
			wantErr(t, "Remove of a network in use", err, engine.ErrInUse)
			if rs, err := x.e.List(x.ctx, x.labels(nil)); err != nil || len(rs) != 2 {
				t.Errorf("List after the refused Remove = %+v, %v; want the container and the network", rs, err)
			}
			if err := x.e.Remove(x.ctx, engine.Resource{Type: engine.Container, Name: c.Name}); err != nil {
				t.Fatal(err)
			}
			if err := x.e.Remove(x.ctx, engine.Resource{Type: engine.Network, Name: net}); err != nil {
				t.Errorf("Remove of the network once its container is gone: %v", err)
			}
		}},
		{"Remove", "a network by its id", func(t *testing.T, x *env) {
			x.network("n", nil)
			rs, err := x.e.List(x.ctx, x.labels(nil))
			if err != nil || len(rs) != 1 {
				t.Fatalf("List = %+v, %v; want the network", rs, err)
			}
			if err := x.e.Remove(x.ctx, engine.Resource{Type: engine.Network, Name: rs[0].ID}); err != nil {
				t.Errorf("Remove by id: %v", err)
			}
			if rs, err := x.e.List(x.ctx, x.labels(nil)); err != nil || len(rs) != 0 {
				t.Errorf("List after Remove by id = %+v, %v; want nothing", rs, err)
			}
		}},
		{"Remove", "an unknown resource type is an error", func(t *testing.T, x *env) {
			if err := x.e.Remove(x.ctx, engine.Resource{Type: "pod", Name: x.name("p")}); err == nil {
				t.Error("Remove of a resource of type pod succeeded")
			}
		}},
	}
}
