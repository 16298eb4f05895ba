#!/bin/sh
# Fetch the reference implementation from Debian trixie and unpack it under
# build/reference/ (or $1):
#   libblkio1, libblkio-dev  libblkio 1.5: the library, its header, and the
#                            sources of its example programs
#                            (usr/share/doc/libblkio-dev/examples/)
#   nbdkit                   nbdkit 1.42, for its upstream blkio plugin
#                            (usr/lib/x86_64-linux-gnu/nbdkit/plugins/)
#
# The trixie entry is temporary: it is built from the machine's own apt
# configuration (the URI and keyring of the entry that serves this machine's
# release), lives in a scratch directory with its own package lists and
# cache, and is removed on exit.  The system's apt state is never touched.
# Idempotent: an existing unpacked tree is kept.
#
# Prints the reference root on success; exits 1 (with the reason) if the
# packages cannot be had.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:-$top/build/reference}
stamp=$dest/.complete
PKGS="libblkio1 libblkio-dev nbdkit"

if [ -f "$stamp" ]; then
    echo "$dest"
    exit 0
fi

# The entry serving this machine's release: its URI and keyring.
. /etc/os-release
release=${VERSION_CODENAME:-bookworm}
uri= keyring=
for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    # deb822 stanzas: pick the first whose Suites names the release itself.
    found=$(awk -v rel="$release" '
        BEGIN { RS = ""; FS = "\n" }
        {
            u = ""; s = ""; k = ""
            for (i = 1; i <= NF; i++) {
                if ($i ~ /^URIs:/) { u = $i; sub(/^URIs:[ \t]*/, "", u); sub(/[ \t].*/, "", u) }
                if ($i ~ /^Suites:/) { s = " " $i " " }
                if ($i ~ /^Signed-By:/) { k = $i; sub(/^Signed-By:[ \t]*/, "", k) }
            }
            if (u != "" && s ~ (" " rel " ")) { print u " " k; exit }
        }' "$f")
    if [ -n "$found" ]; then
        uri=${found%% *}
        keyring=${found#* }
        [ "$keyring" = "$found" ] && keyring=
        break
    fi
done
if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
    uri=$(awk -v rel="$release" '$1 == "deb" && $3 == rel { print $2; exit }' \
        /etc/apt/sources.list)
fi
if [ -z "$uri" ]; then
    echo "fetch-reference: no apt entry for $release found in /etc/apt" >&2
    exit 1
fi
[ -n "$keyring" ] || keyring=/usr/share/keyrings/debian-archive-keyring.gpg

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT INT TERM
mkdir -p "$scratch/parts" "$scratch/lists/partial" "$scratch/cache/archives/partial"
cat > "$scratch/parts/trixie.sources" <<EOF
Types: deb
URIs: $uri
Suites: trixie
Components: main
Signed-By: $keyring
EOF
APT="-o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts=$scratch/parts
     -o Dir::State::Lists=$scratch/lists -o Dir::Cache=$scratch/cache
     -o Dir::State::status=/dev/null -o Debug::NoLocking=1"

# shellcheck disable=SC2086
if ! apt-get $APT -q update >"$scratch/update.log" 2>&1; then
    cat "$scratch/update.log" >&2
    echo "fetch-reference: apt-get update of the temporary trixie entry failed" >&2
    exit 1
fi
mkdir -p "$scratch/debs"
# shellcheck disable=SC2086
if ! (cd "$scratch/debs" && apt-get $APT -q download $PKGS) >"$scratch/dl.log" 2>&1; then
    cat "$scratch/dl.log" >&2
    echo "fetch-reference: apt-get download $PKGS from trixie failed" >&2
    exit 1
fi

rm -rf "$dest"
mkdir -p "$dest"
for deb in "$scratch"/debs/*.deb; do
    dpkg-deb -x "$deb" "$dest"
    dpkg-deb --showformat='${Package} ${Version}\n' -W "$deb" >> "$dest/VERSIONS"
done
touch "$stamp"
echo "$dest"
