package docker

import (
	"reflect"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"

	"github.com/warmcache/warmcache/internal/engine"
)

// Every container option of a spec becomes the engine's, one for one.
func TestHostConfig(t *testing.T) {
	oomOff := true
	pids := int64(100)
	spec := engine.ContainerSpec{
		NetworkMode: "job-net", ShmSize: 64 << 20, PidsLimit: pids, Memory: 1 << 30, CgroupParent: "/warmcache/j",
		Mounts:            []engine.Mount{{Volume: "builds", Target: "/builds", NoCopy: true}, {Volume: "job-volume0", Target: "/scratch"}},
		Privileged:        true,
		CapAdd:            []string{"NET_ADMIN"},
		CapDrop:           []string{"MKNOD"},
		SecurityOpt:       []string{"no-new-privileges"},
		Devices:           []engine.Device{{Host: "/dev/sda", Container: "/dev/xvda", Permissions: "r"}},
		DeviceCgroupRules: []string{"c 10:232 rwm"},
		GPUs:              &engine.GPURequest{Count: -1, Capabilities: []string{"gpu"}},
		Runtime:           "runc",
		GroupAdd:          []string{"kvm"},
		UsernsMode:        "host",
		Sysctls:           map[string]string{"net.ipv4.ip_forward": "1"},
		Ulimits:           []engine.Ulimit{{Name: "nofile", Soft: 1024, Hard: 2048}},
		OomKillDisable:    true,
		OomScoreAdj:       500,
		DNS:               []string{"10.0.0.53"},
		DNSSearch:         []string{"corp.example"},
		ExtraHosts:        []string{"gitlab.corp.example:10.0.0.7"},
		Tmpfs:             map[string]string{"/var/lib/mysql": "rw,noexec"},
		Binds: []engine.Bind{
			{Source: "/var/run/docker.sock", Target: "/var/run/docker.sock"},
			{Source: "/usr/bin/docker", Target: "/usr/bin/docker", ReadOnly: true},
			{Source: "/srv/ref", Target: "/ref", ReadOnly: true, Options: []string{"z", "rslave"}},
			{Source: "ccache", Target: "/ccache", Options: []string{"Z"}},
		},
		VolumeDriver: "local",
	}
	want := &container.HostConfig{
		NetworkMode: "job-net", ShmSize: 64 << 20,
		Resources: container.Resources{
			CgroupParent: "/warmcache/j", Memory: 1 << 30, PidsLimit: &pids,
			Devices:           []container.DeviceMapping{{PathOnHost: "/dev/sda", PathInContainer: "/dev/xvda", CgroupPermissions: "r"}},
			DeviceCgroupRules: []string{"c 10:232 rwm"},
			DeviceRequests:    []container.DeviceRequest{{Count: -1, Capabilities: [][]string{{"gpu"}}}},
			Ulimits:           []*container.Ulimit{{Name: "nofile", Soft: 1024, Hard: 2048}},
			OomKillDisable:    &oomOff,
		},
		Mounts: []mount.Mount{
			{Type: mount.TypeVolume, Source: "builds", Target: "/builds", VolumeOptions: &mount.VolumeOptions{NoCopy: true}},
			{Type: mount.TypeVolume, Source: "job-volume0", Target: "/scratch"},
		},
		Binds:        []string{"/var/run/docker.sock:/var/run/docker.sock", "/usr/bin/docker:/usr/bin/docker:ro", "/srv/ref:/ref:ro,z,rslave", "ccache:/ccache:Z"},
		VolumeDriver: "local",
		Privileged:   true,
		CapAdd:       []string{"NET_ADMIN"},
		CapDrop:      []string{"MKNOD"},
		SecurityOpt:  []string{"no-new-privileges"},
		Runtime:      "runc",
		GroupAdd:     []string{"kvm"},
		UsernsMode:   "host",
		Sysctls:      map[string]string{"net.ipv4.ip_forward": "1"},
		OomScoreAdj:  500,
		DNS:          []string{"10.0.0.53"},
		DNSSearch:    []string{"corp.example"},
		ExtraHosts:   []string{"gitlab.corp.example:10.0.0.7"},
		Tmpfs:        map[string]string{"/var/lib/mysql": "rw,noexec"},
	}
	if got := hostConfig(spec); !reflect.DeepEqual(got, want) {
		t.Errorf("hostConfig =\n%+v\nwant\n%+v", got, want)
	}
	// A spec without options sets none.
	if got := hostConfig(engine.ContainerSpec{NetworkMode: "host"}); !reflect.DeepEqual(got, &container.HostConfig{NetworkMode: "host"}) {
		t.Errorf("hostConfig of a bare spec = %+v", got)
	}
}

func TestRuntimeCause(t *testing.T) {
	for msg, want := range map[string]string{
		"Error response from daemon: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: unable to apply caps: operation not permitted: unknown": "unable to apply caps: operation not permitted",
		"operation not permitted": "operation not permitted",
	} {
		if got := runtimeCause(msg); got != want {
			t.Errorf("runtimeCause(%q) = %q, want %q", msg, got, want)
		}
	}
}
