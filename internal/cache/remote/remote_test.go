package remote

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"github.com/minio/minio-go/v7"
	"go.uber.org/zap"

	"github.com/warmcache/warmcache/internal/cache/record"
	"github.com/warmcache/warmcache/internal/config"
	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/host"
	"github.com/warmcache/warmcache/internal/naming"
)

// dirs is an engine whose volumes are temporary directories.
type dirs map[string]string

func (d dirs) InspectVolume(_ context.Context, name string) (engine.VolumeInfo, error) {
	dir, ok := d[name]
	if !ok {
		return engine.VolumeInfo{}, engine.ErrNotFound
	}
	return engine.VolumeInfo{Name: name, Mountpoint: dir}, nil
}

type fixture struct {
	tier *Tier
	dirs dirs
	s3   *minio.Client
}

// newFixture is a tier on an in-process fake S3 store.
func newFixture(t *testing.T) fixture {
	t.Helper()
	srv := httptest.NewServer(gofakes3.New(s3mem.New()).Server())
	t.Cleanup(srv.Close)
	keys := t.TempDir()
	os.WriteFile(filepath.Join(keys, "access"), []byte("AKID\n"), 0o600)
	os.WriteFile(filepath.Join(keys, "secret"), []byte("SECRET\n"), 0o600)
	cfg := config.Default().Cache.Remote
	cfg.URL, cfg.Prefix = srv.URL, "fleet"
	cfg.AccessKeyFile, cfg.SecretKeyFile = filepath.Join(keys, "access"), filepath.Join(keys, "secret")
	d := dirs{}
	tier := New(cfg, host.New(d, nil), zap.NewNop())
	tier.TempDir = t.TempDir()
	c, err := tier.client()
	if err != nil {
		t.Fatal(err)
	}
	return fixture{tier: tier, dirs: d, s3: c}
}

// volume makes a volume of trust with files in it.
func (f fixture) volume(t *testing.T, name, trust string, files map[string]string) Volume {
	dir := t.TempDir()
	f.dirs[name] = dir
	for n, content := range files {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, n)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, n), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return Volume{Name: name, Profile: "go", Path: "/go/pkg/mod", Labels: map[string]string{
		naming.LabelCacheInstance: "gitlab.example.com", naming.LabelCacheProjectID: "42",
		naming.LabelCacheTrust: trust,
	}}
}

func entries(t *testing.T, dir string) []string {
	var out []string
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			b, _ := os.ReadFile(p)
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel+"="+string(b))
		}
		return nil
	})
	return out
}

func TestPublishRestore(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	src := f.volume(t, "src", "protected", map[string]string{"cache/download/a/@v/v1.zip": strings.Repeat("z", 100000), "b": "bee"})
	if _, err := f.tier.Publish(ctx, src, 100003); err != nil {
		t.Fatal(err)
	}
	dst := f.volume(t, "dst", "protected", nil)
	r := f.tier.Restore(ctx, dst)
	line, ok := r.Line, r.OK
	if !ok || !strings.Contains(line, "Cache go /go/pkg/mod: restored 97.7 KiB from the fleet cache in ") {
		t.Fatalf("restore: %v %q", ok, line)
	}
	if got, want := entries(t, f.dirs["dst"]), entries(t, f.dirs["src"]); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("restored %v, want %v", got, want)
	}

	// An unprotected job seeds from the protected snapshot; its own
	// publish goes under its own trust class and changes nothing there.
	un := f.volume(t, "un", "unprotected", nil)
	if r := f.tier.Restore(ctx, un); !r.OK || !strings.Contains(r.Line, "read-only seeding") {
		t.Fatalf("unprotected restore: %+v", r)
	}
	os.WriteFile(filepath.Join(f.dirs["un"], "poison"), []byte("x"), 0o644)
	if _, err := f.tier.Publish(ctx, un, 1); err != nil {
		t.Fatal(err)
	}
	again := f.volume(t, "again", "protected", nil)
	if r := f.tier.Restore(ctx, again); !r.OK {
		t.Fatal("protected restore after an unprotected publish failed")
	}
	if _, err := os.Stat(filepath.Join(f.dirs["again"], "poison")); err == nil {
		t.Fatal("a protected job restored what an unprotected job published")
	}
}

func TestRestoreNothingThere(t *testing.T) {
	f := newFixture(t)
	// The unprotected snapshot never seeds a protected cache.
	un := f.volume(t, "un", "unprotected", map[string]string{"a": "a"})
	if _, err := f.tier.Publish(context.Background(), un, 1); err != nil {
		t.Fatal(err)
	}
	p := f.volume(t, "p", "protected", nil)
	r := f.tier.Restore(context.Background(), p)
	line, ok := r.Line, r.OK
	if ok || line != "Cache go /go/pkg/mod: cold, no snapshot in the fleet cache yet" {
		t.Fatalf("%v %q", ok, line)
	}
}

func TestRestoreTamperedSnapshotIsCold(t *testing.T) {
	for _, tc := range []struct {
		name, want string
		tamper     func(data []byte) []byte
	}{
		{"flipped byte", "sha256 is not its pointer's", func(b []byte) []byte { b[len(b)/2] ^= 1; return b }},
		{"truncated", "its pointer says", func(b []byte) []byte { return b[:len(b)/2] }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			ctx := context.Background()
			src := f.volume(t, "src", "protected", map[string]string{"a": strings.Repeat("a", 50000)})
			if _, err := f.tier.Publish(ctx, src, 50000); err != nil {
				t.Fatal(err)
			}
			p, err := f.tier.readPointer(ctx, f.s3, f.tier.base(src, "protected"))
			if err != nil {
				t.Fatal(err)
			}
			obj, _ := f.s3.GetObject(ctx, "warmcache", p.Snapshot, minio.GetObjectOptions{})
			var buf bytes.Buffer
			buf.ReadFrom(obj)
			data := tc.tamper(buf.Bytes())
			if _, err := f.s3.PutObject(ctx, "warmcache", p.Snapshot, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{}); err != nil {
				t.Fatal(err)
			}
			dst := f.volume(t, "dst", "protected", nil)
			r := f.tier.Restore(ctx, dst)
			line, ok := r.Line, r.OK
			if ok || !strings.Contains(line, "fleet cache not used") || !strings.Contains(line, tc.want) || !strings.HasSuffix(line, "; starting cold") {
				t.Fatalf("%v %q", ok, line)
			}
			if e := entries(t, f.dirs["dst"]); len(e) != 0 {
				t.Fatalf("volume kept %v", e)
			}
		})
	}
}

func TestRestoreStoreDownIsCold(t *testing.T) {
	f := newFixture(t)
	f.tier.cfg.URL = "http://127.0.0.1:1"
	r := f.tier.Restore(context.Background(), f.volume(t, "v", "protected", nil))
	line, ok := r.Line, r.OK
	if ok || !strings.Contains(line, "fleet cache not used") {
		t.Fatalf("%v %q", ok, line)
	}
	if strings.Contains(line, "SECRET") || strings.Contains(line, "AKID") {
		t.Fatalf("a credential in the job log: %q", line)
	}
	// The next cache of the same prepare does not wait for it again.
	start := time.Now()
	if r := f.tier.Restore(context.Background(), f.volume(t, "w", "protected", nil)); !r.Failed || r.Line != line || time.Since(start) > 100*time.Millisecond {
		t.Fatalf("second restore with the store down: %+v after %s", r, time.Since(start))
	}
}

func TestPublishKeepsTheNewestTwo(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	v := f.volume(t, "v", "protected", map[string]string{"a": "a"})
	for range 4 {
		if _, err := f.tier.Publish(ctx, v, 1); err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	for o := range f.s3.ListObjects(ctx, "warmcache", minio.ListObjectsOptions{Prefix: f.tier.base(v, "protected") + "/snapshots/", Recursive: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		n++
	}
	if n != keep {
		t.Fatalf("%d snapshots kept, want %d", n, keep)
	}
	if !strings.HasPrefix(f.tier.base(v, "protected"), "fleet/v1/-/gitlab.example.com/42/protected/go/%2Fgo%2Fpkg%2Fmod") {
		t.Fatalf("base %q", f.tier.base(v, "protected"))
	}
}

func TestShouldPublish(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		publish, trust string
		size           int64
		last           time.Time
		lastSize       int64
		want           bool
	}{
		{"protected", "protected", 10, time.Time{}, 0, true},
		{"protected", "unprotected", 10, time.Time{}, 0, false},
		{"all", "unprotected", 10, time.Time{}, 0, true},
		{"none", "protected", 10, time.Time{}, 0, false},
		{"all", "protected", 10, now.Add(-time.Hour), 10, false},   // unchanged
		{"all", "protected", 11, now.Add(-time.Minute), 10, false}, // too soon
		{"all", "protected", 11, now.Add(-11 * time.Minute), 10, true},
		{"all", "protected", 0, time.Time{}, 0, false}, // empty
	} {
		tier := &Tier{cfg: config.CacheRemote{Publish: tc.publish, MinInterval: 10 * time.Minute}}
		if got := tier.ShouldPublish(tc.trust, tc.size, tc.last, tc.lastSize, now); got != tc.want {
			t.Errorf("%+v: %v", tc, got)
		}
	}
}

func TestCredentialsReadAtEachUse(t *testing.T) {
	f := newFixture(t)
	os.WriteFile(f.tier.cfg.SecretKeyFile, nil, 0o600)
	if _, err := f.tier.client(); err == nil || strings.Contains(err.Error(), "SECRET") {
		t.Fatalf("empty secret file: %v", err)
	}
	os.Remove(f.tier.cfg.AccessKeyFile)
	if _, err := f.tier.Publish(context.Background(), f.volume(t, "v", "protected", nil), 1); err == nil {
		t.Fatal("published without credentials")
	}
}

// labelled is an engine whose volumes have the labels of f's volumes.
type labelled map[string]Volume

func (l labelled) InspectVolume(_ context.Context, name string) (engine.VolumeInfo, error) {
	v, ok := l[name]
	if !ok {
		return engine.VolumeInfo{}, engine.ErrNotFound
	}
	return engine.VolumeInfo{Name: name, Labels: v.Labels}, nil
}

// PublishVolumes publishes a changed cache of the job's trust class once
// per min_interval, reserving it in the cache's record.
func TestPublishVolumes(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	vols := labelled{}
	for name, trust := range map[string]string{"p": "protected", "u": "unprotected"} {
		v := f.volume(t, name, trust, map[string]string{"a": "first"})
		v.Labels[naming.LabelKind] = string(naming.KindCache)
		v.Labels[naming.LabelCacheProfile] = v.Profile
		v.Labels[naming.LabelCachePath] = v.Path
		vols[name] = v
	}
	records := record.Records{Dir: t.TempDir()}
	metrics := record.Metrics{Path: filepath.Join(t.TempDir(), "warmcache.prom"), StateDir: t.TempDir()}
	f.tier.cfg.Publish = config.PublishAll
	published := func(name string) int64 {
		r, err := records.Get(name)
		if err != nil {
			t.Fatal(err)
		}
		return r.PublishedBytes
	}
	if err := f.tier.PublishVolumes(ctx, vols, records, metrics, "protected", []string{"p", "u", "missing"}); err == nil {
		t.Fatal("a missing volume was not reported")
	}
	if published("p") != 5 || published("u") != 0 {
		t.Fatalf("published p %d, u %d: want p only (the job's trust class)", published("p"), published("u"))
	}
	// Changed, but within min_interval: not again.
	os.WriteFile(filepath.Join(f.dirs["p"], "a"), []byte("second"), 0o644)
	f.tier.cfg.MinInterval = time.Hour
	if err := f.tier.PublishVolumes(ctx, vols, records, metrics, "protected", []string{"p"}); err != nil || published("p") != 5 {
		t.Fatalf("published again within min_interval: %v %d", err, published("p"))
	}
	f.tier.cfg.MinInterval = 0
	if err := f.tier.PublishVolumes(ctx, vols, records, metrics, "protected", []string{"p"}); err != nil || published("p") != 6 {
		t.Fatalf("a changed cache was not published: %v %d", err, published("p"))
	}
	dst := f.volume(t, "dst", "protected", nil)
	if r := f.tier.Restore(ctx, dst); !r.OK {
		t.Fatal("restore failed")
	}
	if b, _ := os.ReadFile(filepath.Join(f.dirs["dst"], "a")); string(b) != "second" {
		t.Fatalf("restored %q, want the newest snapshot", b)
	}
	prom, _ := os.ReadFile(metrics.Path)
	for _, want := range []string{`warmcache_fleet_cache_publishes_total{result="ok"} 2`, "warmcache_fleet_cache_published_bytes_total 11"} {
		if !strings.Contains(string(prom), want) {
			t.Errorf("metrics lack %q:\n%s", want, prom)
		}
	}
}

// Probe creates the bucket, and writes, reads and deletes an object;
// without credentials, it says so.
func TestProbe(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.tier.cfg.Bucket = "fresh-bucket"
	if err := f.tier.Probe(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, err := f.s3.BucketExists(ctx, "fresh-bucket"); !ok || err != nil {
		t.Fatalf("bucket not created: %v", err)
	}
	for o := range f.s3.ListObjects(ctx, "fresh-bucket", minio.ListObjectsOptions{Recursive: true}) {
		t.Errorf("probe left %q", o.Key)
	}
	os.Remove(f.tier.cfg.AccessKeyFile)
	if err := f.tier.Probe(ctx); err == nil || !strings.Contains(err.Error(), "reading the store's credentials") {
		t.Fatalf("probe without credentials: %v", err)
	}
}

// List finds the newest snapshot of each cache key.
func TestList(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for name, trust := range map[string]string{"p": "protected", "u": "unprotected"} {
		v := f.volume(t, name, trust, map[string]string{"a": "abc"})
		v.Labels[naming.LabelCachePool] = "team-a"
		if _, err := f.tier.Publish(ctx, v, 3); err != nil {
			t.Fatal(err)
		}
	}
	snaps, err := f.tier.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(snaps) != 2 {
		t.Fatalf("snapshots %+v", snaps)
	}
	s := snaps[0]
	if s.Pool != "team-a" || s.Instance != "gitlab.example.com" || s.ProjectID != "42" || s.Trust != "protected" ||
		s.Profile != "go" || s.Path != "/go/pkg/mod" || s.ContentBytes != 3 || s.StoredBytes == 0 || s.Created.IsZero() {
		t.Fatalf("snapshot %+v", s)
	}
}

// GC removes the snapshots beyond the newest two of a key, never the
// pointed one, and whole keys idle over max_idle; a dry run removes nothing.
func TestGC(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	v := f.volume(t, "p", "protected", map[string]string{"a": "abc"})
	if _, err := f.tier.Publish(ctx, v, 3); err != nil {
		t.Fatal(err)
	}
	base := f.tier.base(v, "protected")
	for _, old := range []string{"00000000000000000001-a.tar.zst", "00000000000000000002-b.tar.zst"} {
		if _, err := f.s3.PutObject(ctx, "warmcache", base+"/snapshots/"+old, strings.NewReader("x"), 1, minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	count := func() int {
		n := 0
		for range f.s3.ListObjects(ctx, "warmcache", minio.ListObjectsOptions{Prefix: base + "/", Recursive: true}) {
			n++
		}
		return n
	}
	now := time.Now()
	if rs, err := f.tier.GC(ctx, 0, true, now); err != nil || len(rs) != 1 || count() != 4 {
		t.Fatalf("dry run: %v %v, %d objects", rs, err, count())
	}
	if rs, err := f.tier.GC(ctx, 0, false, now); err != nil || len(rs) != 1 || !strings.HasSuffix(rs[0].Key, "-a.tar.zst") || count() != 3 {
		t.Fatalf("gc: %v %v, %d objects", rs, err, count())
	}
	if r := f.tier.Restore(ctx, f.volume(t, "d", "protected", nil)); !r.OK {
		t.Fatalf("restore after gc: %+v", r)
	}
	if rs, err := f.tier.GC(ctx, time.Hour, false, now.Add(2*time.Hour)); err != nil || len(rs) != 3 || count() != 0 {
		t.Fatalf("idle gc: %v %v, %d objects", rs, err, count())
	}
}

// A store that stops in the middle of sending the snapshot gives a cold
// cache, and nothing of the snapshot in the volume.
func TestRestoreStoreStopsMidway(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	src := f.volume(t, "src", "protected", map[string]string{"a": strings.Repeat("a", 1<<20)})
	if _, err := f.tier.Publish(ctx, src, 1<<20); err != nil {
		t.Fatal(err)
	}
	// A proxy that sends half of every snapshot, then drops the connection.
	backend := f.tier.cfg.URL
	cut := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, _ := http.NewRequestWithContext(r.Context(), r.Method, backend+r.URL.RequestURI(), r.Body)
		req.Header = r.Header.Clone()
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		if !strings.Contains(r.URL.Path, "/snapshots/") {
			io.Copy(w, resp.Body)
			return
		}
		io.CopyN(w, resp.Body, resp.ContentLength/2)
		conn, _, _ := w.(http.Hijacker).Hijack()
		conn.Close()
	}))
	t.Cleanup(cut.Close)
	f.tier.cfg.URL = cut.URL
	r := f.tier.Restore(ctx, f.volume(t, "dst", "protected", nil))
	if r.OK || !r.Failed || !strings.HasSuffix(r.Line, "; starting cold") {
		t.Fatalf("%+v", r)
	}
	if e := entries(t, f.dirs["dst"]); len(e) != 0 {
		t.Fatalf("volume kept %v", e)
	}
	t.Log(r.Line)
}
