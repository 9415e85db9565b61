"""The sources toolkit: readers and parsers that stores compose. Dagster-free; every reader yields each
source record either parsed or with a quarantine reason, so that no record is lost silently."""
