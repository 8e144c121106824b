"""``python -m services.registration worker`` (settings → bootstrap → prepare → faust worker) and
``python -m services.registration migrate`` (the database to the newest revision); see
``services.common.service``."""

from __future__ import annotations

from services.common.service import run
from services.registration.adapters.tables import MIGRATIONS
from services.registration.bootstrap import bootstrap
from services.registration.settings import RegistrationSettings


def main() -> None:
    run(service="registration", load_settings=RegistrationSettings.from_env, bootstrap=bootstrap,
        migrations=MIGRATIONS)


if __name__ == "__main__":
    main()
