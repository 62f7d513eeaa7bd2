#!/usr/bin/env bash
# Ferry's repository engine against restic, same data, same machine, same run.
#
#   REPEAT=3 bash spoke/repository/bench/compare.sh [WORKDIR]
#
# Generates the datasets (once; kept in WORKDIR, default /tmp/ferry-bench), builds ferry-spoke
# in release mode, and measures every step REPEAT times (default 3), each repetition into fresh
# repositories, the two tools taking turns. It prints one markdown table row per (dataset,
# operation, tool): the median wall time and the range of all repetitions, median CPU time (user
# + system), the highest peak RSS seen, throughput at the median, and bytes stored; restic's rows
# add Ferry's speed-up, median and lowest of the repetitions (each against the same repetition's
# restic). Both tools write to a local directory repository and read from the page cache.
#
# Why repetitions: on a virtual machine one run of a step varies by 10-25 % (restic's mixed
# backup took 4.5-6.1 s in runs minutes apart); one sample per tool made the ratio as noisy.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
work="${1:-/tmp/ferry-bench}"
mkdir -p "$work"
command -v restic >/dev/null || { echo "restic is needed: apt-get install restic" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "GNU time is needed: apt-get install time" >&2; exit 1; }
(cd "$root" && cargo build --release -q -p ferry-spoke)
ferry="$root/target/release/ferry-spoke"
repeat="${REPEAT:-3}"
[[ "$repeat" =~ ^[1-9][0-9]*$ ]] || { echo "REPEAT must be a positive number, not '$repeat'" >&2; exit 1; }
export RESTIC_PASSWORD=bench FERRY_PASSWORD=bench RESTIC_CACHE_DIR="$work/restic-cache"

[ -d "$work/mixed" ] || python3 "$here/gen.py" mixed "$work/mixed"
[ -d "$work/small" ] || python3 "$here/gen.py" small "$work/small"
[ -f "$work/block.img" ] || python3 "$here/gen.py" block "$work/block.img"

# Restores write to a fresh ext4 *with a journal* on a loop device, as a volume in a cluster
# would be. On ext4 without a journal (this project's build machines' root filesystem) the
# kernel's inode allocator skips every inode deleted in the last 60 s — 360 s once the inode's
# table block is dirty again, which a restore's own new inodes make it — and scans whole block
# groups to do so: a 30 000-file restore into groups where an earlier run's output was deleted
# minutes before took 2.2 s instead of 0.9 s, for either tool (docs/benchmarks.md, session 11).
# Needs root, losetup and mkfs.ext4; otherwise restores go to WORKDIR, with that noise.
out="$work"
if [ "$(id -u)" -eq 0 ] && command -v losetup >/dev/null && command -v mkfs.ext4 >/dev/null; then
  fs_image="$work/restore-fs.img"
  mountpoint -q "$work/restore-fs" && umount "$work/restore-fs"
  rm -f "$fs_image"
  truncate -s 16G "$fs_image"
  mkfs.ext4 -q -F "$fs_image"
  loop=$(losetup --find --show --direct-io=on "$fs_image")
  trap 'mountpoint -q "$work/restore-fs" && umount "$work/restore-fs"; losetup -d "$loop"; rm -f "$fs_image"' EXIT
  mkdir -p "$work/restore-fs"
  mount "$loop" "$work/restore-fs"
  out="$work/restore-fs"
else
  echo "restores go to $work (not root, or no losetup/mkfs.ext4): small-file restores may vary" >&2
fi

results="$work/results.tsv"
: >"$results"

# Every measured step starts from the same memory state: the page cache dropped, the step's
# input read back into it, and a pause. On a virtual machine whose hypervisor takes back free
# memory, memory touched for the first time costs far more than memory just freed, so without
# this the tool that runs second (or after a delete) gets cheaper page cache than the first.
# Needs root; without it the steps run as they come, and the results are noisier.
settle() {
  sync
  if [ -w /proc/sys/vm/drop_caches ]; then
    echo 3 > /proc/sys/vm/drop_caches
    for p in "$@"; do find "$p" -type f -exec cat {} + > /dev/null; done
    sleep 4
  fi
}

# run DATASET OPERATION TOOL BYTES REPO INPUT -- command...   (INPUT: what the step reads)
# Appends one line to $results: repetition, dataset, operation, tool, wall, CPU, RSS KiB, bytes,
# stored bytes.
run() {
  local dataset=$1 op=$2 tool=$3 bytes=$4 repo=$5 input=$6
  shift 7
  settle "$input"
  /usr/bin/time -f "%e %U %S %M" -o "$work/time" "$@" >"$work/out" 2>"$work/err" || {
    echo "$tool $op on $dataset failed:" >&2; cat "$work/err" >&2; exit 1; }
  read -r wall user sys rss <"$work/time"
  local stored
  stored=$(du -sb "$repo" | cut -f1)
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$rep" "$dataset" "$op" "$tool" "$wall" \
    "$(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }')" "$rss" "$bytes" "$stored" >>"$results"
}

new_bytes=()
for rep in $(seq "$repeat"); do
  echo "repetition $rep of $repeat" >&2

  for dataset in mixed small; do
    src="$work/$dataset"
    bytes=$(du -sb --apparent-size "$src" | cut -f1)
    rm -rf "$work/ferry-$dataset" "$work/restic-$dataset" "$out/out-ferry" "$out/out-restic" "$RESTIC_CACHE_DIR"
    "$ferry" repo -r "$work/ferry-$dataset" init >/dev/null
    restic -r "$work/restic-$dataset" init >/dev/null
    run "$dataset" backup ferry "$bytes" "$work/ferry-$dataset" "$src" -- "$ferry" repo -r "$work/ferry-$dataset" --progress none backup "$src"
    run "$dataset" backup restic "$bytes" "$work/restic-$dataset" "$src" -- restic -r "$work/restic-$dataset" backup -q "$src"
    run "$dataset" restore ferry "$bytes" "$work/ferry-$dataset" "$work/ferry-$dataset" -- "$ferry" repo -r "$work/ferry-$dataset" --progress none restore latest "$out/out-ferry"
    run "$dataset" restore restic "$bytes" "$work/restic-$dataset" "$work/restic-$dataset" -- restic -r "$work/restic-$dataset" restore -q latest --target "$out/out-restic"
    diff -r "$src" "$out/out-ferry" >/dev/null || { echo "ferry restored $dataset wrongly" >&2; exit 1; }
    rm -rf "$out/out-ferry" "$out/out-restic"
    # Until the restored files are on disk: Ferry's --sync (what its mover uses), restic
    # followed by a sync of the target's filesystem (restic has no such option).
    run "$dataset" "restore, durable" ferry "$bytes" "$work/ferry-$dataset" "$work/ferry-$dataset" -- "$ferry" repo -r "$work/ferry-$dataset" --progress none restore --sync latest "$out/out-ferry"
    run "$dataset" "restore, durable" restic "$bytes" "$work/restic-$dataset" "$work/restic-$dataset" -- sh -c 'restic -r "$1" restore -q latest --target "$2" && sync -f "$2"' _ "$work/restic-$dataset" "$out/out-restic"
    rm -rf "$out/out-ferry" "$out/out-restic"
  done

  img="$work/block.img"
  bytes=$(stat -c %s "$img")
  rm -rf "$work/ferry-block" "$work/restic-block" "$RESTIC_CACHE_DIR"
  cp --sparse=always "$img" "$work/block-changed.img"
  "$ferry" repo -r "$work/ferry-block" init >/dev/null
  restic -r "$work/restic-block" init >/dev/null
  run block "initial export" ferry "$bytes" "$work/ferry-block" "$work/block-changed.img" -- "$ferry" repo -r "$work/ferry-block" --progress none backup --block "$work/block-changed.img" --source disk
  run block "initial export" restic "$bytes" "$work/restic-block" "$work/block-changed.img" -- restic -r "$work/restic-block" backup -q "$work/block-changed.img"
  python3 "$here/gen.py" change "$work/block-changed.img" "$work/changes.txt"
  before_ferry=$(du -sb "$work/ferry-block" | cut -f1)
  before_restic=$(du -sb "$work/restic-block" | cut -f1)
  run block "re-export, 1 % changed" ferry "$bytes" "$work/ferry-block" "$work/block-changed.img" -- "$ferry" repo -r "$work/ferry-block" --progress none backup --block "$work/block-changed.img" --source disk
  run block "re-export, 1 % changed" restic "$bytes" "$work/restic-block" "$work/block-changed.img" -- restic -r "$work/restic-block" backup -q "$work/block-changed.img"
  mid_ferry=$(du -sb "$work/ferry-block" | cut -f1)
  run block "re-export with change list" ferry "$bytes" "$work/ferry-block" "$work/block-changed.img" -- "$ferry" repo -r "$work/ferry-block" --progress none backup --block "$work/block-changed.img" --source disk --changed-blocks "$work/changes.txt"
  after_restic=$(du -sb "$work/restic-block" | cut -f1)
  new_bytes+=("ferry $(( (mid_ferry - before_ferry) / 1048576 )) MiB, restic $(( (after_restic - before_restic) / 1048576 )) MiB")
  run block restore ferry "$bytes" "$work/ferry-block" "$work/ferry-block" -- "$ferry" repo -r "$work/ferry-block" --progress none restore latest "$out/block-out.img"
  cmp "$work/block-changed.img" "$out/block-out.img" || { echo "ferry restored the image wrongly" >&2; exit 1; }
  rm -f "$out/block-out.img"
  run block restore restic "$bytes" "$work/restic-block" "$work/restic-block" -- restic -r "$work/restic-block" restore -q latest --target "$out/out-restic"
  rm -rf "$out/out-restic"
  # Ferry's block restore returns once the image's data is on disk (--sync adds its name);
  # restic's returns with most of it still dirty in the page cache (2.3 of 4 GiB here), so it
  # is followed by a sync of the target's filesystem: the time until the volume is durable.
  run block "restore, durable" ferry "$bytes" "$work/ferry-block" "$work/ferry-block" -- "$ferry" repo -r "$work/ferry-block" --progress none restore --sync latest "$out/block-out.img"
  rm -f "$out/block-out.img"
  run block "restore, durable" restic "$bytes" "$work/restic-block" "$work/restic-block" -- sh -c 'restic -r "$1" restore -q latest --target "$2" && sync -f "$2"' _ "$work/restic-block" "$out/out-restic"
  rm -rf "$out/out-restic"
done

echo "| dataset | operation | tool | wall s (median) | wall s (range) | CPU s | peak RSS MiB | MiB/s | stored MiB | Ferry's speed-up (median / lowest) |"
echo "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"
awk -F '\t' -f "$here/report.awk" "$results"
echo
echo "New bytes stored by the 1 % re-export, each repetition:"
printf -- '- %s\n' "${new_bytes[@]}"
