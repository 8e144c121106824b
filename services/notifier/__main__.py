"""``python -m services.notifier worker``: settings → bootstrap → faust worker."""

from __future__ import annotations

from services.common.runtime import settle_heap
from services.notifier.bootstrap import bootstrap
from services.notifier.settings import NotifierSettings


def main() -> None:
    notifier = bootstrap(NotifierSettings.from_env())
    settle_heap()
    notifier.app.main()


if __name__ == "__main__":
    main()
