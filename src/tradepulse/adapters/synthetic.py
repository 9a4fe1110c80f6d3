"""A deterministic synthetic market of meme-coin trades, for demos, tests and benchmarks.

Everything derives from one seed (a NumPy ``Generator``); the same seed and the same calls
give the same trades. The model, chosen to look like a busy Solana launchpad:

* **Arrivals** are a Markov-modulated Poisson process with one global regime: *normal*
  spells (mean 20 s), *bursts* (mean 5 s, rate 5-20x normal, 60 % of their trades on one
  "pumping" token) and *quiet* spells (mean 12 s, rate 2 % of normal). The normal rate is
  scaled so that the long-run mean rate is ``rate_per_s``.
* **Tokens** have Zipf popularity (probability proportional to ``1 / rank ** zipf_s``) and
  names that look like pump.fun mint addresses (40 base58 characters + ``"pump"``).
* **Wallets** have skewed popularity too. Each token has a pool of regulars (larger for
  popular tokens; the first members trade most), 80 % of trades come from that pool,
  1.5 % from brand-new wallets, the rest from the whole population.
* **Sides**: each token's buy probability is ``0.5 + bias``, the bias an AR(1) process
  updated every regime spell; a bursting token is pushed towards buys (or, less often,
  sells).
* **Prices** are per-token random walks in log space: Gaussian noise plus an impact of
  each trade's side (buys up, sells down, growing with the square root of its size), so
  order-flow imbalance drives the price. The walk is reflected inside a band of 100x
  around the token's start price (start prices are log-uniform in 1e-8..1e-2 USD).
* **Sizes**: USD size is log-normal around a per-token median ($15-$150);
  ``token_amount = usd / price``, ``volume_usd = token_amount * price_usd`` and
  ``native_amount = volume_usd / SOL_USD`` (a fixed SOL price).
* **Transactions**: ``tx_hash`` is 64 hex digits, unique per trade; about 2 % of trades
  are the second swap (``event_index`` 1) of the previous trade's transaction: same hash,
  wallet and time.

Trades are generated column-wise in chunks (about ``CHUNK_TRADES`` at a time) and turned
into ``Trade`` objects only when consumed.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

import numpy as np
import numpy.typing as npt

from tradepulse.adapters.wire import encode_trade
from tradepulse.core.trade import Trade
from tradepulse.core.types import MS_PER_SECOND, TsMs

logger = logging.getLogger(__name__)

#: USD per SOL used for ``native_amount`` (a fixed, documented rate).
SOL_USD = 150.0
#: Trades generated per vectorized chunk by ``generate``.
CHUNK_TRADES = 65_536

BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
TOKEN_NAME_BODY = 40  # + "pump" = 44 characters
WALLET_NAME_LENGTH = 44

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
Bools = npt.NDArray[np.bool_]


_MAX_SPAN_MS = 3_600_000.0


class Regime(IntEnum):
    """State of the global arrival-rate process."""

    NORMAL = 0
    BURST = 1
    QUIET = 2


#: Mean spell duration (ms) per regime.
_SPELL_MS = {Regime.NORMAL: 20_000.0, Regime.BURST: 5_000.0, Regime.QUIET: 12_000.0}
_P_NORMAL_TO_BURST = 0.55  # a normal spell ends in a burst, else in a quiet spell
_BURST_MULT = (5.0, 20.0)  # uniform range of the burst rate multiplier
_QUIET_MULT = 0.02
_BURST_SHARE = 0.6  # share of a burst's trades on its pumping token
_BURST_PUSH = 0.3  # added to the pumping token's buy probability (negated for a dump)
_P_DUMP = 0.3
_BIAS_RHO = 0.9  # AR(1) persistence of the per-token buy bias, per spell
_BIAS_SD = 0.08  # stationary standard deviation of that bias
_P_REGULAR = 0.80
_P_FRESH = 0.015
_POOL_MAX = 512
_SIGMA = 0.003  # per-trade log-price noise
_IMPACT = 0.0008  # per-trade log-price impact of a median-sized trade
_IMPACT_CAP = 4.0  # cap of the size factor sqrt(usd / median)
_BAND = math.log(100.0)  # the walk stays within start price / 100 .. start price * 100
_SIZE_SD = 1.2  # log-normal sigma of the USD size
_P_MULTI = 0.02
_MASK64 = (1 << 64) - 1
_GAMMA = 0x9E3779B97F4A7C15  # SplitMix64's increment: spreads seeds over 64 bits


def _mean_rate_multiplier() -> float:
    """Long-run mean of the rate multiplier (normal = 1) of the regime process.

    Normal spells alternate with burst or quiet spells, so the embedded chain visits
    normal half of the time; the mean is the time-weighted average of the multipliers.
    """
    visits = {
        Regime.NORMAL: 0.5,
        Regime.BURST: 0.5 * _P_NORMAL_TO_BURST,
        Regime.QUIET: 0.5 * (1.0 - _P_NORMAL_TO_BURST),
    }
    mult = {Regime.NORMAL: 1.0, Regime.BURST: sum(_BURST_MULT) / 2, Regime.QUIET: _QUIET_MULT}
    time = {r: visits[r] * _SPELL_MS[r] for r in Regime}
    return sum(time[r] * mult[r] for r in Regime) / sum(time.values())


def _splitmix64(x: U64) -> U64:
    """The SplitMix64 finalizer: a bijection of uint64 (wrapping arithmetic)."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _codes_to_str(codes: npt.NDArray[np.uint32]) -> list[str]:
    """Rows of Unicode code points (shape ``(n, length)``) to ``n`` Python strings."""
    rows, length = codes.shape
    if rows == 0:
        return []
    flat = np.ascontiguousarray(codes, dtype="<u4").view(f"<U{length}")
    names: list[str] = flat.reshape(rows).tolist()
    return names


_B58_CODES = np.array([ord(c) for c in BASE58], dtype=np.uint32)
_HEX_CODES = np.array([ord(c) for c in "0123456789abcdef"], dtype=np.uint32)


def random_names(rng: np.random.Generator, count: int, length: int, suffix: str = "") -> list[str]:
    """``count`` random base58 strings of ``length`` characters followed by ``suffix``."""
    body = _B58_CODES[rng.integers(0, len(BASE58), size=(count, length))]
    tail = np.array([ord(c) for c in suffix], dtype=np.uint32)
    return _codes_to_str(np.hstack([body, np.broadcast_to(tail, (count, len(suffix)))]))


def hex_hashes(seq: U64, key: int) -> list[str]:
    """64-hex-digit hashes of sequence numbers: distinct ``seq`` give distinct hashes
    (each of the four 64-bit lanes is a bijection of ``seq``)."""
    lanes = np.arange(4, dtype=np.uint64)
    mixed = _splitmix64(np.uint64(key) + seq[:, None] * np.uint64(4) + lanes[None, :])
    raw = mixed.astype(">u8").view(np.uint8).reshape(len(seq), 32)
    nibbles = np.empty((len(seq), 64), dtype=np.uint8)
    nibbles[:, 0::2] = raw >> 4
    nibbles[:, 1::2] = raw & 15
    return _codes_to_str(_HEX_CODES[nibbles])


def zipf_weights(n: int, s: float) -> F64:
    """Probabilities proportional to ``1 / rank ** s`` for ranks ``1..n`` (sum 1)."""
    w = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** s
    return np.asarray(w / w.sum(), dtype=np.float64)


def _draw(rng: np.random.Generator, cdf: F64, size: int) -> I64:
    """Indices drawn from the distribution whose cumulative sums are ``cdf``."""
    idx = np.searchsorted(cdf, rng.random(size), side="right")
    return np.minimum(idx, len(cdf) - 1).astype(np.int64)


def _group_cumsum(values: F64, groups: I64, start: F64) -> tuple[F64, I64, F64]:
    """Running sums of ``values`` within each group (in order), each starting at
    ``start[group]``. Returns the sums (original order), the groups present and, for each,
    its final sum."""
    order = np.argsort(groups, kind="stable")
    g = groups[order]
    cs = np.cumsum(values[order])
    firsts = np.flatnonzero(np.diff(g)) + 1
    heads = np.concatenate(([0], firsts))
    before = np.concatenate(([0.0], cs[firsts - 1]))
    cs += np.repeat(start[g[heads]] - before, np.diff(np.concatenate((heads, [len(g)]))))
    out = np.empty_like(cs)
    out[order] = cs
    lasts = np.concatenate((firsts - 1, [len(g) - 1]))
    return out, g[lasts], cs[lasts]


def _reflect(x: F64, lo: F64, hi: F64) -> F64:
    """Fold ``x`` into ``[lo, hi]`` by reflection at both ends (a reflected walk)."""
    width = hi - lo
    y = np.mod(x - lo, 2.0 * width)
    return np.asarray(lo + np.where(y > width, 2.0 * width - y, y), dtype=np.float64)


@dataclass(frozen=True)
class _Spells:
    """A run of regime spells: start offsets and durations (ms since ``start_ms``), trade
    counts, pumping token (-1: none) and the per-token buy bias of each spell."""

    start: F64
    duration: F64
    count: I64
    burst_token: I64
    bias: F64  # shape (spells, tokens)


@dataclass(frozen=True)
class _Columns:
    """Generated, not yet consumed trades as columns (synthetic time ``ts_ms``)."""

    ts_ms: I64
    token: I64
    wallet: I64
    is_buy: Bools
    token_amount: F64
    price_usd: F64
    event_index: I64
    tx_seq: U64

    @classmethod
    def empty(cls) -> _Columns:
        """No rows."""
        i64 = np.empty(0, dtype=np.int64)
        f64 = np.empty(0, dtype=np.float64)
        return cls(i64, i64, i64, np.empty(0, dtype=np.bool_), f64, f64, i64,
                   np.empty(0, dtype=np.uint64))  # fmt: skip

    def __len__(self) -> int:
        return len(self.ts_ms)

    def cut(self, lo: int, hi: int) -> _Columns:
        """Rows ``lo:hi``."""
        return _Columns(*(getattr(self, f)[lo:hi] for f in _COLUMN_FIELDS))

    def join(self, other: _Columns) -> _Columns:
        """These rows followed by ``other``'s."""
        return _Columns(
            *(np.concatenate((getattr(self, f), getattr(other, f))) for f in _COLUMN_FIELDS)
        )


_COLUMN_FIELDS = (
    "ts_ms", "token", "wallet", "is_buy", "token_amount", "price_usd", "event_index", "tx_seq",
)  # fmt: skip


class SyntheticMarket:
    """Seeded generator of realistic-looking trades (see the module docstring).

    ``generate`` and ``live`` consume one shared timeline that starts at ``start_ms``;
    call either (or both) repeatedly, but finish a ``generate`` iterator (it is lazy)
    before calling ``live``. Every trade satisfies the rules of ``make_trade``.
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        tokens: int = 200,
        wallets: int = 5_000,
        start_ms: TsMs,
        rate_per_s: float = 200.0,
        zipf_s: float = 1.1,
    ) -> None:
        if tokens < 1 or wallets < 1:
            raise ValueError("tokens and wallets must be >= 1")
        if not (math.isfinite(rate_per_s) and rate_per_s > 0):
            raise ValueError(f"rate_per_s must be a finite number > 0, got {rate_per_s!r}")
        if not (math.isfinite(zipf_s) and zipf_s >= 0):
            raise ValueError(f"zipf_s must be a finite number >= 0, got {zipf_s!r}")
        self.start_ms = start_ms
        self.rate_per_s = rate_per_s
        self._rng = np.random.default_rng(seed)
        self._hash_key = int(_splitmix64(np.array([(seed + 1) * _GAMMA & _MASK64], np.uint64))[0])
        self._normal_rate_per_ms = rate_per_s / MS_PER_SECOND / _mean_rate_multiplier()
        self._init_tokens(tokens, zipf_s)
        self._init_wallets(wallets)
        self._regime = Regime.NORMAL
        self._horizon = 0.0  # spells are generated up to this offset (ms)
        self._seq = 0  # next transaction sequence number
        self._cursor_ms = start_ms  # synthetic time consumed so far
        self._buffer = _Columns.empty()

    @property
    def token_names(self) -> list[str]:
        """Token names by popularity rank (index 0 is the most traded)."""
        return [str(t) for t in self._token_names.tolist()]

    def _init_tokens(self, tokens: int, zipf_s: float) -> None:
        rng = self._rng
        self._token_names = np.array(
            random_names(rng, tokens, TOKEN_NAME_BODY, "pump"), dtype=object
        )
        self._token_p = zipf_weights(tokens, zipf_s)
        self._token_cdf = np.cumsum(self._token_p)
        self._burst_cdf = np.cumsum(zipf_weights(tokens, zipf_s / 2))
        anchor = rng.uniform(math.log(1e-8), math.log(1e-2), size=tokens)
        self._lo, self._hi = anchor - _BAND, anchor + _BAND
        self._log_price = anchor.copy()
        self._size_median = np.exp(rng.uniform(math.log(15.0), math.log(150.0), size=tokens))
        self._bias = rng.normal(0.0, _BIAS_SD, size=tokens)

    def _init_wallets(self, wallets: int) -> None:
        rng = self._rng
        self._wallet_names = np.array(random_names(rng, wallets, WALLET_NAME_LENGTH), dtype=object)
        weights = zipf_weights(wallets, 0.8)
        self._wallet_cdf = np.cumsum(weights)
        tokens = len(self._token_p)
        self._pool_size = np.clip(
            np.rint(10 + 2500 * self._token_p), 10, min(_POOL_MAX, wallets)
        ).astype(np.int64)
        self._pool = _draw(rng, self._wallet_cdf, tokens * _POOL_MAX).reshape(tokens, _POOL_MAX)

    # ------------------------------------------------------------------ public API

    def generate(self, n: int) -> Iterator[Trade]:
        """The next ``n`` trades in non-decreasing ``ts_ms`` order (first at or after
        ``start_ms``). Generated lazily in chunks; the same seed gives the same trades,
        and ``generate(n)`` of a fresh market is a prefix of ``generate(m)`` for ``m > n``.
        """
        remaining = n
        while remaining > 0:
            while len(self._buffer) < min(remaining, CHUNK_TRADES):
                self._extend(self._spells(CHUNK_TRADES, 0.0))
            chunk = self._take(min(remaining, CHUNK_TRADES))
            self._cursor_ms = int(chunk.ts_ms[-1])
            remaining -= len(chunk)
            yield from self._materialize(chunk, chunk.ts_ms)

    def span_ms(self, n: int) -> int:
        """Time from ``start_ms`` to the ``n``-th trade of ``generate(n)``, without building
        the trades. Consumes the market: ask a fresh copy (same seed and parameters)."""
        remaining, last_ms = n, self.start_ms
        while remaining > 0:
            while len(self._buffer) < min(remaining, CHUNK_TRADES):
                self._extend(self._spells(CHUNK_TRADES, 0.0))
            chunk = self._take(min(remaining, CHUNK_TRADES))
            last_ms = int(chunk.ts_ms[-1])
            remaining -= len(chunk)
        return last_ms - self.start_ms

    def live(self, now_ms: TsMs, elapsed_ms: int) -> list[Trade]:
        """The trades of the next ``elapsed_ms`` of synthetic time, re-stamped into
        ``(now_ms - elapsed_ms, now_ms]`` (keeping their spacing). Empty when
        ``elapsed_ms <= 0``. For driving a demo from the wall clock."""
        if elapsed_ms <= 0:
            return []
        end_ms = self._cursor_ms + elapsed_ms
        self._extend(self._spells(0, float(end_ms - self.start_ms)))
        count = int(np.searchsorted(self._buffer.ts_ms, end_ms, side="left"))
        chunk = self._take(count)
        shift = now_ms - elapsed_ms + 1 - self._cursor_ms
        self._cursor_ms = end_ms
        return self._materialize(chunk, chunk.ts_ms + shift)

    # ------------------------------------------------------------------ regime spells

    def _spells(self, min_trades: int, until_ms: float) -> _Spells:
        """Spells from the current horizon until they hold ``min_trades`` trades and reach
        offset ``until_ms`` (none when both already hold)."""
        rng = self._rng
        starts: list[float] = []
        durations: list[float] = []
        counts: list[int] = []
        bursts: list[int] = []
        biases: list[F64] = []
        total = 0
        # At most _MAX_SPAN_MS of spells for a trade count, so that a very low rate does
        # not draw millions of spells at once (the cut depends on the seed only, which
        # keeps generate(n) a prefix of generate(m)).
        span_end = self._horizon + _MAX_SPAN_MS
        while (total < min_trades and self._horizon < span_end) or self._horizon < until_ms:
            regime = self._regime
            duration = float(rng.exponential(_SPELL_MS[regime]))
            rate = self._normal_rate_per_ms * self._multiplier(regime)
            count = int(rng.poisson(rate * duration))
            burst, bias = self._spell_bias(regime)
            starts.append(self._horizon)
            durations.append(duration)
            counts.append(count)
            bursts.append(burst)
            biases.append(bias)
            total += count
            self._horizon += duration
            self._regime = self._next_regime(regime)
        tokens = len(self._token_p)
        return _Spells(
            np.array(starts, dtype=np.float64),
            np.array(durations, dtype=np.float64),
            np.array(counts, dtype=np.int64),
            np.array(bursts, dtype=np.int64),
            np.array(biases, dtype=np.float64).reshape(len(starts), tokens),
        )

    def _multiplier(self, regime: Regime) -> float:
        """Rate multiplier of a new spell (normal = 1)."""
        if regime is Regime.BURST:
            return float(self._rng.uniform(*_BURST_MULT))
        return _QUIET_MULT if regime is Regime.QUIET else 1.0

    def _spell_bias(self, regime: Regime) -> tuple[int, F64]:
        """Advance the per-token AR(1) buy bias by one spell; in a burst pick the pumping
        token and push its bias. Returns (pumping token or -1, the spell's bias)."""
        rng = self._rng
        innovation = rng.normal(0.0, _BIAS_SD * math.sqrt(1 - _BIAS_RHO**2), len(self._bias))
        self._bias = _BIAS_RHO * self._bias + innovation
        bias = self._bias.copy()
        if regime is not Regime.BURST:
            return -1, bias
        token = int(_draw(rng, self._burst_cdf, 1)[0])
        bias[token] += -_BURST_PUSH if rng.random() < _P_DUMP else _BURST_PUSH
        return token, bias

    def _next_regime(self, regime: Regime) -> Regime:
        if regime is not Regime.NORMAL:
            return Regime.NORMAL
        return Regime.BURST if self._rng.random() < _P_NORMAL_TO_BURST else Regime.QUIET

    # ------------------------------------------------------------------ trade columns

    def _build(self, spells: _Spells) -> _Columns:
        """Every trade of ``spells`` as columns, in time order."""
        rng = self._rng
        n = int(spells.count.sum())
        spell = np.repeat(np.arange(len(spells.count), dtype=np.int64), spells.count)
        offset = np.sort(spells.start[spell] + rng.random(n) * spells.duration[spell])
        token = _draw(rng, self._token_cdf, n)
        burst = spells.burst_token[spell]
        pumped = (burst >= 0) & (rng.random(n) < _BURST_SHARE)
        token[pumped] = burst[pumped]
        p_buy = np.clip(0.5 + spells.bias[spell, token], 0.05, 0.95)
        is_buy = rng.random(n) < p_buy
        usd = self._size_median[token] * np.exp(rng.normal(0.0, _SIZE_SD, n))
        price = self._walk_prices(token, is_buy, usd)
        cols = _Columns(
            ts_ms=self.start_ms + np.floor(offset).astype(np.int64),
            token=token,
            wallet=self._pick_wallets(token),
            is_buy=is_buy,
            token_amount=usd / price,
            price_usd=price,
            event_index=np.zeros(n, dtype=np.int64),
            tx_seq=np.arange(self._seq, self._seq + n, dtype=np.uint64),
        )
        self._seq += n
        self._link_multi_swaps(cols)
        _check_finite(cols)
        return cols

    def _walk_prices(self, token: I64, is_buy: Bools, usd: F64) -> F64:
        """Per-token reflected log-price walk: noise plus side * impact * size factor."""
        n = len(token)
        if n == 0:
            return np.empty(0, dtype=np.float64)
        size = np.minimum(np.sqrt(usd / self._size_median[token]), _IMPACT_CAP)
        step = self._rng.normal(0.0, _SIGMA, n) + np.where(is_buy, _IMPACT, -_IMPACT) * size
        raw, present, last = _group_cumsum(step, token, self._log_price)
        lo, hi = self._lo[token], self._hi[token]
        self._log_price[present] = _reflect(last, self._lo[present], self._hi[present])
        return np.exp(_reflect(raw, lo, hi))

    def _pick_wallets(self, token: I64) -> I64:
        """A wallet per trade: a regular of the token's pool (the first members most
        often), a brand-new wallet, or any wallet of the skewed population."""
        rng = self._rng
        n = len(token)
        kind = rng.random(n)
        member = np.floor(self._pool_size[token] * rng.random(n) ** 2).astype(np.int64)
        wallet = np.where(
            kind < _P_REGULAR, self._pool[token, member], _draw(rng, self._wallet_cdf, n)
        )
        fresh = np.flatnonzero(kind >= 1.0 - _P_FRESH)
        if len(fresh):
            known = len(self._wallet_names)
            names = np.array(random_names(rng, len(fresh), WALLET_NAME_LENGTH), dtype=object)
            self._wallet_names = np.concatenate((self._wallet_names, names))
            wallet[fresh] = known + np.arange(len(fresh), dtype=np.int64)
        return np.asarray(wallet, dtype=np.int64)

    def _link_multi_swaps(self, cols: _Columns) -> None:
        """Make ~``_P_MULTI`` of the trades the second swap of the previous trade's
        transaction (same hash, wallet and time; ``event_index`` 1). Never two in a row."""
        n = len(cols)
        multi = self._rng.random(n) < _P_MULTI
        if n:
            multi[0] = False
        multi[1:] &= ~multi[:-1]
        idx = np.flatnonzero(multi)
        for column in (cols.ts_ms, cols.wallet, cols.tx_seq):
            column[idx] = column[idx - 1]
        cols.event_index[idx] = 1

    # ------------------------------------------------------------------ buffer

    def _extend(self, spells: _Spells) -> None:
        if len(spells.count):
            self._buffer = self._buffer.join(self._build(spells))

    def _take(self, count: int) -> _Columns:
        """Remove and return the first ``count`` buffered trades."""
        head = self._buffer.cut(0, count)
        self._buffer = self._buffer.cut(count, len(self._buffer))
        return head

    def _materialize(self, cols: _Columns, ts_ms: I64) -> list[Trade]:
        """``Trade`` objects of ``cols`` stamped ``ts_ms`` (no re-validation: the columns
        are valid by construction, see ``_check_finite``)."""
        volume = cols.token_amount * cols.price_usd
        return list(
            map(
                Trade,
                self._token_names[cols.token].tolist(),
                self._wallet_names[cols.wallet].tolist(),
                cols.is_buy.tolist(),
                (volume / SOL_USD).tolist(),
                cols.token_amount.tolist(),
                cols.price_usd.tolist(),
                volume.tolist(),
                ts_ms.tolist(),
                hex_hashes(cols.tx_seq, self._hash_key),
                cols.event_index.tolist(),
            )
        )


def _check_finite(cols: _Columns) -> None:
    """Raise ``RuntimeError`` unless amounts, prices and volumes are finite and > 0."""
    volume = cols.token_amount * cols.price_usd
    for values in (cols.token_amount, cols.price_usd, volume):
        if not bool(np.all(np.isfinite(values) & (values > 0))):
            raise RuntimeError("synthetic market produced a non-finite or non-positive amount")


def write_jsonl(trades: Iterable[Trade], path: str | Path) -> int:
    """Write ``trades`` to ``path`` as JSON Lines in the wire format (times as epoch ms).

    Overwrites the file; returns the number of lines written.
    """
    count = 0
    with Path(path).open("wb") as out:
        for trade in trades:
            out.write(encode_trade(trade))
            out.write(b"\n")
            count += 1
    logger.debug("wrote %d trades to %s", count, path)
    return count
