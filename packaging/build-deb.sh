#!/bin/sh
# Builds dist/logknock_<version>_all.deb from this checkout.
#
# The files git knows (tracked, or new and not ignored) are copied to a
# temporary folder, packaging/debian becomes debian/ there, and
# dpkg-buildpackage builds the binary package with Debian's own python3 (the
# test suite runs during the build, without its root-only tests). Nothing but
# dist/ is written in the checkout.
#
#   sh packaging/build-deb.sh                 build (build dependencies must be installed)
#   sh packaging/build-deb.sh --install-deps  as root: apt-get build-dep first
#   DEB_BUILD_OPTIONS=nocheck sh packaging/build-deb.sh   build without the tests
set -eu
cd "$(dirname "$0")/.."
SOURCE=$(pwd)

if [ "${1-}" = "--install-deps" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get build-dep -y -qq ./packaging >/dev/null
fi

rm -f dist/logknock_*.deb  # a failed build leaves no older package to be mistaken for it
WORK=$(mktemp -d "${TMPDIR:-/tmp}/logknock-deb.XXXXXX")
trap 'rm -rf "$WORK"' EXIT INT TERM
# Some tests run the code as another user (nobody): let them reach it.
chmod 0755 "$WORK"
TREE="$WORK/logknock"
mkdir "$TREE" "$WORK/home"

copy_tree() {
    if git -C "$SOURCE" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        # Tracked files and new ones that are not ignored; `--cached` also lists
        # files deleted in the work tree, which the loop leaves out.
        git -C "$SOURCE" ls-files -z --cached --others --exclude-standard \
            | xargs -0 sh -c 'for f; do [ -e "$f" ] || [ -L "$f" ] && printf "%s\0" "$f"; done' sh \
            | xargs -0 cp -P --parents -t "$TREE"
    else
        tar -C "$SOURCE" --exclude=./.git --exclude=./.venv* --exclude=./dist \
            --exclude='*/__pycache__' --exclude=./.hypothesis -cf - . | tar -C "$TREE" -xf -
    fi
}

copy_tree
cp -R "$SOURCE/packaging/debian" "$TREE/debian"

started=$(date +%s)
# A clean environment: Debian's python3 and tools only, no venv on PATH, no
# PYTHONPATH or other variable of the caller's leaking into the build.
(cd "$TREE" && env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$WORK/home" \
    LC_ALL=C.UTF-8 DEB_BUILD_OPTIONS="${DEB_BUILD_OPTIONS-}" \
    dpkg-buildpackage -b -us -uc) >"$WORK/build.log" 2>&1 || {
    tail -n 80 "$WORK/build.log" >&2
    echo "build-deb: dpkg-buildpackage failed (last 80 lines above)" >&2
    exit 1
}
elapsed=$(($(date +%s) - started))

mkdir -p dist
for deb in "$WORK"/*.deb; do
    cp "$deb" dist/
    echo "build-deb: dist/${deb##*/} ($(du -k "$deb" | cut -f1) KiB, built in ${elapsed}s)"
done
grep -E '^[0-9]+ (passed|failed)|^=+ .*(passed|failed)' "$WORK/build.log" | tail -n 1 || true
