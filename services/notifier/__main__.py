"""``python -m services.notifier worker`` (settings → bootstrap → prepare → faust worker) and
``python -m services.notifier migrate`` (the database to the newest revision); see
``services.common.service``."""

from __future__ import annotations

from services.common.service import run
from services.notifier.adapters.tables import MIGRATIONS
from services.notifier.bootstrap import bootstrap
from services.notifier.settings import NotifierSettings


def main() -> None:
    run(service="notifier", load_settings=NotifierSettings.from_env, bootstrap=bootstrap,
        migrations=MIGRATIONS)


if __name__ == "__main__":
    main()
