#!/usr/bin/env bash
# hazardgw installer for an edge box (README.md, "Install on an edge box").
#
# Ships in every bundle (hazardgw-<version>-linux-<arch>.tar.gz), in every wheelhouse (run
# by install-wheels.sh) and in every installed version (/opt/hazardgw/<version>/install.sh).
#
#   ./install.sh                 install or upgrade to the version beside this script
#   ./install.sh --rollback      switch back to the previous version
#   --root DIR                   install into DIR instead of / (tests, image builds):
#                                no systemctl, the user is created only if DIR/etc/passwd exists
#   --force                      reinstall the files of a version that is already installed;
#                                with --rollback: switch even if the old version refuses the config
#
# What it does (every step idempotent):
#   1. user and group hazardgw (system, no login, home /var/lib/hazardgw)
#   2. /opt/hazardgw/<version>: the files (a version already there is kept as it is)
#   3. /etc/hazardgw (0750 root:hazardgw): site.yaml (0640) and hazardgw.env (0600) from the
#      examples ONLY if absent; /var/lib/hazardgw (store.path) 0700 hazardgw:hazardgw
#   4. `hazardgw check` of the live /etc/hazardgw/site.yaml with the NEW version; if it
#      refuses the config, nothing is switched and the script fails
#   5. /opt/hazardgw/current -> <version>, /opt/hazardgw/previous -> the version it replaced
#   6. the systemd unit; when systemd runs: daemon-reload and restart of an enabled or active
#      service (if the new version fails to start, current is switched back and restarted)
# Older versions stay in /opt/hazardgw until you remove them (never current or previous).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PROG=install.sh
[ -r "$HERE/install-lib.sh" ] || { echo "$PROG: error: $HERE/install-lib.sh is missing (it ships beside $PROG)" >&2; exit 1; }
# shellcheck source=packaging/install-lib.sh
. "$HERE/install-lib.sh"
ROOT=""
ROLLBACK=0
FORCE=0
IN_PLACE=0      # the files are already in /opt/hazardgw/<version> (install-wheels.sh, the .deb)
UNIT_DEST=""    # default: $ROOT/etc/systemd/system; the .deb ships its unit in /lib/systemd/system

while [ $# -gt 0 ]; do
    case $1 in
        --root) [ $# -ge 2 ] || die "--root needs a directory"; ROOT=${2%/}; shift 2 ;;
        --rollback) ROLLBACK=1; shift ;;
        --force) FORCE=1; shift ;;
        --in-place) IN_PLACE=1; shift ;;
        --unit-installed-at) UNIT_DEST=$2; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done

resolve_root

OPT=$ROOT/opt/hazardgw
ETC=$ROOT/etc/hazardgw
STORE=$ROOT/var/lib/hazardgw
UNIT=${UNIT_DEST:-$ROOT/etc/systemd/system/hazardgw.service}

# key=value lines written by packaging/build-bundle.sh or build-wheels.sh
buildinfo() { [ -f "$1/BUILDINFO" ] || return 0; sed -n "s/^$2=//p" "$1/BUILDINFO" | head -n 1; }

# ------------------------------------------------------------------ helpers

# The variables of the unit's EnvironmentFile (KEY=VALUE lines; '#' comments; one level of
# quotes), so that `hazardgw check` sees the same ${NAME}s as the service.
load_env() {
    local file=$1 line key val
    [ -r "$file" ] || return 0
    while IFS= read -r line || [ -n "$line" ]; do
        line=${line#"${line%%[![:space:]]*}"}
        case $line in ''|'#'*|';'*) continue ;; esac
        key=${line%%=*}
        val=${line#*=}
        case $key in ''|[0-9]*|*[!A-Za-z0-9_]*) say "warning: $file: ignoring line '${key}=...'"; continue ;; esac
        case $val in
            \"*\") val=${val#\"}; val=${val%\"} ;;
            \'*\') val=${val#\'}; val=${val%\'} ;;
        esac
        export "$key=$val"
    done < "$file"
}

check_config() {  # check_config VERSION -> status of `hazardgw check` of the live config
    local exe=$OPT/$1/hazardgw
    [ -x "$exe" ] || die "$exe is missing or not executable"
    say "checking $ETC/site.yaml with hazardgw $1"
    ( load_env "$ETC/hazardgw.env"; cd /; "$exe" check -c "$ETC/site.yaml" )
}

ensure_user() {
    HZ_UID=$(id -u); HZ_GID=$(id -g)
    local passwd=$ROOT/etc/passwd
    if [ ! -f "$passwd" ]; then
        say "no $passwd: user hazardgw not created, files stay owned by $(id -un)"
        return
    fi
    if ! grep -q '^hazardgw:' "$passwd"; then
        local args=(--system --user-group --home-dir /var/lib/hazardgw --no-create-home
                    --shell /usr/sbin/nologin --comment "hazardgw gateway")
        [ -z "$ROOT" ] || args+=(--prefix "$ROOT")
        command -v useradd >/dev/null 2>&1 || die "useradd not found (Debian package passwd)"
        useradd "${args[@]}" hazardgw
        say "created system user hazardgw"
    fi
    HZ_UID=$(awk -F: '$1 == "hazardgw" { print $3 }' "$passwd")
    HZ_GID=$(awk -F: '$1 == "hazardgw" { print $4 }' "$passwd")
}

owner() {  # owner UID GID -> install(1) options (none when not root: --root tests)
    if [ "$(id -u)" = 0 ]; then printf -- '-o %s -g %s' "$1" "$2"; fi
}

ensure_dirs() {
    install -d -m 0755 "$OPT"
    # shellcheck disable=SC2046
    install -d -m 0750 $(owner 0 "$HZ_GID") "$ETC"
    # store.path: spool, alarm journal, ack links, outbox. Private to the service user.
    install -d -m 0755 "$(dirname "$STORE")"
    # shellcheck disable=SC2046
    install -d -m 0700 $(owner "$HZ_UID" "$HZ_GID") "$STORE"
    chmod 0700 "$STORE"
    [ "$(id -u)" != 0 ] || chown "$HZ_UID:$HZ_GID" "$STORE"
}

install_config() {  # install_config VERSION_DIR: examples only where nothing is configured yet
    local share=$1/share
    if [ ! -e "$ETC/site.yaml" ]; then
        # shellcheck disable=SC2046
        install -m 0640 $(owner 0 "$HZ_GID") "$share/site.example.yaml" "$ETC/site.yaml"
        say "wrote the example config $ETC/site.yaml: edit it for your site"
    elif [ "$(id -u)" = 0 ] && [ "$(stat -c %u "$ETC/site.yaml")" = 0 ]; then
        # the service user reads it (and nobody else): group hazardgw, 0640
        chgrp "$HZ_GID" "$ETC/site.yaml"
        chmod u+rw,g+r,g-wx,o-rwx "$ETC/site.yaml"
    fi
    # Still the example (just written, or the .deb's conffile): not started until edited.
    EXAMPLE_SITE=0
    if cmp -s "$ETC/site.yaml" "$share/site.example.yaml"; then EXAMPLE_SITE=1; fi
    if [ ! -e "$ETC/hazardgw.env" ]; then
        # shellcheck disable=SC2046
        install -m 0600 $(owner 0 0) "$share/hazardgw.env.example" "$ETC/hazardgw.env"
        say "wrote $ETC/hazardgw.env (secrets named in site.yaml as \${NAME}; root only)"
    fi
}

install_files() {  # copy the tree beside this script to $OPT/$VERSION (atomically)
    local dest=$OPT/$VERSION tmp=$OPT/.$VERSION.partial
    if [ -e "$dest" ] && [ "$FORCE" = 0 ]; then
        say "$dest is already installed: kept as it is (--force reinstalls it)"
        return
    fi
    rm -rf "$tmp"
    mkdir -p "$tmp"
    cp -a "$HERE/." "$tmp/"
    chown -R 0:0 "$tmp" 2>/dev/null || true
    chmod 0755 "$tmp"
    if [ -e "$dest" ]; then
        rm -rf "$OPT/.$VERSION.old"
        mv "$dest" "$OPT/.$VERSION.old"
        mv "$tmp" "$dest"
        rm -rf "$OPT/.$VERSION.old"
    else
        mv "$tmp" "$dest"
    fi
    say "installed $dest"
}

link() {  # link NAME TARGET: atomic symlink switch
    ln -sfn "$2" "$OPT/.$1.tmp"
    mv -T "$OPT/.$1.tmp" "$OPT/$1"
}

current_version() { readlink "$OPT/current" 2>/dev/null || true; }

install_unit() {  # install_unit VERSION_DIR
    if [ -n "$UNIT_DEST" ]; then
        return  # shipped by the package manager
    fi
    install -d -m 0755 "$(dirname "$UNIT")"
    install -m 0644 "$1/share/hazardgw.service" "$UNIT"
}

restart_service() {  # restart_service NEW OLD: restart; on failure go back to OLD
    local new=$1 old=$2
    if ! systemd_running; then
        if [ -n "$ROOT" ]; then
            say "--root: systemctl skipped (on a box: systemctl daemon-reload && systemctl restart hazardgw)"
        else
            say "systemd is not running here (container or chroot): systemctl skipped;" \
                "start $OPT/current/hazardgw run -c $ETC/site.yaml yourself"
        fi
        return 0
    fi
    systemctl daemon-reload
    if systemctl -q is-enabled hazardgw 2>/dev/null || systemctl -q is-active hazardgw 2>/dev/null; then
        say "restarting hazardgw.service with $new"
        if ! systemctl restart hazardgw; then
            if [ -n "$old" ] && [ "$old" != "$new" ] && [ -x "$OPT/$old/hazardgw" ]; then
                say "hazardgw $new failed to start: switching back to $old"
                link current "$old"
                link previous "$new"
                systemctl restart hazardgw || true
                die "hazardgw $new did not start (journalctl -u hazardgw); running $old again"
            fi
            die "hazardgw $new did not start (journalctl -u hazardgw)"
        fi
        say "hazardgw.service is running $new"
    elif [ "$EXAMPLE_SITE" = 1 ]; then
        say "next: edit $ETC/site.yaml (and secrets in $ETC/hazardgw.env), then" \
            "$OPT/current/hazardgw check -c $ETC/site.yaml && systemctl enable --now hazardgw"
    else
        say "enabling and starting hazardgw.service"
        systemctl enable --now hazardgw
    fi
}

summary() {
    say "current: $(current_version)  previous: $(readlink "$OPT/previous" 2>/dev/null || echo none)"
    say "installed: $(cd "$OPT" && find . -mindepth 1 -maxdepth 1 -type d ! -name '.*' -printf '%f ' | sort)"
}

# ------------------------------------------------------------------ main

# A box where the .deb is installed is managed by dpkg (upgrade: dpkg -i, rollback: dpkg -i
# of the old .deb); the .deb's own postinst calls this script with --unit-installed-at.
if [ -z "$UNIT_DEST" ] && deb_installed; then
    die "hazardgw is installed from the .deb here: upgrade with dpkg -i / apt install ./hazardgw_<version>_<arch>.deb"
fi

if [ "$ROLLBACK" = 1 ]; then
    [ -d "$OPT" ] || die "nothing installed in $OPT"
    cur=$(current_version)
    prev=$(readlink "$OPT/previous" 2>/dev/null || true)
    [ -n "$prev" ] || die "no previous version recorded in $OPT/previous"
    [ -x "$OPT/$prev/hazardgw" ] || die "previous version $prev is not installed in $OPT/$prev"
    if ! check_config "$prev"; then
        [ "$FORCE" = 1 ] || die "hazardgw $prev refuses the live config: current stays $cur (--force switches anyway)"
        say "warning: --force: switching to $prev although it refuses the config"
    fi
    EXAMPLE_SITE=0
    link current "$prev"
    [ -z "$cur" ] || link previous "$cur"
    install_unit "$OPT/$prev"
    say "rolled back: current -> $prev (was $cur)"
    restart_service "$prev" "$cur"
    summary
    exit 0
fi

VERSION=$(buildinfo "$HERE" version)
[ -n "$VERSION" ] || die "$HERE/BUILDINFO is missing or has no version= line (run install.sh from an unpacked bundle or wheelhouse)"
KIND=$(buildinfo "$HERE" kind)

# A bundle carries the libc it was built against: refuse an older one here, with a clear
# message instead of the dynamic loader's.
GLIBC_MIN=$(buildinfo "$HERE" glibc_min)
if [ -n "$GLIBC_MIN" ]; then
    have=$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{ print $2 }')
    if [ -z "$have" ]; then
        die "this bundle needs GNU libc >= $GLIBC_MIN; this system has none (musl?): use a wheelhouse"
    fi
    if [ "$(printf '%s\n%s\n' "$GLIBC_MIN" "$have" | sort -V | head -n 1)" != "$GLIBC_MIN" ]; then
        die "this bundle needs GNU libc >= $GLIBC_MIN, the system has $have:" \
            "build the bundle on a box as old as this one (make bundle) or use a wheelhouse"
    fi
fi

ensure_user
ensure_dirs
if [ "$IN_PLACE" = 1 ]; then
    [ -x "$OPT/$VERSION/hazardgw" ] || die "--in-place: $OPT/$VERSION/hazardgw is missing"
else
    install_files
fi
install_config "$OPT/$VERSION"

old=$(current_version)
if ! check_config "$VERSION"; then
    die "hazardgw $VERSION refuses $ETC/site.yaml (errors above): current stays at ${old:-nothing};" \
        "fix the config and run $PROG again ($OPT/$VERSION stays installed)"
fi
if [ "$old" != "$VERSION" ]; then
    [ -z "$old" ] || link previous "$old"
    link current "$VERSION"
    say "current -> $VERSION${old:+ (previous: $old)} [$KIND]"
fi
install_unit "$OPT/$VERSION"
restart_service "$VERSION" "$old"
summary
