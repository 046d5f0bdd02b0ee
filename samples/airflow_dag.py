"""Airflow DAG: the nightly bulkretry recovery job, at 03:15 UTC.

One BashOperator runs ``bulkretry failed ... | bulkretry retry --journal ...`` with
``set -o pipefail``, so a listing cut short by an API error fails the task even when the
retry step itself succeeded. Exit status, and what the task does with it:

* 0: every listed run re-triggered: success.
* 1: some runs failed, are uncertain or invalid, or the listing was cut short: the task
  fails at once, without Airflow retries (refusals would repeat, and uncertain runs must
  not be resent blindly). A human reads the results file (``samples/read-results.sh``).
* 2: configuration or credentials error, nothing sent: fails at once, without retries.
* 130 (stopped by SIGTERM, e.g. the task was killed or timed out) and anything else: a
  normal failure, so Airflow retries it. The retry uses the same journal (named after the
  DAG run's date, not the wall clock, and with the same listing window), so it resumes:
  runs already re-triggered are skipped, uncertain ones are not resent, the rest are sent.

Credentials stay out of the DAG and its rendered templates: set AEP_ORG_ID, AEP_CLIENT_ID,
AEP_CLIENT_SECRET_FILE (a file mounted on the workers, e.g. from a Kubernetes Secret) and
AEP_SANDBOX_NAME in the workers' environment; the task inherits it (``append_env=True``).
STATE_DIR must be on storage that every worker which may run a retry can reach.

The recovery history (every re-trigger, across nights, so a run is never re-triggered twice
and a run that fails every time stops after three tries) should live in PostgreSQL when
tasks run on several workers: set BULKRETRY_HISTORY=postgresql://... in the workers'
environment from your secrets backend or a mounted Secret (never in the DAG), with
``pip install 'bulkretry[postgres]'``. Without it, the history is a SQLite file in
STATE_DIR: fine on a local disk, unsafe on a network filesystem.
"""

from __future__ import annotations

import shlex
from datetime import timedelta
from typing import Any

import pendulum

try:  # Airflow 3
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.sdk import DAG
    from airflow.sdk.exceptions import AirflowException, AirflowFailException
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.exceptions import AirflowException, AirflowFailException
    from airflow.operators.bash import BashOperator

# The dataflows to recover.
FLOW_IDS = [
    "d8a68c0c-6ba2-4ea1-9ad3-2c2a1f3e4b5d",
    "0e5b7a3e-91f4-4c84-8d1c-6f0b2a9c7e11",
]
# Journals and results, one pair per night; shared by all workers.
STATE_DIR = "/var/lib/bulkretry"

# Exit codes of bulkretry that no retry can fix: a human or a configuration change must act.
FINAL_EXIT_CODES = {
    1: "some runs failed, are uncertain or invalid, or the listing was cut short: "
    "read the results file",
    2: "configuration or credentials error, nothing was sent",
}

# Templated by Airflow: NIGHT and SINCE come from the DAG run, so a retry of the task after
# midnight (or a cleared run days later) uses the same journal and the same 24-hour window.
NIGHTLY_JOB = f"""
set -euo pipefail   # pipefail: a failed listing fails the task even if retry exits 0
mkdir -p "$STATE_DIR"
export BULKRETRY_HISTORY="${{BULKRETRY_HISTORY:-$STATE_DIR/history.sqlite3}}"
bulkretry failed {" ".join(f"--flow-id {shlex.quote(flow)}" for flow in FLOW_IDS)} \\
    --since "$SINCE" \\
  | bulkretry retry --journal "$STATE_DIR/nightly-$NIGHT.journal" \\
    > "$STATE_DIR/nightly-$NIGHT.results.jsonl"
"""


class BulkretryOperator(BashOperator):
    """A BashOperator that fails for good on bulkretry's exit 1 and 2, and retries the rest."""

    def execute(self, context: Any) -> Any:  # noqa: ANN401 - Airflow's own signature
        """Run the command; turn a final exit code into a failure that skips retries."""
        try:
            return super().execute(context)
        except AirflowException as exc:
            process = getattr(self.subprocess_hook, "sub_process", None)
            code = getattr(process, "returncode", None)
            if code in FINAL_EXIT_CODES:
                msg = f"bulkretry exited {code}: {FINAL_EXIT_CODES[code]}"
                raise AirflowFailException(msg) from exc
            raise  # 130 (stopped) and the rest: Airflow retries, resuming the journal


with DAG(
    dag_id="bulkretry_nightly",
    description="Re-trigger the AEP dataflow runs that failed in the last 24 hours",
    schedule="15 3 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["bulkretry", "aep"],
) as dag:
    BulkretryOperator(
        task_id="retrigger_failed_runs",
        bash_command=NIGHTLY_JOB,
        env={
            "STATE_DIR": STATE_DIR,
            "NIGHT": "{{ data_interval_end | ds }}",
            "SINCE": "{{ (data_interval_end - macros.timedelta(hours=24)).isoformat() }}",
        },
        append_env=True,  # keep the workers' PATH and AEP_* settings
        skip_on_exit_code=None,  # no exit code means "skipped"
        retries=2,
        retry_delay=timedelta(minutes=10),  # let a stopped job finish its in-flight requests
        execution_timeout=timedelta(hours=3),  # then SIGTERM: graceful stop, exit 130, retry
    )
