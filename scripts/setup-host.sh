#!/usr/bin/env bash
# Installs and starts what warmcache's demo and tests need on a Debian
# machine: the Docker engine (docker.io), git, the tools that build the
# local job images, and a loopback registry (docker-registry, with htpasswd
# from apache2-utils) for the image-pull tests. Idempotent: does nothing
# that is already done.
set -euo pipefail

need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v git >/dev/null 2>&1 || need+=(git)
command -v mmdebstrap >/dev/null 2>&1 || need+=(mmdebstrap)
[ -x /bin/busybox ] || need+=(busybox-static)
command -v make >/dev/null 2>&1 || need+=(make)
[ -x /usr/bin/docker-registry ] || need+=(docker-registry)
command -v htpasswd >/dev/null 2>&1 || need+=(apache2-utils)
if [ ${#need[@]} -gt 0 ]; then
	echo "setup-host: installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq "${need[@]}" >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
	echo "setup-host: starting dockerd"
	# The machine may have no init system: start the daemon directly.
	nohup dockerd >/var/log/warmcache-dockerd.log 2>&1 &
	for _ in $(seq 1 120); do
		docker info >/dev/null 2>&1 && break
		sleep 0.5
	done
	if ! docker info >/dev/null 2>&1; then
		echo "setup-host: dockerd did not come up; last log lines:" >&2
		tail -n 20 /var/log/warmcache-dockerd.log >&2 || true
		exit 1
	fi
fi
echo "setup-host: docker $(docker version --format '{{.Server.Version}}') ready"

# SeaweedFS, the S3 store of the fleet-cache tests: built once from the
# module proxy (a few minutes), then reused from its cache directory.
"$(dirname "$0")/seaweedfs.sh" build >/dev/null
echo "setup-host: seaweedfs $("$(dirname "$0")/seaweedfs.sh" build) ready"
