"""``python -m services.registration worker``: settings → bootstrap → faust worker."""

from __future__ import annotations

from services.common.runtime import settle_heap
from services.registration.bootstrap import bootstrap
from services.registration.settings import RegistrationSettings


def main() -> None:
    registration = bootstrap(RegistrationSettings.from_env())
    settle_heap()
    registration.app.main()


if __name__ == "__main__":
    main()
