#!/usr/bin/env bash
# Build EmuQuest with Debian's SDCC 4.2: C -> build/*.rel, link at 0x0200 (code) and
# 0xC100 (globals; 0xC000.. is the fixed RAM block), then makebin fills in the logo,
# title and checksums. The output is byte-identical on every run.
#   ./build.sh                 writes emuquest.gb next to this script
#   ./build.sh OUT.gb BUILD    writes OUT.gb, intermediates in BUILD (default build/)
set -euo pipefail
cd "$(dirname "$0")"
out="${1:-emuquest.gb}"
build="${2:-build}"
mkdir -p "$build"
for tool in sdcc sdasgb makebin; do
    command -v "$tool" >/dev/null || { echo "build.sh: $tool not found; apt-get install -y sdcc" >&2; exit 1; }
done
sdasgb -plosgff -o "$build/crt0.rel" crt0.s
sdasgb -plosgff -o "$build/mem.rel" mem.s
objects=("$build/crt0.rel" "$build/mem.rel")
for name in main text maps battle assets; do
    sdcc -msm83 --std-c11 --opt-code-speed -c "$name.c" -o "$build/$name.rel"
    objects+=("$build/$name.rel")
done
sdcc -msm83 --no-std-crt0 --code-loc 0x0200 --data-loc 0xC100 -Wl-m \
    "${objects[@]}" -o "$build/emuquest.ihx"
makebin -Z -yn EMUQUEST "$build/emuquest.ihx" "$build/emuquest.gb"
size=$(stat -c %s "$build/emuquest.gb")
if [ "$size" -ne 32768 ]; then
    echo "build.sh: $build/emuquest.gb is $size bytes, expected 32768 (code too big?)" >&2
    exit 1
fi
cp "$build/emuquest.gb" "$out"
echo "wrote $out ($(sha1sum "$out" | cut -c1-12))"
