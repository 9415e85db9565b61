"""The one thing pyproject.toml cannot say: sql/ (the home of every DDL file, at the top of the repository)
ships inside the wheel as the resource package `migration_pipeline.sql`, so an installed copy applies
exactly the DDL a checkout does."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["migration_pipeline*"]), "migration_pipeline.sql"],
    package_dir={"migration_pipeline.sql": "sql"},
)
