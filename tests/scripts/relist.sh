#!/usr/bin/env bash
# A yearly ponds list re-imported with every pond's level changed, against a
# real release server on an empty store: N ponds of 南丹县 imported at 一级,
# the year's schedule generated for four inspectors, then the list again with
# every pond at 二级 from December, which re-plans each pond's tasks of this
# year (the server plans for today's year). Linux (GNU date).
#
#   tests/scripts/relist.sh [N]        (default 500; builds the server first)
set -euo pipefail
N=${1:-500}
cd "$(dirname "$0")/../.."
cargo build --release -q -p server
BIN=$PWD/target/release/fieldsync
D=$(mktemp -d)
PORT=$((20000 + RANDOM % 10000))
export FIELDSYNC_ADMIN_PASSWORD=relist-admin-Pw-2026 FIELDSYNC_PASSWORD=relist-admin-Pw-2026 FIELDSYNC_USER_PASSWORD=relist-user-Pw-2026
YEAR=$(date +%Y)
RUST_LOG=info "$BIN" serve --data "$D/data" --bind "127.0.0.1:$PORT" >/dev/null 2>"$D/server.log" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; rm -rf "$D"' EXIT
up=
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && up=1 && break; sleep 0.1; done
[ -n "$up" ] || { echo "the server did not start:" >&2; cat "$D/server.log" >&2; exit 1; }
AS=(--server "http://127.0.0.1:$PORT" --as admin)
for u in 1 2 3 4; do "$BIN" user add "insp$u" --role inspector --regions 451221 "${AS[@]}" >/dev/null; done
list() { # LEVEL EFFECTIVE_FROM
  echo "pond_code,name,operator,city,county,lat,lon,minerals,heavy_metals,cyanide,year,level,effective_from,source_document,reason,ecological_problems,prominent_hazards,public_complaints"
  for i in $(seq -w 1 "$N"); do
    echo "WK4512219$i,测试尾矿库$i,测试矿业有限公司,河池市,南丹县,24.85,107.58,锡,是,否,$YEAR,$1,$YEAR-$2,测试清单,测试,否,否,否"
  done
}
ms() { echo $(( $(date +%s%N) / 1000000 )); }
list 一级 01-01 >"$D/first.csv"
list 二级 12-01 >"$D/second.csv"
"$BIN" site import ponds "$D/first.csv" "${AS[@]}" 2>/dev/null >/dev/null
t0=$(ms)
"$BIN" schedule generate --year "$YEAR" --region 451221 --seed 1 "${AS[@]}" >/dev/null 2>&1
t1=$(ms)
"$BIN" site import ponds "$D/second.csv" "${AS[@]}" 2>/dev/null >/dev/null
t2=$(ms)
replanned=$(grep -c "its tasks were re-planned" "$D/server.log" || true)
echo "relist: $N ponds; schedule generated in $((t1 - t0)) ms; list re-imported with every level changed in $((t2 - t1)) ms, $replanned ponds re-planned"
