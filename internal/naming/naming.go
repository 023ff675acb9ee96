// Package naming is the one place that names and labels the Docker
// resources warmcache creates. Later stages and the reaper find a job's
// resources from these names and labels alone, with no local state files.
package naming

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Prefix starts the name of every resource warmcache creates.
const Prefix = "warmcache"

// Label keys. Every resource carries LabelManaged and LabelKind.
const (
	LabelPrefix     = "io.warmcache."
	LabelManaged    = LabelPrefix + "managed"
	LabelKind       = LabelPrefix + "kind"
	LabelJob        = LabelPrefix + "job" // the job's base name; cleanup selects on it
	LabelJobID      = LabelPrefix + "job.id"
	LabelProjectID  = LabelPrefix + "project.id"
	LabelPipelineID = LabelPrefix + "pipeline.id"
	LabelRunnerID   = LabelPrefix + "runner.id"
	LabelCreated    = LabelPrefix + "created"
	LabelTimeout    = LabelPrefix + "job.timeout"
)

// Label keys of cache volumes (besides LabelManaged, LabelKind and
// LabelCreated). They name what a cache belongs to; the values never
// change after the volume is made (Docker labels cannot), which is why
// last use and size live in warmcache's own records instead.
const (
	LabelCacheInstance    = LabelPrefix + "cache.instance"
	LabelCacheProjectID   = LabelPrefix + "cache.project.id"
	LabelCacheProjectPath = LabelPrefix + "cache.project.path"
	LabelCacheProfile     = LabelPrefix + "cache.profile"
	LabelCachePath        = LabelPrefix + "cache.path"
	LabelCacheTrust       = LabelPrefix + "cache.trust"
	LabelCacheSlot        = LabelPrefix + "cache.slot"
	LabelCachePool        = LabelPrefix + "cache.pool"
	// LabelCacheLayer marks a cache volume that holds a fork's kept layer.
	LabelCacheLayer = LabelPrefix + "cache.layer"
	// LabelCacheQuota marks a cache volume made with a quota (its value
	// is the limit in bytes): only such a volume has a filesystem to
	// mount at each claim.
	LabelCacheQuota = LabelPrefix + "cache.quota"
)

// Label keys of the overlay volumes over a cache (forks and commit
// layers), naming the volumes they stand on: the GC leaves those alone
// while the overlay exists.
const (
	LabelForkLower = LabelPrefix + "fork.lower"
	LabelForkLayer = LabelPrefix + "fork.layer"
	// LabelCommitTo marks a job's commit layer with the shared cache
	// volume its writes go to if the job succeeds.
	LabelCommitTo = LabelPrefix + "commit.to"
)

// Label keys of a runner slot's network (KindSlotNetwork), besides
// LabelManaged, LabelKind, LabelRunnerID and LabelCreated: the slot, and a
// digest of the network's options, so a changed config makes another
// network and the reaper knows the old one for stale.
const (
	LabelNetworkSlot    = LabelPrefix + "network.slot"
	LabelNetworkOptions = LabelPrefix + "network.options"
)

// LabelCacheSizes carries, on a job's build container, the cache sizes
// prepare found, for the growth report after the steps: the run stage is
// another process, and a job's state lives in Docker, where it goes with
// the job and out of the job's reach.
const LabelCacheSizes = LabelPrefix + "cache-sizes"

// Kind says what a job resource is for.
type Kind string

// Kinds of per-job resources.
const (
	KindHelper  Kind = "helper"  // container running git, cache and artifact stages
	KindBuild   Kind = "build"   // container running the job's own steps
	KindBuilds  Kind = "builds"  // volume mounted at builds_dir
	KindNetwork Kind = "network" // per-job network
	// KindSlotNetwork is the network a runner slot's successive jobs
	// reuse: it carries no LabelJob, so no job's cleanup removes it.
	KindSlotNetwork Kind = "slotnet"
	KindService     Kind = "service" // container of one of the job's services
	KindCache       Kind = "cache"   // persistent cache volume, never removed by cleanup
	KindSecrets     Kind = "secrets" // tmpfs volume holding the job's credential files
	KindFork        Kind = "fork"    // overlay volume: a cache read-only below, a layer of writes on top
	KindLayer       Kind = "layer"   // volume holding the writes of a fork that is discarded
	KindCommit      Kind = "commit"  // volume holding a job's writes to a shared cache until it succeeds
	KindVolume      Kind = "volume"  // volume of the job's own that docker.volumes asks for ("/dst")
)

// JobKey identifies one job on one runner host. Instance, ProjectID and
// JobID come from the trusted job response and make the name unique (job
// ids repeat across GitLab instances); Runner and Slot only make names
// readable, since a job can override them.
type JobKey struct {
	Runner    string // runner short token
	Instance  string // GitLab host[:port]
	ProjectID int64
	Slot      int // CI_CONCURRENT_ID
	JobID     int64
}

// Base is the common part of every resource name of the job.
func (k JobKey) Base() string {
	runner := sanitize(k.Runner, 16)
	if runner == "" {
		runner = "r"
	}
	return fmt.Sprintf("%s-%s-%s-p%d-c%d-j%d", Prefix, runner, Hash(k.Instance)[:6], k.ProjectID, k.Slot, k.JobID)
}

// Name names a resource of the job.
func (k JobKey) Name(kind Kind) string {
	return k.Base() + "-" + string(kind)
}

// ServiceName names the container of the job's i-th service.
func (k JobKey) ServiceName(i int) string {
	return fmt.Sprintf("%s-%s%d", k.Base(), KindService, i)
}

// IndexedName names the job's i-th resource of a kind (forks, layers).
func (k JobKey) IndexedName(kind Kind, i int) string {
	return fmt.Sprintf("%s-%s%d", k.Base(), kind, i)
}

// JobMeta is what the labels of a job resource record besides its key.
type JobMeta struct {
	PipelineID     int64
	RunnerID       string
	TimeoutSeconds int
	Created        time.Time
}

// Labels returns the labels of a job resource of the given kind.
func (k JobKey) Labels(kind Kind, m JobMeta) map[string]string {
	return map[string]string{
		LabelManaged:    "true",
		LabelKind:       string(kind),
		LabelJob:        k.Base(),
		LabelJobID:      strconv.FormatInt(k.JobID, 10),
		LabelProjectID:  strconv.FormatInt(k.ProjectID, 10),
		LabelPipelineID: strconv.FormatInt(m.PipelineID, 10),
		LabelRunnerID:   sanitize(m.RunnerID, 32),
		LabelCreated:    m.Created.UTC().Format(time.RFC3339),
		LabelTimeout:    strconv.Itoa(m.TimeoutSeconds),
	}
}

// SlotNetwork names the network the jobs of one concurrency slot of one
// runner reuse, with options (a digest of the network's options): two
// runners of one host, two slots, or two configs never share one.
func SlotNetwork(runner, runnerID string, slot int, options string) string {
	r := sanitize(runner, 16)
	if r == "" {
		r = "r"
	}
	return fmt.Sprintf("%s-%s-%s-c%d-%s-%s", Prefix, r, Hash(runner, runnerID)[:6], slot, KindSlotNetwork, options)
}

// SlotNetworkLabels are the labels of a slot's network.
func SlotNetworkLabels(runnerID string, slot int, options string, created time.Time) map[string]string {
	return map[string]string{
		LabelManaged:        "true",
		LabelKind:           string(KindSlotNetwork),
		LabelRunnerID:       sanitize(runnerID, 32),
		LabelNetworkSlot:    strconv.Itoa(slot),
		LabelNetworkOptions: options,
		LabelCreated:        created.UTC().Format(time.RFC3339),
	}
}

// endedMark is what Ended puts in a container's name.
const endedMark = "-ended-"

// Ended is the name cleanup gives a job's container once the job is over
// and before the container is removed (in the background): the next job
// of a slot finds it on the slot's network and knows it may take it off.
// stamp keeps two attempts' leftovers of one job apart.
func Ended(name, stamp string) string { return name + endedMark + sanitize(stamp, 16) }

// IsEnded says whether a container's name is one Ended gave it. Only
// cleanup renames containers: a job cannot make a name end so.
func IsEnded(name string) bool {
	i := strings.LastIndex(name, endedMark)
	return i > 0 && strings.HasPrefix(name, Prefix+"-") && sanitize(name[i+len(endedMark):], 16) == name[i+len(endedMark):]
}

// Hash returns a short, stable hex digest of parts, for names that must not
// reveal or collide on their inputs.
func Hash(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		// Length-prefix each part so ("ab","c") and ("a","bc") differ.
		fmt.Fprintf(h, "%d:%s;", len(p), p)
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// sanitize keeps only lower-case letters and digits (a subset of what
// Docker allows in names), at most max long. Anything else from job input is dropped so
// that no value can inject separators or collide by escaping.
func sanitize(s string, max int) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		}
		if b.Len() == max {
			break
		}
	}
	return b.String()
}

// CacheVolume names a persistent cache volume: readable (the profile) and
// short, with a digest of everything that isolates it (instance, project,
// trust class, path, slot) so no two keys share a volume.
func CacheVolume(profile string, key ...string) string {
	var p strings.Builder
	for _, r := range strings.ToLower(profile) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '-' {
			p.WriteRune(r)
		}
		if p.Len() == 20 {
			break
		}
	}
	return Prefix + "-" + p.String() + "-" + Hash(key...)
}
