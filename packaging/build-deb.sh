#!/usr/bin/env bash
# `make deb`: dist/hazardgw_<version>_<debian arch>.deb from the bundle tarball of this
# architecture (the same tree install.sh installs), with dpkg-deb. packaging/README.md.
#
#   /opt/hazardgw/<version>/            the bundle (hazardgw, _internal/, install.sh, share/, BUILDINFO)
#   /lib/systemd/system/hazardgw.service
#   /etc/hazardgw/site.yaml, hazardgw.env   conffiles (the example config and an empty secrets file)
#   /usr/share/doc/hazardgw/            copyright, changelog
# postinst runs the bundle's install.sh in place (user, /var/lib/hazardgw, hazardgw check,
# /opt/hazardgw/current, restart of an enabled service); prerm/postrm stop, disable, unlink.
# lintian (Debian package lintian) runs when it is installed; any error fails the build.
set -euo pipefail
# shellcheck source=packaging/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

VERSION=$(project_version)
ARCH=$(uname -m)
case $ARCH in
    x86_64) DEB_ARCH=amd64 ;;
    aarch64) DEB_ARCH=arm64 ;;
    *) DEB_ARCH=$(dpkg --print-architecture) ;;
esac
TARBALL=$DIST/hazardgw-$VERSION-linux-$ARCH.tar.gz
[ -f "$TARBALL" ] || die "$TARBALL is missing: make bundle first"
DEB=$DIST/hazardgw_${VERSION}_$DEB_ARCH.deb
PKG=$ROOT/build/deb/hazardgw_${VERSION}_$DEB_ARCH
SRC=$ROOT/packaging/debian

rm -rf "$PKG"
install -d -m 0755 "$PKG/DEBIAN" "$PKG/opt/hazardgw" "$PKG/lib/systemd/system" "$PKG/usr/share/doc/hazardgw" \
    "$PKG/usr/share/lintian/overrides"
tar -xzf "$TARBALL" -C "$PKG/opt/hazardgw"
mv "$PKG/opt/hazardgw/hazardgw-$VERSION-linux-$ARCH" "$PKG/opt/hazardgw/$VERSION"
B=$PKG/opt/hazardgw/$VERSION
GLIBC_MIN=$(sed -n 's/^glibc_min=//p' "$B/BUILDINFO")

install -m 0644 "$B/share/hazardgw.service" "$PKG/lib/systemd/system/hazardgw.service"
# /etc/hazardgw: root-owned in the archive (the group hazardgw does not exist yet at unpack
# time); install.sh in postinst gives the directory and site.yaml the group hazardgw.
install -d -m 0750 "$PKG/etc/hazardgw"
install -m 0640 "$B/share/site.example.yaml" "$PKG/etc/hazardgw/site.yaml"
install -m 0600 "$B/share/hazardgw.env.example" "$PKG/etc/hazardgw/hazardgw.env"
install -m 0644 "$SRC/copyright" "$PKG/usr/share/doc/hazardgw/copyright"
printf 'hazardgw (%s) unstable; urgency=medium\n\n  * Release %s (commit %s).\n\n -- hazardgw maintainers <hazardgw@example.org>  %s\n' \
    "$VERSION" "$VERSION" "$(git_commit)" "$(date -R)" | gzip -9n > "$PKG/usr/share/doc/hazardgw/changelog.gz"
chmod 0644 "$PKG/usr/share/doc/hazardgw/changelog.gz"
install -m 0644 "$SRC/lintian-overrides" "$PKG/usr/share/lintian/overrides/hazardgw"

installed_size=$(du -sk --exclude=DEBIAN "$PKG" | cut -f1)
sed -e "s/@VERSION@/$VERSION/g" -e "s/@DEB_ARCH@/$DEB_ARCH/g" -e "s/@INSTALLED_SIZE@/$installed_size/g" \
    -e "s/@GLIBC_MIN@/$GLIBC_MIN/g" "$SRC/control.in" > "$PKG/DEBIAN/control"
for script in postinst prerm postrm; do
    sed -e "s/@VERSION@/$VERSION/g" "$SRC/$script" > "$PKG/DEBIAN/$script"
    chmod 0755 "$PKG/DEBIAN/$script"
done
install -m 0644 "$SRC/conffiles" "$PKG/DEBIAN/conffiles"
(cd "$PKG" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z \
    | xargs -0 md5sum > DEBIAN/md5sums)
chmod 0644 "$PKG/DEBIAN/md5sums"

dpkg-deb --root-owner-group -Zxz --build "$PKG" "$DEB.partial" >/dev/null
mv "$DEB.partial" "$DEB"
write_checksums
say "$DEB: $(du -m "$DEB" | cut -f1) MB"

if command -v lintian >/dev/null 2>&1; then
    say "lintian $DEB"
    lintian --no-tag-display-limit --suppress-tags-from-file /dev/null "$DEB" > "$ROOT/build/deb/lintian.txt" 2>&1 || true
    sed 's/^/  /' "$ROOT/build/deb/lintian.txt"
    if grep -q '^E: ' "$ROOT/build/deb/lintian.txt"; then
        die "lintian reports errors"
    fi
    say "lintian: no errors ($(grep -c '^W: ' "$ROOT/build/deb/lintian.txt" || true) warnings)"
else
    say "lintian is not installed (Debian package lintian): skipped"
fi
