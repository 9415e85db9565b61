"""What `migration-pipeline` shows while it works and what `--help` and `status` teach: the real CLI, run as a
subprocess on the samples against the real PostgreSQL, on a pipe, on a terminal (a pty), and with --quiet."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

import pytest

from migration_pipeline.core.database import connect, redact_dsn

from .conftest import SAMPLES
from .test_cli_errors import _cli, _env, _run_args

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
PHASES = ["starting", "backing up", "listing files", "loading", "integrity rules", "building tables, indexes, keys",
          "checking the gates", "promoting", "promoted"]
LINE = re.compile(r"wallet: (?P<phase>[a-z ,]+?)(, [\d,]+ MiB written)?(( |; )[\d,]+/[\d,]+ units, [\d,]+ files, [\d,]+ rows"
                  r"( loaded)?)?(, backup [\d,]+ MiB written)?(, [\d,]+ rows/s)?(, ETA [\d:]+)?, elapsed (?P<m>\d+):(?P<s>\d\d)")
FINAL = re.compile(r"wallet: loaded (?P<done>\d+)/(?P<total>\d+) units, (?P<files>\d+) files, (?P<rows>\d+) rows in "
                   r"\d+\.\d s( \([\d,]+ rows/s\))?; elapsed \d+:\d\d")


def _loaded(database_url: str) -> tuple[int, int, int]:
    """(units, files, rows) of the wallet's plan, as the bookkeeping has them."""
    with connect(database_url) as conn:
        row = conn.execute(
            """SELECT s.units_total,
                      (SELECT count(*) FROM migration.source_manifest m WHERE m.store = s.store AND m.plan_id = s.plan_id),
                      (SELECT sum(rows_emitted) FROM migration.unit_progress u WHERE u.store = s.store AND u.plan_id = s.plan_id)
               FROM migration.staging s WHERE s.store = 'wallet'""").fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


PREPARING = re.compile(r"preparing the run: sql/, folders, free disk, the Dagster definitions, elapsed \d+:\d\d")


def _progress_lines(stdout: str) -> list[str]:
    """The store's lines before its summary (which starts with a blank line and `== wallet ==`); the lines of
    the preparation before it (only on a slow machine: one every 5 s) are checked and left out."""
    lines = stdout.split("\n\n== wallet ==")[0].splitlines()
    preparing = [line for line in lines if not line.startswith("wallet: ")]
    assert all(PREPARING.fullmatch(line) for line in preparing), preparing
    return lines[len(preparing):]


@pytest.mark.slow
def test_on_a_pipe_a_line_every_few_seconds_then_the_loaded_counts(tmp_path: Path, database_url: str) -> None:
    proc = _cli(tmp_path, *_run_args(database_url, "--store", "wallet"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    lines = _progress_lines(proc.stdout)
    matches = [LINE.fullmatch(line) for line in lines[:-1]]
    assert all(matches), lines
    phases = [m["phase"] for m in matches if m]
    assert phases[0] == "starting" and phases[-1] in ("promoting", "promoted"), lines
    order = [PHASES.index(p) for p in phases]
    assert order == sorted(order), lines  # each phase in the run's order, none out of place
    seconds = [int(m["m"]) * 60 + int(m["s"]) for m in matches if m]
    assert max(b - a for a, b in zip(seconds, seconds[1:], strict=False)) <= 7, lines  # no silent stretch
    units, files, rows = _loaded(database_url)
    assert (units, files) == (16, 28)  # the samples: 24 wallet files in units of one user, 4 unmapped
    final = FINAL.fullmatch(lines[-1])
    assert final and (int(final["done"]), int(final["total"]), int(final["files"]), int(final["rows"])) == (
        units, units, files, rows), lines
    assert f"files seen {files}, mapped 24, unmapped 4" in proc.stdout
    for log in (tmp_path / "dagster_home").rglob("compute_logs/*"):  # the steps' own logs: no progress in them
        assert "elapsed" not in log.read_text(errors="replace"), log


def _on_a_terminal(args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    """Run with stdout on a pseudo-terminal of 120 columns; (exit code, what the terminal got, stderr)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "migration_pipeline.cli", *args], stdout=slave,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env={**env, "TERM": "xterm"}, cwd=cwd)
    os.close(slave)
    screen = b""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the child closed its end
                break
            if not chunk:
                break
            screen += chunk
        elif proc.poll() is not None:
            break
    os.close(master)
    code = proc.wait(timeout=60)
    assert proc.stderr is not None
    return code, screen.decode("utf-8", "replace"), proc.stderr.read().decode()


@pytest.mark.slow
def test_on_a_terminal_a_live_bar_of_units_then_the_loaded_counts(tmp_path: Path, database_url: str) -> None:
    work = tmp_path / "elsewhere"
    work.mkdir()
    code, screen, err = _on_a_terminal(_run_args(database_url, "--store", "wallet"), _env(tmp_path), work)
    assert (code, err) == (0, ""), screen[-3000:]
    assert "\x1b[?25l" in screen and "\x1b[?25h" in screen  # the cursor hidden while the bar is drawn, shown after
    frames = [ANSI.sub("", f).strip() for f in re.split(r"[\r\n]", screen)]
    units, files, rows = _loaded(database_url)
    bars = [f for f in frames if re.match(r"wallet: [a-z ,]+ ━", f)]
    assert any(f"{units}/{units} units {files} files, {rows} rows elapsed" in f for f in bars), bars
    assert re.search(r"wallet: starting ━+ 0/\? units", "\n".join(bars)), bars
    assert not any(LINE.fullmatch(f) for f in frames)  # the bar, not the pipe's lines
    final = [f for f in frames if f.startswith("wallet: loaded ")]
    assert len(final) == 1 and (m := FINAL.fullmatch(final[0])), frames
    assert (int(m["done"]), int(m["files"]), int(m["rows"])) == (units, files, rows)


@pytest.mark.slow
def test_quiet_shows_no_progress_only_the_summary(tmp_path: Path, database_url: str) -> None:
    proc = _cli(tmp_path, *_run_args(database_url, "--store", "wallet", "--quiet"))
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout.startswith("\n== wallet ==  run "), proc.stdout[:500]
    assert not re.search(r"^(wallet: |preparing the run)", proc.stdout, re.M)


# --- --help and status ------------------------------------------------------------------------------------

STORES = "{wallet,metagauge,pend,defarm}"
COMMANDS = ["run", "generate", "bench", "serve-bench", "status", "backups", "cutover", "rollback", "quarantine", "dump",
            "restore-check", "stop", "ui"]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_of_every_command_exits_0_with_a_sentence_for_each_option(
        command: str, capsys: pytest.CaptureFixture[str]) -> None:
    from migration_pipeline import cli

    with pytest.raises(SystemExit) as done:
        cli.main([command, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: migration-pipeline {command} ")
    options = out.split("options:\n")[1].split("\n\n")[0]
    entries = re.split(r"\n  (?=-)", "\n" + options)[1:]
    assert entries, out
    for entry in entries:  # every option has its sentence (argparse leaves it empty when help= is missing)
        assert len(entry.split(None, 1)) == 2 and re.search(r"[a-z]{3,}.*[a-z]{3,}", entry.split("  ", 1)[-1]), entry
    takes_store = command in ("run", "bench", "serve-bench", "cutover", "rollback", "quarantine", "dump", "restore-check")
    assert (STORES in out) == takes_store
    if command == "generate":
        assert "--store {defarm,metagauge,pend,wallet}" in out


def test_help_lists_every_command_with_examples_before_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    from migration_pipeline import cli

    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    listed = re.findall(r"^    ([a-z-]+)", out.split("commands:")[1].split("examples:")[0], re.M)
    assert listed == COMMANDS
    assert out.index("examples:") < out.index("exit codes:")
    assert "  migration-pipeline run --env-file data_samples/sample.env " in out
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    assert "examples:\n  migration-pipeline run --env-file data_samples/sample.env\n" in capsys.readouterr().out


def test_an_unknown_store_is_refused_by_the_parser_with_the_choices(tmp_path: Path) -> None:
    proc = _cli(tmp_path, "dump", "--store", "nope")
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1].replace("'wallet', 'metagauge', 'pend', 'defarm'", "wallet, metagauge, pend, "
                                                "defarm") == (  # Python 3.12.8 dropped the quotes
        "migration-pipeline dump: error: argument --store: invalid choice: 'nope' (choose from wallet, metagauge, "
        "pend, defarm)")


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_status_says_which_database_when_the_url_is_given(how: str, tmp_path: Path, database_url: str) -> None:
    if how == "flag":
        proc = _cli(tmp_path, "status", "--database-url", database_url)
    else:
        proc = _cli(tmp_path, "status", env=_env(tmp_path, DATABASE_URL=database_url))
    assert proc.returncode == 0, proc.stderr
    source = "--database-url" if how == "flag" else "DATABASE_URL"
    # As printed: without a password (the embedded server's URL carries an empty one).
    assert proc.stdout.splitlines()[-1] == (
        f"database: {redact_dsn(database_url)} (from {source}; the embedded PostgreSQL is not used)")


def test_status_says_where_the_embedded_server_runs_and_stop_stops_it(tmp_path: Path) -> None:
    from migration_pipeline.core.database import (
        embedded_server_running,
        redact_dsn,
        start_embedded_server,
        stop_embedded_server,
    )

    # Not under pytest's basetemp: the server runs as another user, who must traverse the folders above its data,
    # and a concurrent pytest session resets the basetemp's permissions (as conftest's server_url says).
    work = Path(tempfile.mkdtemp(prefix="mp-test-embedded-"))

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "migration_pipeline.cli", *args], cwd=work, env=_env(tmp_path),
                              capture_output=True, text=True, timeout=240)

    try:
        url = start_embedded_server(work / ".pgdata", keep_running=True)
        status = cli("status", "--source-root", str(SAMPLES))
        assert status.returncode == 0, status.stderr
        assert status.stdout.splitlines()[-1] == (
            f"embedded PostgreSQL: running (data in {work / '.pgdata'}, at {redact_dsn(url)}; `migration-pipeline stop` "
            "stops it)")
        stopped = cli("stop")
        assert (stopped.returncode, stopped.stdout) == (
            0, f"stopped the embedded PostgreSQL (data kept in {work / '.pgdata'})\n")
        assert not embedded_server_running(work / ".pgdata")
        again = cli("stop")
        assert again.stdout == f"the embedded PostgreSQL is not running (data folder {work / '.pgdata'})\n"
    finally:
        stop_embedded_server(work / ".pgdata")
        shutil.rmtree(work, ignore_errors=True)
