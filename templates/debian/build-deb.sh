#!/bin/sh
# Builds sftpctl_<version>_<arch>.deb from BIN with plain dpkg-deb (on every Debian machine,
# so CI needs nothing more than cargo): stage the tree, write DEBIAN/, build, print the path.
# Usage: build-deb.sh BIN DEB_DIR   (run from the repository root; `make deb-package` does)
set -eu

bin=${1:?usage: build-deb.sh BIN DEB_DIR}
out_dir=${2:?usage: build-deb.sh BIN DEB_DIR}
here=$(dirname "$0")

[ -x "$bin" ] || { echo "build-deb.sh: $bin is not an executable: build it first (cargo build --release)" >&2; exit 1; }
for tool in dpkg-deb dpkg objdump gzip md5sum; do
    command -v "$tool" >/dev/null || { echo "build-deb.sh: $tool is missing (apt-get install dpkg-dev binutils gzip)" >&2; exit 1; }
done

# "sftpctl 0.1.0 (git 1a2b3c4d5e6f)" -> 0.1.0: the version of the binary packaged.
version=$("$bin" --version | awk '{print $2}')
arch=$(dpkg --print-architecture)
# The newest glibc symbol version the binary links against is the libc6 it needs.
glibc=$(objdump -T "$bin" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -t. -k1,1n -k2,2n -k3,3n -u | tail -n 1)
[ -n "$glibc" ] || { echo "build-deb.sh: found no GLIBC_ symbol versions in $bin" >&2; exit 1; }

mkdir -p "$out_dir"
stage=$(mktemp -d "$out_dir/.stage.XXXXXX")
trap 'rm -rf "$stage"' EXIT INT TERM
chmod 0755 "$stage"
umask 022

install -D -m 0755 "$bin" "$stage/usr/sbin/sftpctl"
strip --strip-unneeded "$stage/usr/sbin/sftpctl" 2>/dev/null || true

# Man pages and completions from the binary's own clap definitions.
"$bin" generate-assets --out "$stage/assets"
mkdir -p "$stage/usr/share/man/man8"
for page in "$stage"/assets/man/*.8; do
    gzip -9n -c "$page" >"$stage/usr/share/man/man8/$(basename "$page").gz"
done
# Completions stay uncompressed: bash-completion, zsh and fish load them by plain name.
install -D -m 0644 "$stage/assets/completions/sftpctl" "$stage/usr/share/bash-completion/completions/sftpctl"
install -D -m 0644 "$stage/assets/completions/_sftpctl" "$stage/usr/share/zsh/vendor-completions/_sftpctl"
install -D -m 0644 "$stage/assets/completions/sftpctl.fish" "$stage/usr/share/fish/vendor_completions.d/sftpctl.fish"
rm -rf "$stage/assets"

doc="$stage/usr/share/doc/sftpctl"
mkdir -p "$doc"
install -m 0644 "$here/copyright" "$doc/copyright"
for f in README.md docs/*.md; do
    install -m 0644 "$f" "$doc/$(basename "$f")"
done

mkdir -p "$stage/DEBIAN"
install -m 0755 "$here/prerm" "$stage/DEBIAN/prerm"
size=$(du -sk --apparent-size "$stage/usr" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" \
    -e "s/@LIBC@/libc6 (>= $glibc)/" "$here/control" >"$stage/DEBIAN/control"
(cd "$stage" && find usr -type f -print0 | sort -z | xargs -0 md5sum) >"$stage/DEBIAN/md5sums"
chmod 0644 "$stage/DEBIAN/control" "$stage/DEBIAN/md5sums"

deb="$out_dir/sftpctl_${version}_${arch}.deb"
# Exactly one package in DEB_DIR: the one just built.
rm -f "$out_dir"/sftpctl_*.deb
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
echo "$deb"
