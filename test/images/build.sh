#!/usr/bin/env bash
# Builds the job images used by the end-to-end tests and the demo, with
# `docker import` only (no Dockerfile, no registry):
#
#   warmcache-test/debian:1      Debian bookworm (mmdebstrap) + bash, git, curl, zip,
#                                ca-certificates, procps, user ci (uid 1000) and
#                                the host's Go toolchain in /usr/local/go
#   warmcache-test/busybox:1     /bin/busybox + applet symlinks, no bash
#   warmcache-test/entrypoint:1  busybox + /entrypoint.sh as ENTRYPOINT
#   warmcache-test/httpd:1       busybox httpd on port 8080 (EXPOSEd), a service
#   warmcache-test/silent:1      a service that EXPOSEs 9999 but never listens
#   warmcache-test/dind:1        Debian's docker.io: dockerd on tcp 2375 (no TLS), a
#                                docker:dind service; not in "all" (it needs a
#                                privileged container: TestDindService builds it
#                                only where the engine can start one)
#
# Usage: test/images/build.sh [all|debian|busybox|entrypoint|httpd|silent|<tag>]...
#
# Idempotent: every image carries the label io.warmcache.testimage.version; an
# image whose tag already exists with the current version is reused. The
# version is "<rev>-<input>", where <input> is the Go version (debian) or a hash
# of the busybox binary, so a changed host toolchain triggers a rebuild.
# Bump the *_REV constants below whenever you change what goes into an image.
#
# The Debian rootfs tarball is cached in $WARMCACHE_IMAGE_CACHE
# (default /var/cache/warmcache-test-images), so re-creating the image after a
# `docker rmi` only re-imports it. Delete that directory to force mmdebstrap.
#
# Environment:
#   WARMCACHE_IMAGE_CACHE   cache directory (default /var/cache/warmcache-test-images)
#   WARMCACHE_DEBIAN_MIRROR Debian mirror (default: the host's apt mirror,
#                           falling back to http://deb.debian.org/debian)
#   WARMCACHE_GOROOT        Go toolchain to copy (default /usr/local/go)
set -euo pipefail

DEBIAN_REV=2
BUSYBOX_REV=1
ENTRYPOINT_REV=1
HTTPD_REV=1
SILENT_REV=1
DIND_REV=1

LABEL_KEY=io.warmcache.testimage.version
TAG_DEBIAN=warmcache-test/debian:1
TAG_BUSYBOX=warmcache-test/busybox:1
TAG_ENTRYPOINT=warmcache-test/entrypoint:1
TAG_HTTPD=warmcache-test/httpd:1
TAG_SILENT=warmcache-test/silent:1
TAG_DIND=warmcache-test/dind:1
SUITE=bookworm

CACHE_DIR=${WARMCACHE_IMAGE_CACHE:-/var/cache/warmcache-test-images}
GOROOT_SRC=${WARMCACHE_GOROOT:-/usr/local/go}

prog=$(basename "$0")
die() { echo "$prog: error: $*" >&2; exit 1; }
log() { echo "$*"; }

usage() {
	cat <<EOF
usage: $prog [all|debian|busybox|entrypoint|httpd|silent|<image tag>]...
Builds (or reuses) the warmcache test images; default: all.
  debian      $TAG_DEBIAN
  busybox     $TAG_BUSYBOX
  entrypoint  $TAG_ENTRYPOINT
  httpd       $TAG_HTTPD
  silent      $TAG_SILENT
Cache directory: $CACHE_DIR (env WARMCACHE_IMAGE_CACHE)
EOF
}

# ---------------------------------------------------------------- arguments
want_debian=0 want_busybox=0 want_entrypoint=0 want_httpd=0 want_silent=0 want_dind=0
[[ $# -eq 0 ]] && set -- all
for arg in "$@"; do
	case $arg in
	-h | --help) usage; exit 0 ;;
	all) want_debian=1 want_busybox=1 want_entrypoint=1 want_httpd=1 want_silent=1 ;;
	debian | "$TAG_DEBIAN") want_debian=1 ;;
	busybox | "$TAG_BUSYBOX") want_busybox=1 ;;
	entrypoint | "$TAG_ENTRYPOINT") want_entrypoint=1 ;;
	httpd | "$TAG_HTTPD") want_httpd=1 ;;
	silent | "$TAG_SILENT") want_silent=1 ;;
	dind | "$TAG_DIND") want_dind=1 ;;
	*) usage >&2; die "unknown image '$arg'" ;;
	esac
done

# ---------------------------------------------------------------- host prerequisites
SUDO=()
if [[ $(id -u) -ne 0 ]]; then
	command -v sudo >/dev/null || die "must run as root (or have sudo) to build images"
	SUDO=(sudo)
fi

apt_updated=0
apt_install() {
	command -v apt-get >/dev/null || die "missing $*; install it manually (no apt-get on this host)"
	echo "installing host packages: $*" >&2
	if [[ $apt_updated -eq 0 ]]; then
		"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 ||
			die "apt-get update failed"
		apt_updated=1
	fi
	"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends "$@" >&2 ||
		die "apt-get install $* failed"
}

busybox_bin() {
	local b
	for b in /bin/busybox /usr/bin/busybox "$(command -v busybox || true)"; do
		[[ -n $b && -x $b ]] || continue
		# ldd succeeds only for dynamically linked binaries.
		if ! ldd "$b" >/dev/null 2>&1; then echo "$b"; return 0; fi
	done
	return 1
}

ensure_busybox() {
	BUSYBOX=$(busybox_bin) && return 0
	apt_install busybox-static
	BUSYBOX=$(busybox_bin) || die "no statically linked busybox found after installing busybox-static"
}

ensure_mmdebstrap() {
	command -v mmdebstrap >/dev/null && return 0
	apt_install mmdebstrap
}

command -v docker >/dev/null || die "docker CLI not found (apt-get install docker.io)"
if ! docker_err=$(timeout 30 docker version --format '{{.Server.Version}}' 2>&1 >/dev/null); then
	die "Docker daemon not reachable (DOCKER_HOST=${DOCKER_HOST:-unix:///var/run/docker.sock}); is dockerd running?
${docker_err}"
fi

# ---------------------------------------------------------------- helpers
current_version() { # tag -> value of the version label, empty if no such image
	docker image inspect --format "{{ index .Config.Labels \"$LABEL_KEY\" }}" "$1" 2>/dev/null || true
}

image_id() { docker image inspect --format '{{.Id}}' "$1" 2>/dev/null || true; }

# import_image tag version tarball|- change...  (reads the tarball from stdin for -)
import_image() {
	local tag=$1 version=$2 src=$3 old new
	shift 3
	local changes=(--change "LABEL $LABEL_KEY=$version")
	local c
	for c in "$@"; do changes+=(--change "$c"); done
	old=$(image_id "$tag")
	docker import --message "built by test/images/build.sh ($version)" "${changes[@]}" "$src" "$tag" >/dev/null
	new=$(image_id "$tag")
	# Drop the stale image we replaced; fails harmlessly if something still uses it.
	if [[ -n $old && $old != "$new" ]]; then docker image rm "$old" >/dev/null 2>&1 || true; fi
}

# up_to_date tag version: prints "reused" line and returns 0 if nothing to do.
up_to_date() {
	if [[ $(current_version "$1") == "$2" ]]; then
		log "$1: reused"
		return 0
	fi
	return 1
}

TMP=$(mktemp -d "${TMPDIR:-/tmp}/warmcache-images.XXXXXX")
cleanup() { rm -rf "$TMP"; }
trap cleanup EXIT

# ---------------------------------------------------------------- debian
host_mirror() {
	local m=""
	if [[ -n ${WARMCACHE_DEBIAN_MIRROR:-} ]]; then
		echo "${WARMCACHE_DEBIAN_MIRROR%/}"; return
	fi
	# deb822 sources first, then one-line sources; pick the first URI ending in /debian.
	m=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
		awk 'tolower($1)=="uris:" { for (i=2;i<=NF;i++) if ($i ~ /^https?:\/\/.*\/debian\/?$/) { print $i; exit } }') || true
	if [[ -z $m ]]; then
		m=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
			awk '$1=="deb" { for (i=2;i<=NF;i++) if ($i ~ /^https?:\/\/.*\/debian\/?$/) { print $i; exit } }') || true
	fi
	m=${m:-http://deb.debian.org/debian}
	echo "${m%/}"
}

build_debian() {
	local tag=$TAG_DEBIAN govers version tarball start how
	[[ -x $GOROOT_SRC/bin/go ]] || die "no Go toolchain at $GOROOT_SRC (set WARMCACHE_GOROOT)"
	govers=$(head -n1 "$GOROOT_SRC/VERSION" 2>/dev/null || "$GOROOT_SRC/bin/go" env GOVERSION)
	version="$DEBIAN_REV-$govers"
	up_to_date "$tag" "$version" && return 0
	start=$SECONDS
	tarball="$CACHE_DIR/debian-$SUITE-$version.tar"

	if [[ -s $tarball ]]; then
		how="from cached $tarball"
	else
		ensure_mmdebstrap
		local mirror sec partial logf goroot_q
		mirror=$(host_mirror)
		sec="${mirror%/debian}/debian-security"
		partial="$CACHE_DIR/.debian-$SUITE-$version.partial.tar"
		logf="$CACHE_DIR/mmdebstrap.log"
		goroot_q=$(printf '%q' "$GOROOT_SRC")
		rm -f "$partial"
		if ! "${SUDO[@]}" mmdebstrap \
			--mode=root --variant=minbase --format=tar \
			--include=bash,git,ca-certificates,procps,coreutils,findutils,curl,passwd,zip,unzip \
			--dpkgopt='path-exclude=/usr/share/man/*' \
			--dpkgopt='path-exclude=/usr/share/info/*' \
			--dpkgopt='path-exclude=/usr/share/locale/*' \
			--dpkgopt='path-include=/usr/share/locale/locale.alias' \
			--dpkgopt='path-exclude=/usr/share/doc/*' \
			--dpkgopt='path-include=/usr/share/doc/*/copyright' \
			--customize-hook='chroot "$1" useradd --create-home --home-dir /home/ci --uid 1000 --user-group --shell /bin/bash ci' \
			--customize-hook='mkdir -p "$1/go/bin" "$1/go/src" && chmod -R 1777 "$1/go"' \
			--customize-hook="tar -C $goroot_q -cf - --anchored --exclude=./test --exclude=./api --exclude=./doc . | { mkdir -p \"\$1/usr/local/go\" && tar -C \"\$1/usr/local/go\" -xpf -; }" \
			--customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/cache/debconf/*-old "$1"/var/log/apt/* "$1"/var/log/dpkg.log "$1"/var/log/alternatives.log' \
			"$SUITE" "$partial" \
			"deb $mirror $SUITE main" \
			"deb $mirror $SUITE-updates main" \
			"deb $sec $SUITE-security main" \
			>"$logf" 2>&1; then
			tail -n 40 "$logf" >&2
			rm -f "$partial"
			die "mmdebstrap failed (last 40 lines above, full log in $logf)"
		fi
		mv -f "$partial" "$tarball"
		# Drop tarballs of older versions.
		find "$CACHE_DIR" -maxdepth 1 -name "debian-$SUITE-*.tar" ! -name "$(basename "$tarball")" -delete
		how="mmdebstrap"
	fi

	import_image "$tag" "$version" "$tarball" \
		'ENV PATH=/usr/local/go/bin:/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
		'ENV GOPATH=/go' \
		'ENV GOTOOLCHAIN=local' \
		'WORKDIR /' \
		'CMD ["bash"]'
	log "$tag: built in $((SECONDS - start))s ($how)"
}

# ---------------------------------------------------------------- busybox / entrypoint
busybox_version() { # rev -> version string tied to the busybox binary
	echo "$1-bb$(sha256sum "$BUSYBOX" | cut -c1-12)"
}

make_busybox_rootfs() { # dir
	local d=$1 applet
	mkdir -p "$d/bin" "$d/etc" "$d/tmp" "$d/root"
	chmod 1777 "$d/tmp"
	chmod 0700 "$d/root"
	cp "$BUSYBOX" "$d/bin/busybox"
	chmod 0755 "$d/bin/busybox"
	while read -r applet; do
		case $applet in
		busybox | bash | "") continue ;; # never provide a bash
		esac
		ln -sf busybox "$d/bin/$applet"
	done < <("$BUSYBOX" --list)
	[[ -e $d/bin/sh ]] || die "busybox has no sh applet"
	cat >"$d/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
	cat >"$d/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF
}

tar_rootfs() { tar --numeric-owner --owner=0 --group=0 -C "$1" -cf - .; }

build_busybox() {
	local tag=$TAG_BUSYBOX version start d
	ensure_busybox
	version=$(busybox_version "$BUSYBOX_REV")
	up_to_date "$tag" "$version" && return 0
	start=$SECONDS
	d="$TMP/busybox"
	make_busybox_rootfs "$d"
	tar_rootfs "$d" | import_image "$tag" "$version" - 'ENV PATH=/bin' 'CMD ["sh"]'
	log "$tag: built in $((SECONDS - start))s"
}

build_entrypoint() {
	local tag=$TAG_ENTRYPOINT version start d
	ensure_busybox
	version=$(busybox_version "$ENTRYPOINT_REV")
	up_to_date "$tag" "$version" && return 0
	start=$SECONDS
	d="$TMP/entrypoint"
	make_busybox_rootfs "$d"
	cat >"$d/entrypoint.sh" <<'EOF'
#!/bin/sh
echo entrypoint-ran > /tmp/entrypoint-marker
export FROM_ENTRYPOINT=yes
exec "$@"
EOF
	chmod 0755 "$d/entrypoint.sh"
	tar_rootfs "$d" | import_image "$tag" "$version" - \
		'ENV PATH=/bin' 'ENTRYPOINT ["/entrypoint.sh"]' 'CMD ["sh"]'
	log "$tag: built in $((SECONDS - start))s"
}

# A service for the services tests: serves /www on port 8080 and publishes
# its own environment as /www/env.txt, so a test can see what it was given.
build_httpd() {
	local tag=$TAG_HTTPD version start d
	ensure_busybox
	version=$(busybox_version "$HTTPD_REV")
	up_to_date "$tag" "$version" && return 0
	start=$SECONDS
	d="$TMP/httpd"
	make_busybox_rootfs "$d"
	mkdir -p "$d/www"
	echo "hello from the httpd service" >"$d/www/index.html"
	tar_rootfs "$d" | import_image "$tag" "$version" - \
		'ENV PATH=/bin' 'EXPOSE 8080' \
		'CMD ["sh", "-c", "env > /www/env.txt; echo httpd service listening on 8080; exec httpd -f -p 8080 -h /www"]'
	log "$tag: built in $((SECONDS - start))s"
}

# A service whose port never opens: it EXPOSEs 9999, says so on stdout
# and sleeps, so the readiness wait times out and shows its output.
build_silent() {
	local tag=$TAG_SILENT version start d
	ensure_busybox
	version=$(busybox_version "$SILENT_REV")
	up_to_date "$tag" "$version" && return 0
	start=$SECONDS
	d="$TMP/silent"
	make_busybox_rootfs "$d"
	tar_rootfs "$d" | import_image "$tag" "$version" - \
		'ENV PATH=/bin' 'EXPOSE 9999' \
		'CMD ["sh", "-c", "echo silent service: up, but never listening on 9999; exec sleep 2147483647"]'
	log "$tag: built in $((SECONDS - start))s"
}

# ---------------------------------------------------------------- main
"${SUDO[@]}" mkdir -p "$CACHE_DIR"
# Serialise concurrent runs (parallel test packages) on the cache directory.
exec 9>>"$CACHE_DIR/.lock" || die "cannot open lock file in $CACHE_DIR"
flock 9

# ---------------------------------------------------------------- dind
build_dind() {
	local tag=$TAG_DIND version="$DIND_REV-$SUITE" tarball start mirror sec logf partial
	up_to_date "$tag" "$version" && return 0
	start=$SECONDS
	tarball="$CACHE_DIR/dind-$version.tar"
	if [[ ! -s $tarball ]]; then
		ensure_mmdebstrap
		mirror=$(host_mirror)
		sec="${mirror%/debian}/debian-security"
		partial="$CACHE_DIR/.dind-$version.partial.tar"
		logf="$CACHE_DIR/mmdebstrap-dind.log"
		if ! "${SUDO[@]}" mmdebstrap --mode=root --variant=minbase --format=tar \
			--include=docker.io,iptables,ca-certificates,procps \
			--dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
			--customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
			"$SUITE" "$partial" "deb $mirror $SUITE main" "deb $sec $SUITE-security main" >"$logf" 2>&1; then
			tail -n 40 "$logf" >&2
			rm -f "$partial"
			die "mmdebstrap (dind) failed (last 40 lines above, full log in $logf)"
		fi
		mv -f "$partial" "$tarball"
	fi
	import_image "$tag" "$version" "$tarball" \
		'EXPOSE 2375' \
		'ENTRYPOINT ["dockerd", "--host=tcp://0.0.0.0:2375", "--tls=false"]'
	log "$tag: built in $((SECONDS - start))s"
}

if [[ $want_debian -eq 1 ]]; then build_debian; fi
if [[ $want_busybox -eq 1 ]]; then build_busybox; fi
if [[ $want_entrypoint -eq 1 ]]; then build_entrypoint; fi
if [[ $want_httpd -eq 1 ]]; then build_httpd; fi
if [[ $want_silent -eq 1 ]]; then build_silent; fi
if [[ $want_dind -eq 1 ]]; then build_dind; fi
