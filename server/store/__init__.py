"""The database: `Store` (the async API the server uses) and `migrate` (open, back up, upgrade)."""

from server.store.migrate import (
    CorruptDatabaseError,
    MigrationError,
    NewerSchemaError,
    StoreError,
    backup_to,
)
from server.store.store import Store

__all__ = ["CorruptDatabaseError", "MigrationError", "NewerSchemaError", "Store", "StoreError", "backup_to"]
