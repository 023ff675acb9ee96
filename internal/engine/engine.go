// Package engine is warmcache's contract with the container engine. Only
// this package (its Docker implementation) imports the Docker SDK; everything
// else speaks the small types defined here.
package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// Engine is what the stages need from a container engine.
//
// Call order for one job: EnsureVolume and CreateContainer (prepare), then
// StartContainer, then any number of Exec calls (run), then Remove for every
// resource List finds (cleanup). Create calls fail if the name exists;
// Remove treats a missing resource as success so teardown is idempotent.
// All methods are safe for concurrent use.
type Engine interface {
	// Ping checks that the engine answers and reports what it is.
	Ping(ctx context.Context) (Info, error)
	// InspectImage describes the local image ref; an absent image is an
	// error wrapping ErrNotFound.
	InspectImage(ctx context.Context, ref string) (ImageInfo, error)
	// PullImage pulls ref, calling status with one short line per layer
	// event. An error reported inside the pull stream is returned.
	PullImage(ctx context.Context, ref string, auth *RegistryAuth, status func(string)) error
	// EnsureVolume creates the volume, or keeps it if it already exists.
	EnsureVolume(ctx context.Context, v VolumeSpec) error
	// InspectVolume describes an existing volume.
	InspectVolume(ctx context.Context, name string) (VolumeInfo, error)
	// CreateContainer creates (does not start) a container.
	CreateContainer(ctx context.Context, c ContainerSpec) error
	// StartContainer starts a created container by name; starting a
	// running container is a no-op.
	StartContainer(ctx context.Context, name string) error
	// ContainerState reports a container's state as the engine names it:
	// "created" (never started), "running", "exited" and so on.
	ContainerState(ctx context.Context, name string) (string, error)
	// Exec runs cmd in the running container name, feeding stdin and
	// streaming the container's stdout and stderr as they arrive. A non-zero
	// exit is a result, not an error; an error means the system failed.
	Exec(ctx context.Context, name string, cmd []string, stdin io.Reader, stdout, stderr io.Writer) (Exit, error)
	// CreateNetwork creates a bridge network; it fails if the name exists.
	CreateNetwork(ctx context.Context, n NetworkSpec) error
	// InspectNetwork describes a network, named by its name or its id; a
	// missing one is an error wrapping ErrNotFound.
	InspectNetwork(ctx context.Context, name string) (NetworkInfo, error)
	// DisconnectNetwork takes a container off a network by force; a
	// container that is missing, or not on that network, is success.
	DisconnectNetwork(ctx context.Context, network, container string) error
	// RenameContainer gives a container another name; its labels, state
	// and networks stay as they are, and the old name is free at once.
	RenameContainer(ctx context.Context, name, newName string) error
	// ContainerIP returns a container's address on network, "" if it has
	// none there.
	ContainerIP(ctx context.Context, name, network string) (string, error)
	// ContainerLogs returns the last lines (at most that many, and at most
	// 16 KiB) a container wrote to stdout and stderr, interleaved.
	ContainerLogs(ctx context.Context, name string, lines int) (string, error)
	// List returns the containers, volumes and networks carrying every one
	// of the labels.
	List(ctx context.Context, labels map[string]string) ([]Resource, error)
	// Remove force-removes a resource; a missing one is success. A volume
	// that any container (running or not) still mounts is never removed:
	// the error wraps ErrInUse.
	Remove(ctx context.Context, r Resource) error
}

// Info describes the engine.
type Info struct {
	ServerVersion string
	APIVersion    string // negotiated with the engine
	StorageDriver string
	CgroupDriver  string
	CgroupVersion string
	RootDir       string // the engine's data root, on its host
}

// ImageInfo describes a local image.
type ImageInfo struct {
	// User is the image's default user ("" means root).
	User string
	// ExposedPorts are the image's EXPOSEd ports, sorted.
	ExposedPorts []Port
}

// Port is a port a container listens on.
type Port struct {
	Number   int
	Protocol string // "tcp", "udp" or "sctp"
}

// String spells the port as Docker does, e.g. "8080/tcp".
func (p Port) String() string { return fmt.Sprintf("%d/%s", p.Number, p.Protocol) }

// RegistryAuth is a registry login for one pull.
type RegistryAuth struct {
	Username string
	Password string
	Server   string
	// IdentityToken and RegistryToken are what some credential helpers
	// and config files hold instead of a password.
	IdentityToken string
	RegistryToken string
}

// ResourceType says what a Resource is.
type ResourceType string

// Resource types.
const (
	Container ResourceType = "container"
	Volume    ResourceType = "volume"
	Network   ResourceType = "network"
)

// Resource is a container, volume or network found by List.
type Resource struct {
	Type   ResourceType
	Name   string
	Labels map[string]string
	// Mountpoint is set for volumes (see VolumeInfo.Mountpoint).
	Mountpoint string
	// ID is the engine's id of a network: unlike its name, never reused.
	// Remove accepts it as the Name of a network.
	ID string
}

// VolumeSpec describes a named volume.
type VolumeSpec struct {
	Name   string
	Labels map[string]string
	// Tmpfs backs the volume with memory (size-limited, world-writable
	// with the sticky bit): what it holds never reaches a disk and is gone
	// when the last container using it stops.
	Tmpfs bool
	// DriverOpts are options of the local volume driver, e.g. an overlay
	// mount (type, device, o) made when a container first mounts it.
	DriverOpts map[string]string
	// Driver is the volume driver; "" is the engine's default (local).
	Driver string `json:",omitempty"`
}

// NetworkSpec describes a network to create.
type NetworkSpec struct {
	Name   string
	Labels map[string]string
	// MTU of the network's interfaces; 0 keeps the engine's default.
	MTU int `json:",omitempty"`
	// EnableIPv6 gives the network IPv6 addresses besides IPv4 ones.
	EnableIPv6 bool `json:",omitempty"`
}

// NetworkInfo describes an existing network.
type NetworkInfo struct {
	ID     string
	Labels map[string]string
	// Containers are the names of the containers with an endpoint on the
	// network: the running ones, sorted.
	Containers []string
}

// VolumeInfo describes an existing volume.
type VolumeInfo struct {
	Name   string
	Labels map[string]string
	// Mountpoint is the volume's directory on the engine's host; readable
	// by the driver only when it runs beside a local engine.
	Mountpoint string
	CreatedAt  time.Time
	Tmpfs      bool
}

// Mount binds a named volume into a container.
type Mount struct {
	Volume   string
	Target   string
	ReadOnly bool
	// NoCopy stops the engine from copying the image's files at Target
	// into an empty volume: a shared cache must not absorb one image's
	// content.
	NoCopy bool
}

// ContainerSpec describes a container to create.
type ContainerSpec struct {
	Name  string
	Image string
	// Entrypoint overrides the image's entrypoint when non-nil; an empty,
	// non-nil slice clears it.
	Entrypoint  []string
	Cmd         []string
	Env         []string
	User        string // "" keeps the image's user
	Labels      map[string]string
	Mounts      []Mount
	NetworkMode string
	// NetworkAliases are the container's host names on the network
	// NetworkMode names; only a user-defined network has them.
	NetworkAliases []string
	// KeepStdinOpen keeps the container's stdin open with nothing attached,
	// so a shell reading it blocks instead of exiting.
	KeepStdinOpen bool

	// Resource limits; zero values set none. CgroupParent puts the
	// container under the job's cgroup (package jobcgroup).
	NanoCPUs          int64
	CpusetCpus        string
	Memory            int64
	MemorySwap        int64 // memory plus swap; -1: unlimited swap
	MemoryReservation int64
	PidsLimit         int64
	ShmSize           int64
	CgroupParent      string

	// The container options of gitlab-runner's [runners.docker] (package
	// config's ContainerOptions), as package driver's plan gives them to
	// each container; zero values set none.
	Privileged        bool              `json:",omitempty"`
	CapAdd            []string          `json:",omitempty"`
	CapDrop           []string          `json:",omitempty"`
	SecurityOpt       []string          `json:",omitempty"`
	Devices           []Device          `json:",omitempty"`
	DeviceCgroupRules []string          `json:",omitempty"`
	GPUs              *GPURequest       `json:",omitempty"`
	Runtime           string            `json:",omitempty"`
	GroupAdd          []string          `json:",omitempty"`
	UsernsMode        string            `json:",omitempty"`
	Sysctls           map[string]string `json:",omitempty"`
	Ulimits           []Ulimit          `json:",omitempty"`
	OomKillDisable    bool              `json:",omitempty"`
	OomScoreAdj       int               `json:",omitempty"`
	// DNS, DNSSearch, ExtraHosts and MacAddress belong to a container's
	// own network stack: a container in another's ("container:<name>")
	// has them from that one, and the engine refuses them.
	DNS        []string `json:",omitempty"`
	DNSSearch  []string `json:",omitempty"`
	ExtraHosts []string `json:",omitempty"`
	MacAddress string   `json:",omitempty"`
	// Tmpfs mounts a tmpfs at each key, with the value's mount options.
	Tmpfs map[string]string `json:",omitempty"`
	// Binds mount host paths and named volumes (see Bind).
	Binds []Bind `json:",omitempty"`
	// VolumeDriver creates the named volumes of Binds that do not exist.
	VolumeDriver string `json:",omitempty"`
}

// Bind mounts a host path (Source absolute) or a named volume (Source a
// name; the engine creates it if absent, and keeps it after the
// container), as `docker run -v Source:Target[:options]` does.
type Bind struct {
	Source   string
	Target   string
	ReadOnly bool `json:",omitempty"`
	// Options are the other -v options: an SELinux label (z, Z) and a
	// bind propagation (shared, rslave, ...).
	Options []string `json:",omitempty"`
}

// Device makes a host device available in a container.
type Device struct {
	Host, Container string
	// Permissions are the cgroup permissions: a subset of "rwm".
	Permissions string
}

// GPURequest asks for GPUs, as `docker run --gpus` does.
type GPURequest struct {
	// Count is -1 for every GPU; 0 when DeviceIDs name them.
	Count        int
	Driver       string            `json:",omitempty"`
	DeviceIDs    []string          `json:",omitempty"`
	Capabilities []string          `json:",omitempty"`
	Options      map[string]string `json:",omitempty"`
}

// Ulimit is a resource limit of a container's processes.
type Ulimit struct {
	Name       string
	Soft, Hard int64
}

// Exit is how a process in a container ended.
type Exit struct {
	Code int
}

// ErrNotFound is returned (wrapped) when an image, container, volume or
// network does not exist.
var ErrNotFound = errors.New("not found")

// ErrNotRunning is returned (wrapped) by Exec when the container is not
// running, e.g. because the daemon restarted or it was removed.
var ErrNotRunning = errors.New("container is not running")

// ErrInUse is returned (wrapped) by Remove for a volume or network that a
// container still uses.
var ErrInUse = errors.New("in use")

// ErrDenied is returned (wrapped) when the engine or a registry refuses
// the credentials; retrying cannot help.
var ErrDenied = errors.New("access denied")

// ErrPrivilegedRefused is returned (wrapped) by StartContainer when the
// engine cannot run a privileged container: it gives such a container
// every capability, and an engine that itself lacks some (in a container,
// or under a restricted bounding set) fails to start it.
var ErrPrivilegedRefused = errors.New("the engine refused a privileged container")

// PrivilegedRefusedError is StartContainer's error for a privileged
// container the engine cannot run; it wraps ErrPrivilegedRefused.
type PrivilegedRefusedError struct {
	Container string
	// Cause is the runtime's reason, e.g. "unable to apply caps:
	// operation not permitted".
	Cause string
}

func (e *PrivilegedRefusedError) Error() string {
	return fmt.Sprintf("starting container %s: %v: %s", e.Container, ErrPrivilegedRefused, e.Cause)
}

// Unwrap makes errors.Is(err, ErrPrivilegedRefused) hold.
func (e *PrivilegedRefusedError) Unwrap() error { return ErrPrivilegedRefused }

// ErrUnreachable is returned (wrapped) when the engine cannot be reached.
var ErrUnreachable = errors.New("docker engine unreachable")
