"""The recovery history through the installed CLI: nightly jobs, lineage, concurrency, crashes."""

import os
import signal
import sqlite3
import subprocess
import time

import pytest

from bulkretry._history_sql import SCHEMA_VERSION
from bulkretry.emulator import Faults
from bulkretry.emulator.lifecycle import Lifecycle
from bulkretry.emulator.model import Run

from .conftest import cli_env, make_emulator, parse_lines, run_cli, spawn_cli
from .forked import run_forked
from .test_history_writer import writers

FLOW = "flow-history-1"


def history_env(server, tmp_path, **extra):
    """The CLI's default history, under this test's XDG_STATE_HOME."""
    env = cli_env(server, XDG_STATE_HOME=str(tmp_path / "state"), **extra)
    del env["BULKRETRY_HISTORY"]
    return env


def default_history(tmp_path):
    """Where the default history of ``history_env`` lives."""
    return tmp_path / "state" / "bulkretry" / "history.sqlite3"


def fed_job(env, ids, *args, mid_stream=False):
    """A ``retry`` job given ``ids`` on stdin: closed, or left open (``mid_stream``)."""
    job = spawn_cli(["retry", *args], env=env)
    job.stdin.write("".join(f"{run_id}\n" for run_id in ids).encode())
    if mid_stream:
        job.stdin.flush()
    else:
        job.stdin.close()
    return job


def until_retriggered(emulator, count):
    """Wait (20 s at most) until the emulator has taken ``count`` re-triggers."""
    deadline = time.monotonic() + 20
    while sum(emulator.stats.retriggers.values()) < count and time.monotonic() < deadline:
        time.sleep(0.01)


def nightly(env):
    """The README's nightly job: ``failed | retry``; the retry run's result."""
    listing = run_cli(["failed", "--flow-id", FLOW], env=env)
    assert listing.code == 0, listing.stderr
    return listing, run_cli(["retry", "--rate", "0"], env=env, stdin=listing.stdout)


@pytest.fixture
def lifecycle_emulator():
    """New runs end at once: a poison run's re-runs fail, the others succeed."""
    return make_emulator(lifecycle=Lifecycle(seconds=0))


@pytest.fixture
def emulator(lifecycle_emulator):
    """The emulator the shared fixtures serve in these tests."""
    return lifecycle_emulator


def test_two_nightly_runs_retrigger_nothing_twice(emulator, thread_server, tmp_path):
    """The second night lists nothing already re-triggered, and retrying the IDs skips them."""
    for n in range(3):
        emulator.add_run(Run(id=f"night-{n}", flow_id=FLOW))
    env = history_env(thread_server, tmp_path)
    _, first = nightly(env)
    assert first.code == 0 and first.summary["retriggered"] == 3, first.stderr
    listing, second = nightly(env)
    assert parse_lines(listing.stdout) == [] and "3 re-triggered before left out" in listing.stderr
    assert second.summary["total"] == 0
    again = run_cli(["retry"], env=env, stdin=b"night-0\nnight-1\nnight-2\n")
    assert again.code == 0
    assert {line["reason"] for line in again.events("skipped")} == {"already-retriggered"}
    new_ids = {line["new_run_id"] for line in first.events("retriggered")}
    assert {line["new_run_id"] for line in again.events("skipped")} == new_ids
    assert dict(emulator.stats.retriggers) == {f"night-{n}": 1 for n in range(3)}
    with sqlite3.connect(default_history(tmp_path)) as raw:  # the listing's flow_id is kept
        flows = dict(raw.execute("SELECT run_id, flow_id FROM bulkretry_runs"))
    assert {flows[f"night-{n}"] for n in range(3)} == {FLOW}
    assert {flows[new_id] for new_id in new_ids} == {FLOW}  # and inherited by the new runs


def test_a_poison_chain_stops_at_the_generation_limit(emulator, thread_server, tmp_path):
    """A run that fails every time is re-triggered three times, then needs a person (exit 1)."""
    emulator.add_run(Run(id="poison-0", flow_id=FLOW, poison=True))
    env = history_env(thread_server, tmp_path)
    chain = ["poison-0"]
    for generation in range(3):
        listing, night = nightly(env)
        [listed] = parse_lines(listing.stdout)
        assert listed["run_id"] == chain[-1]
        if generation:
            assert listed["generation"] == generation and listed["original_run_id"] == "poison-0"
        [line] = night.events("retriggered")
        chain.append(line["new_run_id"])
    listing, night = nightly(env)
    assert night.code == 1
    [skipped] = night.events("skipped")
    assert skipped["run_id"] == chain[-1] and skipped["reason"] == "generation-limit"
    assert sum(emulator.stats.retriggers.values()) == 3
    raised = run_cli(["retry", "--max-generations", "4"], env=env, stdin=listing.stdout)
    assert raised.code == 0 and raised.summary["retriggered"] == 1


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_two_concurrent_jobs_retrigger_each_run_once(
    backend, emulator, thread_server, tmp_path, request
):
    """Two processes with the same 200 IDs on one history: each run re-triggered once."""
    emulator.faults = Faults(latency=0.005)
    ids = [f"both-{n}" for n in range(200)]
    where = (
        str(tmp_path / "shared.sqlite3")
        if backend == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    env = cli_env(thread_server, BULKRETRY_HISTORY=where)
    stdin = "".join(f"{run_id}\n" for run_id in ids).encode()
    jobs = [spawn_cli(["retry", "--rate", "0", "--concurrency", "8"], env=env) for _ in range(2)]
    outputs = [job.communicate(stdin, timeout=60) for job in jobs]
    assert max(emulator.stats.retriggers.values()) == 1
    assert set(emulator.stats.retriggers) == set(ids)
    retriggered = []
    for job, (stdout, stderr) in zip(jobs, outputs, strict=True):
        assert job.returncode in {0, 1}, stderr.decode()
        lines = parse_lines(stdout)
        assert lines[-1]["total"] == 200
        retriggered += [line["run_id"] for line in lines if line["event"] == "retriggered"]
        others = {(line["event"], line.get("reason")) for line in lines[:-1]}
        assert others <= {
            ("retriggered", None),
            ("skipped", "already-retriggered"),
            ("uncertain", None),
        }
    assert sorted(retriggered) == sorted(ids)


def test_kill_9_mid_job_then_resume_from_the_history(emulator, thread_server, tmp_path):
    """A job killed at once resumes from the history: nothing re-triggered twice, none lost."""
    emulator.faults = Faults(latency=0.03)
    ids = [f"crash-{n}" for n in range(120)]
    env = history_env(thread_server, tmp_path)
    job = fed_job(env, ids, "--rate", "0", "--concurrency", "6")
    until_retriggered(emulator, 30)
    job.send_signal(signal.SIGKILL)
    job.wait(10)
    job.stdout.close()
    job.stderr.close()
    before = set(emulator.stats.retriggers)
    assert len(before) < len(ids)  # really cut short
    emulator.faults = Faults()
    resumed = run_cli(["retry", "--rate", "0"], env=env, stdin="\n".join(ids).encode())
    assert resumed.summary["total"] == len(ids)
    assert max(emulator.stats.retriggers.values()) == 1  # nothing re-triggered twice
    for line in resumed.lines[:-1]:
        kind = line["event"], line.get("reason")
        if line["run_id"] in before:  # applied before the kill: reported, never resent
            assert kind in {("skipped", "already-retriggered"), ("uncertain", None)}
        else:  # sent now, or claimed by the killed job: uncertain, never sent unasked
            assert kind in {("retriggered", None), ("uncertain", None)}
    assert resumed.events("skipped")  # outcomes committed before the kill were kept


def test_sigterm_at_rate_0_gives_back_the_claims_made_ahead(emulator, thread_server, tmp_path):
    """Stopped at --rate 0: runs claimed ahead but never sent are sent next time, none uncertain."""
    emulator.faults = Faults(latency=0.1)
    ids = [f"ahead-{n}" for n in range(200)]
    env = history_env(thread_server, tmp_path)
    job = fed_job(env, ids, "--rate", "0", "--concurrency", "4", mid_stream=True)
    until_retriggered(emulator, 4)
    job.terminate()
    stdout, stderr = job.communicate(timeout=30)
    assert job.returncode == 130, stderr
    stopped = {line["run_id"]: line.get("reason") for line in parse_lines(stdout)[:-1]}
    assert list(stopped.values()).count("interrupted") >= 8  # read, claimed ahead, not sent
    before = set(emulator.stats.retriggers)
    emulator.faults = Faults()
    resumed = run_cli(["retry", "--rate", "0"], env=env, stdin="\n".join(ids).encode())
    events = {line["run_id"]: line["event"] for line in resumed.lines[:-1]}
    never_sent = {run_id: events[run_id] for run_id in ids if run_id not in before}
    assert never_sent == dict.fromkeys(never_sent, "retriggered")
    assert max(emulator.stats.retriggers.values()) == 1


def test_a_writer_process_killed_mid_job_leaves_no_claim_on_runs_never_sent(
    emulator, thread_server, tmp_path
):
    """The job stops (exit 1); runs it never sent are sent by the next job, not uncertain."""
    emulator.faults = Faults(latency=0.05)
    ids = [f"orphaned-{n}" for n in range(400)]
    env = history_env(thread_server, tmp_path)
    job = fed_job(env, ids, "--rate", "0", "--concurrency", "4")
    deadline = time.monotonic() + 20
    while not writers(job.pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    until_retriggered(emulator, sum(emulator.stats.retriggers.values()) + 8)  # writing there
    [writer] = writers(job.pid)
    os.kill(writer, signal.SIGKILL)
    stdout, stderr = job.communicate(timeout=30)
    assert job.returncode == 1, stderr
    assert b"writer process ended unexpectedly" in stderr and b"Traceback" not in stderr
    assert len(parse_lines(stdout)) == len(ids) + 1  # every run ID has its line, and a summary
    before = set(emulator.stats.retriggers)
    emulator.faults = Faults()
    resumed = run_cli(["retry", "--rate", "0"], env=env, stdin="\n".join(ids).encode())
    events = {line["run_id"]: line["event"] for line in resumed.lines[:-1]}
    never_sent = {run_id: events[run_id] for run_id in ids if run_id not in before}
    assert len(never_sent) > 300
    assert never_sent == dict.fromkeys(never_sent, "retriggered")
    assert max(emulator.stats.retriggers.values()) == 1


def test_a_large_job_commits_through_the_writer_process(emulator, thread_server, tmp_path):
    """Past a few hundred claims the writer process commits: each run once, all recorded."""
    ids = [f"large-{n}" for n in range(1500)]
    env = history_env(thread_server, tmp_path)
    job = ["retry", "--rate", "0", "--log-level", "debug"]
    first = run_cli(job, env=env, stdin="\n".join(ids).encode())
    assert first.code == 0 and first.summary["retriggered"] == len(ids), first.stderr
    assert "commits move to the writer process" in first.stderr
    with sqlite3.connect(default_history(tmp_path)) as db:
        recorded = dict(db.execute("SELECT run_id, state FROM bulkretry_runs").fetchall())
        lineage = db.execute("SELECT count(*) FROM bulkretry_runs WHERE generation = 1").fetchone()
    assert {recorded[run_id] for run_id in ids} == {"retriggered"}
    assert lineage == (len(ids),)
    again = run_cli(["retry", "--rate", "0"], env=env, stdin="\n".join(ids).encode())
    assert again.summary["skipped"] == len(ids)
    assert max(emulator.stats.retriggers.values()) == 1


@pytest.mark.parametrize("ledger", ["history", "journal"])
def test_kill_9_while_runs_wait_for_rate_leaves_them_unclaimed(
    ledger, emulator, thread_server, tmp_path
):
    """Killed while most runs wait for --rate: on resume none that never left is uncertain."""
    emulator.faults = Faults(latency=0.05)
    ids = [f"paced-{n}" for n in range(30)]
    if ledger == "history":
        env, args = history_env(thread_server, tmp_path), []
    else:
        env, args = cli_env(thread_server), ["--journal", str(tmp_path / "paced.journal")]
    job = fed_job(env, ids, "--rate", "5", "--concurrency", "10", *args, mid_stream=True)
    until_retriggered(emulator, 3)
    job.send_signal(signal.SIGKILL)
    job.wait(10)
    for pipe in (job.stdin, job.stdout, job.stderr):
        pipe.close()
    before = set(emulator.stats.retriggers)
    assert 3 <= len(before) < len(ids) // 2  # most were still waiting for --rate
    emulator.faults = Faults()
    resumed = run_cli(["retry", "--rate", "0", *args], env=env, stdin="\n".join(ids).encode())
    assert resumed.summary["total"] == len(ids)
    events = {line["run_id"]: line["event"] for line in resumed.lines[:-1]}
    never_sent = {run_id: events[run_id] for run_id in ids if run_id not in before}
    assert never_sent == dict.fromkeys(never_sent, "retriggered")
    assert max(emulator.stats.retriggers.values()) == 1


def test_dry_run_reads_the_history_and_writes_nothing(emulator, thread_server, tmp_path):
    """--dry-run shows what the history says, changes no byte, and creates no file."""
    env = history_env(thread_server, tmp_path)
    untouched = run_cli(["retry", "--dry-run"], env=env, stdin=b"dry-a\n")
    assert untouched.code == 0 and not (tmp_path / "state").exists()
    assert run_cli(["retry"], env=env, stdin=b"dry-a\n").code == 0
    state = default_history(tmp_path).parent
    before = {path.name: path.read_bytes() for path in state.iterdir()}
    dry = run_cli(["retry", "--dry-run"], env=env, stdin=b"dry-a\ndry-b\n")
    assert dry.code == 0, dry.stderr
    assert [line["event"] for line in dry.lines[:-1]] == ["skipped", "planned"]
    assert {path.name: path.read_bytes() for path in state.iterdir()} == before
    assert emulator.stats.retriggers["dry-a"] == 1 and "dry-b" not in emulator.stats.retriggers


def test_again_retriggers_what_the_history_skips(emulator, thread_server, tmp_path):
    """--again sends a run re-triggered before; the new run's lineage still counts."""
    env = history_env(thread_server, tmp_path)
    assert run_cli(["retry"], env=env, stdin=b"twice-1\n").code == 0
    again = run_cli(["retry", "--again"], env=env, stdin=b"twice-1\n")
    assert again.code == 0 and again.summary["retriggered"] == 1
    assert emulator.stats.retriggers["twice-1"] == 2


def test_journal_and_history_together(emulator, thread_server, tmp_path):
    """--journal keeps its contract beside the history; a skip by one is seen by both."""
    env = history_env(thread_server, tmp_path)
    journal = tmp_path / "night.journal"
    assert run_cli(["retry", "--journal", str(journal)], env=env, stdin=b"j-1\n").code == 0
    lines = [line for line in journal.read_bytes().splitlines() if line]
    assert [parse_lines(line)[0]["state"] for line in lines] == ["intent", "retriggered"]
    other = tmp_path / "other.journal"  # a fresh journal: the history still knows j-1
    second = run_cli(["retry", "--journal", str(other)], env=env, stdin=b"j-1\n")
    assert second.events("skipped")[0]["reason"] == "already-retriggered"
    assert parse_lines(other.read_bytes())[-1]["state"] == "retriggered"
    assert emulator.stats.retriggers["j-1"] == 1


def newer_schema(tmp_path, server):
    """A history file stamped by a newer bulkretry."""
    path = tmp_path / "newer.sqlite3"
    env = cli_env(server, BULKRETRY_HISTORY=str(path))
    assert run_cli(["retry"], env=env, stdin=b"").code == 0
    with sqlite3.connect(path) as raw:
        raw.execute("UPDATE bulkretry_schema SET value = ?", (str(SCHEMA_VERSION + 1),))
    return str(path), "newer than this bulkretry knows"


def not_sqlite(tmp_path, server):
    """A file that is something else."""
    del server
    path = tmp_path / "notes.txt"
    path.write_text("these are my notes\n" * 100)
    return str(path), "not a SQLite database"


def under_a_file(tmp_path, server):
    """A path whose directory cannot be made."""
    del server
    (tmp_path / "plain").write_text("")
    return str(tmp_path / "plain" / "history.sqlite3"), "cannot create its directory"


def read_only_dir(tmp_path, server):
    """A directory that cannot be written: mode 0500, or (as root) a read-only mount."""
    del server
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.geteuid() == 0:  # root writes through permissions, not through a read-only mount
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(locked)], check=False
        )
        if mounted.returncode != 0:
            pytest.skip("running as root without the right to mount a read-only directory")
        READ_ONLY_MOUNTS.append(locked)
    return str(locked / "history.sqlite3"), "unable to open database file"


READ_ONLY_MOUNTS = []


@pytest.fixture(autouse=True)
def _unmount():
    """Undo the read-only mounts a test made."""
    yield
    while READ_ONLY_MOUNTS:
        subprocess.run(["umount", str(READ_ONLY_MOUNTS.pop())], check=False)


def pg_closed_port(tmp_path, server):
    """A PostgreSQL URL where nothing listens."""
    del tmp_path, server
    return "postgresql://someone:hunter2-pw@127.0.0.1:9/none", "Connection refused"


def pg_wrong_password(tmp_path, server, pg_server=None):
    """A real server refusing the password."""
    del tmp_path, server
    return pg_server.url(password="hunter2-pw"), "password authentication failed"


@pytest.mark.parametrize(
    "make",
    [newer_schema, not_sqlite, under_a_file, read_only_dir, pg_closed_port, pg_wrong_password],
)
def test_an_unusable_history_is_one_line_exit_2_nothing_sent(
    make, emulator, thread_server, tmp_path, request
):
    """Bad history: one clear line naming it (password masked), exit 2, no request."""
    extra = {"pg_server": request.getfixturevalue("pg_server")} if "wrong" in make.__name__ else {}
    where, reason = make(tmp_path, thread_server, **extra)
    env = cli_env(thread_server, BULKRETRY_HISTORY=where)
    done = run_cli(["retry"], env=env, stdin=b"never-1\n")
    assert done.code == 2, done.stderr
    assert reason in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert "hunter2-pw" not in done.stderr + done.stdout.decode()
    assert emulator.stats.requests == []


def test_a_history_failing_mid_job_stops_it_and_reports_everything(
    emulator, thread_server, tmp_path
):
    """A full disk under the history: sending stops, every ID read has a line, exit 1."""
    path = tmp_path / "full.sqlite3"
    env = cli_env(thread_server, BULKRETRY_HISTORY=str(path))
    assert run_cli(["retry"], env=env, stdin=b"").code == 0  # the schema fits
    done = run_forked(
        ["retry", "--rate", "0", "--concurrency", "4"],
        input=b"".join(b"disk-%d\n" % n for n in range(40)),
        env=env,
        file_size_limit=path.stat().st_size + 40_000,
    )
    stderr = done.stderr.decode()
    assert done.returncode == 1, stderr
    assert "history" in stderr and "Traceback" not in stderr
    lines = parse_lines(done.stdout)
    assert lines[-1]["total"] == len(lines) - 1  # every ID read has its line
    sent = set(emulator.stats.retriggers)
    assert 0 < len(sent) < lines[-1]["total"]
    with sqlite3.connect(path) as raw:  # every request that left had its claim committed
        claimed = {row[0] for row in raw.execute("SELECT run_id FROM bulkretry_runs")}
    assert sent <= claimed


def test_output_naming_the_history_is_a_usage_error(thread_server, tmp_path):
    """--output pointing at the history file would destroy it: exit 2, untouched."""
    path = tmp_path / "h.sqlite3"
    env = cli_env(thread_server, BULKRETRY_HISTORY=str(path))
    assert run_cli(["retry"], env=env, stdin=b"out-1\n").code == 0
    before = path.read_bytes()
    done = run_cli(["retry", "--output", str(path)], env=env, stdin=b"out-2\n")
    assert done.code == 2 and "--history" in done.stderr
    assert path.read_bytes() == before


def test_a_postgres_history_never_shows_its_password(thread_server, pg_url):
    """A job on PostgreSQL, debug logging on: the URL's password appears nowhere."""
    env = cli_env(thread_server, BULKRETRY_HISTORY=pg_url)
    stdin = b'pg-1\n{"run_id": "pg-2", "flow_id": "f"}\n'
    done = run_cli(["retry", "--log-level", "debug"], env=env, stdin=stdin)
    assert done.code == 0, done.stderr
    password = pg_url.split(":")[2].split("@")[0]
    assert password not in done.stderr and password not in done.stdout.decode()
    again = run_cli(["retry"], env=env, stdin=b"pg-1\n")
    assert again.events("skipped")[0]["reason"] == "already-retriggered"


def test_reading_a_history_nobody_wrote_yet_is_an_empty_one(emulator, thread_server, pg_url):
    """Listing and --dry-run on a fresh PostgreSQL database: no schema yet reads as empty."""
    emulator.add_run(Run(id="fresh-0", flow_id=FLOW))
    env = cli_env(thread_server, BULKRETRY_HISTORY=pg_url)
    listing = run_cli(["failed", "--flow-id", FLOW], env=env)
    assert listing.code == 0, listing.stderr
    dry = run_cli(["retry", "--dry-run"], env=env, stdin=listing.stdout)
    assert dry.code == 0, dry.stderr
    assert [line["event"] for line in dry.lines] == ["planned", "summary"]


def test_a_postgres_history_lost_mid_job_stops_it_cleanly(emulator, thread_server, pg_url):
    """The server drops the job's connection: nothing more is sent, every line written, exit 1."""
    import psycopg  # noqa: PLC0415 - PostgreSQL tests only

    emulator.faults = Faults(latency=0.02)
    env = cli_env(thread_server, BULKRETRY_HISTORY=pg_url)
    job = spawn_cli(["retry", "--rate", "0", "--concurrency", "4"], env=env)
    job.stdin.write(b"".join(b"lost-%d\n" % n for n in range(200)))
    job.stdin.close()
    deadline = time.monotonic() + 20
    while sum(emulator.stats.retriggers.values()) < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    stdout, stderr = job.stdout.read(), job.stderr.read().decode()
    job.wait(30)
    assert job.returncode == 1, stderr
    assert "history" in stderr and "Traceback" not in stderr
    lines = parse_lines(stdout)
    assert lines[-1]["event"] == "summary" and lines[-1]["total"] == len(lines) - 1
    with psycopg.connect(pg_url, autocommit=True) as admin:
        claimed = {row[0] for row in admin.execute("SELECT run_id FROM bulkretry_runs")}
    assert set(emulator.stats.retriggers) <= claimed  # nothing left without its claim
    assert len(emulator.stats.retriggers) < 200


@pytest.mark.parametrize("where", ["flag", "env"])
@pytest.mark.parametrize(
    "url",
    [
        "postgresql://bob:hunter2pass@[::1/db",  # does not parse: the driver quotes it whole
        "postgres://bob:hunter2pass@[::1]:notaport/db",
        "postgresql://bob@[::1/db?password=hunter2pass",
        "postgresql://bob:hunter2%70ass@[::1/db",
        # unencoded delimiters in the password: the host would end early, the rest show
        "postgresql://bob:hunter2/pass#1@127.0.0.1:1/db",
        "postgresql://bob:hunter2?pass@127.0.0.1:1/db",
        "postgresql://bob:12/hunter2pass@127.0.0.1:1/db",
        "postgresql://bob:hunter2@pass@127.0.0.1:1/db",  # a driver may read host 'pass@…'
    ],
)
def test_a_broken_postgres_url_never_shows_its_password(where, url, thread_server, tmp_path):
    """A history URL the driver cannot parse: one line, exit 2, no form of the password."""
    env = cli_env(thread_server, XDG_STATE_HOME=str(tmp_path / "state"))
    args = ["retry"]
    if where == "flag":
        args += ["--history", url]
    else:
        env["BULKRETRY_HISTORY"] = url
    done = run_cli(args, env=env, stdin=b"pw-1\n")
    assert done.code == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    for shown in (done.stderr, done.stdout.decode()):
        assert "hunter2" not in shown and "2pass" not in shown and "%70" not in shown


@pytest.mark.parametrize("command", [["retry"], ["failed", "--flow-id", FLOW]])
@pytest.mark.parametrize("where", ["flag", "env"])
def test_an_empty_history_is_a_usage_error(command, where, emulator, thread_server, tmp_path):
    """--history "" (or an empty BULKRETRY_HISTORY) is exit 2, not the default history."""
    env = history_env(thread_server, tmp_path)
    args = [*command]
    if where == "flag":
        args += ["--history", ""]
    else:
        env["BULKRETRY_HISTORY"] = ""
    done = run_cli(args, env=env, stdin=b"empty-1\n")
    assert done.code == 2
    name = "--history" if where == "flag" else "BULKRETRY_HISTORY"
    assert f"{name} is empty" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "state").exists() and not emulator.stats.retriggers


@pytest.mark.parametrize("ledger", ["history", "journal"])
def test_runs_the_ledger_settles_cost_no_rate_slot(ledger, emulator, thread_server, tmp_path):
    """Runs re-triggered before are skipped at once under --rate 1: the look precedes the wait."""
    ids = "".join(f"free-{n}\n" for n in range(20)).encode()
    if ledger == "history":
        env, args = history_env(thread_server, tmp_path), []
    else:
        env, args = cli_env(thread_server), ["--journal", str(tmp_path / "free.journal")]
    assert run_cli(["retry", "--rate", "0", *args], env=env, stdin=ids).code == 0
    started = time.monotonic()
    again = run_cli(["retry", "--rate", "1", *args], env=env, stdin=ids)
    assert again.code == 0 and again.summary["skipped"] == 20
    assert time.monotonic() - started < 8  # 20 slots at --rate 1 would take 19 s
    assert max(emulator.stats.retriggers.values()) == 1
