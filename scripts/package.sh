#!/usr/bin/env bash
# Builds the release artefacts into target/packages/ (README "Install as a package"):
#   datakit-linux-<goarch>-<version>.tar.gz   the release tarball: `datakit` + conf.d/samples/
#   <tarball>.sig                             its detached ed25519 signature (with --key)
#   version                                   the JSON an install base serves next to them
#   datakit_<version>_<arch>.deb              Debian/Ubuntu package
#   datakit-<version>-1.<rpmarch>.rpm         RHEL/Fedora/SUSE package (needs rpmbuild)
#
# Usage: scripts/package.sh [--version X.Y.Z] [--key FILE] [--profile release|debug]
#                           [--bin PATH] [--out DIR] [--formats tar,deb,rpm] [--compress fast|best]
#   --version  stamp a copy of the binary with this version (the same code under another
#              version, no rebuild); default: the version the binary reports
#   --key      sign the tarball with this private key (`datakit tool --keygen DIR` makes one)
#   --profile  cargo profile to build (default release); ignored with --bin
#   --bin      package this already-built binary instead of building
#   --out      output directory (default target/packages)
#   --formats  which artefacts (default tar,deb,rpm; the version file comes with tar)
#   --compress fast = gzip -1 (seconds, for tests), best = xz/gzip -9; default: best when
#              building a release, fast otherwise
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

die() { echo "package.sh: $*" >&2; exit 1; }

version="" key="" profile=release bin="" out="$root/target/packages" formats="tar,deb,rpm" compress=""
while [ $# -gt 0 ]; do
    case "$1" in
    --version) version="${2:?--version needs X.Y.Z}"; shift 2 ;;
    --key) key="${2:?--key needs a FILE}"; shift 2 ;;
    --profile) profile="${2:?--profile needs release or debug}"; shift 2 ;;
    --bin) bin="${2:?--bin needs a PATH}"; shift 2 ;;
    --out) out="${2:?--out needs a DIR}"; shift 2 ;;
    --formats) formats="${2:?--formats needs a list}"; shift 2 ;;
    --compress) compress="${2:?--compress needs fast or best}"; shift 2 ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
    esac
done
want() { case ",$formats," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

if [ -z "$bin" ]; then
    # The etcd election backend needs protoc at build time; without it the package has the
    # Dataway election backend only (said here, and by the agent if backend = "etcd").
    features=()
    if command -v protoc >/dev/null 2>&1; then
        features=(--features etcd)
    else
        echo "package.sh: protoc not found (apt-get install protobuf-compiler): building without the etcd election backend" >&2
    fi
    case "$profile" in
    release) cargo build --release --locked -p datakit --bin datakit "${features[@]}" ;;
    debug) cargo build --locked -p datakit --bin datakit "${features[@]}" ;;
    *) die "--profile must be release or debug, not $profile" ;;
    esac
    bin="$root/target/$profile/datakit"
    [ -n "$compress" ] || { [ "$profile" = release ] && compress=best || compress=fast; }
fi
[ -n "$compress" ] || compress=fast
case "$compress" in fast|best) ;; *) die "--compress must be fast or best" ;; esac
[ -x "$bin" ] || die "$bin is not an executable binary; build it or pass --bin"
[ -z "$key" ] || [ -r "$key" ] || die "cannot read the key $key; make one with: datakit tool --keygen DIR"

case "$(uname -m)" in
x86_64) goarch=amd64 debarch=amd64 rpmarch=x86_64 ;;
aarch64) goarch=arm64 debarch=arm64 rpmarch=aarch64 ;;
*) die "unsupported architecture $(uname -m)" ;;
esac

stage="$(mktemp -d "${TMPDIR:-/tmp}/dk-package.XXXXXX")"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$out"

# The binary, stamped with --version when given (same length, NUL padded; see
# dk_proto::VERSION_STAMP_MARK), checked by asking the copy for its version.
cp "$bin" "$stage/datakit"
chmod 0755 "$stage/datakit"
if [ -n "$version" ]; then
    [[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+([-+~][0-9A-Za-z.]+)?$ ]] ||
        die "--version must look like X.Y.Z (optionally -suffix), not '$version'"
    python3 - "$stage/datakit" "$version" <<'PY' || die "cannot stamp $bin with version $version"
import sys
path, version = sys.argv[1], sys.argv[2].encode()
mark, total = b"DK-VERSION-STAMP:", 64
data = bytearray(open(path, "rb").read())
room = total - len(mark) - 1
if len(version) > room:
    sys.exit(f"version {version.decode()} is longer than {room} bytes")
spots, i = [], data.find(mark)
while i >= 0:
    rest = bytes(data[i + len(mark):i + total])
    head = rest.split(b"\0", 1)[0]
    if head and all(0x21 <= b < 0x7f for b in head) and rest[len(head):] == b"\0" * (len(rest) - len(head)):
        spots.append(i)
    i = data.find(mark, i + 1)
if len(spots) != 1:
    sys.exit(f"{path}: found {len(spots)} version stamps, expected 1 (is it a datakit binary of this workspace?)")
start = spots[0] + len(mark)
data[start:spots[0] + total] = version + b"\0" * (total - len(mark) - len(version))
open(path, "wb").write(data)
PY
fi
reported="$("$stage/datakit" version)" || die "$bin does not run: $reported"
# First line: "datakit 1.84.1 (build 0.1.0+abc)" (Datakit's fields follow).
first="$(echo "$reported" | head -n1)"
got="$(echo "$first" | awk '{print $2}')"
commit="$(echo "$first" | sed -n 's/.*(build \(.*\))$/\1/p')"
if [ -n "$version" ] && [ "$got" != "$version" ]; then
    die "the stamped binary reports '$got', not '$version'"
fi
version="$got"
[ -n "$commit" ] || die "cannot read the build id from: $reported"
# The newest glibc symbol version the binary needs, for the packages' dependency.
glibc="$(python3 -c '
import re, sys
found = {tuple(map(int, m.split(b"."))) for m in re.findall(rb"GLIBC_(2\.[0-9]+)", open(sys.argv[1], "rb").read())}
print(".".join(map(str, max(found))) if found else "2.17")' "$stage/datakit")"

# conf.d/samples/: every sample config of the workspace (the loader skips conf.d/samples/).
mkdir -p "$stage/tar/conf.d/samples"
cp "$stage/datakit" "$stage/tar/datakit"
(cd conf.d && find . -name '*.conf' -type f | sort | while read -r f; do
    mkdir -p "$stage/tar/conf.d/samples/$(dirname "$f")"
    cp "$f" "$stage/tar/conf.d/samples/$f"
done)
find "$stage/tar" -type d -exec chmod 0755 {} +
find "$stage/tar/conf.d" -type f -exec chmod 0644 {} +

if [ "$compress" = best ]; then gz="gzip -9n"; else gz="gzip -1n"; fi
epoch="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}"
tarball="datakit-linux-$goarch-$version.tar.gz"

if want tar; then
    tar -C "$stage/tar" --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" \
        -cf - datakit conf.d | $gz >"$out/$tarball"
    rm -f "$out/$tarball.sig"
    if [ -n "$key" ]; then
        "$stage/datakit" tool --sign "$out/$tarball" --key "$key" ||
            die "cannot sign $tarball with $key"
    fi
    sha="$(sha256sum "$out/$tarball" | awk '{print $1}')"
    printf '{"version":"%s","commit":"%s","tarball":"%s","sha256":"%s"}\n' \
        "$version" "$commit" "$tarball" "$sha" >"$out/version"
    echo "$out/$tarball${key:+ (+ .sig)} and $out/version"
fi

# The installed tree shared by deb and rpm.
pkgroot() { # $1 = dir, $2 = systemd unit dir
    mkdir -p "$1/usr/local/datakit/data" "$1/usr/local/datakit/cache" "$1/var/log/datakit" \
        "$1/usr/bin" "$1$2"
    cp -a "$stage/tar/datakit" "$stage/tar/conf.d" "$1/usr/local/datakit/"
    chmod 0750 "$1/usr/local/datakit/data" "$1/usr/local/datakit/cache"
    ln -s ../local/datakit/datakit "$1/usr/bin/datakit"
    install -m 0644 packaging/systemd/datakit.service "$1$2/datakit.service"
}

if want deb; then
    d="$stage/deb"
    pkgroot "$d" /lib/systemd/system
    mkdir -p "$d/DEBIAN"
    size_kb="$(du -sk --exclude=DEBIAN "$d" | awk '{print $1}')"
    sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$debarch/" -e "s/@SIZE_KB@/$size_kb/" \
        -e "s/@GLIBC@/$glibc/" \
        packaging/deb/control.in >"$d/DEBIAN/control"
    install -m 0755 packaging/deb/postinst packaging/deb/prerm packaging/deb/postrm "$d/DEBIAN/"
    if [ "$compress" = best ]; then z=(-Zxz -z6); else z=(-Zgzip -z1); fi
    deb="$out/datakit_${version}_$debarch.deb"
    SOURCE_DATE_EPOCH="$epoch" dpkg-deb --root-owner-group "${z[@]}" --build "$d" "$deb" >/dev/null
    echo "$deb"
fi

if want rpm; then
    command -v rpmbuild >/dev/null ||
        die "rpmbuild is missing: apt-get install rpm (or leave rpm out of --formats)"
    r="$stage/rpmroot"
    pkgroot "$r" /usr/lib/systemd/system
    rpmver="${version//-/\~}"
    if [ "$compress" = best ]; then payload=w6.xzdio; else payload=w1.gzdio; fi
    rpmbuild -bb --quiet \
        --define "_topdir $stage/rpmbuild" --define "_rpmdir $stage/rpms" \
        --define "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm" \
        --define "dk_version $rpmver" --define "dk_stage $r" --define "dk_glibc $glibc" \
        --define "_binary_payload $payload" --define "source_date_epoch_from_changelog 0" \
        --target "$rpmarch" packaging/rpm/datakit.spec >/dev/null
    rpm="$out/datakit-$rpmver-1.$rpmarch.rpm"
    mv "$stage/rpms/datakit-$rpmver-1.$rpmarch.rpm" "$rpm"
    echo "$rpm"
fi
