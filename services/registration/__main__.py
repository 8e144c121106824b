"""``python -m services.registration worker``: settings → bootstrap → faust worker."""

from __future__ import annotations

from services.registration.bootstrap import bootstrap
from services.registration.settings import RegistrationSettings


def main() -> None:
    bootstrap(RegistrationSettings.from_env()).app.main()


if __name__ == "__main__":
    main()
