#!/bin/sh
# A sig device made only of mosquitto_sub, mosquitto_pub and POSIX shell (docs/convention.md, full profile).
#
#   sh examples/devices/shell_device.sh [HOST] [PORT] [PREFIX] [NODE_ID]
#
# Node NODE_ID (default shell-1, also its MQTT client id) hosts one sender, "relay/1"
# (topic level relay%2F1), with the channel event "#state" (level %23state) and the
# requests "get" and "toggle". It speaks MQTT 3.1.1, so requesters send it the envelope
# {"id", "reply_to", "params"}. HEARTBEAT (seconds, default 30) and EVENT_EVERY (default 5)
# come from the environment. Check it with:
#   sig conformance --mqtt mqtt://HOST:PORT/PREFIX --node NODE_ID --profile full
set -u
HOST=${1:-127.0.0.1}
PORT=${2:-1883}
P=${3:-sig}
NID=${4:-shell-1}
HEARTBEAT=${HEARTBEAT:-30}
EVENT_EVERY=${EVENT_EVERY:-5}
SENDER='relay%2F1'                                        # "relay/1", escaped
SESSION=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')    # new at every start
DIR=$(mktemp -d)
echo false > "$DIR/on"

pub() { mosquitto_pub -h "$HOST" -p "$PORT" -q 1 "$@"; }
now_ms() {  # GNU date has milliseconds; others get whole seconds
    ms=$(date +%s%3N)
    case "$ms" in *N) echo $(($(date +%s) * 1000)) ;; *) echo "$ms" ;; esac
}
state() {  # $1: true or false
    echo "{\"online\":$1,\"session\":\"$SESSION\",\"proto\":4,\"ts\":$(now_ms),\"heartbeat\":$HEARTBEAT,\"sig\":\"1.0\"}"
}
announce() {  # node state first, then the birth (both retained)
    pub -r -t "$P/node/$NID" -m "$(state true)"
    pub -r -t "$P/node/$NID/sender/$SENDER" \
        -m "{\"events\":[\"#state\"],\"requests\":[\"get\",\"toggle\"],\"session\":\"$SESSION\"}"
}
event() { pub -q 0 -t "$P/event/$SENDER/%23state" -m "{\"on\":$(cat "$DIR/on")}"; }
field() {  # $1: a JSON object's string field out of $2 (enough for sig's compact envelopes)
    printf '%s' "$2" | sed -n "s/.*\"$1\" *: *\"\\([^\"]*\\)\".*/\\1/p"
}
answer() {  # $1: the method's topic level, $2: the request payload
    id=$(field id "$2")
    reply_to=$(field reply_to "$2")
    [ -n "$reply_to" ] || return 0                      # not an envelope: cannot answer on 3.1.1
    case "$1" in
        get) body="\"status\":0,\"response\":{\"on\":$(cat "$DIR/on")}" ;;
        toggle)
            if [ "$(cat "$DIR/on")" = true ]; then echo false > "$DIR/on"; else echo true > "$DIR/on"; fi
            event
            body="\"status\":0,\"response\":{\"on\":$(cat "$DIR/on")}" ;;
        *) body="\"status\":-1,\"exception\":\"no method $1\"" ;;
    esac
    pub -t "$reply_to" -m "{\"id\":\"$id\",$body}"
}
stop() {  # a clean stop: remove the birth, say offline, end the helpers
    trap - INT TERM
    pub -r -t "$P/node/$NID/sender/$SENDER" -n
    pub -r -t "$P/node/$NID" -m "$(state false)"
    kill "$HEARTBEAT_PID" "$EVENTS_PID" "$SUB_PID" 2>/dev/null
    rm -rf "$DIR"
    exit 0
}

( while sleep "$HEARTBEAT"; do pub -r -t "$P/node/$NID" -m "$(state true)"; done ) &
HEARTBEAT_PID=$!
( while sleep "$EVENT_EVERY"; do event; done ) &
EVENTS_PID=$!

# The subscriber's connection carries the Last Will (client id = node id). -d shows its
# CONNACKs: every (re)connect re-announces the node (a session takeover drops it).
LINEBUF=$(command -v stdbuf >/dev/null && echo "stdbuf -oL")
mkfifo "$DIR/in"
( trap 'kill "$SPID" 2>/dev/null; exit 0' TERM
  while :; do
    $LINEBUF mosquitto_sub -h "$HOST" -p "$PORT" -i "$NID" -q 1 -v -d \
        --will-topic "$P/node/$NID" --will-retain --will-qos 1 \
        --will-payload "{\"online\":false,\"session\":\"$SESSION\",\"proto\":4,\"sig\":\"1.0\"}" \
        -t "$P/cmd/rebirth" -t "$P/request/$SENDER/+" &
    SPID=$!
    wait "$SPID"
    sleep 1
  done ) > "$DIR/in" &
SUB_PID=$!
trap stop INT TERM

while IFS= read -r line; do
    case "$line" in
        "Client $NID received CONNACK"*) announce ;;
        "$P/cmd/rebirth"*) announce ;;
        "$P/request/$SENDER/"*)
            topic=${line%% *}
            answer "${topic##*/}" "${line#* }" ;;
    esac
done < "$DIR/in"
