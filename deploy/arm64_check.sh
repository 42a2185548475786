#!/bin/sh
# make arm64-check: the Raspberry Pi OS bundle, installed with no network in an arm64
# Debian bookworm root (debootstrap, Debian's own packages) run under qemu-user-static,
# then a demo over the link, `study verify` and `capsule-edge doctor` there, and an
# encrypted study (AES-GCM frames, SQLCipher database) verified and exported with its key.
# Fails on any error or lost frame.
#
# It proves: every wheel exists for aarch64 / Python 3.11 and installs offline from the
# bundle alone, the models load and infer on the aarch64 builds of LiteRT and OpenVINO,
# and a study over a pty stores and infers every frame. It cannot prove speed (emulated,
# about a hundred times slower than a Pi), the real accelerator, or Pi OS's own kernel.
#
# Needs root (debootstrap, chroot, mounts) and: apt install debootstrap qemu-user-static
# binfmt-support. The root is made once, in ~/.cache/capsule-edge/arm64 (about 250 MB).
set -eu

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${ARM64_CACHE:-$HOME/.cache/capsule-edge/arm64}
root=$cache/bookworm
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
python=${PYTHON:-$repo/.venv/bin/python}
data=${DATA:-$repo/../shared/data}
count=${COUNT:-60}

say() { echo "arm64-check: $*" >&2; }
fail() { say "$*"; exit 1; }

[ "$(id -u)" = 0 ] || fail "needs root (debootstrap, chroot and mounts)"
for tool in debootstrap qemu-aarch64-static chroot unshare; do
    command -v $tool >/dev/null ||
        fail "$tool: not found (apt install debootstrap qemu-user-static binfmt-support)"
done

# arm64 programs run through qemu: binfmt_misc must know them.
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    [ -e /proc/sys/fs/binfmt_misc/register ] ||
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    update-binfmts --enable qemu-aarch64 || fail "cannot register qemu-aarch64 with binfmt_misc"
fi

if [ ! -x "$root/usr/bin/python3" ]; then
    say "making the arm64 root in $root (once; minutes)"
    rm -rf "$root.partial"
    mkdir -p "$cache"
    debootstrap --arch=arm64 --variant=minbase --include=python3,python3-venv \
        bookworm "$root.partial" "$mirror" >"$cache/debootstrap.log" 2>&1 ||
        fail "debootstrap failed: see $cache/debootstrap.log"
    mv "$root.partial" "$root"
fi

say "building the pi-bookworm bundle"
archive=$("$python" -m deploy.bundle --target pi-bookworm --out "$cache/dist" | cut -d' ' -f1)
rm -rf "$root/opt/capsule-edge" "$root"/opt/capsule-edge-*-pi-bookworm "$root/opt/frames"
tar xzf "$archive" -C "$root/opt"
bundle=$(basename "$archive" .tar.gz)
mkdir -p "$root/opt/frames"
if [ -d "$data/kvasir-seg/images" ]; then  # real frames when there are (else synthetic)
    find "$data/kvasir-seg/images" -name '*.jpg' | sort | head -n 30 |
        while read -r f; do cp "$f" "$root/opt/frames/"; done
fi
frames=""
[ -n "$(ls "$root/opt/frames")" ] && frames="--frames /opt/frames"

mounted=""
cleanup() { for m in $mounted; do umount -l "$m" 2>/dev/null || true; done; }
trap cleanup EXIT INT TERM
for m in proc dev dev/pts tmp; do mkdir -p "$root/$m"; done
mount -t proc proc "$root/proc" && mounted="$root/proc $mounted"
mount --bind /dev "$root/dev" && mounted="$root/dev $mounted"
mount -t devpts -o newinstance,ptmxmode=0666 devpts "$root/dev/pts" &&
    mounted="$root/dev/pts $mounted"
mount -t tmpfs tmpfs "$root/tmp" && mounted="$root/tmp $mounted"

say "in the arm64 root, with no network: install, demo ($count frames), verify, doctor"
started=$(date +%s)
# unshare --net: a network namespace with nothing in it, not even a route to the mirror.
unshare --net chroot "$root" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root /bin/sh -eu -c "
    uname -m
    python3 --version
    /opt/$bundle/install.sh --prefix /opt/capsule-edge --no-service
    ce=/opt/capsule-edge/venv/bin/capsule-edge
    \$ce --version
    \$ce demo --count $count --fps 5 --out /tmp/demo --no-report $frames
    \$ce study verify /tmp/demo/study
    \$ce doctor --source dir:///opt/frames
    cp /tmp/demo/summary.json /opt/demo-summary.json
    \$ce study keygen /tmp/site.key
    CAPSULE_EDGE_STUDY_KEY=\$(cat /tmp/site.key) \$ce demo --count 10 --fps 5 --out /tmp/sealed \
        --no-report $frames
    \$ce study verify /tmp/sealed/study --key /tmp/site.key
    \$ce study export /tmp/sealed/study --frames /tmp/sealed/out --key /tmp/site.key
    [ \$(ls /tmp/sealed/out | wc -l) = 10 ] || { echo 'sealed study: not 10 frames out'; exit 1; }
    if head -c 15 /tmp/sealed/study/study.db | grep -q 'SQLite format'; then
        echo 'sealed study: its database is in the clear'; exit 1
    fi
    echo 'sealed study: 10 frames stored, verified and exported with the key; database encrypted'
"
"$python" - "$root/opt/demo-summary.json" "$count" <<'EOF'
import json, sys
doc = json.load(open(sys.argv[1]))
count = int(sys.argv[2])
got = (doc["frames_sent"], doc["frames_stored"], doc["frames_inferred"])
if got != (count, count, count) or doc["frames_lost"] or doc["error"] or doc["corrupt_delivered"]:
    sys.exit(f"arm64-check: frames sent/stored/inferred {got} of {count}, lost "
             f"{doc['frames_lost']}, corrupt {doc['corrupt_delivered']}, error {doc['error']}")
models = ", ".join(f"{m['name']} on {m['backend']}" for m in doc["models"].values())
print(f"arm64-check: {count} sent, {count} stored, {count} inferred, nothing lost ({models}, "
      f"{doc['fps']} frames/s under emulation)")
EOF
say "passed in $(( $(date +%s) - started )) s (the root and the bundle made before that)"
