package driver

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/warmcache/warmcache/internal/credentials"
	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/host"
	"github.com/warmcache/warmcache/internal/job"
	"github.com/warmcache/warmcache/internal/mask"
	"github.com/warmcache/warmcache/internal/naming"
)

// jobNetEnv is what the [env] section gives a job's containers.
type jobNetEnv struct {
	plan credentials.Plan
	// mount is the tmpfs volume holding the credential files, if any.
	mount *engine.Mount
}

// planNetEnv works out the job's variables and credential files and, if
// there are files, creates the job's tmpfs volume for them. Token files
// are read now, so a rotated token needs no restart.
func planNetEnv(ctx context.Context, d Deps, j job.Job, meta naming.JobMeta) (jobNetEnv, error) {
	plan, err := credentials.Build(d.Config.Env, j, os.ReadFile)
	if err != nil {
		return jobNetEnv{}, err
	}
	n := jobNetEnv{plan: plan}
	if len(plan.Files) == 0 {
		return n, nil
	}
	key := j.Key()
	name := key.Name(naming.KindSecrets)
	if err := d.Engine.EnsureVolume(ctx, engine.VolumeSpec{Name: name, Labels: key.Labels(naming.KindSecrets, meta), Tmpfs: true}); err != nil {
		return jobNetEnv{}, err
	}
	n.mount = &engine.Mount{Volume: name, Target: credentials.SecretsDir, NoCopy: true}
	return n, nil
}

// deliverCommand unpacks the credential files from stdin. umask and tar's
// -o make the files the exec user's own, mode 0600: a non-root job user
// reads its own files, other users of the container cannot, and the
// sticky bit of the tmpfs keeps them from replacing them.
var deliverCommand = []string{"sh", "-c", "umask 077 && cd " + credentials.SecretsDir + " && tar -xof -"}

// deliverCredentials writes the files into the tmpfs through the stdin of
// an exec in container, as that container's user: never through the
// container's environment, a command line or a layer.
func deliverCredentials(ctx context.Context, e engine.Engine, container string, files []credentials.File) error {
	var archive bytes.Buffer
	tw := tar.NewWriter(&archive)
	now := time.Now()
	for _, f := range files {
		hdr := &tar.Header{Name: f.Name, Mode: 0o600, Size: int64(len(f.Content)), ModTime: now, Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("packing credential files: %w", err)
		}
		if _, err := tw.Write(f.Content); err != nil {
			return fmt.Errorf("packing credential files: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("packing credential files: %w", err)
	}
	var out bytes.Buffer
	exit, err := e.Exec(ctx, container, deliverCommand, &archive, &out, &out)
	if err == nil && exit.Code != 0 {
		err = fmt.Errorf("exit code %d: %s", exit.Code, strings.Join(strings.Fields(out.String()), " "))
	}
	if err != nil {
		return fmt.Errorf("writing credential files into %s of %s (the image needs sh and tar): %w", credentials.SecretsDir, container, err)
	}
	return nil
}

// writeIntoTmpfs writes a root job's files straight into its tmpfs
// volume through the engine's host (see host.Host.WriteIntoTmpfs),
// saving an exec; false when that cannot be done from here.
func writeIntoTmpfs(ctx context.Context, h *host.Host, volume string, files []credentials.File) (bool, error) {
	if h == nil {
		return false, nil
	}
	hf := make([]host.File, len(files))
	for i, f := range files {
		hf[i] = host.File{Name: f.Name, Content: f.Content}
	}
	ok, err := h.WriteIntoTmpfs(ctx, volume, hf)
	if err != nil {
		return false, fmt.Errorf("credential files: %w", err)
	}
	return ok, nil
}

// masked returns d with the job log's writers masking every secret of the
// job, and a function to call when the stage's output has ended: it
// flushes what they hold back and masks the text of the stage's error
// (an engine's message can quote what a job named), which the entry point
// prints to the job log too.
func masked(d Deps, j job.Job) (Deps, func(*error)) {
	secrets := append(credentials.Secrets(d.Config.Env, j, os.ReadFile), deliveredTokens(d, j.Key())...)
	if len(secrets) == 0 {
		return d, func(*error) {}
	}
	var flush []*mask.Writer
	for _, w := range []*io.Writer{&d.Stdout, &d.Stderr} {
		if *w != nil {
			m := mask.New(*w, secrets)
			*w = m
			flush = append(flush, m)
		}
	}
	return d, func(errp *error) {
		for _, m := range flush {
			m.Flush()
		}
		if *errp == nil {
			return
		}
		if text := mask.String((*errp).Error(), secrets); text != (*errp).Error() {
			*errp = &maskedError{err: *errp, text: text}
		}
	}
}

// maskedError is an error whose text had a secret; errors.Is and As still
// see the error it wraps (a BuildFailure stays one).
type maskedError struct {
	err  error
	text string
}

func (e *maskedError) Error() string { return e.text }
func (e *maskedError) Unwrap() error { return e.err }

// deliveredTokens reads back the tokens prepare gave the job, from the
// netrc in its tmpfs volume (on the engine's host: the driver runs beside
// a local engine to read it): a token file rotated since then holds a new
// token, and the old one, still in the job's files, must stay masked.
// Nothing when there is no such volume (yet) or it is out of reach.
func deliveredTokens(d Deps, key naming.JobKey) []string {
	if !d.Config.Env.JobToken && len(d.Config.Env.Tokens) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if d.Host == nil {
		return nil
	}
	netrc, err := d.Host.ReadFile(ctx, key.Name(naming.KindSecrets), credentials.NetrcFile)
	if err != nil {
		return nil
	}
	return credentials.NetrcTokens(netrc)
}
