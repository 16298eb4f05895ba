#!/bin/bash
# Fetch the guest kernel for the test VM into the cache (see vm-common.sh).
#
# The guest needs Debian's 6.12 kernel: bookworm's own 6.1 is built without
# CONFIG_VDPA, so it has neither vduse nor vhost_vdpa.  The package is taken
# from whatever suite the machine's apt sources already offer it in
# (bookworm-security does); failing that, from <codename>-backports on the
# mirror the machine already uses.  It is fetched with `apt-get download` and
# unpacked with `dpkg -x`: nothing is installed on the host.
#
# Usage: tests/vm/setup-kernel.sh [--force]
#   --force   download again even if a kernel is cached
# Environment:
#   BLKIO_VM_CACHE          cache directory (see vm-common.sh)
#   BLKIO_VM_KERNEL_PKG     exact linux-image package name to fetch
#   BLKIO_VM_FORCE_BACKPORTS=1   skip the configured suites (to test that path)
# Exit status: 0 ready, 1 failure, 77 cannot be had here (no apt, no network).

set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
. "$here/vm-common.sh"

force=0
[ "${1:-}" = --force ] && force=1

cache=$(vm_cache_dir)
mkdir -p "$cache/kernel"

log() { printf 'setup-kernel: %s\n' "$*" >&2; }

vm_cache_lock "$cache"

if [ $force = 0 ] && [ -s "$cache/kernel/current" ]; then
    kver=$(cat "$cache/kernel/current")
    if [ -f "$cache/kernel/$kver/boot/vmlinuz-$kver" ]; then
        log "kernel $kver already in $cache"
        exit 0
    fi
fi

if ! command -v apt-get >/dev/null || ! command -v dpkg >/dev/null; then
    log "apt-get/dpkg not available: cannot fetch the guest kernel"
    exit 77
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# apt's download sandbox user must be able to write here.
chmod 755 "$tmp"

apt_opts=()
# As root, apt would hand the download to its unprivileged _apt user, who
# cannot write to our private temporary directory.
[ "$(id -u)" = 0 ] && apt_opts=(-o APT::Sandbox::User=root)

# Newest linux-image-6.12.<N>+<tag>-amd64 the given apt configuration knows,
# preferring the signed image (the unsigned one has the same modules).
pick_package()
{
    apt-cache "${apt_opts[@]}" search --names-only '^linux-image-6\.12\.' 2>/dev/null |
        awk '{print $1}' |
        grep -E '^linux-image-6\.12\.[0-9]+\+[a-z0-9.~]+-amd64(-unsigned)?$' |
        sort -V | awk '
            /-unsigned$/ { u = $0; next }
            { s = $0 }
            END { if (s != "") print s; else if (u != "") print u }'
}

have_candidate()
{
    apt-cache "${apt_opts[@]}" policy "$1" 2>/dev/null |
        awk '/Candidate:/ { exit ($2 == "(none)" || $2 == "") }'
}

pkg=${BLKIO_VM_KERNEL_PKG:-}

if [ -z "$pkg" ] && [ "${BLKIO_VM_FORCE_BACKPORTS:-0}" != 1 ]; then
    pkg=$(pick_package || true)
    if [ -z "$pkg" ] && [ "$(id -u)" = 0 ]; then
        log "no 6.12 kernel in the package lists: running apt-get update"
        apt-get -q update >&2 || true
        pkg=$(pick_package || true)
    fi
    if [ -n "$pkg" ] && ! have_candidate "$pkg"; then
        pkg=
    fi
fi

# Fallback: <codename>-backports, on the mirror URI of the machine's own
# sources, through a private apt configuration in $tmp.  The system's
# sources and lists are not touched, so there is nothing to remove after.
if [ -z "$pkg" ]; then
    codename=$(. /etc/os-release && printf '%s' "${VERSION_CODENAME:-}")
    if [ -z "$codename" ]; then
        log "cannot tell the distribution codename from /etc/os-release"
        exit 77
    fi
    # First URI of a source that serves the plain "<codename>" suite:
    # deb822 files first, then the one-line format.
    read -r uri key < <(
        {
            for f in /etc/apt/sources.list.d/*.sources; do
                [ -f "$f" ] && { cat "$f"; echo; }
            done
        } | awk -v c="$codename" '
            function flush() {
                if (!done && uris != "" && (" " suites " ") ~ (" " c " ")) {
                    split(uris, u, " ")
                    print u[1], (key == "" ? "-" : key); done = 1
                }
                uris = suites = key = ""
            }
            /^[ \t]*$/ { flush(); next }
            /^[ \t]*#/ { next }
            tolower($1) == "uris:"      { $1 = ""; uris = $0 }
            tolower($1) == "suites:"    { $1 = ""; suites = $0 }
            tolower($1) == "signed-by:" { key = $2 }
            END { flush() }'
        if [ -f /etc/apt/sources.list ]; then
            awk -v c="$codename" '
                $1 == "deb" {
                    i = 2
                    if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
                    if ($(i + 1) == c) { print $i, "-"; exit }
                }' /etc/apt/sources.list
        fi
        echo
    ) || true
    if [ -z "${uri:-}" ]; then
        log "no apt source for suite $codename found to derive a backports URI from"
        exit 77
    fi
    [ "$key" = - ] && key=/usr/share/keyrings/debian-archive-keyring.gpg
    log "using $codename-backports from $uri for the kernel download"
    mkdir -p "$tmp/apt/sources.list.d" "$tmp/apt/lists/partial" \
             "$tmp/apt/cache/archives/partial"
    cat > "$tmp/apt/sources.list.d/backports.sources" <<EOF
Types: deb
URIs: $uri
Suites: $codename-backports
Components: main
Signed-By: $key
EOF
    apt_opts+=(-o "Dir::Etc::SourceList=/dev/null"
              -o "Dir::Etc::SourceParts=$tmp/apt/sources.list.d"
              -o "Dir::State::Lists=$tmp/apt/lists"
              -o "Dir::Cache=$tmp/apt/cache"
              -o "Debug::NoLocking=1")
    if ! apt-get "${apt_opts[@]}" -q update >&2; then
        log "apt-get update of $codename-backports failed (no network?)"
        exit 77
    fi
    pkg=$(pick_package || true)
    if [ -z "$pkg" ]; then
        log "no linux-image-6.12.*-amd64 package in $codename-backports either"
        exit 77
    fi
fi

log "downloading $pkg"
if ! (cd "$tmp" && apt-get "${apt_opts[@]}" -q download "$pkg" >&2); then
    log "apt-get download $pkg failed (no network?)"
    exit 77
fi
deb=$(ls "$tmp"/*.deb)

mkdir "$tmp/root"
dpkg -x "$deb" "$tmp/root"
kver=$(ls "$tmp/root/lib/modules" 2>/dev/null | head -n1)
if [ -z "$kver" ] || [ ! -f "$tmp/root/boot/vmlinuz-$kver" ]; then
    log "$pkg has no /boot/vmlinuz-<kver> with /lib/modules/<kver>"
    exit 1
fi
# The package's postinst would run depmod; we run it on the unpacked tree so
# modprobe -d can resolve dependencies.
depmod -b "$tmp/root" "$kver"

rm -rf "$cache/kernel/$kver"
mv "$tmp/root" "$cache/kernel/$kver"
printf '%s\n' "$kver" > "$cache/kernel/current.new"
mv "$cache/kernel/current.new" "$cache/kernel/current"
# Older kernels are of no further use.
for d in "$cache/kernel"/*/; do
    [ "$(basename "$d")" = "$kver" ] || rm -rf "$d"
done
log "kernel $kver ready in $cache/kernel/$kver"
