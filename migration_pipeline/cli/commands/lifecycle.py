"""The phases a person moves a store through after a run: `cutover`, `rollback`."""

from __future__ import annotations

import argparse

from migration_pipeline.cli.environment import prepare, schema_applied, store_arg, user
from migration_pipeline.preflight import usable_folder


def cmd_cutover(args: argparse.Namespace) -> int:
    env = prepare(args)
    from migration_pipeline.core.database import connect
    from migration_pipeline.lifecycle import cut_over_with_report

    spec = store_arg(args.store)
    usable_folder(env.report_dir, "report folder", "set MIGRATION_REPORT_DIR to a writable folder")
    schema_applied(env.database_url)
    args.started = True
    with connect(env.database_url) as conn:
        approved: list[str] = []
        report = cut_over_with_report(conn, spec.name, args.approved_by, None, env.report_dir, log=approved.append)
    print(f"{approved[0]}; report {report}")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    env = prepare(args)
    from migration_pipeline.core.database import connect
    from migration_pipeline.core.promote import rollback

    spec = store_arg(args.store)
    schema_applied(env.database_url)
    args.started = True
    with connect(env.database_url) as conn:
        rollback(conn, spec, actor=args.actor or user())
    print(f"{spec.name}: rolled back to the previous live version")
    return 0
