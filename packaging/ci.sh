#!/bin/sh
# The Debian package's CI, as root on a Debian 12 machine (a fresh one is fine):
#
#   1. install the build and check tools (apt-get)
#   2. build dist/logknock_<version>_all.deb (packaging/build-deb.sh, tests included)
#   3. lintian: no error, no warning
#   4. the unit: exposure from `systemd-analyze security --offline`
#   5. install it with apt-get, then check what it installed: `systemd-analyze
#      verify` silent, the user, the enabled unit, the autopkgtest commands
#   6. the service under a real systemd in throwaway namespaces, and the rsyslog
#      rule against the real kernel log (packaging/tests, Debian's python3)
#   7. the end-to-end scenarios against the installed /usr/bin/logknock
#   8. an upgrade (the same package again) keeps the state and removed hook links
#   9. purge, and check that nothing of the package is left behind
#
# Each step prints a line starting with "== packaging:"; the first failure stops.
set -eu
cd "$(dirname "$0")/.."
# Debian's python3 and tools only: no venv, no other interpreter on PATH.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
DEBIAN_FRONTEND=noninteractive
export PATH DEBIAN_FRONTEND
MAX_EXPOSURE=1.5
TOOLS="build-essential debhelper dh-python pybuild-plugin-pyproject python3-all
python3-setuptools lintian systemd groff-base man-db rsyslog nftables iproute2
util-linux procps
knockd netcat-openbsd bsdutils"  # the last line: what tests/e2e runs (knock, nc, logger)
# Where a file of the package could be left behind after purge.
WATCHED="/etc /usr /var /run /lib /opt /srv"

step() {
    echo "== packaging: $*" >&2
}

snapshot() {  # every path under $WATCHED whose name mentions logknock
    # (but the lock files the test labs share in /run, which are not the package's)
    # shellcheck disable=SC2086
    find $WATCHED -xdev -name '*logknock*' 2>/dev/null | grep -v '^/run/logknock-[a-z-]*\.\(state\|lock\)$' | sort
}

step "tools"
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $TOOLS >/dev/null
apt-get build-dep -y -qq ./packaging >/dev/null

if dpkg-query -W -f='${Status}' logknock 2>/dev/null | grep -q "ok installed"; then
    step "purging the logknock a previous run left installed"
    apt-get purge -y -qq logknock >/dev/null
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT INT TERM
snapshot >"$WORK/before"

step "build"
rm -f dist/logknock_*.deb
sh packaging/build-deb.sh
set -- dist/logknock_*_all.deb
[ "$#" -eq 1 ] && [ -f "$1" ] || { echo "expected one package in dist/: $*" >&2; exit 1; }
DEB=$1
dpkg-deb --info "$DEB" | grep -E '^ (Package|Version|Installed-Size|Depends):' >&2

step "lintian"
if lintian -I -E --pedantic --fail-on error,warning --color never "$DEB" >"$WORK/lintian" 2>&1
then lintian_ok=yes; else lintian_ok=no; fi
grep -v 'running with root privileges is not recommended' "$WORK/lintian" >&2 || true
[ "$lintian_ok" = yes ] || { echo "lintian: errors or warnings (above)" >&2; exit 1; }

step "systemd-analyze security --offline (at most $MAX_EXPOSURE)"
dpkg-deb -x "$DEB" "$WORK/root"
systemd-analyze security --offline=true --no-pager "$WORK/root/lib/systemd/system/logknock.service" \
    >"$WORK/security" || true
exposure=$(sed -n 's/.*Overall exposure level for logknock.service: \([0-9.]*\).*/\1/p' "$WORK/security")
echo "exposure: ${exposure:-unknown}" >&2
awk -v e="${exposure:-99}" -v max="$MAX_EXPOSURE" 'BEGIN { exit !(e <= max) }' || {
    cat "$WORK/security" >&2
    exit 1
}

step "install"
apt-get install -y -qq "./$DEB" >/dev/null
verify=$(systemd-analyze verify /lib/systemd/system/logknock.service 2>&1 || true)
[ -z "$verify" ] || { echo "systemd-analyze verify: $verify" >&2; exit 1; }
id logknock >&2
[ -L /etc/systemd/system/multi-user.target.wants/logknock.service ] \
    || { echo "logknock.service is not enabled" >&2; exit 1; }
for hook in /usr/share/logknock/hooks/*; do
    [ ! -x "$hook" ] || [ "$(readlink "/etc/logknock/hooks/${hook##*/}")" = "$hook" ] \
        || { echo "no link to $hook in /etc/logknock/hooks" >&2; exit 1; }
done
# ExecStartPre=logknock check, with the shipped configuration and the service's credentials.
setpriv --reuid=logknock --regid=logknock --groups=systemd-journal --inh-caps=-all,+net_admin \
    --ambient-caps=-all,+net_admin --bounding-set=-all,+net_admin --no-new-privs \
    env -i PATH=/usr/bin:/bin /usr/bin/logknock check
# The autopkgtest commands of debian/tests/control, as root.
sed -n 's/^Test-Command: //p' packaging/debian/tests/control | while read -r command; do
    echo "autopkgtest: $command" >&2
    (cd "$WORK" && sh -c "$command") >/dev/null
done

step "the service under systemd, the rsyslog rule (packaging/tests)"
# -P: the installed package, not the checkout, is what `import logknock` finds.
LOGKNOCK_REQUIRE_SERVICE_LAB=1 python3 -P -m pytest -p no:cacheprovider packaging/tests

# ---- end-to-end scenarios against the installed package -----------------------------
# The scenarios in tests/e2e run /usr/bin/logknock (the installed package) with
# Debian's python3. Skipped while tests/e2e does not exist.
if [ -d tests/e2e ]; then
    step "end-to-end scenarios against /usr/bin/logknock"
    # -P keeps the checkout off sys.path: `import logknock` is the installed package too.
    LOGKNOCK=/usr/bin/logknock python3 -P -m pytest -p no:cacheprovider tests/e2e
else
    step "end-to-end scenarios: skipped, no tests/e2e"
fi
# ---- end of the end-to-end scenarios ------------------------------------------------

step "upgrade keeps the state and the administrator's choices"
install -d -o logknock -g logknock -m 0700 /var/lib/logknock
echo kept >/var/lib/logknock/upgrade-check
rm -f /etc/logknock/hooks/log-only  # an administrator's choice: no log-only hook
dpkg -i "$DEB" >/dev/null  # the same version again runs the upgrade path of the scripts
[ "$(cat /var/lib/logknock/upgrade-check)" = kept ] || { echo "upgrade lost the state" >&2; exit 1; }
[ ! -e /etc/logknock/hooks/log-only ] || { echo "upgrade brought back a removed hook link" >&2; exit 1; }
[ -L /etc/logknock/hooks/nft-set ] || { echo "upgrade lost the nft-set hook link" >&2; exit 1; }

step "purge"
apt-get purge -y -qq logknock >/dev/null
if dpkg-query -W -f='${Status}' logknock 2>/dev/null | grep -q "ok installed"; then
    echo "logknock is still installed after purge" >&2
    exit 1
fi
snapshot >"$WORK/after"
if ! diff "$WORK/before" "$WORK/after" >&2; then
    echo "purge left the paths above behind" >&2
    exit 1
fi
# Debian keeps system users on purge (files they owned elsewhere keep a name).
echo "left on purpose: the system user $(id logknock)" >&2
step "done"
