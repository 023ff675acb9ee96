// Package overlay makes the overlay volumes warmcache stands on a cache:
// a job's fork of a protected cache and its commit layer over a shared
// one. Each is a cache volume below, read only, and a layer volume of the
// job's writes on top, mounted by Docker's local driver when a container
// first mounts the volume, in constant time whatever the cache's size.
package overlay

import (
	"context"
	"maps"

	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/host"
	"github.com/warmcache/warmcache/internal/naming"
)

// Engine is what making an overlay needs from the container engine.
type Engine interface {
	EnsureVolume(ctx context.Context, v engine.VolumeSpec) error
}

// Spec is the job's i-th overlay volume: a cache volume below (lower),
// read only, and a layer of the job's writes on top. Forks and commit
// layers are both made of it.
type Spec struct {
	Key   naming.JobKey
	Meta  naming.JobMeta
	Index int
	Lower string // the cache volume below
	Layer string // the volume holding the writes
	// KeptLayer says the layer is a persistent cache volume: kept by the
	// GC while the overlay lives.
	KeptLayer bool
	// Commit makes it a commit layer (see host.Host.OverlayOptions).
	Commit bool
}

// JobLayer creates a layer volume of the job's own, of kind, removed with
// the job's other volumes.
func JobLayer(ctx context.Context, e Engine, o Spec, kind naming.Kind, labels map[string]string) (string, error) {
	name := o.Key.IndexedName(kind, o.Index)
	all := o.Key.Labels(kind, o.Meta)
	maps.Copy(all, labels)
	if err := e.EnsureVolume(ctx, engine.VolumeSpec{Name: name, Labels: all}); err != nil {
		return "", err
	}
	return name, nil
}

// Create prepares the layer's directories and creates the overlay
// volume, labelled with what it stands on; Docker mounts it when a
// container first mounts the volume.
func Create(ctx context.Context, e Engine, h *host.Host, o Spec) (string, error) {
	if err := h.PrepareLayer(ctx, o.Layer); err != nil {
		return "", err
	}
	opts, err := h.OverlayOptions(ctx, o.Lower, o.Layer, o.Commit)
	if err != nil {
		return "", err
	}
	name := o.Key.IndexedName(naming.KindFork, o.Index)
	labels := o.Key.Labels(naming.KindFork, o.Meta)
	labels[naming.LabelForkLower] = o.Lower
	if o.KeptLayer {
		labels[naming.LabelForkLayer] = o.Layer
	}
	if err := e.EnsureVolume(ctx, engine.VolumeSpec{Name: name, Labels: labels, DriverOpts: opts}); err != nil {
		return "", err
	}
	return name, nil
}
