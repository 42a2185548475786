#!/bin/sh
# capsule-edge offline install, from the bundle this script sits in. No network needed.
#
#   sudo ./install.sh                    venv in /opt/capsule-edge, then the systemd service
#   ./install.sh --prefix DIR --no-service   a venv under DIR only (no root needed)
#
# Checks the bundle (SHA256SUMS) and the board (Python version, machine) first; pip then
# installs exactly the pinned, hashed wheels of requirements.txt, from wheels/ alone.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
prefix=/opt/capsule-edge
service=yes
python=${PYTHON:-python3}

say() { echo "install.sh: $*" >&2; }
fail() { say "$*"; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) [ $# -ge 2 ] || fail "--prefix needs a folder"; prefix=$2; shift 2 ;;
        --no-service) service=no; shift ;;
        -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
        *) say "unknown option $1 (see --help)"; exit 2 ;;
    esac
done

# The bundle is whole: a copy cut short or damaged on its way stops here.
(cd "$here" && sha256sum --check --quiet --strict SHA256SUMS) ||
    fail "$here: the bundle is damaged (the files above do not match SHA256SUMS); copy it again"

field() { sed -n "s/^ *\"$1\": \"\(.*\)\",*$/\1/p" "$here/target.json"; }
want_python=$(field python)
want_machine=$(field machine)
command -v "$python" >/dev/null || fail "$python: not found (on Debian: apt install python3 python3-venv)"
have_python=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
have_machine=$(uname -m)
[ "$have_machine" = "$want_machine" ] ||
    fail "this bundle is for $want_machine ($(field board)); this machine is $have_machine"
[ "$have_python" = "$want_python" ] ||
    fail "this bundle is for Python $want_python ($(field board)); $python is $have_python"

say "installing capsule-edge $(field capsule_edge) ($(field commit)) into $prefix/venv"
"$python" -m venv "$prefix/venv" ||
    fail "$python -m venv $prefix/venv failed (on Debian: apt install python3-venv)"
"$prefix/venv/bin/pip" install --quiet --disable-pip-version-check --no-index \
    --find-links "$here/wheels" --require-hashes -r "$here/requirements.txt" ||
    fail "pip could not install the bundle's wheels (see above)"

if [ -f "$here/capsule-edge.toml" ] && [ ! -e /etc/capsule-edge/capsule-edge.toml ] &&
    [ "$service" = yes ]; then
    install -D -m 0640 "$here/capsule-edge.toml" /etc/capsule-edge/capsule-edge.toml
    say "config: /etc/capsule-edge/capsule-edge.toml (the bundle's)"
fi
if [ "$service" = yes ]; then
    "$prefix/venv/bin/capsule-edge" service install || fail "the service could not be installed"
fi
say "done: $prefix/venv/bin/capsule-edge (check the board with: capsule-edge doctor)"
