"""``python -m services.recovery worker`` (settings → bootstrap → prepare → faust worker) and
``python -m services.recovery migrate`` (the database to the newest revision); see
``services.common.service``."""

from __future__ import annotations

from services.common.service import run
from services.recovery.adapters.tables import MIGRATIONS
from services.recovery.bootstrap import bootstrap
from services.recovery.settings import RecoverySettings


def main() -> None:
    run(service="recovery", load_settings=RecoverySettings.from_env, bootstrap=bootstrap,
        migrations=MIGRATIONS)


if __name__ == "__main__":
    main()
