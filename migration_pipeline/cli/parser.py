"""The argument parser: a sentence for every command and option, the stores as choices, examples, the exit
codes."""

from __future__ import annotations

import argparse
import textwrap

from migration_pipeline.cli.commands.bench import cmd_bench, cmd_generate, cmd_serve_bench
from migration_pipeline.cli.commands.inspect import cmd_backups, cmd_dump, cmd_quarantine, cmd_restore_check, cmd_status
from migration_pipeline.cli.commands.lifecycle import cmd_cutover, cmd_rollback
from migration_pipeline.cli.commands.run import cmd_run
from migration_pipeline.cli.commands.server import cmd_stop, cmd_ui
from migration_pipeline.core.errors import EXIT_CODES_HELP

DESCRIPTION = """Migrate file-based application stores into PostgreSQL with Dagster: back each store up, stage it, \
prove nothing was lost (row counts, checksums, keys, data-quality suites), promote it atomically, report.

Settings come from flags, then the environment (DATABASE_URL, MIGRATION_SOURCE_ROOT, ENCRYPTION_SECRET, ...), \
then defaults; every command works from any folder. Without DATABASE_URL an embedded PostgreSQL is started \
in .pgdata/ of the current folder (`migration-pipeline stop` stops it)."""

EXAMPLES = """examples:
  migration-pipeline run --env-file data_samples/sample.env       migrate every store under data_samples/
  migration-pipeline run --store wallet --source-root /data/stores --database-url postgresql://me@db/shop
  migration-pipeline status                                       phase, last run, last report of each store
  migration-pipeline quarantine --store wallet --out bad.csv      the rejected records, to fix them
  migration-pipeline cutover --store wallet --approved-by ann     after reviewing the report
  migration-pipeline ui                                           the Dagster UI on the same database
"""

RUN_EXAMPLES = """examples:
  migration-pipeline run --env-file data_samples/sample.env
      every store under data_samples/ (the wallet store needs ENCRYPTION_SECRET: the file sets it)
  migration-pipeline run --store wallet --store pend --source-root /data/stores
      two stores of another source root
  migration-pipeline run --store wallet --incremental
      the parallel run: read only the files added, changed or deleted since the live version
  migration-pipeline run --quiet > run.log
      no progress lines, only each store's summary

While it works, a live bar on a terminal (units loaded of the total, files, rows, rows/s, elapsed, ETA), a
line every 5 s when the output is a pipe or a file; --quiet silences both.
"""


def _filled(text: str) -> str:
    """Each paragraph wrapped to 100 columns (the raw formatter keeps the examples' layout, and wraps nothing)."""
    return "\n\n".join(textwrap.fill(p, 100) for p in text.split("\n\n"))


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("migration-pipeline")
    except PackageNotFoundError:  # a checkout on PYTHONPATH, never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    from migration_pipeline.stores.registry import all_stores

    stores = [s.name for s in all_stores()]
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="migration-pipeline", description=_filled(DESCRIPTION),
                                     epilog=f"{EXAMPLES}\n{EXIT_CODES_HELP}", formatter_class=raw)
    parser.add_argument("--debug", action="store_true", help="print the traceback of an error (also MIGRATION_DEBUG=1)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or progress lines while working")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}",
                        help="print the installed version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                title="commands", description="`migration-pipeline COMMAND --help` for each one")

    def command(name: str, help: str, description: str | None = None, epilog: str | None = None,
                ) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=_filled(description or f"{help[0].upper()}{help[1:]}."),
                              epilog=epilog, formatter_class=raw)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--database-url", metavar="URL",
                       help="libpq URL or key=value string (default: DATABASE_URL, else the embedded server)")
        p.add_argument("--env-file", metavar="FILE",
                       help="KEY=VALUE file to read first; the environment wins (e.g. data_samples/sample.env)")
        p.add_argument("--source-root", metavar="PATH", help="folder holding one folder per store (default: "
                       "MIGRATION_SOURCE_ROOT, else data_samples in the current folder)")
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="print the traceback of an error (also MIGRATION_DEBUG=1)")

    def quiet(p: argparse.ArgumentParser) -> None:
        p.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS,
                       help="no progress bar (terminal) or progress lines (pipe, file) while working")

    def store_option(p: argparse.ArgumentParser, help: str) -> None:
        p.add_argument("--store", required=True, choices=stores, help=help)

    run = command("run", "migrate stores as Dagster runs: back up, stage, gate, promote, report",
                  "Migrate each store (one Dagster run of its job `migrate_<store>` on the persistent instance) and "
                  "print per store: files seen, rows per table, quarantine per reason, every gate, promoted or "
                  "blocked, the report's path. Exit 1 if a store failed or was blocked.", RUN_EXAMPLES)
    common(run)
    quiet(run)
    run.add_argument("--store", action="append", choices=stores,
                     help="store to migrate (repeatable; default: every store whose folder is under the source root)")
    run.add_argument("--force", action="store_true", help="overwrite a cut-over store's live tables (recorded)")
    run.add_argument("--allow-row-loss", action="store_true",
                     help="promote even if a table would lose more than 10%% of its live rows (gate live_row_loss)")
    run.add_argument("--incremental", action="store_true",
                     help="parallel run: read only files added, changed or deleted since the live version")
    run.set_defaults(func=cmd_run)

    generators = {s.name: s.generator for s in all_stores() if s.generator is not None}
    gen = command("generate", "write a realistic store (with the legacy quirks) for tests and benchmarks",
                  epilog="example: migration-pipeline generate --store wallet --users 100000 --out /tmp/stores "
                  "--secret s3cret")
    gen.add_argument("--store", required=True, choices=sorted(generators), help="the store to generate")
    gen.add_argument("--out", required=True, metavar="DIR",
                     help="source root to write into (the store's folder goes inside)")
    gen.add_argument("--secret", help="encryption secret for keys (default: ENCRYPTION_SECRET)")
    gen.add_argument("--seed", type=int, default=7, help="the same seed writes the same store (default: 7)")
    quiet(gen)
    offered: dict[str, list[str]] = {}
    for store, generator in generators.items():
        for name, (text, _default) in generator.options.items():
            offered.setdefault(name, []).append(f"{store}: {text}")
    for name, texts in sorted(offered.items()):
        gen.add_argument(f"--{name.replace('_', '-')}", dest=name, type=int, metavar="N", help="; ".join(texts))
    gen.set_defaults(func=cmd_generate)

    bench = command("bench", "generate a store, migrate it, compare with the floor measured in the same run",
                    "Generate a store (kept under .bench/ with --keep), time the floor any loader must pay (read, "
                    "parse, COPY; the wallet also verifies every key), then the full Dagster job in a database of "
                    "its own (dropped after), and print the phases, their ratio to the floor, dump and restore "
                    "times. Without --store: the wallet bench of --users users.",
                    "examples:\n  migration-pipeline bench --users 100000 --keep\n"
                    "  migration-pipeline bench --store pend --users 100000 --days 30 --document-kib 8\n"
                    "  migration-pipeline bench --store defarm --items 1000000")
    common(bench)
    quiet(bench)
    bench.add_argument("--users", type=int, default=10000, metavar="N",
                       help="wallet users to generate, two files each (default: 10000)")
    bench.add_argument("--workers", type=int, default=None, metavar="N",
                       help="processes for the floors and the pipeline (default: MIGRATION_WORKERS, else 2)")
    bench.add_argument("--keep", action="store_true", help="keep the generated store under .bench/ for the next bench")
    bench.add_argument("--sync-changes", type=int, default=0, metavar="N",
                       help="then change this many files and time an incremental sync of them")
    bench.add_argument("--metagauge-users", type=int, default=0, metavar="N",
                       help="also migrate a generated metagauge store of this many users")
    bench.add_argument("--store", choices=[s for s in stores if s in generators],
                       help="benchmark this store against the generic floor (default: the wallet bench)")
    bench.add_argument("--cold-cache", action="store_true",
                       help="with --store: drop the page cache before the floor and before the run, so that both "
                            "read the store from the disk (root on Linux)")
    for name, texts in sorted(offered.items()):
        if name != "users":
            bench.add_argument(f"--{name.replace('_', '-')}", dest=name, type=int, metavar="N", help="; ".join(texts))
    bench.set_defaults(func=cmd_bench)

    serve = command("serve-bench", "concurrent readers run a store's declared lookups against a primary-key floor",
                    "Each lookup the store declares (its serving gate), and a primary-key lookup of the same table "
                    "as the floor, runs alone for --seconds with every reader connected, keys sampled from the live "
                    "table. Prints throughput, p50/p95/p99 and the ratio to the floor per reader count.",
                    "example: migration-pipeline serve-bench --store pend --readers 10,100 --seconds 20")
    common(serve)
    store_option(serve, "the store whose live tables to read")
    serve.add_argument("--readers", default="10,100", help="reader counts, comma-separated (default: 10,100)")
    serve.add_argument("--seconds", type=float, default=20.0, help="per lookup and reader count (default: 20)")
    serve.add_argument("--max-queries", type=int, default=1_000_000, metavar="N",
                       help="per lookup and reader count, at most (default: 1000000)")
    serve.add_argument("--processes", type=int, default=None, metavar="N",
                       help="client processes the readers are spread over (default: min(readers, 10))")
    serve.set_defaults(func=cmd_serve_bench)

    status = command("status", "phase, last run and last report of every store; which PostgreSQL is used",
                     "Every store's phase (not_started, staged, validated, promoted, cut_over, rolled_back), last "
                     "run, approver and report; then whether the embedded PostgreSQL runs (and where) or which "
                     "server --database-url / DATABASE_URL names.")
    common(status)
    status.set_defaults(func=cmd_status)

    backups = command("backups", "every store's backups; verify them again, prune the expired",
                      "The backup archives each store's first run wrote (kept 30 days), with their state. "
                      "Exit 1 if --verify finds one that fails.")
    common(backups)
    backups.add_argument("--verify", action="store_true",
                         help="re-read every kept archive and check each file against its manifest (exit 1 if one fails)")
    backups.add_argument("--prune", action="store_true",
                         help="delete archives past their keep_until (30 days), never a store's newest")
    backups.set_defaults(func=cmd_backups)

    cut = command("cutover", "mark a promoted, validated store as cut over (after reviewing its report)",
                  epilog="example: migration-pipeline cutover --store wallet --approved-by ann")
    common(cut)
    store_option(cut, "the promoted store to cut over")
    cut.add_argument("--approved-by", required=True, metavar="WHO", help="who reviewed the report and approves")
    cut.set_defaults(func=cmd_cutover)

    back = command("rollback", "restore the previous live version of a store",
                   "Swap the store's previous live version (kept by the last promotion) back in, atomically.",
                   "example: migration-pipeline rollback --store wallet --actor ann")
    common(back)
    store_option(back, "the store to roll back")
    back.add_argument("--actor", default=None, help="who asks (default: $USER)")
    back.set_defaults(func=cmd_rollback)

    quarantine = command(
        "quarantine", "list the current plan's quarantine by reason, or export its rows to fix them",
        "Without --out: records per table and reason. With --out: every quarantined record (file, "
        "locator, reason, message) as CSV or Parquet. Messages describe values, never quote them, so no "
        "secret or personal data is exported.",
        "example: migration-pipeline quarantine --store wallet --reason invalid_json --out bad.csv")
    common(quarantine)
    store_option(quarantine, "the store whose quarantine to list or export")
    quarantine.add_argument("--reason", metavar="CODE", help="only this reason code (see the README's table)")
    quarantine.add_argument("--format", choices=["csv", "parquet"], default="csv",
                            help="file format of --out (default: csv)")
    quarantine.add_argument("--out", metavar="FILE", help="file to write (default: print the counts)")
    quarantine.set_defaults(func=cmd_quarantine)

    dump = command("dump", "pg_dump a store's live schema (custom format) with a SHA-256 manifest",
                   epilog="example: migration-pipeline dump --store wallet --out dumps/")
    common(dump)
    store_option(dump, "the store whose live schema to dump")
    dump.add_argument("--out", default="dumps", metavar="DIR",
                      help="folder for <store>-<time>.dump and its .sha256 (default: dumps)")
    dump.set_defaults(func=cmd_dump)

    restore = command(
        "restore-check", "restore a dump into a scratch database and compare every table with live",
        "Checks the dump's SHA-256, restores it with pg_restore into a scratch database on the same "
        "server, compares row counts and checksums of every table with the live schema, drops the scratch "
        "database. Exit 1 if anything differs.",
        "example: migration-pipeline restore-check --store wallet --dump dumps/wallet-20260101T000000Z.dump")
    common(restore)
    store_option(restore, "the store the dump was taken of")
    restore.add_argument("--dump", required=True, metavar="FILE", help="a .dump written by `migration-pipeline dump`")
    restore.set_defaults(func=cmd_restore_check)

    stop = command("stop", "stop the embedded PostgreSQL of this folder (.pgdata/); the data is kept",
                   "Stops the embedded server that `run`, `ui` and the other commands start when DATABASE_URL is "
                   "not set. Its data stays in .pgdata/; the next command starts it again.")
    stop.set_defaults(func=cmd_stop)

    ui = command("ui", "start the Dagster UI (webserver and daemon) on the same database and instance",
                 epilog="example: migration-pipeline ui --port 3000, then open http://127.0.0.1:3000")
    common(ui)
    ui.add_argument("--port", type=int, default=3000, help="port on 127.0.0.1 (default: 3000)")
    ui.set_defaults(func=cmd_ui)
    return parser
