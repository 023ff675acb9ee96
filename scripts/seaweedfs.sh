#!/usr/bin/env bash
# SeaweedFS, the S3-compatible store the fleet-cache tests run against.
#
#   scripts/seaweedfs.sh build              build (or reuse) the pinned weed binary;
#                                           prints its path
#   scripts/seaweedfs.sh start <dir> <port> [s3.json]
#                                           start `weed server -s3` on 127.0.0.1 with
#                                           its data in <dir>, S3 on <port> (the
#                                           identities of s3.json, SeaweedFS's
#                                           -s3.config, if given); waits until
#                                           the S3 port answers; prints the pid
#
# The module is downloaded through the Go module proxy at a pinned version
# (`go install` refuses it: its go.mod has a replace directive), copied to a
# writable temp dir and built there with CGO_ENABLED=0. The binary is cached
# outside the repository in $WARMCACHE_SEAWEEDFS_CACHE
# (default /var/cache/warmcache-seaweedfs), like the job images.
set -euo pipefail

VERSION=v0.0.0-20261109003541-7506e5f91cd6
MODULE=github.com/seaweedfs/seaweedfs
CACHE=${WARMCACHE_SEAWEEDFS_CACHE:-/var/cache/warmcache-seaweedfs}
BIN="$CACHE/weed-$VERSION"
export PATH="$PATH:/usr/local/go/bin"

build() {
	if [ -x "$BIN" ]; then
		echo "$BIN"
		return
	fi
	echo "seaweedfs: building $MODULE@$VERSION (a few minutes)" >&2
	local gomod dir tmp
	# go mod download needs a module context only for GOFLAGS=-mod; run it
	# from a temp dir so the repository's go.mod is not touched.
	tmp=$(mktemp -d)
	trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' RETURN
	gomod=$(cd "$tmp" && GOFLAGS= go mod download -json "$MODULE@$VERSION")
	dir=$(printf '%s\n' "$gomod" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	if [ -z "$dir" ] || [ ! -d "$dir" ]; then
		echo "seaweedfs: go mod download gave no Dir:" >&2
		printf '%s\n' "$gomod" >&2
		exit 1
	fi
	cp -r "$dir" "$tmp/src"
	chmod -R u+w "$tmp/src"
	mkdir -p "$CACHE"
	(cd "$tmp/src" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -o "$BIN.tmp" ./weed)
	mv "$BIN.tmp" "$BIN"
	echo "$BIN"
}

start() {
	local dir=$1 port=$2 s3config=${3:-} bin
	bin=$(build)
	mkdir -p "$dir"
	# Every port explicit and derived from <port>, so parallel stores do not
	# collide: master, volume, filer and their gRPC ports (+10000).
	local master=$((port + 1)) volume=$((port + 2)) filer=$((port + 3))
	"$bin" server -ip=127.0.0.1 -ip.bind=127.0.0.1 -dir="$dir" \
		-master.port=$master -volume.port=$volume -filer.port=$filer \
		-master.port.grpc=$((master + 10000)) -volume.port.grpc=$((volume + 10000)) \
		-filer.port.grpc=$((filer + 10000)) \
		-s3 -s3.port="$port" -s3.port.grpc=$((port + 10000)) -s3.port.iceberg=0 -s3.port.lance=0 \
		-master.volumeSizeLimitMB=64 -volume.max=0 ${s3config:+-s3.config="$s3config"} \
		>"$dir/weed.log" 2>&1 </dev/null &
	local pid=$!
	local deadline=$((SECONDS + 60))
	# bash's /dev/tcp: no curl needed on a fresh machine.
	until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
		if ! kill -0 "$pid" 2>/dev/null; then
			echo "seaweedfs: weed exited; last log lines:" >&2
			tail -n 20 "$dir/weed.log" >&2
			exit 1
		fi
		if [ "$SECONDS" -ge "$deadline" ]; then
			echo "seaweedfs: S3 port $port did not answer in 60 s; last log lines:" >&2
			tail -n 20 "$dir/weed.log" >&2
			kill "$pid" 2>/dev/null || true
			exit 1
		fi
		sleep 0.2
	done
	echo "$pid"
}

case "${1:-build}" in
build) build ;;
start)
	[ $# -ge 3 ] || { echo "usage: $0 start <dir> <port> [s3.json]" >&2; exit 2; }
	start "$2" "$3" "${4:-}"
	;;
*) echo "usage: $0 build | start <dir> <port> [s3.json]" >&2; exit 2 ;;
esac
