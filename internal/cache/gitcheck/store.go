package gitcheck

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"regexp"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// A git object store volume is the skeleton of a bare repository (HEAD,
// config, objects, refs) with the id of this store's life in storeIDFile:
// a checkout linked to a store that was since evicted and made anew finds
// another id.
const (
	storeIDFile = "warmcache-store-id"
	storeConfig = "[core]\n\trepositoryformatversion = 0\n\tbare = true\n"
)

// Names of what a fetch writes in objects/: loose objects by fan-out
// directory, and packs with their companions. Temporary files
// (tmp_obj_*, tmp_pack_*) never match.
var (
	fanoutRE = regexp.MustCompile(`^[0-9a-f]{2}$`)
	looseRE  = regexp.MustCompile(`^[0-9a-f]{38}$`)
	packRE   = regexp.MustCompile(`^pack-[0-9a-f]{40}(\.[0-9a-f]{24})?\.(pack|rev|idx|keep|bitmap|promisor|mtimes)$`)
	headRE   = regexp.MustCompile(`^[0-9a-f]{40}\n?$`)
)

// InitStore returns the id of the git object store in root (a store
// volume's), first making the store (an empty bare repository) when it
// holds none. A store found damaged (no HEAD or objects/pack: nothing of
// warmcache's leaves it so) is made again under a new id, so that the
// checkouts that relied on its objects are replaced. Concurrent calls
// agree on one id.
func InitStore(root *os.Root) (string, error) {
	if id, err := readSmall(root, storeIDFile, 64); err == nil {
		head, herr := root.Lstat("HEAD")
		pack, perr := root.Lstat("objects/pack")
		if herr == nil && head.Mode().IsRegular() && perr == nil && pack.IsDir() {
			return strings.TrimSpace(string(id)), nil
		}
		if err := root.Remove(storeIDFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("renaming a damaged git store: %w", err)
		}
	}
	for _, dir := range []string{"objects/pack", "objects/info", "refs/heads", "refs/tags"} {
		if err := root.MkdirAll(dir, 0o755); err != nil {
			return "", fmt.Errorf("making the git store: %w", err)
		}
	}
	for name, content := range map[string]string{"HEAD": "ref: refs/heads/main\n", "config": storeConfig} {
		if err := writeAtomic(root, name, []byte(content), 0o644); err != nil {
			return "", fmt.Errorf("making the git store: %w", err)
		}
	}
	var b [16]byte
	rand.Read(b[:])
	tmp := storeIDFile + ".tmp-" + hex.EncodeToString(b[:4])
	if err := root.WriteFile(tmp, []byte(hex.EncodeToString(b[:])+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("naming the git store: %w", err)
	}
	defer root.Remove(tmp)
	// A link fails where the name exists: the first store to be named
	// keeps its id.
	if err := root.Link(tmp, storeIDFile); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("naming the git store: %w", err)
	}
	id, err := readSmall(root, storeIDFile, 64)
	if err != nil {
		return "", fmt.Errorf("reading the git store's id: %w", err)
	}
	return strings.TrimSpace(string(id)), nil
}

// LinkStore makes the repository of the work tree workTree (relative to
// root, a checkout volume's) borrow the objects at storeObjects, where the
// job containers mount the store: its objects/info/alternates names only
// that. The .git directory is made if need be, so that the runner's git
// init of a new checkout finds it.
func LinkStore(root *os.Root, workTree, storeObjects string) error {
	info := path.Join(workTree, ".git", "objects", "info")
	if err := root.MkdirAll(info, 0o755); err != nil {
		return fmt.Errorf("linking the checkout to its git store: %w", err)
	}
	if err := writeAtomic(root, path.Join(info, "alternates"), []byte(storeObjects+"\n"), 0o644); err != nil {
		return fmt.Errorf("linking the checkout to its git store: %w", err)
	}
	return nil
}

// FeedResult is what FeedStore moved.
type FeedResult struct {
	Packs, Loose int
	Bytes        int64
}

// FeedStore moves the objects of the repository of workTree in src (a
// checkout volume's root) into the git store in dst, and names the checkout's
// HEAD commit refs/heads/<ref> in the store, for later fetches of every
// slot to offer the server. The checkout then reads them through its
// alternates. Only once the job is done: nothing may use the checkout.
// Objects only ever arrive in the store whole (a link, or a copy renamed
// into place), each pack before its index, so jobs that read it
// meanwhile see either the old or the new set, never half an object.
func FeedStore(ctx context.Context, src, dst *os.Root, workTree, ref string) (FeedResult, error) {
	var res FeedResult
	objects := path.Join(workTree, ".git", "objects")
	if _, err := src.Lstat(objects); errors.Is(err, fs.ErrNotExist) {
		return res, nil // no repository: nothing to feed
	}
	if err := movePacks(ctx, src, path.Join(objects, "pack"), dst, &res); err != nil {
		return res, err
	}
	if err := moveLoose(ctx, src, objects, dst, &res); err != nil {
		return res, err
	}
	head, err := readSmall(src, path.Join(workTree, ".git", "HEAD"), 128)
	if err == nil && headRE.Match(head) {
		if err := writeAtomic(dst, "refs/heads/"+ref, append(bytes.TrimSpace(head), '\n'), 0o644); err != nil {
			return res, fmt.Errorf("naming the checkout's HEAD in the git store: %w", err)
		}
	}
	return res, nil
}

// movePacks moves the packs in dir of src into objects/pack of dst,
// each pack's index last (git finds a pack by its index). Bitmaps and
// the multi-pack index describe the checkout's own set of packs, which
// moves: they are dropped. Packs of a partial clone stay.
func movePacks(ctx context.Context, src *os.Root, dir string, dst *os.Root, res *FeedResult) error {
	from, err := openRootDir(src, dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer from.Close()
	to, err := openRootDir(dst, "objects/pack")
	if err != nil {
		return err
	}
	defer to.Close()
	entries, err := from.ReadDir(-1)
	if err != nil {
		return fmt.Errorf("reading %s: %w", dir, err)
	}
	have := map[string]bool{}
	for _, e := range entries {
		have[e.Name()] = e.Type().IsRegular()
	}
	for _, e := range entries {
		name := e.Name()
		base, ok := strings.CutSuffix(name, ".idx")
		if !ok || !packRE.MatchString(name) || !have[name] || !have[base+".pack"] || have[base+".promisor"] {
			if name == "multi-pack-index" || strings.HasSuffix(name, ".bitmap") && packRE.MatchString(name) {
				unix.Unlinkat(int(from.Fd()), name, 0)
			}
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		var placed []string
		for _, ext := range []string{".pack", ".rev", ".mtimes", ".idx"} {
			if !have[base+ext] {
				continue
			}
			n, err := place(from, to, base+ext)
			if err != nil {
				return err // the checkout keeps the whole pack
			}
			placed, res.Bytes = append(placed, base+ext), res.Bytes+n
		}
		// The store has the whole pack: the checkout's copy can go.
		for _, name := range append(placed, base+".keep", base+".bitmap") {
			unix.Unlinkat(int(from.Fd()), name, 0)
		}
		res.Packs++
	}
	return nil
}

// moveLoose moves the loose objects of objects/ in src to dst's.
func moveLoose(ctx context.Context, src *os.Root, objects string, dst *os.Root, res *FeedResult) error {
	dirs, err := fs.ReadDir(src.FS(), objects)
	if err != nil {
		return fmt.Errorf("reading %s: %w", objects, err)
	}
	for _, d := range dirs {
		if !d.IsDir() || !fanoutRE.MatchString(d.Name()) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := moveLooseDir(src, path.Join(objects, d.Name()), dst, "objects/"+d.Name(), res); err != nil {
			return err
		}
	}
	return nil
}

func moveLooseDir(src *os.Root, dir string, dst *os.Root, target string, res *FeedResult) error {
	from, err := openRootDir(src, dir)
	if err != nil {
		return err
	}
	defer from.Close()
	entries, err := from.ReadDir(-1)
	if err != nil {
		return fmt.Errorf("reading %s: %w", dir, err)
	}
	if err := dst.Mkdir(target, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("making %s in the git store: %w", target, err)
	}
	to, err := openRootDir(dst, target)
	if err != nil {
		return err
	}
	defer to.Close()
	for _, e := range entries {
		if !e.Type().IsRegular() || !looseRE.MatchString(e.Name()) {
			continue
		}
		n, err := place(from, to, e.Name())
		if err != nil {
			return err
		}
		unix.Unlinkat(int(from.Fd()), e.Name(), 0)
		res.Loose++
		res.Bytes += n
	}
	return nil
}

// openRootDir opens the directory name in root.
func openRootDir(root *os.Root, name string) (*os.File, error) {
	f, err := root.Open(name)
	if err != nil {
		return nil, err
	}
	if st, err := f.Stat(); err != nil || !st.IsDir() {
		f.Close()
		return nil, fmt.Errorf("%s: not a directory", name)
	}
	return f, nil
}

// place puts the regular file name of the directory from into the
// directory to, leaving the original for the caller to remove once all it
// places is there: a hard link where both are on one filesystem (the
// original then goes: no inode stays shared), else a copy renamed into
// place. A file of that name already there (the same
// object or pack, which git names by content) is kept. It returns the
// size placed.
func place(from, to *os.File, name string) (int64, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(int(from.Fd()), name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return 0, fmt.Errorf("moving %s: %w", name, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return 0, fmt.Errorf("moving %s: not a regular file", name)
	}
	// A file with other names (a job can link one into its work tree)
	// is copied: the store's file must be reachable from the store only.
	var err error = unix.EXDEV
	if st.Nlink == 1 {
		err = unix.Linkat(int(from.Fd()), name, int(to.Fd()), name, 0)
	}
	if errors.Is(err, unix.EXDEV) {
		err = copyFile(from, to, name)
	}
	if errors.Is(err, unix.EEXIST) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("moving %s to the git store: %w", name, err)
	}
	return st.Size, nil
}

// copyFile copies name from the directory from into the directory to,
// through a temporary file renamed into place (never over a file there).
func copyFile(from, to *os.File, name string) error {
	in, err := unix.Openat(int(from.Fd()), name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	src := os.NewFile(uintptr(in), name)
	defer src.Close()
	tmp := "tmp_warmcache_" + name
	out, err := unix.Openat(int(to.Fd()), tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o444)
	if err != nil {
		return err
	}
	dst := os.NewFile(uintptr(out), tmp)
	_, cerr := io.Copy(dst, src)
	if err := errors.Join(cerr, dst.Close()); err != nil {
		unix.Unlinkat(int(to.Fd()), tmp, 0)
		return err
	}
	err = unix.Renameat2(int(to.Fd()), tmp, int(to.Fd()), name, unix.RENAME_NOREPLACE)
	if err != nil {
		unix.Unlinkat(int(to.Fd()), tmp, 0)
	}
	return err
}

// Bounds of SettleIndex: what it reads is a job's.
const (
	maxIndexBytes  = 256 << 20
	maxSettleBytes = 1 << 30
	settleWait     = 1100 * time.Millisecond
)

// SettleIndex spares the next job's git from re-reading the checkout of
// workTree in root (a checkout volume's). Git compares a file whose time is
// not older than its index (to the second) by content, on every command
// that reads the index, until one writes it at a later second ("racy
// git"): after a checkout, which writes the work tree and the index in
// one second, the next job's checkout hashes every file twice. Here,
// once the job is done, each such file is compared as git would (its
// blob id); only when all match, and the clock is past every file's
// second (it waits up to a second for that), is the index's time set to
// now, which tells git the truth: no file changed since. It reports
// whether it did. Nothing may use the checkout meanwhile.
func SettleIndex(ctx context.Context, root *os.Root, workTree string, now time.Time) (bool, error) {
	gitDir := path.Join(workTree, ".git")
	index := path.Join(gitDir, "index")
	st, err := root.Lstat(index)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil || !st.Mode().IsRegular() || st.Size() > maxIndexBytes {
		return false, err
	}
	if cfg, err := readSmall(root, path.Join(gitDir, "config"), 1<<20); err == nil && bytes.Contains(bytes.ToLower(cfg), []byte("objectformat")) {
		return false, nil // a SHA-256 repository
	}
	data, err := readSmall(root, index, maxIndexBytes)
	if err != nil {
		return false, err
	}
	entries, err := Index(data)
	if err != nil {
		return false, nil
	}
	indexSec := st.ModTime().Unix()
	var racy []Entry
	var latest int64
	for _, e := range entries {
		if Racy(e, indexSec) {
			racy = append(racy, e)
			latest = max(latest, int64(e.MtimeSec))
		}
	}
	if len(racy) == 0 {
		return false, nil
	}
	// A file of the current second may yet change within it, unseen by
	// its times: wait for the next second, if it is near (a checkout
	// just done; later times are a job's doing).
	if wait := time.Unix(latest+1, 0).Sub(now); wait > 0 {
		if wait > settleWait {
			return false, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(wait):
		}
		now = time.Now()
	}
	var hashed int64
	for _, e := range racy {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		clean, n, err := sameBlob(root, path.Join(workTree, e.Path), e)
		if err != nil || !clean {
			return false, err
		}
		if hashed += n; hashed > maxSettleBytes {
			return false, nil
		}
	}
	if err := root.Chtimes(index, now, now); err != nil {
		return false, fmt.Errorf("settling the git index: %w", err)
	}
	return true, nil
}

// sameBlob says whether the file name in root still holds e's content, or
// differs in a way git sees without reading it (gone, another type or
// size), and how many bytes it read. Only an equal-sized file of e's type
// whose content differs is not clean: that is the change git's racy check
// exists to find.
func sameBlob(root *os.Root, name string, e Entry) (bool, int64, error) {
	st, err := root.Lstat(name)
	if err != nil {
		return true, 0, nil // git sees it gone (or unreachable)
	}
	var content []byte
	switch {
	case e.Mode == ModeSymlink && st.Mode()&fs.ModeSymlink != 0:
		target, err := root.Readlink(name)
		if err != nil {
			return false, 0, nil
		}
		content = []byte(target)
	case (e.Mode == ModeRegular || e.Mode == ModeExecutable) && st.Mode().IsRegular():
		if st.Size() != int64(e.Size) {
			return true, 0, nil // git sees the size change
		}
		f, err := root.OpenFile(name, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
		if err != nil {
			return false, 0, nil
		}
		content, err = io.ReadAll(io.LimitReader(f, int64(e.Size)+1))
		f.Close()
		if err != nil {
			return false, 0, nil
		}
	case e.Mode == ModeSymlink || e.Mode == ModeRegular || e.Mode == ModeExecutable:
		return true, 0, nil // git sees the type change
	default:
		return false, 0, nil
	}
	return BlobID(content) == e.ID, int64(len(content)), nil
}

// readSmall reads the regular file name in root, up to limit bytes.
func readSmall(root *os.Root, name string, limit int64) ([]byte, error) {
	f, err := root.OpenFile(name, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", name)
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err == nil && int64(len(data)) > limit {
		err = fmt.Errorf("%s: over %d bytes", name, limit)
	}
	return data, err
}

// writeAtomic writes name in root through a temporary file renamed over
// it, so a reader sees the old or the new content, never a part.
func writeAtomic(root *os.Root, name string, data []byte, mode os.FileMode) error {
	var b [4]byte
	rand.Read(b[:])
	tmp := name + ".tmp-" + hex.EncodeToString(b[:])
	if err := root.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	if err := root.Rename(tmp, name); err != nil {
		root.Remove(tmp)
		return err
	}
	return nil
}

// buildUserMarker is the runner's mark, at the root of builds_dir, of the
// user a job's builds directory goes to: after get_sources the runner
// hands the whole directory to that file's owner (chown -R).
const buildUserMarker = ".gitlab-build-uid-gid"

// Reclaim readies a checkout volume (root) for the runner's get_sources,
// which runs git as root, after a job of another user: that job's mark
// goes (prepare marks the directory again for a job that is not root's,
// and a root job's files must stay root's), and the work tree workTree
// and its .git, which the runner handed to that user, are root's again,
// since git refuses a repository another user owns (safe.directory). Only
// those two directories: git checks no other owner, and a new owner would
// change every file's ctime, which makes git re-read them all.
func Reclaim(root *os.Root, workTree string) error {
	if err := root.Remove(buildUserMarker); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing %s: %w", buildUserMarker, err)
	}
	for _, dir := range []string{workTree, path.Join(workTree, ".git")} {
		st, err := root.Lstat(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		if sys, ok := st.Sys().(*syscall.Stat_t); !st.IsDir() || ok && sys.Uid == 0 && sys.Gid == 0 {
			continue
		}
		if err := root.Lchown(dir, 0, 0); err != nil {
			return fmt.Errorf("handing %s back to root: %w", dir, err)
		}
	}
	return nil
}
