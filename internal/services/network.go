package services

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"go.uber.org/zap"

	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/naming"
	"github.com/warmcache/warmcache/internal/parallel"
)

// Networks are the networks a job may join when the admin's network_mode
// names none: its runner slot's network, which the slot's successive jobs
// reuse (nil with docker.network_per_job), and a network of its own,
// made at prepare and removed at cleanup, when it has no slot network or
// cannot have it to itself.
type Networks struct {
	Slot *engine.NetworkSpec
	Own  engine.NetworkSpec
}

// MakeNetwork starts making ready the network the job's helper (and with
// it the build container) and services join, so that service aliases
// resolve and two jobs using one alias never meet; unless the admin's
// network_mode names a network to join instead.
//
// A slot runs one job at a time, so the slot's network is the job's
// alone once nothing of an earlier job is on it: the containers of an
// ended job (named by naming.Ended at its cleanup, while they are removed
// in the background) are taken off it. A container on it that is not of
// an ended job (a job whose cleanup never ran, or a job that names
// another slot as its own: CI_CONCURRENT_ID is the job's to override) is
// left alone, and the job gets a network of its own: two jobs never
// share a network, and no job takes another's off its network. Making
// the slot's network costs about a quarter of a second, which only the
// slot's first job (or the first after an admin removed it) pays.
func MakeNetwork(ctx context.Context, d Deps, n Networks) *Network {
	if d.Docker.NetworkMode != "" {
		done := func() error { return nil }
		return &Network{name: d.Docker.NetworkMode, named: done, ready: done}
	}
	out := &Network{}
	var ended []string
	out.named = parallel.Go(func() (err error) {
		if n.Slot == nil {
			out.name, err = n.Own.Name, makeOwn(ctx, d, n.Own)
			return err
		}
		out.name, ended, err = claimSlot(ctx, d, *n.Slot, n.Own)
		return err
	})
	out.ready = parallel.Go(func() error {
		if err := out.named(); err != nil {
			return err
		}
		return disconnect(ctx, d.Engine, out.name, ended)
	})
	return out
}

// Network is the network a job joins, in the making (see MakeNetwork).
type Network struct {
	name         string
	named, ready func() error
}

// Name waits until the network exists and gives its name: the job's
// containers may be created on it then.
func (n *Network) Name() (string, error) {
	if err := n.named(); err != nil {
		return "", err
	}
	return n.name, nil
}

// Ready waits until the network is the job's alone (an ended job's
// containers taken off it, which overlaps the creation of the job's
// containers): they may start on it then. It may be called any number of
// times, e.g. once deferred, so that no call is left in flight.
func (n *Network) Ready() error { return n.ready() }

// makeOwn makes the job's own network.
func makeOwn(ctx context.Context, d Deps, own engine.NetworkSpec) error {
	if err := d.Engine.CreateNetwork(ctx, own); err != nil {
		return fmt.Errorf("creating the job's network: %w", err)
	}
	return nil
}

// claimSlot makes the slot's network the job's, and returns the name of
// the network the job joins: the slot's, or its own (see MakeNetwork),
// and the containers of ended jobs to take off it before the job's start.
func claimSlot(ctx context.Context, d Deps, slot, own engine.NetworkSpec) (name string, ended []string, err error) {
	info, err := d.Engine.InspectNetwork(ctx, slot.Name)
	if errors.Is(err, engine.ErrNotFound) {
		// The slot's first job, or an admin removed the network.
		if err := d.Engine.CreateNetwork(ctx, slot); err != nil {
			// Made meanwhile by another prepare: a job naming this slot.
			d.Log.Warn("creating the slot's network failed: the job gets a network of its own", zap.String("network", slot.Name), zap.Error(err))
			return own.Name, nil, makeOwn(ctx, d, own)
		}
		return slot.Name, nil, nil
	}
	if err != nil {
		return "", nil, fmt.Errorf("inspecting the slot's network: %w", err)
	}
	if live := slices.DeleteFunc(slices.Clone(info.Containers), naming.IsEnded); len(live) > 0 {
		d.Log.Warn("the slot's network has containers of a job that has not ended: the job gets a network of its own",
			zap.String("network", slot.Name), zap.Strings("containers", live))
		return own.Name, nil, makeOwn(ctx, d, own)
	}
	if len(info.Containers) > 0 {
		d.Log.Info("taking an ended job's containers off the slot's network", zap.String("network", slot.Name), zap.Strings("containers", info.Containers))
	}
	return slot.Name, info.Containers, nil
}

// disconnect takes the containers of ended jobs off the network.
func disconnect(ctx context.Context, e Engine, network string, containers []string) error {
	err := parallel.Each(containers, func(c string) error { return e.DisconnectNetwork(ctx, network, c) })
	if err != nil {
		return fmt.Errorf("taking an ended job's containers off network %s: %w", network, err)
	}
	return nil
}

// CheckAlone makes sure, once the job's helper and services run on the
// network, that no other job joined it since MakeNetwork looked (only a
// job naming the same slot can), and takes off it the containers of a
// job that ended meanwhile. base is the job's naming.JobKey.Base; network
// is the slot's (a network of the job's own, or the admin's, is not the
// job's to check).
func CheckAlone(ctx context.Context, d Deps, network, base string) error {
	info, err := d.Engine.InspectNetwork(ctx, network)
	if err != nil {
		return fmt.Errorf("checking the slot's network: %w", err)
	}
	var ended []string
	for _, c := range info.Containers {
		switch {
		case naming.IsEnded(c):
			ended = append(ended, c)
		case !strings.HasPrefix(c, base+"-"):
			return fmt.Errorf("container %s of another job joined this job's network %s: two jobs claim one runner slot (CI_CONCURRENT_ID)", c, network)
		}
	}
	return disconnect(ctx, d.Engine, network, ended)
}
