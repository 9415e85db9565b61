"""`python -m migration_pipeline.cli`."""

import sys

from migration_pipeline.cli import main

sys.exit(main())
