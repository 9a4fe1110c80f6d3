from typing import Any

from tradepulse.core.trade import Trade

def append_rows(tw: Any, trades: list[Trade], keys: list[Any]) -> None: ...
def move_windows(tw: Any, t_eval: int, e0: int) -> None: ...
def add_rows(
    tokens: dict[str, Any],
    trades: list[Trade],
    floors: list[int],
    new_token: Any,
    pending_limit: int,
) -> tuple[dict[str, list[Trade]], int, int, int]: ...
def window_stats(tw: Any, win: Any, t_eval: int, stats_type: type[Any]) -> Any: ...
