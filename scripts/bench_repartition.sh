#!/bin/bash
# One run of the repartitioning benchmark (BENCHMARKS.md, "Repartitioning").
# usage: EVENTS=ev50k.jsonl BROKER=127.0.0.1:19094 \
#          scripts/bench_repartition.sh SAKER GROUP METRICS_PORT [run flags...]
# The topic `bench` must hold the EVENTS, e.g. from
#   saker produce --kafka-brokers $BROKER --kafka-topic bench --partitions 4 --input $EVENTS
# Consumes it in a fresh GROUP until every message is counted and every record
# this instance forwarded is consumed back, then stops it with SIGTERM. Prints the
# wall time to that point, CPU and max RSS (/usr/bin/time), the loopback bytes
# over the span (all broker traffic on a local broker) and the repartition
# counters.
set -eu
BIN=$1; GROUP=$2; PORT=$3; shift 3
N=$(wc -l < "$EVENTS")
lo() { awk '/^ *lo:/{print $2}' /proc/net/dev; }
TIMES=$(mktemp)
/usr/bin/time -f "cpu %U %S maxrss %M" -o "$TIMES" "$BIN" run --input kafka \
  --kafka-brokers "$BROKER" --kafka-topic bench --kafka-group "$GROUP" \
  --metrics-listen "$PORT" -X fetch.wait.max.ms=5 "$@" > /dev/null 2>&1 &
PID=$!
LO0=$(lo)
START=$(date +%s.%N)
while true; do
  M=$(curl -s "localhost:$PORT/metrics" || true)
  C=$(echo "$M" | awk '/^saker_kafka_messages_total /{print $2}')
  F=$(echo "$M" | awk '/^saker_kafka_forwarded_records_total /{print $2}')
  R=$(echo "$M" | awk '/^saker_kafka_repartition_records_total /{print $2}')
  if [ "$C" = "$N" ] && [ "${F:-0}" = "${R:-0}" ]; then break; fi
  sleep 0.05
done
END=$(date +%s.%N)
LO1=$(lo)
echo "$M" | grep -E "^saker_kafka_(forwarded_(matches|records|bytes)|repartition_records)_total" || true
kill -TERM "$(pgrep -P "$PID")"
wait "$PID" || true
echo "wall $(echo "$END - $START" | bc) s"
echo "loopback bytes $((LO1 - LO0))"
cat "$TIMES"
rm -f "$TIMES"
