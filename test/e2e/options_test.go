package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"

	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/naming"
	"github.com/warmcache/warmcache/test/runnersim"
)

// capNetAdmin is CAP_NET_ADMIN's bit in /proc/self/status's CapEff.
const capNetAdmin = 12

// TestDockerOptionsInsideTheJob: the runner's container and network
// options have their effect inside the job's containers: a capability
// added, a DNS server (the job's queries reach it) and search domain,
// extra hosts, a tmpfs, a sysctl, a read-only host bind, a named volume,
// a volume of the job's own, and the MTU of the job's network.
func TestDockerOptionsInsideTheJob(t *testing.T) {
	hostDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(hostDir, "bound.txt"), []byte("bound-from-host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	named := fmt.Sprintf("wcopts-e2e-%d", nextJobID())
	t.Cleanup(func() { removeVolume(t, named) })
	dns := listenDNS(t)
	j := newJob(t, jobSpec{Config: defaultConfig + fmt.Sprintf(`cap_add = ["NET_ADMIN"]
dns = ["%s"]
dns_search = ["corp.example"]
extra_hosts = ["gitlab.corp.example:10.0.0.7"]
tmpfs = { "/scratch" = "rw,size=16m" }
sysctls = { "net.ipv4.ip_unprivileged_port_start" = "1000" }
volumes = ["%s:/hostdir:ro", "%s:/named", "/job-volume"]
network_mtu = 1400
`, dns.addr, hostDir, named)})
	if r := j.prepare(); r.Code != 0 {
		t.Fatalf("prepare: %s", r)
	}

	probe := fmt.Sprintf("wcopts-probe-%d", j.ID)
	r := j.run("build_script", runnerScript(`echo "capeff=$(grep '^CapEff:' /proc/self/status | cut -f2)"
echo "hosts=$(getent hosts gitlab.corp.example | tr -s ' ')"
echo "search=$(grep '^search' /etc/resolv.conf)"
echo "tmpfs=$(grep ' /scratch ' /proc/mounts | cut -d' ' -f1-3)"
echo "sysctl=$(cat /proc/sys/net/ipv4/ip_unprivileged_port_start)"
echo "bound=$(cat /hostdir/bound.txt)"
if echo changed 2>/dev/null > /hostdir/bound.txt; then echo "bound-write=allowed"; else echo "bound-write=refused"; fi
echo kept > /named/x && echo "named=$(cat /named/x)"
echo "job-volume=$(grep -c ' /job-volume ' /proc/mounts)"
echo "mtu=$(cat /sys/class/net/eth0/mtu)"
timeout 3 getent hosts `+probe+` >/dev/null || true
`))
	if r.Code != 0 {
		t.Fatalf("build_script: %s", r)
	}
	got := keyValues(r.Stdout)
	capEff, err := strconv.ParseUint(got["capeff"], 16, 64)
	if err != nil || capEff&(1<<capNetAdmin) == 0 {
		t.Errorf("cap_add NET_ADMIN: CapEff %q (%v), want bit %d set", got["capeff"], err, capNetAdmin)
	}
	for k, want := range map[string]string{
		"hosts":       "10.0.0.7 gitlab.corp.example",
		"search":      "search corp.example",
		"tmpfs":       "tmpfs /scratch tmpfs",
		"sysctl":      "1000",
		"bound":       "bound-from-host",
		"bound-write": "refused",
		"named":       "kept",
		"job-volume":  "1",
		"mtu":         "1400",
	} {
		if got[k] != want {
			t.Errorf("%s = %q, want %q\n%s", k, got[k], want, r)
		}
	}
	// The job's network resolves through the engine's embedded resolver
	// (nameserver 127.0.0.11), which asks the servers of docker.dns.
	if !dns.heard(probe) {
		t.Errorf("the DNS server of docker.dns (%s) never heard the job's query for %s", dns.addr, probe)
	}
	if content, err := os.ReadFile(filepath.Join(hostDir, "bound.txt")); err != nil || string(content) != "bound-from-host\n" {
		t.Errorf("the host file is now %q, %v", content, err)
	}

	// The helper (where get_sources runs) owns the network stack the build
	// container shares: the same MTU and hosts; the binds reach it too.
	r = j.run("get_sources", runnerScript("cat /sys/class/net/eth0/mtu\ngetent hosts gitlab.corp.example\ngrep '^search' /etc/resolv.conf\ncat /hostdir/bound.txt\n"))
	if r.Code != 0 || strings.Join(strings.Fields(r.Stdout), " ") != "1400 10.0.0.7 gitlab.corp.example search corp.example bound-from-host" {
		t.Errorf("get_sources in the helper: %s", r)
	}

	key := loadJob(t, j).Key()
	if r := j.cleanup(); r.Code != 0 {
		t.Fatalf("cleanup: %s", r)
	}
	if left := jobResources(t, j); len(left) != 0 {
		t.Errorf("after cleanup the job still has %v (its own volume is %s)", left, key.IndexedName(naming.KindVolume, 0))
	}
	// The admin's named volume is the admin's: it stays.
	if _, err := eng.InspectVolume(context.Background(), named); err != nil {
		t.Errorf("the named volume went with the job: %v", err)
	}
}

// keyValues reads "key=value" lines.
func keyValues(out string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

// dnsListener records the DNS queries sent to it and answers each that
// the name does not exist.
type dnsListener struct {
	addr string
	mu   sync.Mutex
	seen []byte
}

// listenDNS listens on port 53 of the engine's default bridge gateway
// (the engine's embedded resolver forwards to port 53 only), which every
// job network reaches through the host.
func listenDNS(t *testing.T) *dnsListener {
	t.Helper()
	iface, err := net.InterfaceByName("docker0")
	if err != nil {
		t.Fatalf("the engine's default bridge: %v", err)
	}
	addrs, err := iface.Addrs()
	if err != nil {
		t.Fatal(err)
	}
	var gw string
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
			gw = n.IP.String()
		}
	}
	if gw == "" {
		t.Fatalf("docker0 has no IPv4 address: %v", addrs)
	}
	conn, err := net.ListenPacket("udp4", net.JoinHostPort(gw, "53"))
	if err != nil {
		t.Fatalf("listening for DNS queries on %s:53: %v", gw, err)
	}
	t.Cleanup(func() { conn.Close() })
	l := &dnsListener{addr: gw}
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			l.mu.Lock()
			l.seen = append(l.seen, buf[:n]...)
			l.mu.Unlock()
			if n >= 12 {
				// The query itself, as a response (QR), NXDOMAIN (RCODE 3).
				resp := slices.Clone(buf[:n])
				resp[2] |= 0x80
				resp[3] = resp[3]&0xf0 | 3
				_, _ = conn.WriteTo(resp, from)
			}
		}
	}()
	return l
}

// heard says whether a query named label (as one label of the name).
func (l *dnsListener) heard(label string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Contains(l.seen, append([]byte{byte(len(label))}, label...))
}

// TestPrivilegedJob: with privileged = true the build container is
// created privileged, the helper is not; with services_privileged = true
// a service is. This engine (Docker 20.10 in a container whose bounding
// set lacks capabilities) cannot start a privileged container: prepare
// then fails as a system failure with one line naming the container and
// the cause, not the runtime's raw error. Where the engine can, the job
// runs with every capability.
func TestPrivilegedJob(t *testing.T) {
	for _, tt := range []struct {
		name, config string
		services     []runnersim.Service
		privileged   func(naming.JobKey) map[string]bool
		refused      string
	}{
		{
			name:   "build container",
			config: "privileged = true\nservices_privileged = false\n",
			privileged: func(k naming.JobKey) map[string]bool {
				return map[string]bool{k.Name(naming.KindBuild): true, k.Name(naming.KindHelper): false}
			},
			refused: "the build container",
		},
		{
			name:     "service",
			config:   "services_privileged = true\n",
			services: []runnersim.Service{{Name: httpdImage}},
			privileged: func(k naming.JobKey) map[string]bool {
				return map[string]bool{k.ServiceName(0): true, k.Name(naming.KindHelper): false}
			},
			refused: "service " + httpdImage,
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			j := newJob(t, jobSpec{Config: defaultConfig + tt.config, Services: tt.services})
			r := j.prepare()
			api := dockerAPI(t)
			for name, want := range tt.privileged(loadJob(t, j).Key()) {
				ins, err := api.ContainerInspect(context.Background(), name)
				if err != nil {
					t.Fatalf("inspecting %s after prepare: %v", name, err)
				}
				if ins.HostConfig.Privileged != want {
					t.Errorf("%s: HostConfig.Privileged = %v, want %v", name, ins.HostConfig.Privileged, want)
				}
			}
			if r.Code == 0 {
				t.Logf("this engine runs privileged containers")
				return
			}
			if r.Code != systemFailureCode {
				t.Fatalf("prepare: want exit %d (system failure), got %s", systemFailureCode, r)
			}
			want := "warmcache: the engine refused a privileged container: " + tt.refused +
				" (unable to apply caps: operation not permitted); this host's Docker cannot run privileged containers"
			if last := lastLine(r.Stderr); !strings.HasPrefix(last, want) {
				t.Errorf("last job-log line = %q\nwant it to start with %q", last, want)
			}
			if strings.Contains(r.Stderr, "OCI runtime") || strings.Contains(r.Stderr, "shim task") {
				t.Errorf("the runtime's raw error reached the job log:\n%s", r.Stderr)
			}
		})
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

// TestImageBuildFromJob: a job that binds the engine's socket and a
// docker CLI from the host builds an image, as many GitLab pipelines do.
func TestImageBuildFromJob(t *testing.T) {
	tag := fmt.Sprintf("warmcache-e2e/built-by-job:%d", nextJobID())
	t.Cleanup(func() {
		if _, err := dockerAPI(t).ImageRemove(context.Background(), tag, image.RemoveOptions{Force: true, PruneChildren: true}); err != nil {
			t.Errorf("removing %s: %v", tag, err)
		}
	})
	j := newJob(t, jobSpec{Config: defaultConfig + `volumes = ["/var/run/docker.sock:/var/run/docker.sock", "/usr/bin/docker:/usr/bin/docker:ro"]
`})
	if r := j.prepare(); r.Code != 0 {
		t.Fatalf("prepare: %s", r)
	}
	r := j.run("build_script", runnerScript(fmt.Sprintf(
		"printf 'FROM %s\\nRUN echo hi > /hi\\n' | docker build -t %s -\n", busyboxImage, tag)))
	if r.Code != 0 {
		t.Fatalf("docker build in the job: %s", r)
	}
	if _, err := eng.InspectImage(context.Background(), tag); err != nil {
		t.Fatalf("the image the job built: %v", err)
	}
	if r := j.cleanup(); r.Code != 0 {
		t.Fatalf("cleanup: %s", r)
	}
	// The image outlives the job, as under the Docker executor.
	if _, err := eng.InspectImage(context.Background(), tag); err != nil {
		t.Errorf("after cleanup: %v", err)
	}
}

// dockerAPI is a Docker client for what the engine contract does not
// show (a container's host config, removing an image).
func dockerAPI(t *testing.T) *client.Client {
	t.Helper()
	api, err := client.NewClientWithOpts(client.WithHost("unix:///var/run/docker.sock"), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { api.Close() })
	return api
}

// removeVolume removes a volume a test made outside warmcache's labels.
func removeVolume(t *testing.T, name string) {
	t.Helper()
	if err := eng.Remove(context.Background(), engine.Resource{Type: engine.Volume, Name: name}); err != nil {
		t.Errorf("removing volume %s: %v", name, err)
	}
}
