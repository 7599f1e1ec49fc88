#!/usr/bin/env bash
# Install hems on a 64-bit Raspberry Pi OS / Debian gateway from this checkout.
#
#   sudo deploy/install.sh               install or update (safe to run again: only changes what differs)
#   sudo deploy/install.sh --uninstall   stop and remove unit, udev rule and venv; keep /etc/hems, /var/lib/hems
#   sudo deploy/install.sh --uninstall --purge   also remove /etc/hems, /var/lib/hems and the hems user
#   deploy/install.sh --dry-run          print what would be done, change nothing
#   deploy/install.sh --root DIR         install the files under DIR (tests, image building); user,
#                                        systemctl and udevadm steps are printed, not run.
#                                        HEMS_INSTALL_ROOT=DIR does the same.
#   --skip-venv                          leave the virtual environment alone (tests)
set -euo pipefail

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; }

SOURCE_DIR=$(cd "$(dirname "$0")/.." && pwd)
ROOT=${HEMS_INSTALL_ROOT:-}
DRY_RUN=0
UNINSTALL=0
PURGE=0
SKIP_VENV=0
PYTHON=${PYTHON:-python3}
while [ $# -gt 0 ]; do
    case "$1" in
        --root) ROOT=${2:?--root needs a directory}; shift ;;
        --root=*) ROOT=${1#--root=} ;;
        --dry-run) DRY_RUN=1 ;;
        --uninstall) UNINSTALL=1 ;;
        --purge) PURGE=1 ;;
        --skip-venv) SKIP_VENV=1 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
if [ "$PURGE" = 1 ] && [ "$UNINSTALL" = 0 ]; then
    echo "install.sh: --purge only goes with --uninstall" >&2; exit 2
fi
if [ -n "$ROOT" ]; then
    ROOT=$(realpath -m "$ROOT")
    if [ "$ROOT" = / ]; then ROOT=; fi
fi

VENV=/opt/hems/venv
CONFIG_DIR=/etc/hems
STATE_DIR=/var/lib/hems
UNIT_FILE=/etc/systemd/system/hems.service
UDEV_RULE=/etc/udev/rules.d/99-hems-serial.rules
EXAMPLE_CONFIG=$SOURCE_DIR/deploy/examples/hems.toml
CHANGES=0

say() { echo "hems-install: $*"; }
# A change to files under $ROOT: done unless --dry-run.
change() {
    CHANGES=$((CHANGES + 1))
    if [ "$DRY_RUN" = 1 ]; then say "would: $*"; return 1; fi
    say "$*"
}
# A change to the running system (users, services, udev): never done under --root.
system() {
    CHANGES=$((CHANGES + 1))
    if [ "$DRY_RUN" = 1 ] || [ -n "$ROOT" ]; then say "would run: $(printf '%q ' "$@")"; return 0; fi
    say "run: $(printf '%q ' "$@")"
    "$@"
}

check_platform() {
    local machine bits
    machine=$(uname -m)
    bits=$(getconf LONG_BIT)
    # A 32-bit Raspberry Pi OS on a 64-bit kernel reports aarch64 but has a 32-bit
    # userland, for which the solver wheels do not exist: check both.
    case "$machine" in
        aarch64|x86_64) ;;
        *) echo "install.sh: $machine is not supported: hems needs a 64-bit OS (aarch64 or x86_64)" >&2; exit 1 ;;
    esac
    if [ "$bits" != 64 ]; then
        echo "install.sh: this is a $bits-bit userland on a $machine kernel: install a 64-bit OS" >&2; exit 1
    fi
    if [ "$DRY_RUN" = 0 ] && [ -z "$ROOT" ] && [ "$(id -u)" != 0 ]; then
        echo "install.sh: run as root (sudo), or use --dry-run / --root DIR" >&2; exit 1
    fi
}

# Copy $1 to $ROOT$2 with mode $3 when the content differs; return 0 if it changed.
install_file() {
    local source=$1 target=$ROOT$2 mode=$3
    if [ -f "$target" ] && cmp -s "$source" "$target"; then return 1; fi
    if change "install $2"; then
        install -D -m "$mode" "$source" "$target"
    fi
    return 0
}

ensure_user() {
    if [ -z "$ROOT" ] && id hems >/dev/null 2>&1; then
        if ! id -nG hems | tr ' ' '\n' | grep -qx dialout; then
            system usermod -a -G dialout hems
        fi
        return
    fi
    if [ -n "$ROOT" ]; then
        say "would run (not under --root): useradd --system --user-group --groups dialout hems"
        return
    fi
    system useradd --system --user-group --groups dialout --home-dir "$STATE_DIR" --no-create-home \
        --shell /usr/sbin/nologin --comment "hems home energy management" hems
}

source_digest() {
    # What the venv was built from: every file pip would package, so any edit rebuilds.
    (cd "$SOURCE_DIR" && find pyproject.toml hems drivers -type f ! -path '*/__pycache__/*' \
        ! -name '*.pyc' -print0 | sort -z | xargs -0 sha256sum) | sha256sum | cut -d' ' -f1
}

ensure_venv() {
    if [ "$SKIP_VENV" = 1 ]; then say "venv: skipped (--skip-venv)"; return 1; fi
    local venv=$ROOT$VENV digest
    digest=$(source_digest)
    if [ -f "$venv/.hems-source" ] && [ "$(cat "$venv/.hems-source")" = "$digest" ]; then return 1; fi
    if [ ! -x "$venv/bin/python" ]; then
        if change "create virtual environment $VENV"; then
            "$PYTHON" -c 'import struct, sys; sys.exit(struct.calcsize("P") != 8)' \
                || { echo "install.sh: $PYTHON is not a 64-bit Python" >&2; exit 1; }
            "$PYTHON" -m venv "$venv"
        fi
    fi
    if change "install hems from $SOURCE_DIR into $VENV"; then
        "$venv/bin/python" -m pip install --quiet --no-cache-dir --upgrade pip
        "$venv/bin/python" -m pip install --quiet --no-cache-dir "${SOURCE_DIR}[p1]"
        # The journal handler; it needs libsystemd-dev and a compiler, and hems works without it.
        "$venv/bin/python" -m pip install --quiet --no-cache-dir "${SOURCE_DIR}[p1,systemd]" ||
            echo "install.sh: systemd-python not installed; hems logs to stderr (journald keeps it)" >&2
        echo "$digest" > "$venv/.hems-source"
    fi
    return 0
}

ensure_config() {
    local config=$ROOT$CONFIG_DIR/hems.toml changed=0
    if [ ! -d "$ROOT$CONFIG_DIR" ]; then
        changed=1
        if change "create $CONFIG_DIR"; then install -d -m 0750 "$ROOT$CONFIG_DIR"; fi
    fi
    if [ -e "$config" ]; then
        :  # never overwrite the installer's configuration
    elif [ ! -f "$EXAMPLE_CONFIG" ]; then
        say "no $CONFIG_DIR/hems.toml and no example to copy: write it before starting hems"
    else
        changed=1
        if change "copy example configuration to $CONFIG_DIR/hems.toml (edit it)"; then
            install -m 0640 "$EXAMPLE_CONFIG" "$config"
        fi
    fi
    # systemd does not chown ConfigurationDirectory=: give the service's group read
    # access here (the file may hold broker credentials, so not world-readable).
    if [ "$changed" = 1 ]; then system chown -R root:hems "$CONFIG_DIR"; fi
}

do_install() {
    check_platform
    ensure_user
    local venv_changed=0 unit_changed=0
    ensure_venv && venv_changed=1
    ensure_config
    install_file "$SOURCE_DIR/hems.service" "$UNIT_FILE" 0644 && unit_changed=1
    if install_file "$SOURCE_DIR/deploy/udev/99-hems-serial.rules" "$UDEV_RULE" 0644; then
        system udevadm control --reload
        system udevadm trigger --subsystem-match=tty --action=add
    fi
    if [ "$unit_changed" = 1 ]; then system systemctl daemon-reload; fi
    if [ -n "$ROOT" ]; then
        if [ "$unit_changed" = 1 ]; then system systemctl enable hems.service; fi
    elif ! systemctl is-enabled --quiet hems.service 2>/dev/null; then
        system systemctl enable hems.service
    fi
    if [ -z "$ROOT" ] && [ "$DRY_RUN" = 0 ] && systemctl is-active --quiet hems.service \
        && [ $((venv_changed + unit_changed)) -gt 0 ]; then
        system systemctl restart hems.service
    fi
    if [ "$CHANGES" = 0 ]; then say "nothing to change"; fi
    if [ "$DRY_RUN" = 0 ] && [ -z "$ROOT" ] && ! systemctl is-active --quiet hems.service; then
        say "edit $CONFIG_DIR/hems.toml, check it with '$VENV/bin/hems check-config $CONFIG_DIR/hems.toml',"
        say "then start hems: systemctl start hems"
    fi
}

remove_path() {
    case "$1" in  # only ever the paths this script installs
        "$UNIT_FILE"|"$UDEV_RULE"|"$VENV"|/opt/hems|"$CONFIG_DIR"|"$STATE_DIR") ;;
        *) echo "install.sh: refusing to remove $1" >&2; exit 1 ;;
    esac
    if [ -e "$ROOT$1" ] || [ -L "$ROOT$1" ]; then
        if change "remove $1"; then rm -rf -- "$ROOT$1"; fi
    fi
}

do_uninstall() {
    if [ -e "$ROOT$UNIT_FILE" ]; then
        system systemctl disable --now hems.service
        remove_path "$UNIT_FILE"
        system systemctl daemon-reload
    fi
    if [ -e "$ROOT$UDEV_RULE" ]; then
        remove_path "$UDEV_RULE"
        system udevadm control --reload
    fi
    remove_path "$VENV"
    if [ -d "$ROOT/opt/hems" ] && [ -z "$(ls -A "$ROOT/opt/hems")" ]; then remove_path /opt/hems; fi
    if [ "$PURGE" = 1 ]; then
        remove_path "$CONFIG_DIR"
        remove_path "$STATE_DIR"
        if [ -n "$ROOT" ] || id hems >/dev/null 2>&1; then system userdel hems; fi
    else
        say "kept $CONFIG_DIR and $STATE_DIR (use --uninstall --purge to remove them)"
    fi
    if [ "$CHANGES" = 0 ]; then say "nothing to remove"; fi
}

if [ "$UNINSTALL" = 1 ]; then do_uninstall; else do_install; fi
