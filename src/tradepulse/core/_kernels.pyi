from typing import Any

from tradepulse.core.trade import Trade

def append_rows(tw: Any, trades: list[Trade], keys: list[Any]) -> None: ...
