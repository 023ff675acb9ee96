package dockerflag

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseVolume(t *testing.T) {
	tests := []struct {
		spec string
		want Volume
		bind bool
		anon bool
		ro   bool
	}{
		{"/var/run/docker.sock:/var/run/docker.sock", Volume{Source: "/var/run/docker.sock", Destination: "/var/run/docker.sock"}, true, false, false},
		{"/usr/bin/docker:/usr/bin/docker:ro", Volume{Source: "/usr/bin/docker", Destination: "/usr/bin/docker", Mode: "ro"}, true, false, true},
		{"/srv:/srv:RW", Volume{Source: "/srv", Destination: "/srv", Mode: "RW"}, true, false, false},
		{"ccache:/ccache", Volume{Source: "ccache", Destination: "/ccache"}, false, false, false},
		{"my-vol.1:/data/:ro", Volume{Source: "my-vol.1", Destination: "/data/", Mode: "ro"}, false, false, true},
		{"/scratch", Volume{Destination: "/scratch"}, false, true, false},
		{"/a:/b:ro:z", Volume{Source: "/a", Destination: "/b", Mode: "ro", Label: "z"}, true, false, true},
		{"/a:/b:rw,Z,rshared", Volume{Source: "/a", Destination: "/b", Mode: "rw", Label: "Z", Propagation: "rshared"}, true, false, false},
		{"/a:/b:slave", Volume{Source: "/a", Destination: "/b", Propagation: "slave"}, true, false, false},
	}
	for _, tt := range tests {
		got, err := ParseVolume(tt.spec)
		if err != nil {
			t.Errorf("ParseVolume(%q): %v", tt.spec, err)
			continue
		}
		if got != tt.want || got.IsBind() != tt.bind || got.IsAnonymous() != tt.anon || got.ReadOnly() != tt.ro {
			t.Errorf("ParseVolume(%q) = %+v (bind %v, anonymous %v, ro %v), want %+v (%v, %v, %v)",
				tt.spec, got, got.IsBind(), got.IsAnonymous(), got.ReadOnly(), tt.want, tt.bind, tt.anon, tt.ro)
		}
	}
	for spec, want := range map[string]string{
		"":                "is not a volume",
		"relative":        "is not a volume",
		"a:b":             "is not a volume",
		"/a:/b:rx":        "is not a volume",
		"/a:/b:c:/d":      "is not a volume",
		"/":               "must not be /",
		"/srv:/":          "must not be /",
		"/a:/b:O":         "mode O",
		"/a:/$CI_DIR/out": "not expanded",
	} {
		if _, err := ParseVolume(spec); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseVolume(%q) = %v, want an error containing %q", spec, err, want)
		}
	}
}

func TestOverlaps(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		want bool
	}{
		{"/builds", "/builds", true},
		{"/builds/", "/builds", true},
		{"/builds/x", "/builds", true},
		{"/", "/cache", true},
		{"/run", "/run/warmcache", true},
		{"/buildsx", "/builds", false},
		{"/cachex/y", "/cache", false},
		{"/var/run/docker.sock", "/run/warmcache", false},
	} {
		if got := Overlaps(tt.a, tt.b); got != tt.want {
			t.Errorf("Overlaps(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestParseDevice(t *testing.T) {
	for s, want := range map[string]Device{
		"/dev/kvm":                  {"/dev/kvm", "/dev/kvm", "rwm"},
		"/dev/kvm:r":                {"/dev/kvm", "/dev/kvm", "r"},
		"/dev/sda:/dev/xvda":        {"/dev/sda", "/dev/xvda", "rwm"},
		"/dev/sda:/dev/xvda:rw":     {"/dev/sda", "/dev/xvda", "rw"},
		"/dev/net/tun:/dev/net/tun": {"/dev/net/tun", "/dev/net/tun", "rwm"},
	} {
		got, err := ParseDevice(s)
		if err != nil || got != want {
			t.Errorf("ParseDevice(%q) = %+v, %v; want %+v", s, got, err, want)
		}
	}
	for _, s := range []string{"", "kvm", "/dev/a:/dev/b:rwx", "/dev/a:b", "/dev/a:/dev/b:rw:x", "/dev/a:rr"} {
		if got, err := ParseDevice(s); err == nil {
			t.Errorf("ParseDevice(%q) = %+v, want an error", s, got)
		}
	}
}

func TestParseGpus(t *testing.T) {
	for s, want := range map[string]*Gpus{
		"":                        nil,
		"all":                     {Count: -1, Capabilities: []string{"gpu"}},
		"2":                       {Count: 2, Capabilities: []string{"gpu"}},
		"count=all,driver=nvidia": {Count: -1, Driver: "nvidia", Capabilities: []string{"gpu"}},
		`"device=0,1"`:            {DeviceIDs: []string{"0", "1"}, Capabilities: []string{"gpu"}},
		"device=GPU-3a23c669,capabilities=compute": {DeviceIDs: []string{"GPU-3a23c669"}, Capabilities: []string{"compute"}},
	} {
		got, err := ParseGpus(s)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("ParseGpus(%q) = %+v, %v; want %+v", s, got, err, want)
		}
	}
	for _, s := range []string{"0", "many", "all,2", "count=2,device=0"} {
		if got, err := ParseGpus(s); err == nil {
			t.Errorf("ParseGpus(%q) = %+v, want an error", s, got)
		}
	}
}

func TestUlimits(t *testing.T) {
	got, err := Ulimits(map[string]string{"nofile": "1024:2048", "core": "0"})
	want := []Ulimit{{"core", 0, 0}, {"nofile", 1024, 2048}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("Ulimits = %+v, %v; want %+v", got, err, want)
	}
	if _, err := Ulimits(map[string]string{"files": "1"}); err == nil || err.Error() != `"files" is not a limit such as nofile, nproc, core, memlock or stack` {
		t.Errorf("Ulimits(files) = %v", err)
	}
}
