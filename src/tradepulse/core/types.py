"""Type aliases shared by the whole code base.

Times inside tradepulse are integer epoch milliseconds (UTC) and carry the unit in their
name (``ts_ms``, ``window_ms``); datetimes exist only at the edges.
"""

from typing import Literal, TypeAlias

TokenId: TypeAlias = str
WalletId: TypeAlias = str
TsMs: TypeAlias = int
Side: TypeAlias = Literal["buy", "sell"]

MS_PER_SECOND = 1_000
MS_PER_MINUTE = 60_000
MS_PER_HOUR = 3_600_000
MS_PER_DAY = 86_400_000
