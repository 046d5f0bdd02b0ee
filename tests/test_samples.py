"""The scheduler samples in samples/ parse, compile, and read real results."""

from __future__ import annotations

import configparser
import os
import py_compile
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

SAMPLES = Path(__file__).resolve().parent.parent / "samples"

MONTHS = {
    name: i + 1
    for i, name in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    )
}
DAYS = {name: i for i, name in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
# minute, hour, day of month, month, day of week (0 and 7 are Sunday): low, high, names
CRON_FIELDS: list[tuple[int, int, dict[str, int]]] = [
    (0, 59, {}),
    (0, 23, {}),
    (1, 31, {}),
    (1, 12, MONTHS),
    (0, 7, DAYS),
]
CRON_TERM = re.compile(r"^(\*|(\w+)(?:-(\w+))?)(?:/(\d+))?$")


def cron_field_values(field: str, low: int, high: int, names: dict[str, int]) -> set[int]:
    """The values one cron time field selects; ValueError when it is not valid."""
    values: set[int] = set()
    for term in field.split(","):
        match = CRON_TERM.match(term)
        if match is None:
            raise ValueError(f"bad cron term {term!r}")
        star, first, last, step = match.groups()

        def number(text: str) -> int:
            value = names[text.lower()] if text.lower() in names else int(text)
            if not low <= value <= high:
                raise ValueError(f"{text} is outside {low}-{high}")
            return value

        start, end = (low, high) if star == "*" else (number(first), number(last or first))
        if last is None and step is not None and star != "*":
            end = high  # "5/15" means 5-max/15
        if start > end or (step is not None and int(step) == 0):
            raise ValueError(f"bad cron range {term!r}")
        values.update(range(start, end + 1, int(step or 1)))
    return values


def crontab_jobs(text: str) -> list[tuple[list[set[int]], str]]:
    """Parse a crontab: each job line as (the values of its 5 time fields, command)."""
    jobs = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if re.match(r"^[A-Za-z_][A-Za-z0-9_]*\s*=", stripped):
            continue  # an environment setting such as MAILTO=
        parts = stripped.split(None, 5)
        if len(parts) < 6:
            raise ValueError(f"a job needs 5 time fields and a command: {line!r}")
        fields = [
            cron_field_values(field, low, high, names)
            for field, (low, high, names) in zip(parts[:5], CRON_FIELDS, strict=True)
        ]
        jobs.append((fields, parts[5]))
    return jobs


def test_cron_validator_rejects_bad_lines():
    """The small crontab validator refuses out-of-range fields and missing commands."""
    for bad in (
        "60 3 * * * cmd",
        "15 24 * * * cmd",
        "15 3 0 * * cmd",
        "15 3 * 13 * cmd",
        "15 3 * * 8 cmd",
        "15 3 * * *",
        "15 3 */0 * * cmd",
        "x 3 * * * cmd",
    ):
        with pytest.raises(ValueError, match=r"."):
            crontab_jobs(bad)
    assert crontab_jobs("*/20 1-3 * jan-mar mon,fri cmd")[0][0][0] == {0, 20, 40}


def test_crontab_line_is_valid():
    """samples/crontab is one job at 03:15 daily running nightly.sh with the env file."""
    text = (SAMPLES / "crontab").read_text(encoding="utf-8")
    assert text.endswith("\n"), "cron ignores a last line without a newline"
    jobs = crontab_jobs(text)
    assert len(jobs) == 1
    (minute, hour, dom, month, dow), command = jobs[0]
    assert (minute, hour) == ({15}, {3})
    assert dom == set(range(1, 32)) and month == set(range(1, 13)) and dow == set(range(8))
    assert "nightly.sh" in command and "nightly.env" in command
    assert "AEP_CLIENT_SECRET_FILE=" in command and "2>>" in command
    assert not re.search(r"(?<!\\)%", command), "a bare % is a newline to cron: write \\%"


def load_yaml_documents() -> list[dict[str, Any]]:
    """Every document of the Kubernetes sample, parsed."""
    text = (SAMPLES / "kubernetes-cronjob.yaml").read_text(encoding="utf-8")
    return [doc for doc in yaml.safe_load_all(text) if doc is not None]


def test_kubernetes_yaml_documents_load():
    """Every YAML document loads and names its apiVersion, kind and metadata.name."""
    docs = load_yaml_documents()
    assert sorted(doc["kind"] for doc in docs) == ["CronJob", "PersistentVolumeClaim", "Secret"]
    for doc in docs:
        assert doc["apiVersion"] and doc["metadata"]["name"]


def test_kubernetes_cronjob_fields():
    """The CronJob forbids overlap, never retries a pod, and wires secret file and journal PVC."""
    docs = {doc["kind"]: doc for doc in load_yaml_documents()}
    cron = docs["CronJob"]
    assert cron["spec"]["schedule"] == "15 3 * * *"
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    job = cron["spec"]["jobTemplate"]["spec"]
    assert job["backoffLimit"] == 0
    pod = job["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert "AEP_CLIENT_SECRET" not in env
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}

    [(secret_name, secret)] = [(n, v["secret"]) for n, v in volumes.items() if "secret" in v]
    assert secret["secretName"] == docs["Secret"]["metadata"]["name"]
    [item] = secret["items"]
    assert item["key"] in docs["Secret"]["stringData"]
    assert env["AEP_CLIENT_SECRET_FILE"] == f"{mounts[secret_name]}/{item['path']}"

    [(pvc_name, pvc)] = [
        (n, v["persistentVolumeClaim"]) for n, v in volumes.items() if "persistentVolumeClaim" in v
    ]
    assert pvc["claimName"] == docs["PersistentVolumeClaim"]["metadata"]["name"]
    assert env["BULKRETRY_STATE_DIR"] == mounts[pvc_name]
    for key in ("AEP_CLIENT_ID", "AEP_ORG_ID", "AEP_SANDBOX_NAME", "FLOW_IDS"):
        assert env[key]


def test_airflow_dag_compiles(tmp_path):
    """The Airflow DAG is valid Python (compiled only: Airflow is not a test dependency)."""
    py_compile.compile(
        str(SAMPLES / "airflow_dag.py"), cfile=str(tmp_path / "dag.pyc"), doraise=True
    )
    source = (SAMPLES / "airflow_dag.py").read_text(encoding="utf-8")
    assert "set -euo pipefail" in source and "AirflowFailException" in source


def read_unit(name: str) -> configparser.ConfigParser:
    """A systemd unit file, parsed as INI (repeated keys allowed, % left alone)."""
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign] # keys are case-sensitive
    parser.read_string((SAMPLES / name).read_text(encoding="utf-8"), source=name)
    return parser


def test_systemd_service_parses():
    """The service is a oneshot with the credential, state directory and a clean stop."""
    unit = read_unit("bulkretry.service")
    service = unit["Service"]
    assert unit["Unit"]["Description"]
    assert service["Type"] == "oneshot"
    assert service["ExecStart"].endswith("nightly.sh")
    credential, _, source = service["LoadCredential"].partition(":")
    assert source.startswith("/")
    assert service["Environment"] == f"AEP_CLIENT_SECRET_FILE=%d/{credential}"
    assert service["StateDirectory"] == "bulkretry"
    assert service["KillMode"] == "mixed"
    assert "1" not in service.get("SuccessExitStatus", "").split()


def test_systemd_timer_parses():
    """The timer fires daily at 03:15, catches up missed nights and is installable."""
    unit = read_unit("bulkretry.timer")
    assert unit["Timer"]["OnCalendar"] == "*-*-* 03:15:00"
    assert unit["Timer"]["Persistent"] == "true"
    assert unit["Timer"]["Unit"] == "bulkretry.service"
    assert unit["Install"]["WantedBy"] == "timers.target"


def test_nightly_env_is_plain_assignments():
    """nightly.env holds only KEY=value lines that both sh and systemd read, and no secret."""
    for line in (SAMPLES / "nightly.env").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            assert re.fullmatch(r"[A-Z_][A-Z0-9_]*", key), line
            assert " " not in value or (value.startswith('"') and value.endswith('"')), line
            assert not key.startswith("AEP_CLIENT_SECRET"), line


@pytest.mark.parametrize("script", ["nightly.sh", "read-results.sh"])
def test_shell_script_syntax(script):
    """The shell samples pass `bash -n` and are executable."""
    path = SAMPLES / script
    done = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert os.access(path, os.X_OK), f"chmod +x samples/{script}"


def test_nightly_sh_without_flows_is_a_usage_error(tmp_path):
    """nightly.sh exits 2 and sends nothing when FLOW_IDS is missing."""
    env = {"PATH": os.environ["PATH"], "BULKRETRY_STATE_DIR": str(tmp_path)}
    done = subprocess.run(
        [str(SAMPLES / "nightly.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert done.returncode == 2
    assert "FLOW_IDS" in done.stderr


@pytest.mark.skipif(shutil.which("jq") is None, reason="jq is not installed")
def test_read_results_on_demo_output(tmp_path, demo_run):
    """read-results.sh maps each re-triggered run of `bulkretry demo` to its new run ID."""
    results = tmp_path / "results.jsonl"
    demo, _ = demo_run
    assert demo.code == 0, demo.stderr
    results.write_bytes(demo.stdout)
    events = [orjson.loads(line) for line in results.read_bytes().splitlines()]
    retriggered = {e["run_id"]: e["new_run_id"] for e in events if e["event"] == "retriggered"}
    failed = {e["run_id"] for e in events if e["event"] == "failed"}
    assert retriggered and failed

    def section(name: str) -> list[str]:
        done = subprocess.run(
            [str(SAMPLES / "read-results.sh"), str(results), name],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return done.stdout.splitlines()

    mapping = [line.split("\t") for line in section("map")]
    assert len(mapping) == len(retriggered)
    assert dict(mapping) == retriggered
    assert {line.split("\t")[0] for line in section("failed")} == failed
    assert section("uncertain") == []
    [again] = section("again")  # the demo's poison run
    run_id, new_run_id, status, error = again.split("\t")
    assert (new_run_id, status) == (retriggered[run_id], "failed")
    assert error.startswith("CONNECTOR-1001-500: ")
    [summary] = section("summary")
    assert summary.startswith(f"total {events[-1]['total']}:")
    assert summary.endswith("; 9 recovered, 1 failed again, 0 unfinished")
    report = "\n".join(section("all"))
    assert "== old run ID -> new run ID ==" in report and summary in report


def test_library_example_runs_as_the_readme_shows():
    """samples/library_example.py (the README's library example) runs against the emulator."""
    done = subprocess.run(
        [sys.executable, str(SAMPLES / "library_example.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert sum(line.startswith(("run-1 -> ", "run-2 -> ")) for line in lines) == 2
    assert "run-2: skipped (duplicate)" in lines
    assert "bad id: skipped (invalid)" in lines
    assert lines[-1].startswith("failed: run-9 in flow-1 at ")


def test_kubernetes_history_url_comes_from_an_optional_secret():
    """A PostgreSQL history URL is read from a Secret key, never written in the manifest."""
    cron = {doc["kind"]: doc for doc in load_yaml_documents()}["CronJob"]
    (container,) = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    [history] = [item for item in container["env"] if item["name"] == "BULKRETRY_HISTORY"]
    ref = history["valueFrom"]["secretKeyRef"]
    assert ref["optional"] is True and ref["key"] and "value" not in history
