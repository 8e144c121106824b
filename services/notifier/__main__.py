"""``python -m services.notifier worker``: settings → bootstrap → faust worker."""

from __future__ import annotations

import sys

from services.common.runtime import settle_heap
from services.common.settings import ConfigError
from services.notifier.bootstrap import bootstrap
from services.notifier.settings import NotifierSettings


def main() -> None:
    try:
        settings = NotifierSettings.from_env()
    except ConfigError as exc:
        print(f"notifier: configuration error: {exc}", file=sys.stderr)
        sys.exit(2)
    notifier = bootstrap(settings)
    settle_heap()
    notifier.app.main()


if __name__ == "__main__":
    main()
