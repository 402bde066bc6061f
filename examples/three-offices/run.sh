#!/usr/bin/env bash
# Three office nodes as three `tongban node run` processes on loopback, and one
# case taken through them with the documented commands (docs/cli.md):
#
#   1. the directory authority is made and certifies three office keys;
#   2. the national hub and two township offices start, each a process of its
#      own with its configuration file (hub-cn.toml, 440106001.toml,
#      130102001.toml) and its data directory;
#   3. the Wushan street office in Guangzhou (440106001) starts a case for a
#      Hebei resident, attaches the scans the notice lists, accepts and pushes
#      it; the case travels through the hub to the Chang'an township
#      (130102001), which signs `received` on arrival;
#   4. the Chang'an township approves the initial review (初审); the signed
#      stage travels back to Guangzhou;
#   5. both offices verify the signed history, and the case is exported as a
#      signed archive and verified with nothing but the authority's key;
#   6. the nodes stop on SIGTERM.
#
# Usage: examples/three-offices/run.sh [WORK_DIR]
#   TONGBAN   the tongban binary (default: `tongban` on the PATH)
#   WORK_DIR  where the data directories go (default: a new temporary
#             directory); it must be empty or not exist.
# Everything listens on 127.0.0.1 only, on ports the system picks.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
tongban=${TONGBAN:-tongban}
work=${1:-$(mktemp -d "${TMPDIR:-/tmp}/tongban-three-offices.XXXXXX")}
mkdir -p "$work"
work=$(cd "$work" && pwd)
if [ -n "$(ls -A "$work")" ]; then
    echo "run.sh: $work is not empty" >&2
    exit 2
fi
auth=$work/authority
export TONGBAN_AUTHORITY_DIR=$auth
unset TONGBAN_DATA_DIR RUST_LOG

say() { printf '\n== %s\n' "$*"; }
tb() { "$tongban" "$@"; }

pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
}
trap cleanup EXIT

# waits up to $1 seconds for the command after it to succeed
wait_for() {
    local seconds=$1
    shift
    local deadline=$((SECONDS + seconds))
    until "$@"; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "run.sh: timed out waiting for: $*" >&2
            return 1
        fi
        sleep 0.2
    done
}

say "1. 目录机构 directory authority and three office keys"
tb directory init
offices=("hub-cn hub 00 全国中继"
         "440106001 township 440106001 五山街道办事处"
         "130102001 township 130102001 长安区示例街道")
for spec in "${offices[@]}"; do
    read -r office role division name <<<"$spec"
    # `node init` prints the office public key on its third line.
    key=$(tb node init --data-dir "$work/$office" --office "$office" | sed -n 3p)
    tb directory add --office "$office" --name "$name" --role "$role" \
        --division "$division" --public-key "$key"
done
for spec in "${offices[@]}"; do
    read -r office _ <<<"$spec"
    tb node directory-import "$auth/directory.tbdir" \
        --authority-key "$auth/authority.pub" --data-dir "$work/$office"
done
# The default clerk of each township lives in its node file.
echo 'operator = "窗口01"' >>"$work/440106001/node.toml"
echo 'operator = "初审02"' >>"$work/130102001/node.toml"

say "2. 启动节点 three node processes"
# starts `tongban node run` for $1 and waits for its first line, which names
# its QUIC address ("节点运行中 node running: OFFICE QUIC ADDR ..."); sets
# $quic to that address. Logs go to WORK_DIR/OFFICE.log.
start_node() {
    local office=$1
    "$tongban" node run --config "$work/$office.toml" \
        >"$work/$office.out" 2>"$work/$office.log" &
    pids+=($!)
    wait_for 30 grep -q "QUIC" "$work/$office.out"
    head -n 1 "$work/$office.out"
    quic=$(sed -n '1s/.*QUIC \([^ ]*\).*/\1/p' "$work/$office.out")
}
cp "$here/hub-cn.toml" "$work/"
start_node hub-cn
hub=$quic
for office in 440106001 130102001; do
    sed "s/127\.0\.0\.1:7443/$hub/" "$here/$office.toml" >"$work/$office.toml"
    start_node "$office"
done

acceptance=$work/440106001
domicile=$work/130102001

connected() { tb node status --data-dir "$1" --json | grep -Eq '"connected": ?true'; }
wait_for 30 connected "$acceptance"
wait_for 30 connected "$domicile"

say "3. 受理 the Wushan street office starts, accepts and pushes a case"
out=$(tb case new --data-dir "$acceptance" --name 张建国 --id 130102196805120312 \
    --hukou 130102001 --certificate 13010219680512031262 --dibao --kind living \
    --phone 13800000000 --address 广州市天河区五山路)
echo "$out"
case_id=$(printf '%s\n' "$out" | sed -n 's/^已建案 case started: \([0-9A-Z-]*\).*/\1/p')
scans=$work/scans
mkdir -p "$scans"
for code in $(printf '%s\n' "$out" | sed -n 's/^  - .*（\([a-z_]*\)）$/\1/p'); do
    echo "scan of $code" >"$scans/$code.jpg"
    tb case attach "$case_id" "$scans/$code.jpg" --kind "$code" --data-dir "$acceptance"
done
tb case accept "$case_id" --data-dir "$acceptance"
tb case push "$case_id" --data-dir "$acceptance"

stage_at() {
    tb case show "$case_id" --data-dir "$1" 2>/dev/null |
        sed -n 's/^  阶段 stage: .* \([a-z_]*\)$/\1/p'
}
is_stage() { [ "$(stage_at "$1")" = "$2" ]; }

say "4. 户籍地 the case reaches Chang'an through the hub; the initial review"
wait_for 60 is_stage "$domicile" received
tb case show "$case_id" --data-dir "$domicile"
tb case review "$case_id" --approve --opinion "属实，同意" --data-dir "$domicile"
wait_for 60 is_stage "$acceptance" initial_reviewed
tb case show "$case_id" --data-dir "$acceptance"

say "5. 验证 signed history at both offices, and a signed archive"
tb verify "$case_id" --data-dir "$acceptance"
tb verify "$case_id" --data-dir "$domicile"
tb history "$case_id" --data-dir "$domicile"
tb case export "$case_id" --out "$work/$case_id.tbarc" --with-materials --data-dir "$domicile"
tb verify --archive "$work/$case_id.tbarc" --authority-key "$auth/authority.pub"

say "6. 停止 the nodes stop on SIGTERM"
for pid in "${pids[@]}"; do
    kill -TERM "$pid"
done
for pid in "${pids[@]}"; do
    wait "$pid"
done
pids=()
echo "完成 done: case $case_id, data under $work"
