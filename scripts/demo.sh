#!/usr/bin/env bash
# First run: start the sample Go service, attach zerotrace to its PID, send it
# a few requests and show the spans. Needs root (or CAP_BPF, CAP_PERFMON and
# CAP_SYS_PTRACE). Set OTEL_EXPORTER_OTLP_ENDPOINT to also send the spans to a
# collector, DEMO_SECONDS to send traffic for longer.
set -euo pipefail
cd "$(dirname "$0")/.."

app_out=$(mktemp)
cleanup() {
	[ -n "${zt_pid:-}" ] && kill -INT "$zt_pid" 2>/dev/null && wait "$zt_pid" 2>/dev/null || true
	[ -n "${app_pid:-}" ] && kill "$app_pid" 2>/dev/null && wait "$app_pid" 2>/dev/null || true
	rm -f "$app_out"
}
trap cleanup EXIT

./bin/sampleapp -addr 127.0.0.1:0 >"$app_out" &
app_pid=$!
for _ in $(seq 50); do grep -q '^listening on' "$app_out" && break; sleep 0.1; done
addr=$(sed -n 's/^listening on //p' "$app_out")
[ -n "$addr" ] || { echo "demo: the sample service did not start" >&2; exit 1; }
echo "demo: sample service pid $app_pid listening on $addr (started before zerotrace)"

./bin/zerotrace attach --pid "$app_pid" --output text &
zt_pid=$!
sleep 2

end=$((SECONDS + ${DEMO_SECONDS:-3}))
while [ $SECONDS -lt $end ]; do
	curl -s -o /dev/null "http://$addr/hello"
	curl -s -o /dev/null "http://$addr/users/42?token=secret"
	curl -s -o /dev/null -X POST --data 'hello zerotrace' "http://$addr/items"
	curl -s -o /dev/null "http://$addr/fail"
	curl -s -o /dev/null "http://$addr/nope"
	sleep 0.5
done
sleep 0.5
kill -INT "$zt_pid"
wait "$zt_pid"
zt_pid=
echo "demo: zerotrace detached; the service is still serving: $(curl -s "http://$addr/hello")"
