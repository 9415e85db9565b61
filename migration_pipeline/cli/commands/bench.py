"""`generate` a realistic store, and `bench`: generate, migrate, compare with the floor."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from migration_pipeline.cli.console import store_progress, work_progress
from migration_pipeline.cli.environment import prepare, store_arg
from migration_pipeline.core.errors import ConfigurationError


def cmd_generate(args: argparse.Namespace) -> int:
    from migration_pipeline.stores.registry import get_store

    spec = get_store(args.store)
    if spec.generator is None:
        raise ConfigurationError(f"store {spec.name} has no generator")
    sizes: dict[str, int] = {}
    for name, (_help, default) in spec.generator.options.items():
        value = getattr(args, name, None)
        if value is None and default is None:
            raise ConfigurationError(f"generate --store {spec.name} needs --{name.replace('_', '-')}")
        sizes[name] = default if value is None else value  # type: ignore[assignment]
    secret = args.secret or os.environ.get("ENCRYPTION_SECRET")
    if spec.generator.needs_secret and not secret:
        raise ConfigurationError(f"generate --store {spec.name} needs --secret or ENCRYPTION_SECRET")
    with work_progress(args, f"generate: writing the {spec.name} store under {args.out}"):
        written = spec.generator.run(Path(args.out), sizes, args.seed, secret)
    print(written)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from migration_pipeline.bench import run_benchmark
    from migration_pipeline.core.database import with_database
    from migration_pipeline.resources import workers_from_env

    sizes = None
    if args.cold_cache:
        if args.store is None:
            raise ConfigurationError("--cold-cache needs --store (e.g. bench --store wallet --users 100000 --cold-cache)")
        from migration_pipeline.bench import drop_page_cache

        drop_page_cache()  # refused here, before anything is generated, if this user may not
    if args.store is not None:  # any registered store against the generic floor (plus what the store declares)
        from migration_pipeline.bench import generator_sizes

        spec = store_arg(args.store)
        given = {name: getattr(args, name, None) for name in (spec.generator.options if spec.generator else ())}
        try:
            sizes = generator_sizes(spec, given)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
    env = prepare(args, needs_dagster=True)
    args.started = True
    workers = args.workers or workers_from_env()
    if sizes is not None:
        from migration_pipeline.bench import store_benchmark

        with work_progress(args, f"bench: {spec.name}: generating, measuring the floor, migrating"):
            return store_benchmark(env.database_url, spec, sizes, workers=workers, keep=args.keep,
                                   cold_cache=args.cold_cache)
    stores = ["wallet", "metagauge"] if args.metagauge_users else ["wallet"]
    # The bench migrates into a database of its own on the same server (see bench.run_benchmark).
    with store_progress(args, with_database(env.database_url, "migration_bench"), stores, env.backup_dir,
                        starting="generating the store, measuring the floor or starting"):
        return run_benchmark(env.database_url, users=args.users, workers=workers, keep=args.keep,
                             sync_changes=args.sync_changes, metagauge_users=args.metagauge_users)


def cmd_serve_bench(args: argparse.Namespace) -> int:
    from migration_pipeline.serve_bench import serve_benchmark

    env = prepare(args)
    spec = store_arg(args.store)
    try:
        readers = [int(x) for x in args.readers.split(",") if x.strip()]
    except ValueError:
        raise ConfigurationError(f"--readers takes counts separated by commas (e.g. 10,100), not {args.readers!r}") from None
    if not readers or min(readers) < 1 or args.seconds <= 0:
        raise ConfigurationError("--readers needs counts of at least 1 and --seconds a positive duration")
    args.started = True
    return serve_benchmark(env.database_url, spec, readers, args.seconds, max_queries=args.max_queries,
                           processes=args.processes)
