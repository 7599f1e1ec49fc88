#!/usr/bin/env bash
# Add a home to the community broker's password file, or change its password.
#
#   sudo deploy/mosquitto/add-home.sh HOME_ID                 new random password, printed once
#   HEMS_HOME_PASSWORD=... add-home.sh HOME_ID                use this password
#   add-home.sh --password-file FILE HOME_ID                  another file (default /etc/mosquitto/hems/passwd)
#   add-home.sh --reload HOME_ID                              also make the running mosquitto re-read it
#
# The username IS the home id: the ACL (deploy/mosquitto/acl) lets user X publish only under
# hems/v1/<community>/home/X/. The id must match the protocol's identifiers (1-64 letters, digits,
# '-' or '_') and must not be the manager's name (HEMS_MANAGER_USER, default "manager") or the grid
# operator's (HEMS_GRID_OPERATOR_USER, default "grid-operator").
# The password never appears on a command line: it is hashed from a private temp file with
# mosquitto_passwd -U. Write the printed password to the home's [market] password_file.
set -euo pipefail

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; }
fail() { echo "add-home.sh: $*" >&2; exit 2; }

PASSWORD_FILE=/etc/mosquitto/hems/passwd
RELOAD=0
MANAGER_USER=${HEMS_MANAGER_USER:-manager}
GRID_OPERATOR_USER=${HEMS_GRID_OPERATOR_USER:-grid-operator}
HOME_ID=
while [ $# -gt 0 ]; do
    case "$1" in
        --password-file) PASSWORD_FILE=${2:?--password-file needs a file}; shift ;;
        --password-file=*) PASSWORD_FILE=${1#--password-file=} ;;
        --reload) RELOAD=1 ;;
        -h|--help) usage; exit 0 ;;
        -*) usage >&2; fail "unknown option $1" ;;
        *) [ -z "$HOME_ID" ] || fail "one home id at a time"; HOME_ID=$1 ;;
    esac
    shift
done
[ -n "$HOME_ID" ] || { usage >&2; fail "missing HOME_ID"; }
if ! [[ $HOME_ID =~ ^[A-Za-z0-9_-]{1,64}$ ]]; then
    fail "home id '$HOME_ID': use 1-64 letters, digits, '-' or '_'"
fi
[ "$HOME_ID" != "$MANAGER_USER" ] || fail "'$HOME_ID' is the community manager's account, not a home"
[ "$HOME_ID" != "$GRID_OPERATOR_USER" ] || fail "'$HOME_ID' is the grid operator's account, not a home"
command -v mosquitto_passwd >/dev/null || fail "mosquitto_passwd not found (apt-get install mosquitto)"

GENERATED=0
if [ -n "${HEMS_HOME_PASSWORD:-}" ]; then
    PASSWORD=$HEMS_HOME_PASSWORD
else
    command -v openssl >/dev/null || fail "openssl not found: set HEMS_HOME_PASSWORD instead"
    PASSWORD=$(openssl rand -base64 24)
    GENERATED=1
fi
case "$PASSWORD" in *$'\n'*) fail "the password must be one line" ;; esac

umask 077
DIR=$(dirname "$PASSWORD_FILE")
mkdir -p "$DIR"
ENTRY=$(mktemp "$DIR/.add-home.XXXXXX")
NEW=$(mktemp "$DIR/.passwd.XXXXXX")
trap 'rm -f "$ENTRY" "$NEW"' EXIT

printf '%s:%s\n' "$HOME_ID" "$PASSWORD" >"$ENTRY"
mosquitto_passwd -U "$ENTRY"
REPLACED=0
if [ -f "$PASSWORD_FILE" ]; then
    # Keep every other user; the file's owner and mode carry over to the new copy.
    while IFS= read -r line || [ -n "$line" ]; do
        if [ "${line%%:*}" = "$HOME_ID" ]; then REPLACED=1; else printf '%s\n' "$line"; fi
    done <"$PASSWORD_FILE" >"$NEW"
    chown --reference="$PASSWORD_FILE" "$NEW" 2>/dev/null || true
    chmod --reference="$PASSWORD_FILE" "$NEW"
else
    # A new file: readable by the broker (group mosquitto on Debian), by nobody else.
    chmod 640 "$NEW"
    if getent group mosquitto >/dev/null; then chgrp mosquitto "$NEW" 2>/dev/null || true; fi
fi
cat "$ENTRY" >>"$NEW"
mv "$NEW" "$PASSWORD_FILE"

if [ "$REPLACED" = 1 ]; then
    echo "add-home.sh: changed the password of home '$HOME_ID' in $PASSWORD_FILE" >&2
else
    echo "add-home.sh: added home '$HOME_ID' to $PASSWORD_FILE" >&2
fi
if [ "$GENERATED" = 1 ]; then
    echo "password for '$HOME_ID' (shown once; write it to the home's [market] password_file): $PASSWORD"
fi
if [ "$RELOAD" = 1 ]; then
    # mosquitto re-reads its password file and ACL on SIGHUP (systemctl reload sends it).
    systemctl reload mosquitto
    echo "add-home.sh: mosquitto reloaded" >&2
fi
