#!/usr/bin/env bash
# read-results.sh: what a human needs from a results file (`bulkretry retry ... > results.jsonl`).
#
#   read-results.sh RESULTS.jsonl [all|failed|uncertain|invalid|map|again|summary]
#
#   failed     run_id, HTTP status, error (TSV): certainly NOT re-triggered. A 4xx is the API
#              refusing (wrong state, unknown run): fix the cause; a rerun with the same journal
#              tries these again.
#   uncertain  run_id, status, error (TSV): the request MAY have been applied (500/502/504,
#              timeout, dropped connection). Check the dataflow's runs in the Platform UI before
#              resending with --retry-uncertain: re-triggering twice starts two ingestions.
#   invalid    input lines that are not run IDs, and why (TSV; no request was sent)
#   map        old run ID -> new run ID (TSV), including runs re-triggered by an earlier
#              attempt the same night (skipped/already-retriggered)
#   again      run_id, new_run_id, status, error (TSV): with --wait, new runs that did not
#              recover (failed again, or timed-out); `bulkretry status --summary` counts them
#              across nights
#   summary    the counts from the last line, or a warning when the job did not finish
#   all        (default) every section above, with headings
#
# A torn last line (the job was killed) is ignored. Needs jq 1.6 or later.
set -euo pipefail

if (($# < 1 || $# > 2)); then
  echo "usage: ${0##*/} RESULTS.jsonl [all|failed|uncertain|invalid|map|again|summary]" >&2
  exit 2
fi
results=$1
section=${2:-all}
command -v jq >/dev/null || { echo "${0##*/}: needs jq (apt-get install jq)" >&2; exit 2; }
[[ -r $results ]] || { echo "${0##*/}: cannot read $results" >&2; exit 2; }

# -R + fromjson?: read raw lines, keep only the ones that are complete JSON.
events() { jq -rR "fromjson? | objects | $1" "$results"; }

failed() { events 'select(.event == "failed") | [.run_id, (.status // "-"), .error] | @tsv'; }
uncertain() { events 'select(.event == "uncertain") | [.run_id, (.status // "-"), .error] | @tsv'; }
invalid() { events 'select(.event == "skipped" and .reason == "invalid") | [.run_id, (.detail // "")] | @tsv'; }
map() {
  events 'select(.new_run_id != null and (.event == "retriggered"
            or (.event == "skipped" and .reason == "already-retriggered")))
          | [.run_id, .new_run_id] | @tsv'
}
again() {
  events 'select(.event == "finished" and .status != "success")
          | [.run_id, .new_run_id, .status, (.error // "-")] | @tsv'
}
summary() {
  jq -nrR '[inputs | fromjson? | objects | select(.event == "summary")] | last
    | if . == null then "no summary line: the job did not finish (killed?); rerun it with the same journal"
      else "total \(.total): \(.retriggered) re-triggered, \(.failed) failed, \(.uncertain) uncertain, \(.skipped) skipped, \(.planned) planned in \(.elapsed_s)s"
        + if .recovered == null then ""
          else "; \(.recovered) recovered, \(.failed_again) failed again, \(.unfinished) unfinished" end
      end' "$results"
}

case $section in
  failed | uncertain | invalid | map | again | summary) "$section" ;;
  all)
    echo "== failed: not re-triggered (run_id, status, error) =="
    failed
    echo
    echo "== uncertain: may have been applied, check by hand before --retry-uncertain =="
    uncertain
    echo
    echo "== invalid input lines (nothing sent) =="
    invalid
    echo
    echo "== old run ID -> new run ID =="
    map
    echo
    echo "== new runs that did not recover (--wait) =="
    again
    echo
    echo "== summary =="
    summary
    ;;
  *)
    echo "${0##*/}: unknown section '$section'" >&2
    exit 2
    ;;
esac

# More one-liners:
#   jq -r 'select(.event == "failed") | .run_id' results.jsonl > to-fix.txt   # IDs only
#   jq -r 'select(.event == "skipped") | [.run_id, .reason] | @tsv' results.jsonl
#   jq -s 'map(select(.event == "failed")) | group_by(.error | split(":")[0])
#          | map({code: (.[0].error | split(":")[0]), runs: length})' results.jsonl
