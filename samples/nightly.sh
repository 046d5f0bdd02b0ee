#!/usr/bin/env bash
# nightly.sh: the nightly recovery job. Lists the runs of the given dataflows that failed in
# the last 24 hours and re-triggers them, with one journal and one results file per night:
#
#   bulkretry failed --flow-id F1 --flow-id F2 --since 24h \
#     | bulkretry retry --journal /var/lib/bulkretry/nightly-$(date +%F).journal > results.jsonl
#
# The history ($BULKRETRY_STATE_DIR/history.sqlite3 unless BULKRETRY_HISTORY names another
# file or a postgresql:// URL) remembers every re-trigger across nights: a run re-triggered
# last night is not listed again, and a run that fails every time stops after three
# re-triggers (exit 1: a person looks). Run it again the same night (after a crash, a
# reboot, `systemctl stop`, exit 130) and it resumes: runs already re-triggered are skipped, runs that may have been applied are not
# resent, the rest are sent. Extra arguments go to `bulkretry retry`:
#
#   nightly.sh --rate 5 --concurrency 4
#
# Environment (see nightly.env):
#   FLOW_IDS              required: dataflow IDs, separated by spaces
#   AEP_ORG_ID, AEP_CLIENT_ID, AEP_CLIENT_SECRET_FILE (or AEP_CLIENT_SECRET), AEP_SANDBOX_NAME
#   BULKRETRY_STATE_DIR   journals and results; default $STATE_DIRECTORY (systemd's
#                         StateDirectory=) or /var/lib/bulkretry
#   BULKRETRY_NIGHT       which night's journal to use; default today, $(date +%F). Set it to
#                         resume a night after midnight: BULKRETRY_NIGHT=2026-11-22 nightly.sh
#   BULKRETRY_SINCE       override the listing window (ISO time or 90m/24h/7d)
#   BULKRETRY_HISTORY     the recovery history; default $state_dir/history.sqlite3. A
#                         postgresql:// URL when several hosts or pods run this job
#
# Exit status is bulkretry's:
#   0    every listed run re-triggered (or already re-triggered earlier tonight)
#   1    some run failed, is uncertain or invalid, or the listing stopped on an API error:
#        a human looks at the results file (read-results.sh) and the log
#   2    configuration or credentials error: nothing was sent
#   130  stopped by SIGTERM/SIGINT: summary written; run again tonight to resume
set -euo pipefail   # pipefail: a failed listing fails the job even when retry exits 0
set -m              # job control: the pipeline gets its own process group (see stop below)

log() { printf '%s nightly: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >&2; }

if [[ -z ${FLOW_IDS:-} ]]; then
  log "FLOW_IDS is not set: give the dataflow IDs to recover, separated by spaces"
  exit 2
fi
read -r -a flows <<<"$FLOW_IDS"
flow_args=()
for flow in "${flows[@]}"; do flow_args+=(--flow-id "$flow"); done

state_dir=${BULKRETRY_STATE_DIR:-${STATE_DIRECTORY:-/var/lib/bulkretry}}
night=${BULKRETRY_NIGHT:-$(date +%F)}   # computed once: journal and results always match
journal="$state_dir/nightly-$night.journal"
results="$state_dir/nightly-$night.results.jsonl"
mkdir -p -- "$state_dir"
export BULKRETRY_HISTORY=${BULKRETRY_HISTORY:-$state_dir/history.sqlite3}

# The listing window is pinned on the night's first attempt, so a rerun at 09:00 lists the
# same runs as the 03:15 attempt (plus any that failed since) rather than a shifted window
# that would drop the earliest runs before they were sent.
since_file="$state_dir/nightly-$night.since"
if [[ -n ${BULKRETRY_SINCE:-} ]]; then
  since=$BULKRETRY_SINCE
elif [[ -s $since_file ]]; then
  since=$(<"$since_file")
else
  since=$(date -u -d '24 hours ago' +%Y-%m-%dT%H:%M:%SZ)   # GNU date; elsewhere: since=24h
  printf '%s\n' "$since" >"$since_file"
fi

# Forward SIGTERM/SIGINT once to the pipeline's process group: bulkretry then sends nothing
# new, finishes and reports the requests in flight, writes the summary and exits 130. This
# matters where the script is PID 1 (a Kubernetes pod) or is the only process signalled
# (systemd KillMode=mixed, `kill PID`). Signal bulkretry once only: a second signal makes it
# exit at once, without the summary (the journal is still consistent).
stopped="" signals=0
stop() {
  stopped=$1 signals=$((signals + 1))
  log "got SIG$1: asking bulkretry to stop (in-flight requests finish, summary is written)"
  kill -s "$1" %1 2>/dev/null || true
}
trap 'stop TERM' TERM
trap 'stop INT' INT

log "night $night: flows $FLOW_IDS, runs since $since, journal $journal"
# The results file is rewritten on each attempt; a resumed attempt still lists every run
# re-triggered earlier tonight (skipped/already-retriggered, with its new run ID), so the
# newest file is the whole night's picture.
bulkretry failed "${flow_args[@]}" --since "$since" \
  | bulkretry retry --journal "$journal" "$@" >"$results" &
pipeline=$!
seen=0
while :; do
  rc=0
  wait "$pipeline" || rc=$?
  ((signals > seen)) || break   # a trapped signal cuts `wait` short: wait again for the end
  seen=$signals
done
# With pipefail the status is retry's when not 0, else the listing's (1: cut short by an API
# error; 2: configuration). If the listing died of the forwarded signal, report 130.
if [[ -n $stopped ]] && ((rc > 128)); then rc=130; fi

case $rc in
  0)   log "done: all re-triggered; results in $results" ;;
  1)   log "done with problems (exit 1): failed/uncertain/invalid runs, or the listing was cut short; read $results (read-results.sh) and the messages above" ;;
  2)   log "configuration or credentials error (exit 2): nothing was sent" ;;
  130) log "stopped (exit 130): run again tonight to resume from $journal" ;;
  *)   log "unexpected exit $rc" ;;
esac
exit "$rc"
