"""Errors a data engineer sees as one line: what is wrong and what to do."""


class MigrationError(Exception):
    """An expected failure whose message is safe to print as it is (no secrets, no traceback)."""


class ConfigurationError(MigrationError):
    """A missing or invalid setting (secret, source root, database URL)."""


class DatabaseUnavailableError(MigrationError):
    """PostgreSQL cannot be reached."""


class SchemaDriftError(MigrationError):
    """An already-applied file under sql/ was edited."""


class StoreBusyError(MigrationError):
    """Another run holds the store's lock."""


class PromotionBlockedError(MigrationError):
    """A gate failed, or the store is cut over, so the live tables were left as they were."""
