"""``python -m scripts.migrate``: create the database if needed and apply pending migrations."""

from __future__ import annotations

import asyncio

from infra import db
from infra.logging import configure_logging
from infra.settings import Settings


def main() -> None:
    settings = Settings()
    configure_logging(settings.log_level, "console")
    applied = asyncio.run(db.migrate(settings.database_url))
    print(f"applied: {', '.join(applied)}" if applied else "database is up to date")


if __name__ == "__main__":
    main()
