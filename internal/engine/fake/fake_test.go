package fake

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/warmcache/warmcache/internal/engine"
)

var ctx = context.Background()

// running returns a fake with volume v and a running container c using it.
func running(t *testing.T) *Engine {
	t.Helper()
	f := New()
	f.AddImage("img")
	must(t, f.EnsureVolume(ctx, engine.VolumeSpec{Name: "v", Labels: map[string]string{"job": "a"}}))
	must(t, f.CreateContainer(ctx, engine.ContainerSpec{Name: "c", Image: "img",
		Labels: map[string]string{"job": "a", "kind": "build"}, Mounts: []engine.Mount{{Volume: "v", Target: "/v"}}}))
	must(t, f.StartContainer(ctx, "c"))
	return f
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestCallOrderIsEnforced(t *testing.T) {
	tests := []struct {
		name string
		call func(f *Engine) error
		want string
		is   error
	}{
		{"start unknown container", func(f *Engine) error { return f.StartContainer(ctx, "nope") },
			"starting container nope: not found", engine.ErrNotFound},
		{"exec in unknown container", func(f *Engine) error {
			_, err := f.Exec(ctx, "nope", []string{"true"}, nil, nil, nil)
			return err
		}, "exec in nope: not found", engine.ErrNotFound},
		{"exec in created container", func(f *Engine) error {
			must(t, f.CreateContainer(ctx, engine.ContainerSpec{Name: "new", Image: "img"}))
			_, err := f.Exec(ctx, "new", []string{"true"}, nil, nil, nil)
			return err
		}, "exec in new: container is not running", engine.ErrNotRunning},
		{"exec in stopped container", func(f *Engine) error {
			f.Stop("c")
			_, err := f.Exec(ctx, "c", []string{"true"}, nil, nil, nil)
			return err
		}, "exec in c: container is not running", engine.ErrNotRunning},
		{"exec in removed container", func(f *Engine) error {
			must(t, f.Remove(ctx, engine.Resource{Type: engine.Container, Name: "c"}))
			_, err := f.Exec(ctx, "c", []string{"true"}, nil, nil, nil)
			return err
		}, "exec in c: not found", engine.ErrNotFound},
		{"create with a used name", func(f *Engine) error {
			return f.CreateContainer(ctx, engine.ContainerSpec{Name: "c", Image: "img"})
		}, "creating container c: the name is already in use", nil},
		{"create from a missing image", func(f *Engine) error {
			return f.CreateContainer(ctx, engine.ContainerSpec{Name: "x", Image: "missing"})
		}, "creating container x: image missing: not found", engine.ErrNotFound},
		{"create mounting a missing volume", func(f *Engine) error {
			return f.CreateContainer(ctx, engine.ContainerSpec{Name: "x", Image: "img", Mounts: []engine.Mount{{Volume: "nov", Target: "/"}}})
		}, "creating container x: volume nov: not found", engine.ErrNotFound},
		{"create on a missing network", func(f *Engine) error {
			return f.CreateContainer(ctx, engine.ContainerSpec{Name: "x", Image: "img", NetworkMode: "jobnet"})
		}, "creating container x: network jobnet: not found", engine.ErrNotFound},
		{"create without a name", func(f *Engine) error {
			return f.CreateContainer(ctx, engine.ContainerSpec{Image: "img"})
		}, "creating container: empty name", nil},
		{"volume without a name", func(f *Engine) error {
			return f.EnsureVolume(ctx, engine.VolumeSpec{})
		}, "creating volume: empty name", nil},
		{"remove a volume in use", func(f *Engine) error {
			return f.Remove(ctx, engine.Resource{Type: engine.Volume, Name: "v"})
		}, "removing volume v: in use by container c", engine.ErrInUse},
		{"remove a network in use", func(f *Engine) error {
			f.AddNetwork("net", nil)
			must(t, f.CreateContainer(ctx, engine.ContainerSpec{Name: "n", Image: "img", NetworkMode: "net"}))
			return f.Remove(ctx, engine.Resource{Type: engine.Network, Name: "net"})
		}, "removing network net: in use: active endpoints (container n)", engine.ErrInUse},
		{"remove an unknown type", func(f *Engine) error {
			return f.Remove(ctx, engine.Resource{Type: "pod", Name: "p"})
		}, `removing p: unknown resource type "pod"`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call(running(t))
			if err == nil || err.Error() != tt.want {
				t.Fatalf("error = %v, want %q", err, tt.want)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v does not wrap %v", err, tt.is)
			}
		})
	}
}

func TestLifecycle(t *testing.T) {
	f := running(t)
	c, ok := f.Container("c")
	if !ok || c.State != Running || c.Spec.Mounts[0].Volume != "v" {
		t.Fatalf("Container(c) = %+v, %v", c, ok)
	}
	// Starting twice is fine, as with Docker.
	must(t, f.StartContainer(ctx, "c"))

	// The returned spec is a copy.
	c.Spec.Labels["job"] = "changed"
	if c2, _ := f.Container("c"); c2.Spec.Labels["job"] != "a" {
		t.Error("Container returned the fake's own label map")
	}

	for range 2 { // removing twice succeeds
		must(t, f.Remove(ctx, engine.Resource{Type: engine.Container, Name: "c"}))
		must(t, f.Remove(ctx, engine.Resource{Type: engine.Volume, Name: "v"}))
		must(t, f.Remove(ctx, engine.Resource{Type: engine.Network, Name: "nonet"}))
	}
	if c, _ := f.Container("c"); c.State != Removed {
		t.Errorf("state after Remove = %s, want removed", c.State)
	}
	if _, ok := f.Volume("v"); ok {
		t.Error("volume v still exists")
	}
	// A removed container's name can be used again.
	must(t, f.CreateContainer(ctx, engine.ContainerSpec{Name: "c", Image: "img"}))
	if c, _ := f.Container("c"); c.State != Created {
		t.Errorf("state after re-create = %s, want created", c.State)
	}
}

func TestVolumes(t *testing.T) {
	f := New()
	t0 := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	f.SetClock(func() time.Time { return t0 })
	must(t, f.EnsureVolume(ctx, engine.VolumeSpec{Name: "v", Labels: map[string]string{"k": "1"}}))
	f.SetClock(func() time.Time { return t0.Add(time.Hour) })
	must(t, f.EnsureVolume(ctx, engine.VolumeSpec{Name: "v", Labels: map[string]string{"k": "2"}}))
	got, err := f.InspectVolume(ctx, "v")
	must(t, err)
	want := engine.VolumeInfo{Name: "v", Labels: map[string]string{"k": "1"}, CreatedAt: t0}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("InspectVolume = %+v, want the first creation kept: %+v", got, want)
	}

	_, err = f.InspectVolume(ctx, "missing")
	if err == nil || err.Error() != "inspecting volume missing: not found" || !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("InspectVolume(missing) = %v", err)
	}

	root := t.TempDir()
	f.SetVolumeRoot(root)
	must(t, f.EnsureVolume(ctx, engine.VolumeSpec{Name: "w"}))
	w, _ := f.Volume("w")
	if w.Mountpoint != filepath.Join(root, "w") {
		t.Errorf("Mountpoint = %q, want %q", w.Mountpoint, filepath.Join(root, "w"))
	}
	if fi, err := os.Stat(w.Mountpoint); err != nil || !fi.IsDir() {
		t.Errorf("Mountpoint is not a directory: %v", err)
	}
	list, err := f.List(ctx, nil)
	must(t, err)
	if len(list) != 2 || list[0].Mountpoint != "" || list[1].Mountpoint != w.Mountpoint {
		t.Errorf("List = %+v, want volume mountpoints", list)
	}
}

func TestListFiltersByEveryLabel(t *testing.T) {
	f := running(t)
	f.AddNetwork("net-a", map[string]string{"job": "a"})
	f.AddNetwork("net-b", map[string]string{"job": "b"})
	must(t, f.EnsureVolume(ctx, engine.VolumeSpec{Name: "w", Labels: map[string]string{"job": "a", "kind": "cache"}}))
	must(t, f.CreateContainer(ctx, engine.ContainerSpec{Name: "gone", Image: "img", Labels: map[string]string{"job": "a"}}))
	must(t, f.Remove(ctx, engine.Resource{Type: engine.Container, Name: "gone"}))

	names := func(rs []engine.Resource) []string {
		var out []string
		for _, r := range rs {
			out = append(out, string(r.Type)+":"+r.Name)
		}
		return out
	}
	tests := []struct {
		labels map[string]string
		want   []string
	}{
		{nil, []string{"container:c", "volume:v", "volume:w", "network:net-a", "network:net-b"}},
		{map[string]string{"job": "a"}, []string{"container:c", "volume:v", "volume:w", "network:net-a"}},
		{map[string]string{"job": "a", "kind": "cache"}, []string{"volume:w"}},
		{map[string]string{"job": "a", "kind": "build"}, []string{"container:c"}},
		{map[string]string{"job": ""}, nil},
		{map[string]string{"other": "a"}, nil},
	}
	for _, tt := range tests {
		got, err := f.List(ctx, tt.labels)
		must(t, err)
		if !slices.Equal(names(got), tt.want) {
			t.Errorf("List(%v) = %v, want %v", tt.labels, names(got), tt.want)
		}
	}
}

func TestFailNextAndHook(t *testing.T) {
	f := New()
	boom, bang := errors.New("boom"), errors.New("bang")
	f.FailNext(MethodPullImage, boom)
	f.FailNext(MethodPullImage, bang)
	for _, want := range []error{boom, bang, nil} {
		if err := f.PullImage(ctx, "img", nil, nil); err != want {
			t.Fatalf("PullImage = %v, want %v", err, want)
		}
	}
	if !f.HasImage("img") {
		t.Error("a successful pull did not make the image present")
	}

	f.SetHook(func(method, name string) error {
		if method == MethodInspectImage && name == "bad" {
			return bang
		}
		return nil
	})
	if _, err := f.InspectImage(ctx, "bad"); err != bang {
		t.Errorf("InspectImage(bad) = %v, want the hook's error", err)
	}
	if _, err := f.InspectImage(ctx, "img"); err != nil {
		t.Errorf("InspectImage(img) = %v", err)
	}
	f.FailNext(MethodInspectImage, boom)
	if _, err := f.InspectImage(ctx, "bad"); err != boom {
		t.Errorf("FailNext did not take precedence over the hook: %v", err)
	}

	defer func() {
		if recover() == nil {
			t.Error("FailNext with an unknown method did not panic")
		}
	}()
	f.FailNext("Pull", boom)
}

func TestCallsAreRecorded(t *testing.T) {
	f := New()
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_, _ = f.Ping(ctx)
	_ = f.PullImage(cancelled, "img", nil, nil)
	_, _ = f.List(ctx, map[string]string{"b": "2", "a": "1"})
	_ = f.Remove(ctx, engine.Resource{Type: engine.Volume, Name: "v"})
	want := []Call{{"Ping", ""}, {"PullImage", "img"}, {"List", "a=1,b=2"}, {"Remove", "v"}}
	if got := f.Calls(); !slices.Equal(got, want) {
		t.Errorf("Calls() = %v, want %v", got, want)
	}
	if f.HasImage("img") {
		t.Error("a pull on a cancelled context took effect")
	}
}

func TestExecScript(t *testing.T) {
	f := running(t)
	var gotName string
	var gotCmd []string
	f.SetExec(func(name string, cmd []string, stdin []byte) (engine.Exit, string, string) {
		gotName, gotCmd = name, cmd
		return engine.Exit{Code: 3}, "out:" + string(stdin), "err\n"
	})
	var stdout, stderr bytes.Buffer
	exit, err := f.Exec(ctx, "c", []string{"sh", "-s"}, strings.NewReader("echo hi"), &stdout, &stderr)
	must(t, err)
	if exit.Code != 3 || gotName != "c" || !slices.Equal(gotCmd, []string{"sh", "-s"}) {
		t.Errorf("exit %+v, name %q, cmd %q", exit, gotName, gotCmd)
	}
	if stdout.String() != "out:echo hi" || stderr.String() != "err\n" {
		t.Errorf("stdout %q, stderr %q", stdout.String(), stderr.String())
	}

	f.SetExec(nil)
	exit, err = f.Exec(ctx, "c", []string{"true"}, nil, nil, nil)
	if exit != (engine.Exit{}) || err != nil {
		t.Errorf("default Exec = %+v, %v; want exit 0", exit, err)
	}
}

func TestImages(t *testing.T) {
	f := New()
	_, err := f.InspectImage(ctx, "app")
	if err == nil || err.Error() != "inspecting image app: not found" || !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("InspectImage of a missing image = %v", err)
	}
	f.SetImageInfo("app", engine.ImageInfo{User: "1000:1000"})
	if f.HasImage("app") {
		t.Error("SetImageInfo made the image present")
	}
	must(t, f.PullImage(ctx, "app", nil, nil))
	if info, err := f.InspectImage(ctx, "app"); err != nil || info.User != "1000:1000" {
		t.Errorf("InspectImage after pull = %+v, %v", info, err)
	}
	f.AddImage("plain")
	if info, err := f.InspectImage(ctx, "plain"); err != nil || !reflect.DeepEqual(info, engine.ImageInfo{}) {
		t.Errorf("InspectImage(plain) = %+v, %v", info, err)
	}
}

func TestPingAndStatus(t *testing.T) {
	f := New()
	info, err := f.Ping(ctx)
	if err != nil || info.ServerVersion != "fake" {
		t.Errorf("Ping = %+v, %v", info, err)
	}
	var lines []string
	must(t, f.PullImage(ctx, "alpine:3", nil, func(s string) { lines = append(lines, s) }))
	if want := []string{"Status: Downloaded newer image for alpine:3"}; !slices.Equal(lines, want) {
		t.Errorf("status lines = %q, want %q", lines, want)
	}
	auth := &engine.RegistryAuth{Username: "u", Password: "p", Server: "r.example.com"}
	must(t, f.PullImage(ctx, "r.example.com/x", auth, nil))
	if got, ok := f.PullAuth("r.example.com/x"); !ok || got != auth {
		t.Errorf("PullAuth = %v, %v; want the login passed", got, ok)
	}
	if got, ok := f.PullAuth("alpine:3"); !ok || got != nil {
		t.Errorf("PullAuth(alpine:3) = %v, %v; want nil, true", got, ok)
	}
	if _, ok := f.PullAuth("never-pulled"); ok {
		t.Error("PullAuth of an image never pulled reported true")
	}
	if f.Stop("nope") {
		t.Error("Stop of an unknown container reported true")
	}
}

// A job network: created once, aliases only on it, an address while the
// container runs, and it cannot go while a container uses it.
func TestNetworks(t *testing.T) {
	f := New()
	f.AddImage("svc")
	must(t, f.CreateNetwork(ctx, engine.NetworkSpec{Name: "net", Labels: map[string]string{"k": "v"}}))
	if err := f.CreateNetwork(ctx, engine.NetworkSpec{Name: "net"}); err == nil {
		t.Error("a second network of the same name was created")
	}
	if err := f.CreateContainer(ctx, engine.ContainerSpec{Name: "x", Image: "svc", NetworkAliases: []string{"db"}}); err == nil {
		t.Error("aliases on the default network were accepted")
	}
	must(t, f.CreateContainer(ctx, engine.ContainerSpec{Name: "c", Image: "svc", NetworkMode: "net", NetworkAliases: []string{"db"}}))
	f.SetIP("c", "127.0.0.1")
	if ip, err := f.ContainerIP(ctx, "c", "net"); err != nil || ip != "" {
		t.Errorf("ContainerIP before start = %q, %v", ip, err)
	}
	must(t, f.StartContainer(ctx, "c"))
	if ip, err := f.ContainerIP(ctx, "c", "net"); err != nil || ip != "127.0.0.1" {
		t.Errorf("ContainerIP = %q, %v", ip, err)
	}
	if ip, err := f.ContainerIP(ctx, "c", "bridge"); err != nil || ip != "" {
		t.Errorf("ContainerIP on another network = %q, %v", ip, err)
	}
	if rs, _ := f.List(ctx, map[string]string{"k": "v"}); len(rs) != 1 || rs[0].Type != engine.Network {
		t.Errorf("List = %+v, want the network", rs)
	}
	if err := f.Remove(ctx, engine.Resource{Type: engine.Network, Name: "net"}); err == nil {
		t.Error("a network in use was removed")
	}
	must(t, f.Remove(ctx, engine.Resource{Type: engine.Container, Name: "c"}))
	must(t, f.Remove(ctx, engine.Resource{Type: engine.Network, Name: "net"}))
	if _, err := f.ContainerIP(ctx, "c", "net"); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("ContainerIP of a removed container = %v", err)
	}
}

// Every running container on the bridge or a user-defined network has an
// address of its own, as with Docker; SetIP replaces it; the host's
// network gives none.
func TestAddresses(t *testing.T) {
	f := New()
	f.AddImage("img")
	for _, c := range []engine.ContainerSpec{{Name: "a", Image: "img"}, {Name: "b", Image: "img"}, {Name: "h", Image: "img", NetworkMode: "host"}} {
		must(t, f.CreateContainer(ctx, c))
		must(t, f.StartContainer(ctx, c.Name))
	}
	a, _ := f.ContainerIP(ctx, "a", "bridge")
	b, _ := f.ContainerIP(ctx, "b", "bridge")
	if a == "" || b == "" || a == b {
		t.Errorf("addresses on the bridge %q and %q, want two", a, b)
	}
	f.SetIP("b", "127.0.0.1")
	if ip, err := f.ContainerIP(ctx, "b", "bridge"); err != nil || ip != "127.0.0.1" {
		t.Errorf("ContainerIP after SetIP = %q, %v", ip, err)
	}
	if ip, err := f.ContainerIP(ctx, "h", "host"); err != nil || ip != "" {
		t.Errorf("ContainerIP on the host's network = %q, %v; want none", ip, err)
	}
}

// A streaming script sees stdin as it comes and takes precedence over
// SetExec's.
func TestExecStream(t *testing.T) {
	f := running(t)
	f.SetExec(func(string, []string, []byte) (engine.Exit, string, string) { return engine.Exit{Code: 9}, "", "" })
	f.SetExecStream(func(name string, cmd []string, stdin io.Reader, stdout, stderr io.Writer) engine.Exit {
		in, _ := io.ReadAll(stdin)
		fmt.Fprintf(stdout, "%s %q %q", name, cmd, in)
		return engine.Exit{Code: 2}
	})
	var out bytes.Buffer
	exit, err := f.Exec(ctx, "c", []string{"cat"}, nil, &out, nil)
	if want := `c ["cat"] ""`; err != nil || exit.Code != 2 || out.String() != want {
		t.Errorf("Exec = %+v, %v, stdout %q; want code 2 and %q", exit, err, out.String(), want)
	}
}

func TestContainerLogs(t *testing.T) {
	f := New()
	f.AddImage("svc")
	must(t, f.CreateContainer(ctx, engine.ContainerSpec{Name: "c", Image: "svc"}))
	f.SetLogs("c", "one\ntwo\nthree\n")
	for lines, want := range map[int]string{1: "three\n", 2: "two\nthree\n", 10: "one\ntwo\nthree\n"} {
		if got, err := f.ContainerLogs(ctx, "c", lines); err != nil || got != want {
			t.Errorf("ContainerLogs(%d) = %q, %v; want %q", lines, got, err, want)
		}
	}
	if _, err := f.ContainerLogs(ctx, "gone", 5); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("ContainerLogs of a missing container = %v", err)
	}
}

// A network made again under the same name has another id, as with
// Docker: removing the first by its id leaves the second alone.
func TestNetworkIDsAreFresh(t *testing.T) {
	f := New()
	must(t, f.CreateNetwork(ctx, engine.NetworkSpec{Name: "net", Labels: map[string]string{"k": "v"}}))
	rs, err := f.List(ctx, map[string]string{"k": "v"})
	if err != nil || len(rs) != 1 || rs[0].ID == "" || rs[0].ID != f.NetworkID("net") {
		t.Fatalf("List = %+v, %v; want the network with its id", rs, err)
	}
	first := rs[0].ID
	must(t, f.Remove(ctx, engine.Resource{Type: engine.Network, Name: "net"}))
	f.AddNetwork("net", nil)
	if second := f.NetworkID("net"); second == "" || second == first {
		t.Fatalf("the network made again has id %q, the first had %q", second, first)
	}
	must(t, f.Remove(ctx, engine.Resource{Type: engine.Network, Name: first}))
	if !f.HasNetwork("net") {
		t.Error("removing the first network by its id removed the second")
	}
	must(t, f.Remove(ctx, engine.Resource{Type: engine.Network, Name: f.NetworkID("net")}))
	if f.HasNetwork("net") {
		t.Error("removing the network by its id left it")
	}
}
