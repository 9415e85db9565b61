"""The one thing pyproject.toml cannot say: sql/ (the home of every DDL file, at the top of the repository)
ships inside the wheel as the resource package `migration_pipeline.sql`, one subpackage per schema folder,
so an installed copy applies exactly the DDL a checkout does. Package data is declared here too, since
setup.py and pyproject.toml cannot both declare it."""

from pathlib import Path

from setuptools import find_packages, setup

SCHEMAS = sorted(p.name for p in (Path(__file__).parent / "sql").iterdir() if p.is_dir())

setup(
    packages=[*find_packages(include=["migration_pipeline*"]), "migration_pipeline.templates",
              "migration_pipeline.templates.gx_static", "migration_pipeline.sql",
              *(f"migration_pipeline.sql.{schema}" for schema in SCHEMAS)],
    package_dir={"migration_pipeline.sql": "sql"},
    package_data={"migration_pipeline": ["py.typed"], "migration_pipeline.templates": ["*.j2"],
                  "migration_pipeline.templates.gx_static": ["*"],
                  **{f"migration_pipeline.sql.{schema}": ["*.sql"] for schema in SCHEMAS}},
)
