// Package remote is the caches' second tier: snapshots of cache volumes
// in an S3-compatible object store ([cache.remote]), so that a host new to
// a project starts warm.
//
// Layout in the bucket, per cache key (pool, GitLab instance, project,
// trust class, profile, path):
//
//	<prefix>/v1/<pool>/<instance>/<project id>/<trust>/<profile>/<path>/latest
//	<prefix>/v1/.../snapshots/<unix nanoseconds>-<random>.tar.zst
//
// A snapshot is a tar stream of the volume (host.Archive) compressed with
// zstd, uploaded under a key of its own; the pointer object "latest"
// (JSON: the snapshot's key, sha256 and size) is written after it, in one
// PUT, which makes the snapshot visible at once or not at all. A restore
// reads the pointer, downloads the snapshot into a temporary file while
// hashing it, and extracts it only when its size and sha256 are the
// pointer's.
//
// Trust: protected and unprotected jobs publish under their own trust
// class; an unprotected job whose own snapshot does not exist restores the
// protected one (read-only seeding), never the other way round.
//
// Credentials are read from their files at every use and go nowhere else:
// not into a log line, a job log, a container or a volume.
package remote

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"go.uber.org/zap"

	"github.com/warmcache/warmcache/internal/config"
	"github.com/warmcache/warmcache/internal/human"
	"github.com/warmcache/warmcache/internal/naming"
)

// Volumes is what the tier needs from the host: a volume's content as a
// tar stream, a fresh volume filled from one, its size (see host.Archive,
// host.Restore, host.Size).
type Volumes interface {
	Archive(ctx context.Context, volume string, w io.Writer) error
	Restore(ctx context.Context, volume string, r io.Reader) error
	Size(ctx context.Context, volume string) (int64, error)
}

// Volume is a cache volume: its name and its labels (the cache key).
type Volume struct {
	Name    string
	Profile string
	Path    string
	Labels  map[string]string
}

// Tier is the second cache tier of one config.
type Tier struct {
	cfg     config.CacheRemote
	volumes Volumes
	log     *zap.Logger
	// TempDir holds a snapshot while it is verified or uploaded ("":
	// os.TempDir); main sets the state directory, on disk, as /tmp may be
	// a tmpfs too small for a cache.
	TempDir string
	// unreachable is set once the store could not be reached (or gave
	// up in time): the process's next restores do not wait for it again,
	// so a prepare waits RestoreTimeout at most, not once per cache.
	unreachable error
}

// RestoreTimeout bounds a restore: past it, the job starts cold.
const RestoreTimeout = 2 * time.Minute

// PublishTimeout bounds a publish (off the job's critical path).
const PublishTimeout = 15 * time.Minute

// keep is how many snapshots of a key a publish leaves: the newest, and
// the one before, which a restore may still be reading.
const keep = 2

// New returns the tier cfg describes, or nil when it is not configured.
func New(cfg config.CacheRemote, volumes Volumes, log *zap.Logger) *Tier {
	if !cfg.Enabled() {
		return nil
	}
	return &Tier{cfg: cfg, volumes: volumes, log: log}
}

// pointer is the content of a key's "latest" object.
type pointer struct {
	Snapshot string    `json:"snapshot"`
	SHA256   string    `json:"sha256"`
	Size     int64     `json:"size"`
	Content  int64     `json:"content_bytes"`
	Created  time.Time `json:"created"`
}

// client reads the credentials from their files (so a rotation needs no
// restart) and returns a client of the store.
func (t *Tier) client() (*minio.Client, error) {
	u, err := url.Parse(t.cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("cache.remote.url: %w", err)
	}
	access, err := readKey(t.cfg.AccessKeyFile)
	if err != nil {
		return nil, err
	}
	secret, err := readKey(t.cfg.SecretKeyFile)
	if err != nil {
		return nil, err
	}
	return minio.New(u.Host, &minio.Options{
		Creds:        credentials.NewStaticV4(access, secret, ""),
		Secure:       u.Scheme == "https",
		Region:       t.cfg.Region,
		BucketLookup: minio.BucketLookupPath,
		MaxRetries:   2, // a store that is down makes a cold job, soon
	})
}

// readKey reads one credential file; its error never quotes the content.
func readKey(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("reading the store's credentials: %w", err)
	}
	k := strings.TrimSpace(string(b))
	if k == "" {
		return "", fmt.Errorf("reading the store's credentials: %s is empty", file)
	}
	return k, nil
}

// base is the key prefix of v's cache key under trust. The slot is not
// part of it: every slot of a host restores the same snapshot.
func (t *Tier) base(v Volume, trust string) string {
	l := v.Labels
	pool := l[naming.LabelCachePool]
	if pool == "" {
		pool = "-"
	}
	parts := []string{"v1", pool, l[naming.LabelCacheInstance], l[naming.LabelCacheProjectID], trust, v.Profile, v.Path}
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	if t.cfg.Prefix != "" {
		parts = append([]string{strings.Trim(t.cfg.Prefix, "/")}, parts...)
	}
	return strings.Join(parts, "/")
}

// protected is the protected trust class's label (profile.Protected).
const protected = "protected"

// Restored is what a restore did.
type Restored struct {
	Line   string // for the job log
	OK     bool   // the volume holds the snapshot
	Failed bool   // a failure left the volume cold (not: no snapshot yet)
	Bytes  int64  // of cache content restored
	Took   time.Duration
}

// Restore fills v, a cache volume new on this host (empty), from the
// newest snapshot of its cache key, bounded by RestoreTimeout. Any
// failure leaves the volume empty (a cold cache) and says so in the line:
// it never fails the job.
func (t *Tier) Restore(ctx context.Context, v Volume) Restored {
	ctx, cancel := context.WithTimeout(ctx, RestoreTimeout)
	defer cancel()
	start := time.Now()
	head := fmt.Sprintf("Cache %s %s", v.Profile, v.Path)
	p, from, err := pointer{}, "", t.unreachable
	if err == nil {
		p, from, err = t.restore(ctx, v)
	}
	took := time.Since(start)
	var netErr net.Error
	switch {
	case errors.Is(err, errNoSnapshot):
		return Restored{Line: fmt.Sprintf("%s: cold, no snapshot in the fleet cache yet", head), Took: took}
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		err = fmt.Errorf("gave up after %s", RestoreTimeout)
		t.unreachable = err
	case errors.As(err, &netErr):
		t.unreachable = err
	}
	if err != nil {
		t.log.Warn("restoring a cache from the fleet cache", zap.String("volume", v.Name), zap.Error(err))
		return Restored{Line: fmt.Sprintf("%s: fleet cache not used (%v); starting cold", head, oneLine(err)), Failed: true, Took: took}
	}
	t.log.Info("restored a cache from the fleet cache", zap.String("volume", v.Name), zap.String("snapshot", p.Snapshot),
		zap.Int64("content_bytes", p.Content), zap.Int64("snapshot_bytes", p.Size), zap.Duration("took", took))
	seed := ""
	if from != v.Labels[naming.LabelCacheTrust] {
		seed = " (the protected snapshot, read-only seeding)"
	}
	return Restored{Line: fmt.Sprintf("%s: restored %s from the fleet cache in %.1f s%s", head,
		human.Bytes(p.Content), took.Seconds(), seed), OK: true, Bytes: p.Content, Took: took}
}

var errNoSnapshot = errors.New("no snapshot")

func (t *Tier) restore(ctx context.Context, v Volume) (pointer, string, error) {
	c, err := t.client()
	if err != nil {
		return pointer{}, "", err
	}
	trusts := []string{v.Labels[naming.LabelCacheTrust]}
	if trusts[0] != protected {
		trusts = append(trusts, protected)
	}
	for _, trust := range trusts {
		p, err := t.readPointer(ctx, c, t.base(v, trust))
		if errors.Is(err, errNoSnapshot) {
			continue
		}
		if err != nil {
			return pointer{}, "", err
		}
		return p, trust, t.fetch(ctx, c, v, p)
	}
	return pointer{}, "", errNoSnapshot
}

func (t *Tier) readPointer(ctx context.Context, c *minio.Client, base string) (pointer, error) {
	obj, err := c.GetObject(ctx, t.cfg.Bucket, base+"/latest", minio.GetObjectOptions{})
	if err != nil {
		return pointer{}, err
	}
	defer obj.Close()
	b, err := io.ReadAll(io.LimitReader(obj, 64<<10))
	if err != nil {
		if code := minio.ToErrorResponse(err).Code; code == "NoSuchKey" || code == "NoSuchBucket" {
			return pointer{}, errNoSnapshot
		}
		return pointer{}, err
	}
	var p pointer
	if err := json.Unmarshal(b, &p); err != nil {
		return pointer{}, fmt.Errorf("the snapshot pointer %s/latest is not valid: %w", base, err)
	}
	if !strings.HasPrefix(p.Snapshot, base+"/snapshots/") || len(p.SHA256) != 64 || p.Size <= 0 {
		return pointer{}, fmt.Errorf("the snapshot pointer %s/latest is not valid", base)
	}
	return p, nil
}

// fetch downloads p's snapshot into a temporary file while hashing it,
// checks it against p, and only then extracts it into v.
func (t *Tier) fetch(ctx context.Context, c *minio.Client, v Volume, p pointer) error {
	obj, err := c.GetObject(ctx, t.cfg.Bucket, p.Snapshot, minio.GetObjectOptions{})
	if err != nil {
		return err
	}
	defer obj.Close()
	tmp, err := t.createTemp("warmcache-snapshot-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), io.LimitReader(obj, p.Size+1))
	if err != nil {
		return fmt.Errorf("downloading the snapshot: %w", err)
	}
	if n != p.Size {
		return fmt.Errorf("the snapshot is %d bytes, its pointer says %d", n, p.Size)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); sum != p.SHA256 {
		return fmt.Errorf("the snapshot's sha256 is not its pointer's")
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return err
	}
	dec, err := zstd.NewReader(tmp)
	if err != nil {
		return err
	}
	defer dec.Close()
	if err := t.volumes.Restore(ctx, v.Name, dec); err != nil {
		return fmt.Errorf("extracting the snapshot: %w", err)
	}
	return nil
}

// createTemp makes a temporary file in TempDir, made if missing.
func (t *Tier) createTemp(pattern string) (*os.File, error) {
	if t.TempDir != "" {
		if err := os.MkdirAll(t.TempDir, 0o700); err != nil {
			return nil, err
		}
	}
	return os.CreateTemp(t.TempDir, pattern)
}

// Publish uploads a snapshot of v, of size bytes of content, under its
// own trust class and makes it the newest; then removes all but the
// newest keep snapshots of the key. It returns the snapshot's size in
// the store.
func (t *Tier) Publish(ctx context.Context, v Volume, size int64) (int64, error) {
	c, err := t.client()
	if err != nil {
		return 0, err
	}
	if err := t.ensureBucket(ctx, c); err != nil {
		return 0, err
	}
	base := t.base(v, v.Labels[naming.LabelCacheTrust])
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	name := fmt.Sprintf("%s/snapshots/%020d-%s.tar.zst", base, time.Now().UnixNano(), hex.EncodeToString(rnd[:]))

	// Spooled to a temporary file first: its size and sha256 are known
	// before the upload, which is then one plain PUT (or multipart) that
	// every S3-compatible store takes, and the archive does not wait on
	// the network.
	tmp, err := t.createTemp("warmcache-publish-*")
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	h := sha256.New()
	enc, err := zstd.NewWriter(io.MultiWriter(tmp, h), zstd.WithEncoderLevel(zstd.SpeedFastest))
	if err != nil {
		return 0, err
	}
	err = t.volumes.Archive(ctx, v.Name, enc)
	if cerr := enc.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, fmt.Errorf("archiving the cache: %w", err)
	}
	n, err := tmp.Seek(0, io.SeekCurrent)
	if err != nil {
		return 0, err
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return 0, err
	}
	if _, err = c.PutObject(ctx, t.cfg.Bucket, name, tmp, n,
		minio.PutObjectOptions{ContentType: "application/zstd", PartSize: 64 << 20}); err != nil {
		return 0, fmt.Errorf("uploading the snapshot: %w", err)
	}
	p := pointer{Snapshot: name, SHA256: hex.EncodeToString(h.Sum(nil)), Size: n, Content: size, Created: time.Now().UTC()}
	if cur, err := t.readPointer(ctx, c, base); err == nil && cur.Created.After(p.Created) {
		// Another host made a newer snapshot visible meanwhile: it stays.
		_ = c.RemoveObject(ctx, t.cfg.Bucket, name, minio.RemoveObjectOptions{})
		return n, nil
	}
	b, _ := json.Marshal(p)
	if _, err := c.PutObject(ctx, t.cfg.Bucket, base+"/latest", strings.NewReader(string(b)), int64(len(b)),
		minio.PutObjectOptions{ContentType: "application/json"}); err != nil {
		_ = c.RemoveObject(ctx, t.cfg.Bucket, name, minio.RemoveObjectOptions{})
		return 0, fmt.Errorf("updating the snapshot pointer: %w", err)
	}
	t.prune(ctx, c, base, name)
	return n, nil
}

// prune removes the snapshots of base older than the newest keep (their
// names sort by time), never current (the one just made visible); a
// failure is only logged.
func (t *Tier) prune(ctx context.Context, c *minio.Client, base, current string) {
	var names []string
	for o := range c.ListObjects(ctx, t.cfg.Bucket, minio.ListObjectsOptions{Prefix: base + "/snapshots/", Recursive: true}) {
		if o.Err != nil {
			t.log.Warn("listing old snapshots", zap.Error(o.Err))
			return
		}
		names = append(names, o.Key)
	}
	slices.Sort(names)
	for _, n := range names[:max(0, len(names)-keep)] {
		if n == current {
			continue
		}
		if err := c.RemoveObject(ctx, t.cfg.Bucket, n, minio.RemoveObjectOptions{}); err != nil {
			t.log.Warn("removing an old snapshot", zap.String("key", n), zap.Error(err))
		}
	}
}

// ensureBucket creates the bucket when it does not exist.
func (t *Tier) ensureBucket(ctx context.Context, c *minio.Client) error {
	ok, err := c.BucketExists(ctx, t.cfg.Bucket)
	if err != nil {
		return fmt.Errorf("bucket %s: %v", t.cfg.Bucket, oneLine(err))
	}
	if ok {
		return nil
	}
	if err := c.MakeBucket(ctx, t.cfg.Bucket, minio.MakeBucketOptions{Region: t.cfg.Region}); err != nil {
		if code := minio.ToErrorResponse(err).Code; code == "BucketAlreadyOwnedByYou" || code == "BucketAlreadyExists" {
			return nil
		}
		return fmt.Errorf("bucket %s does not exist and could not be created: %v", t.cfg.Bucket, oneLine(err))
	}
	return nil
}

// ShouldPublish says whether a successful job of trust class trust
// publishes a snapshot of a cache of size bytes now, given when (and at
// what size) this host last published it.
func (t *Tier) ShouldPublish(trust string, size int64, last time.Time, lastSize int64, now time.Time) bool {
	switch t.cfg.Publish {
	case config.PublishNone:
		return false
	case config.PublishProtected:
		if trust != protected {
			return false
		}
	}
	if size <= 0 || size == lastSize {
		return false
	}
	return last.IsZero() || now.Sub(last) >= t.cfg.MinInterval || now.Before(last)
}

// oneLine keeps an error to its first line, for the job log; of a
// failed request, what failed (not the request's whole URL).
func oneLine(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

// Probe checks the store as doctor does: reachable with the credentials,
// the bucket there (created if it is not and the credentials allow), and
// a small object written, read back and deleted.
func (t *Tier) Probe(ctx context.Context) error {
	c, err := t.client()
	if err != nil {
		return err
	}
	if err := t.ensureBucket(ctx, c); err != nil {
		return err
	}
	key := strings.Trim(t.cfg.Prefix+"/doctor-probe", "/")
	body := "warmcache doctor " + time.Now().UTC().Format(time.RFC3339Nano)
	if _, err := c.PutObject(ctx, t.cfg.Bucket, key, strings.NewReader(body), int64(len(body)), minio.PutObjectOptions{}); err != nil {
		return fmt.Errorf("writing %s: %v", key, oneLine(err))
	}
	obj, err := c.GetObject(ctx, t.cfg.Bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return fmt.Errorf("reading %s: %v", key, oneLine(err))
	}
	got, err := io.ReadAll(obj)
	obj.Close()
	if err != nil || string(got) != body {
		return fmt.Errorf("reading %s: not what was written (%v)", key, err)
	}
	if err := c.RemoveObject(ctx, t.cfg.Bucket, key, minio.RemoveObjectOptions{}); err != nil {
		return fmt.Errorf("deleting %s: %v", key, oneLine(err))
	}
	return nil
}

// Snapshot is the newest snapshot of one cache key, as `cache ls
// --remote` shows it.
type Snapshot struct {
	Key          string    `json:"key"` // the key prefix in the bucket
	Pool         string    `json:"pool"`
	Instance     string    `json:"instance"`
	ProjectID    string    `json:"project_id"`
	Trust        string    `json:"trust"`
	Profile      string    `json:"profile"`
	Path         string    `json:"path"`
	ContentBytes int64     `json:"content_bytes"`
	StoredBytes  int64     `json:"stored_bytes"`
	Created      time.Time `json:"created"`
}

// List reads the pointer of every cache key in the store.
func (t *Tier) List(ctx context.Context) ([]Snapshot, error) {
	c, err := t.client()
	if err != nil {
		return nil, err
	}
	root := "v1/"
	if t.cfg.Prefix != "" {
		root = strings.Trim(t.cfg.Prefix, "/") + "/" + root
	}
	var out []Snapshot
	for o := range c.ListObjects(ctx, t.cfg.Bucket, minio.ListObjectsOptions{Prefix: root, Recursive: true}) {
		if o.Err != nil {
			return nil, fmt.Errorf("listing bucket %s: %v", t.cfg.Bucket, oneLine(o.Err))
		}
		base, ok := strings.CutSuffix(o.Key, "/latest")
		if !ok {
			continue
		}
		parts := strings.Split(strings.TrimPrefix(base, root), "/")
		if len(parts) != 6 {
			continue
		}
		for i, p := range parts {
			if u, err := url.PathUnescape(p); err == nil {
				parts[i] = u
			}
		}
		p, err := t.readPointer(ctx, c, base)
		if err != nil {
			t.log.Warn("reading a snapshot pointer", zap.String("key", o.Key), zap.Error(err))
			continue
		}
		out = append(out, Snapshot{Key: base, Pool: parts[0], Instance: parts[1], ProjectID: parts[2], Trust: parts[3],
			Profile: parts[4], Path: parts[5], ContentBytes: p.Content, StoredBytes: p.Size, Created: p.Created})
	}
	return out, nil
}
