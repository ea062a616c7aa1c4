#!/usr/bin/env bash
# Makes the image's base where no container registry is reachable: a minimal Debian bookworm
# (debootstrap's minbase variant) from a Debian mirror, imported into Docker as NAME. The Dockerfile's
# default base, debian:bookworm-slim, is the same release made the same way (debuerreotype runs
# debootstrap); this script is for machines that can reach a Debian mirror but no registry.
# Usage: docker/base.sh [NAME]   (NAME: medbench-base:bookworm). Does nothing if NAME exists.
# MIRROR (default: the first Debian mirror in /etc/apt's sources, else deb.debian.org) and
# SECURITY_MIRROR choose the mirrors; DOCKER the docker client.
set -euo pipefail
name=${1:-medbench-base:bookworm}
suite=bookworm
docker=${DOCKER:-docker}

if "$docker" image inspect "$name" > /dev/null 2>&1; then
  echo "base: $name exists"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "base: $name is missing; debootstrap needs root: sudo bash docker/base.sh $name" >&2
  exit 1
fi
# debootstrap, and Debian's archive key to verify the release with (not there by default on Ubuntu).
missing=()
command -v debootstrap > /dev/null || missing+=(debootstrap)
[ -f /usr/share/keyrings/debian-archive-keyring.gpg ] || missing+=(debian-archive-keyring)
if [ "${#missing[@]}" -gt 0 ]; then
  if ! command -v apt-get > /dev/null; then
    echo "base: $name is missing, and so is ${missing[*]}: install it, or build with --build-arg BASE_IMAGE=debian:$suite-slim where a registry is reachable" >&2
    exit 1
  fi
  echo "base: installing ${missing[*]} (apt-get)"
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null
fi

# The mirror this machine's apt already uses (a local mirror or proxy is often the only one reachable).
first_mirror() {
  cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2> /dev/null \
    | grep -v '^[[:space:]]*#' | grep -oE "https?://[^[:space:]]+/$1/?([[:space:]]|$)" | head -n 1 | tr -d '[:space:]' || true
}
mirror=${MIRROR:-$(first_mirror debian)}
mirror=${mirror:-http://deb.debian.org/debian}
security=${SECURITY_MIRROR:-$(first_mirror debian-security)}
security=${security:-http://deb.debian.org/debian-security}

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
echo "base: debootstrap --variant=minbase $suite from $mirror (a few minutes)"
debootstrap --variant=minbase "$suite" "$root" "$mirror" > "$root.log" 2>&1 || {
  tail -n 20 "$root.log" >&2
  exit 1
}
rm -f "$root.log"
# The suites a Debian image has: the release, its updates and its security updates.
rm -f "$root/etc/apt/sources.list"
cat > "$root/etc/apt/sources.list.d/debian.sources" << EOF
Types: deb
URIs: ${mirror%/}
Suites: $suite $suite-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${security%/}
Suites: $suite-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | "$docker" import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["bash"]' \
  - "$name" > /dev/null
echo "base: $name imported"
