#!/usr/bin/env bash
# `make demo`: four simulated Hikvision-like cameras and one agent that owns them, records them
# and audits what it analyses. Ctrl-C stops both; the agent closes its segments first.
set -euo pipefail
BIN=${BIN:-.venv/bin}
DATA=${DATA:-data/demo}
CAMERAS=${CAMERAS:-4}
"$BIN/camfleet" sim --cameras "$CAMERAS" --port 8554 --http-port 8080 --profile hikvision \
    --truth "$DATA-truth.jsonl" &
SIM=$!
AGENT=""
trap 'kill -TERM ${AGENT:+$AGENT} $SIM 2>/dev/null; wait' INT TERM EXIT
# The first start encodes the scene loops; the agent starts once the cameras answer.
until "$BIN/python" -c "import httpx; httpx.get('http://127.0.0.1:8080/health').raise_for_status()" 2>/dev/null; do
    kill -0 $SIM 2>/dev/null || exit 1
    sleep 1
done
args=()
for i in $(seq 1 "$CAMERAS"); do
    args+=(--camera "cam$i=rtsp://127.0.0.1:8554/Streaming/Channels/${i}01")
done
"$BIN/camfleet" agent run --data "$DATA" --http-port 8090 --profile hikvision "${args[@]}" &
AGENT=$!
cat <<MSG

camfleet demo is running (Ctrl-C to stop):
  cameras   rtsp://127.0.0.1:8554/cam1 .. cam$CAMERAS   (simulator: http://127.0.0.1:8080/cameras)
  agent     http://127.0.0.1:8090/stats, /cameras/cam1/snapshot.jpg, /cameras/cam1/recordings
  verify    $BIN/camfleet agent verify --data $DATA --camera cam1   (after stopping)
MSG
wait $AGENT
