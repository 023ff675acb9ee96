package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// seaweed is a SeaweedFS store on loopback, started by the project's own
// script (scripts/seaweedfs.sh) for one test.
type seaweed struct {
	url    string
	pid    int
	keys   string // the directory of the credential files
	client *minio.Client
}

const (
	seaweedAccess = "AKIDWARMCACHE"
	seaweedSecret = "warmcache-e2e-secret"
)

// startSeaweed starts a store with one identity and stops it when the
// test ends.
func startSeaweed(t testing.TB) *seaweed {
	t.Helper()
	dir := t.TempDir()
	conf := fmt.Sprintf(`{"identities":[{"name":"ci","credentials":[{"accessKey":%q,"secretKey":%q}],"actions":["Admin","Read","Write","List","Tagging"]}]}`,
		seaweedAccess, seaweedSecret)
	if err := os.WriteFile(filepath.Join(dir, "s3.json"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	port := freePortRange(t)
	cmd := exec.Command("../../scripts/seaweedfs.sh", "start", filepath.Join(dir, "data"), strconv.Itoa(port), filepath.Join(dir, "s3.json"))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("starting SeaweedFS: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("scripts/seaweedfs.sh start printed %q", out)
	}
	s := &seaweed{url: fmt.Sprintf("http://127.0.0.1:%d", port), pid: pid, keys: t.TempDir()}
	t.Cleanup(func() { s.stop(t) })
	for name, v := range map[string]string{"access": seaweedAccess, "secret": seaweedSecret, "wrong": "not-the-secret"} {
		if err := os.WriteFile(filepath.Join(s.keys, name), []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s.client, err = minio.New(fmt.Sprintf("127.0.0.1:%d", port), &minio.Options{
		Creds: credentials.NewStaticV4(seaweedAccess, seaweedSecret, ""), BucketLookup: minio.BucketLookupPath})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// stop ends the store and waits until it is gone.
func (s *seaweed) stop(t testing.TB) {
	p, err := os.FindProcess(s.pid)
	if err != nil {
		return
	}
	_ = p.Signal(syscall.SIGTERM)
	deadline := time.Now().Add(20 * time.Second)
	for p.Signal(syscall.Signal(0)) == nil && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	_ = p.Signal(syscall.SIGKILL)
}

// freePortRange picks a port p with p..p+5 and their +10000 gRPC ports
// free (the store's S3, master, volume and filer ports).
func freePortRange(t testing.TB) int {
	t.Helper()
	for range 50 {
		p := 20000 + rand.IntN(9000)
		free := true
		for _, q := range []int{p, p + 1, p + 2, p + 3, p + 10000, p + 10001, p + 10002, p + 10003} {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", q))
			if err != nil {
				free = false
				break
			}
			l.Close()
		}
		if free {
			return p
		}
	}
	t.Fatal("no free port range for SeaweedFS")
	return 0
}

// fleetHost is one runner host of a fleet sharing a store: the pool's
// name, its own state directory and log file.
type fleetHost struct {
	pool     gcPool
	log      string
	store    *seaweed
	secret   string // the secret key file's name in store.keys
	publish  string
	interval string
}

func newFleetHost(t testing.TB, pool string, store *seaweed) fleetHost {
	return fleetHost{pool: gcPool{name: pool, stateDir: t.TempDir()}, log: filepath.Join(t.TempDir(), "warmcache.log"),
		store: store, secret: "secret", publish: "protected", interval: "0s"}
}

func (h fleetHost) config() string {
	return h.pool.config("") + fmt.Sprintf("[cache.remote]\nurl = %q\nbucket = \"warmcache-e2e\"\nprefix = %q\n"+
		"access_key_file = %q\nsecret_key_file = %q\npublish = %q\nmin_interval = %q\n[log]\nfile = %q\n",
		h.store.url, h.pool.name, filepath.Join(h.store.keys, "access"), filepath.Join(h.store.keys, h.secret),
		h.publish, h.interval, h.log)
}

// publishesDone counts the publish-caches processes that ended, in the
// host's log.
func (h fleetHost) publishesDone() int {
	data, _ := os.ReadFile(h.log)
	n := 0
	for _, line := range strings.Split(string(data), "\n") {
		if strings.Contains(line, `"stage":"publish-caches"`) && (strings.Contains(line, "stage finished") || strings.Contains(line, "stage failed")) {
			n++
		}
	}
	return n
}

// waitPublishes waits until n publish-caches processes of the host ended.
func (h fleetHost) waitPublishes(t testing.TB, n int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for h.publishesDone() < n {
		if time.Now().After(deadline) {
			data, _ := os.ReadFile(h.log)
			t.Fatalf("%d publishes ended, want %d; log:\n%s", h.publishesDone(), n, data)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if data, _ := os.ReadFile(h.log); strings.Contains(string(data), "publishing a cache to the fleet cache") {
		t.Fatalf("a publish failed:\n%s", data)
	}
}

// fleetMod is the line the go module cache's restore gives.
const fleetMod = "Cache go /go/pkg/mod: "

// TestFleetCache: a protected job on host A publishes its caches; on a
// fresh host B (no volumes, no records) the next protected job finds them
// restored; an unprotected job seeds from the protected snapshot, and what
// it publishes never reaches a protected job.
func TestFleetCache(t *testing.T) {
	store := startSeaweed(t)
	project := nextJobID()
	pool := fmt.Sprintf("e2e-fleet-%d", project)
	marker := fmt.Sprintf("fleet-%d", project)
	a := newFleetHost(t, pool, store)
	// Some megabytes of incompressible module downloads, and a marker.
	write := "mkdir -p /go/pkg/mod/cache/download/example.com && head -c 8388608 /dev/urandom > /go/pkg/mod/cache/download/example.com/v1.zip && " +
		"echo " + marker + " > /go/pkg/mod/cache/download/marker.txt\n"
	p, _ := runStep(t, jobSpec{ProjectID: project, Protected: true, Config: a.config()}, write)
	if !strings.Contains(p, fleetMod+"cold, no snapshot in the fleet cache yet") {
		t.Fatalf("first job of the fleet should find no snapshot:\n%s", p)
	}
	a.waitPublishes(t, 1)

	// Host B: a fresh host.
	removeProjectCaches(t, project)
	b := newFleetHost(t, pool, store)
	start := time.Now()
	p, out := runStep(t, jobSpec{ProjectID: project, Protected: true, Config: b.config()}, "cat /go/pkg/mod/cache/download/marker.txt\n")
	t.Logf("fresh-host job: %s", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(p, fleetMod+"restored 8.0 MiB from the fleet cache in ") || !strings.Contains(out, marker) {
		t.Fatalf("fresh host: want the cache restored with %s:\n%s\nstdout: %s", marker, p, out)
	}
	logRestore(t, p)
	b.waitPublishes(t, 1) // its own first publish (a new record), before the volumes go

	// An unprotected job seeds from the protected snapshot; with publish
	// = "all" it publishes, under its own trust class.
	c := newFleetHost(t, pool, store)
	c.publish = "all"
	p, out = runStep(t, jobSpec{ProjectID: project, Config: c.config()},
		"cat /go/pkg/mod/cache/download/marker.txt; echo poison > /go/pkg/mod/cache/download/poison.txt\n")
	if !strings.Contains(p, "(the protected snapshot, read-only seeding)") || !strings.Contains(out, marker) {
		t.Fatalf("unprotected job: want the protected snapshot seeded:\n%s\nstdout: %s", p, out)
	}
	c.waitPublishes(t, 1)
	n := 0
	for o := range store.client.ListObjects(context.Background(), "warmcache-e2e", minio.ListObjectsOptions{Prefix: pool + "/", Recursive: true}) {
		if strings.Contains(o.Key, "/unprotected/") && strings.HasSuffix(o.Key, "/latest") {
			n++
		}
	}
	if n == 0 {
		t.Fatal("the unprotected job published nothing under its own trust class")
	}
	// The admin's view, and doctor's probe of the store.
	admin := newJob(t, jobSpec{ProjectID: project, Config: c.config()})
	ls := admin.call("cache", "ls", "--remote")
	for _, want := range []string{"TRUST", fmt.Sprint(project), "/go/pkg/mod", "protected", "unprotected"} {
		if ls.Code != 0 || !strings.Contains(ls.Stdout, want) {
			t.Fatalf("cache ls --remote lacks %q: %s", want, ls)
		}
	}
	if gc := admin.call("cache", "gc", "--remote", "--dry-run"); gc.Code != 0 || !strings.Contains(gc.Stdout, "fleet cache: would remove 0 objects") {
		t.Fatalf("cache gc --remote: %s", gc)
	}
	if doc := admin.call("doctor"); !strings.Contains(doc.Stdout, "ok   fleet cache: "+store.url+" bucket warmcache-e2e: reachable, write/read/delete ok") {
		t.Fatalf("doctor: %s", doc)
	}

	removeProjectCaches(t, project)
	d := newFleetHost(t, pool, store)
	p, out = runStep(t, jobSpec{ProjectID: project, Protected: true, Config: d.config()},
		"cat /go/pkg/mod/cache/download/marker.txt; ls /go/pkg/mod/cache/download/\n")
	if !strings.Contains(p, fleetMod+"restored ") || strings.Contains(p, "seeding") || strings.Contains(out, "poison") {
		t.Fatalf("protected job after an unprotected publish:\n%s\nstdout: %s", p, out)
	}
	d.waitPublishes(t, 1)

	// The store's credentials reach no job output, container or log.
	e := newFleetHost(t, pool, store)
	j := newJob(t, jobSpec{ProjectID: project, Protected: true, Config: e.config()})
	pr := j.prepare()
	r := j.run("build_script", runnerScript("env; echo more > /go/pkg/mod/more.txt\n"))
	if pr.Code != 0 || r.Code != 0 {
		t.Fatalf("job: %s\n%s", pr, r)
	}
	e.waitPublishes(t, 1)
	noSecretsAnywhere(t, j, e.log, []result{pr, r}, seaweedSecret, seaweedAccess)
}

// logRestore logs the restore's figures from the prepare log.
func logRestore(t testing.TB, prepare string) {
	for _, line := range strings.Split(prepare, "\n") {
		if strings.Contains(line, "from the fleet cache in") {
			t.Log(strings.TrimSpace(line))
		}
	}
}

// TestFleetCacheFailuresAreCold: wrong credentials, a truncated
// snapshot, a tampered checksum and a stopped store each give a cold cache, one clear line, and a job
// that passes.
func TestFleetCacheFailuresAreCold(t *testing.T) {
	store := startSeaweed(t)
	project := nextJobID()
	pool := fmt.Sprintf("e2e-fleetfail-%d", project)
	a := newFleetHost(t, pool, store)
	runStep(t, jobSpec{ProjectID: project, Protected: true, Config: a.config()}, "echo x > /go/pkg/mod/marker.txt\n")
	a.waitPublishes(t, 1)

	coldJob := func(h fleetHost, want string) {
		t.Helper()
		removeProjectCaches(t, project)
		p, out := runStep(t, jobSpec{ProjectID: project, Protected: true, Config: h.config()}, "cat /go/pkg/mod/marker.txt 2>&1 || echo cold\n")
		var lines []string
		for _, l := range strings.Split(p, "\n") {
			if strings.Contains(l, fleetMod) {
				lines = append(lines, strings.TrimSpace(l))
			}
		}
		if len(lines) != 1 || !strings.Contains(lines[0], want) || !strings.HasSuffix(lines[0], "; starting cold") || !strings.Contains(out, "cold") {
			t.Fatalf("want one line with %q and a cold cache; got %q\nstdout: %s", want, lines, out)
		}
		if strings.Contains(p, seaweedSecret) {
			t.Fatal("the secret key in the job log")
		}
		t.Log(lines[0])
	}

	// Wrong credentials.
	wrong := newFleetHost(t, pool, store)
	wrong.secret, wrong.publish = "wrong", "none"
	coldJob(wrong, "signature")

	// A tampered checksum in the pointer.
	ctx := context.Background()
	var latest string
	for o := range store.client.ListObjects(ctx, "warmcache-e2e", minio.ListObjectsOptions{Prefix: pool + "/", Recursive: true}) {
		if strings.Contains(o.Key, "/go/%2Fgo%2Fpkg%2Fmod/latest") {
			latest = o.Key
		}
	}
	obj, err := store.client.GetObject(ctx, "warmcache-e2e", latest, minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(obj)
	if err != nil {
		t.Fatalf("reading %q: %v", latest, err)
	}
	var ptr map[string]any
	if err := json.Unmarshal(data, &ptr); err != nil {
		t.Fatal(err)
	}
	put := func(key string, data []byte) {
		t.Helper()
		if _, err := store.client.PutObject(ctx, "warmcache-e2e", key, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// A truncated snapshot.
	snapshot := ptr["snapshot"].(string)
	obj, err = store.client.GetObject(ctx, "warmcache-e2e", snapshot, minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	full, err := io.ReadAll(obj)
	if err != nil {
		t.Fatal(err)
	}
	put(snapshot, full[:len(full)/2])
	truncated := newFleetHost(t, pool, store)
	truncated.publish = "none"
	coldJob(truncated, "its pointer says")
	put(snapshot, full)

	ptr["sha256"] = strings.Repeat("0", 64)
	data, _ = json.Marshal(ptr)
	put(latest, data)
	tampered := newFleetHost(t, pool, store)
	tampered.publish = "none"
	coldJob(tampered, "sha256 is not its pointer's")

	// The store stopped.
	store.stop(t)
	down := newFleetHost(t, pool, store)
	coldJob(down, "fleet cache not used (")
	if doc := newJob(t, jobSpec{ProjectID: project, Config: down.config()}).call("doctor"); !strings.Contains(doc.Stdout, "FAIL fleet cache: "+store.url) {
		t.Fatalf("doctor with the store down: %s", doc)
	}
}

// BenchmarkFleetCache compares, on the sample Go project: the cold job
// (which publishes), the warm job on the same host, and the job on a
// fresh host restored from the store (GOPROXY=off: it cannot download);
// with the restore's throughput and the publish's time.
func BenchmarkFleetCache(b *testing.B) {
	proxy, srv := goModProxy(b), sampleGitServer(b)
	store := startSeaweed(b)
	build := "go build -o /dev/null ./...\n"
	onHostNetwork := func(h fleetHost) string { return strings.Replace(h.config(), defaultConfig, hostNetworkConfig, 1) }
	for i := 0; i < b.N; i++ {
		project := nextJobID()
		pool := fmt.Sprintf("e2e-fleetbench-%d", project)
		a := newFleetHost(b, pool, store)
		cold := goProjectJob(b, srv, proxy, jobSpec{ProjectID: project, Protected: true, Config: onHostNetwork(a)}, "", build, "")
		a.waitPublishes(b, 1)
		publish := publishTook(b, a.log)
		quiet := newFleetHost(b, pool, store)
		quiet.publish = "none"
		warm := goProjectJob(b, srv, proxy, jobSpec{ProjectID: project, Protected: true, Config: onHostNetwork(quiet), Vars: map[string]string{"GOPROXY": "off"}}, "", build, "")

		removeProjectCaches(b, project)
		fresh := newFleetHost(b, pool, store)
		fresh.publish = "none"
		j := goProjectJob(b, srv, proxy, jobSpec{ProjectID: project, Protected: true, Config: onHostNetwork(fresh), Vars: map[string]string{"GOPROXY": "off"}}, "", build, "")
		b.ReportMetric(cold["job"].Seconds(), "s/cold-job")
		b.ReportMetric(warm["job"].Seconds(), "s/warm-job")
		b.ReportMetric(j["job"].Seconds(), "s/fresh-host-job")
		b.ReportMetric(j["prepare"].Seconds(), "s/fresh-host-prepare")
		b.ReportMetric(float64(j["job"])/float64(cold["job"]), "fresh-host-job/cold-job")
		b.ReportMetric(publish.Seconds(), "s/publish")
		bytes, took := restoreTook(b, fresh.log)
		b.ReportMetric(float64(bytes)/1e6/took.Seconds(), "restore-MB/s")
		b.ReportMetric(float64(bytes)/1e6, "MB/restored")
		removeProjectCaches(b, project)
	}
}

// publishTook is how long the publish-caches processes in log took, in all.
func publishTook(b testing.TB, log string) time.Duration {
	data, err := os.ReadFile(log)
	if err != nil {
		b.Fatal(err)
	}
	var total time.Duration
	for _, line := range strings.Split(string(data), "\n") {
		var entry struct {
			Stage, Msg string
			Took       float64
		}
		if json.Unmarshal([]byte(line), &entry) == nil && entry.Stage == "publish-caches" && entry.Msg == "stage finished" {
			total += time.Duration(entry.Took * float64(time.Second))
		}
	}
	return total
}

// restoreTook is what the restores in log restored, and in how long.
func restoreTook(b testing.TB, log string) (int64, time.Duration) {
	data, err := os.ReadFile(log)
	if err != nil {
		b.Fatal(err)
	}
	var bytes int64
	var total time.Duration
	for _, line := range strings.Split(string(data), "\n") {
		var entry struct {
			Msg          string
			ContentBytes int64 `json:"content_bytes"`
			Took         float64
		}
		if json.Unmarshal([]byte(line), &entry) == nil && entry.Msg == "restored a cache from the fleet cache" {
			bytes += entry.ContentBytes
			total += time.Duration(entry.Took * float64(time.Second))
		}
	}
	if total == 0 {
		b.Fatalf("no restore in %s", log)
	}
	return bytes, total
}

// TestFleetCacheSampleApp: host A builds the sample Go project (modules
// from the loopback proxy) and publishes; on a fresh host the next job,
// with GOPROXY=off, builds from the caches restored from the store.
func TestFleetCacheSampleApp(t *testing.T) {
	proxy, srv := goModProxy(t), sampleGitServer(t)
	store := startSeaweed(t)
	project := nextJobID()
	pool := fmt.Sprintf("e2e-fleetapp-%d", project)
	job := func(h fleetHost, goproxy string) (prepare string, took time.Duration) {
		t.Helper()
		start := time.Now()
		j := newJob(t, jobSpec{ProjectID: project, Protected: true,
			Config: strings.Replace(h.config(), defaultConfig, hostNetworkConfig, 1),
			Vars:   map[string]string{"GOPROXY": goproxy, "GOSUMDB": "off", "GOFLAGS": "-mod=mod"}})
		p := j.prepare()
		if p.Code != 0 {
			t.Fatalf("prepare: %s", p)
		}
		if r := j.run("get_sources", sampleScript(t, "get_sources", srv)); r.Code != 0 {
			t.Fatalf("get_sources: %s", r)
		}
		if r := j.run("build_script", j.Script("go build -o /dev/null ./...\n")); r.Code != 0 {
			t.Fatalf("build_script (GOPROXY=%s): %s\nprepare: %s", goproxy, r, p.Stderr)
		}
		if c := j.cleanup(); c.Code != 0 {
			t.Fatalf("cleanup: %s", c)
		}
		return p.Stderr, time.Since(start)
	}
	a := newFleetHost(t, pool, store)
	_, cold := job(a, proxy)
	a.waitPublishes(t, 1)

	removeProjectCaches(t, project)
	b := newFleetHost(t, pool, store)
	b.publish = "none"
	p, fresh := job(b, "off")
	if !strings.Contains(p, fleetMod+"restored ") || !strings.Contains(p, "Cache go /root/.cache/go-build: restored ") {
		t.Fatalf("fresh host: want both Go caches restored:\n%s", p)
	}
	logRestore(t, p)
	t.Logf("cold job %s, fresh-host job %s (%.2fx)", cold.Round(time.Millisecond), fresh.Round(time.Millisecond), float64(fresh)/float64(cold))
}
