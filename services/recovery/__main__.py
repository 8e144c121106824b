"""``python -m services.recovery worker``: settings → bootstrap → faust worker."""

from __future__ import annotations

import sys

from services.common.runtime import settle_heap
from services.common.settings import ConfigError
from services.recovery.bootstrap import bootstrap
from services.recovery.settings import RecoverySettings


def main() -> None:
    try:
        settings = RecoverySettings.from_env()
    except ConfigError as exc:
        print(f"recovery: configuration error: {exc}", file=sys.stderr)
        sys.exit(2)
    recovery = bootstrap(settings)
    recovery.prepare()
    settle_heap()
    recovery.app.main()


if __name__ == "__main__":
    main()
