# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Compiled kernels of the window engine (``tradepulse.core.windows``).

* ``append_rows``: ``TokenWindows._append_loop`` (a token's trades appended to its columns);
* ``move_windows``: the window moves of ``TokenWindows.advance``;
* ``add_rows``: the loop of ``Market.add_all`` (``TokenWindows.add`` of each trade);
* ``window_stats``: ``TokenWindows._window_stats`` (None when a sum needs ``math.fsum``);
* ``minute_runs``: the reduction of ``BarBuilder.add_many`` (``core.bars``): a token's
  trades cut into runs of one minute, each summed exactly (integers scaled by 2**1074).

Each does the Python code's steps in the same order on the same columns, so every column,
count and statistic is bit for bit what the Python code gives (the double-double sums are
additions of doubles, compiled without contraction or reassociation). Where this module is
not built, the engine runs its Python code; the property tests run both and compare them.
"""
from types import MemberDescriptorType

from cpython cimport array
from cpython.dict cimport PyDict_GetItem, PyDict_SetItem
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.long cimport PyLong_AsLongLongAndOverflow
from cpython.object cimport PyObject, PyObject_RichCompareBool, Py_GT, Py_LE, Py_TYPE
from cpython.ref cimport Py_INCREF, Py_XDECREF
from libc.string cimport memset


cdef extern from "Python.h":
    ctypedef struct PyMemberDef:
        Py_ssize_t offset
    ctypedef struct PyMemberDescrObject:
        PyMemberDef* d_member


# Direct reads and writes of the slots of ``Trade``, ``TokenWindows`` and ``_Window`` (each
# a ``__slots__`` member of its class): the offset of a slot in the object is that of its
# member descriptor, taken once by ``bind``; a read is then a pointer load instead of an
# attribute lookup through the type (about 130 instructions each, a dozen per trade). An
# object of another type (a subclass) is read through ``getattr`` as before.
cdef PyObject* TRADE = NULL
cdef PyObject* WINDOWS = NULL
cdef PyObject* WINDOW = NULL
cdef Py_ssize_t T_TOKEN, T_WALLET, T_IS_BUY, T_NATIVE, T_AMOUNT, T_PRICE, T_VOLUME, T_TS
cdef Py_ssize_t T_TX, T_EVENT
cdef Py_ssize_t S_START, S_WALLETS, S_SIDES, S_DURATION
# the slots of ``TokenWindows`` read here, by index into ``W``
_WINDOWS_SLOTS = ("_longest_ms", "_late_ms", "newest_ms", "_keyset", "_pending", "_pending_ts",
                  "_pending_keys", "_pending_sorted", "_prune_at", "_ts", "_px", "_nbuy",
                  "_bvh", "_bvl", "_svh", "_svl", "_nvh", "_nvl", "_amh", "_aml", "_hstk",
                  "_lstk", "windows", "_wprev", "_bprev", "_sprev", "_wmark", "_smark",
                  "_trades")
cdef enum:
    W_LONGEST, W_LATE, W_NEWEST, W_KEYSET, W_PENDING, W_PENDING_TS, W_PENDING_KEYS
    W_PENDING_SORTED, W_PRUNE_AT, W_TS, W_PX, W_NBUY, W_BVH, W_BVL, W_SVH, W_SVL, W_NVH
    W_NVL, W_AMH, W_AML, W_HSTK, W_LSTK, W_WINDOWS, W_WPREV, W_BPREV, W_SPREV, W_WMARK
    W_SMARK, W_TRADES, W_COUNT
cdef Py_ssize_t W[W_COUNT]


cdef Py_ssize_t _offset(object cls, str name) except -1:
    descr = cls.__dict__.get(name)
    if type(descr) is not MemberDescriptorType:
        raise TypeError(f"{cls.__name__}.{name} is not a slot")
    return (<PyMemberDescrObject*><PyObject*>descr).d_member.offset


def bind(trade_type, windows_type, window_type):
    """Take the slot offsets of the engine's classes (called once by ``core.windows``)."""
    global TRADE, WINDOWS, WINDOW, T_TOKEN, T_WALLET, T_IS_BUY, T_NATIVE, T_AMOUNT, T_PRICE
    global T_VOLUME, T_TS, T_TX, T_EVENT, S_START, S_WALLETS, S_SIDES, S_DURATION
    assert len(_WINDOWS_SLOTS) == W_COUNT
    T_TOKEN = _offset(trade_type, "token")
    T_WALLET = _offset(trade_type, "wallet")
    T_IS_BUY = _offset(trade_type, "is_buy")
    T_NATIVE = _offset(trade_type, "native_amount")
    T_AMOUNT = _offset(trade_type, "token_amount")
    T_PRICE = _offset(trade_type, "price_usd")
    T_VOLUME = _offset(trade_type, "volume_usd")
    T_TS = _offset(trade_type, "ts_ms")
    T_TX = _offset(trade_type, "tx_hash")
    T_EVENT = _offset(trade_type, "event_index")
    for i, name in enumerate(_WINDOWS_SLOTS):
        W[i] = _offset(windows_type, name)
    S_START = _offset(window_type, "start")
    S_WALLETS = _offset(window_type, "wallets")
    S_SIDES = _offset(window_type, "sides")
    S_DURATION = _offset(window_type, "duration_ms")
    TRADE, WINDOWS, WINDOW = <PyObject*>trade_type, <PyObject*>windows_type, <PyObject*>window_type


def bound():
    """Whether ``bind`` was called: the slots are then read directly."""
    return TRADE != NULL


cdef inline object _get(object o, PyObject* cls, Py_ssize_t offset, str name):
    """``getattr(o, name)``: a load of the slot when ``o`` is exactly of the bound ``cls``."""
    cdef PyObject* v
    if <PyObject*>Py_TYPE(o) == cls:
        v = (<PyObject**>((<char*><PyObject*>o) + offset))[0]
        if v != NULL:
            return <object>v
    return getattr(o, name)


cdef inline int _set(object o, PyObject* cls, Py_ssize_t offset, str name,
                     object value) except -1:
    """``setattr(o, name, value)``, storing into the slot when ``o`` is exactly of ``cls``."""
    cdef PyObject** slot
    cdef PyObject* old
    if <PyObject*>Py_TYPE(o) == cls:
        slot = <PyObject**>((<char*><PyObject*>o) + offset)
        old = slot[0]
        Py_INCREF(value)
        slot[0] = <PyObject*>value
        Py_XDECREF(old)
    else:
        setattr(o, name, value)
    return 0


cdef inline object _tw(object tw, int slot):
    """``getattr(tw, _WINDOWS_SLOTS[slot])`` of a ``TokenWindows``."""
    cdef PyObject* v
    if <PyObject*>Py_TYPE(tw) == WINDOWS:
        v = (<PyObject**>((<char*><PyObject*>tw) + W[slot]))[0]
        if v != NULL:
            return <object>v
    return getattr(tw, _WINDOWS_SLOTS[slot])


cdef inline int _tw_set(object tw, int slot, object value) except -1:
    """``setattr(tw, _WINDOWS_SLOTS[slot], value)``."""
    if <PyObject*>Py_TYPE(tw) == WINDOWS:
        return _set(tw, WINDOWS, W[slot], "", value)
    setattr(tw, _WINDOWS_SLOTS[slot], value)
    return 0


cdef long long SELL_UNIT = 1LL << 32
cdef long long NO_PREV_SIDE = 1LL << 62
cdef long long NEVER = -(1LL << 62)  # core.clock.NEVER


cdef inline void _add_dd(double* hi, double* lo, double x) noexcept:
    """``hi + lo += x`` as ``_append_loop`` steps it: TwoSum of ``hi`` and ``x``, the
    rounding error added to ``lo``."""
    cdef double s = hi[0] + x
    cdef double bb = s - hi[0]
    lo[0] += (hi[0] - (s - bb)) + (x - bb)
    hi[0] = s


cdef inline long long _mark_last(dict last, object wallet, object pos) except? -2:
    """The position of ``wallet``'s previous trade in ``last`` (-1: none); ``pos`` becomes
    its last."""
    cdef PyObject* found = PyDict_GetItem(last, wallet)
    cdef long long q = -1 if found == NULL else <long long><object>found
    PyDict_SetItem(last, wallet, pos)
    return q


def append_rows(tw, list trades, list keys):
    """Append ``trades`` (in time order, none older than the newest stored one) and their
    dedup ``keys`` to the columns of ``tw`` (a ``TokenWindows``): times, prices, the
    double-double prefix sums, the buy-count prefix, the last-occurrence marks of wallets,
    buyers and sellers, and the monotonic stacks of highs and lows."""
    cdef Py_ssize_t n = len(trades)
    if n == 0:
        return
    cdef array.array ts = _tw(tw, W_TS), px = _tw(tw, W_PX)
    cdef array.array bvh = _tw(tw, W_BVH), bvl = _tw(tw, W_BVL)
    cdef array.array svh = _tw(tw, W_SVH), svl = _tw(tw, W_SVL)
    cdef array.array nvh = _tw(tw, W_NVH), nvl = _tw(tw, W_NVL)
    cdef array.array amh = _tw(tw, W_AMH), aml = _tw(tw, W_AML)
    cdef array.array nbuy = _tw(tw, W_NBUY)
    cdef array.array wprev = _tw(tw, W_WPREV), wmark = _tw(tw, W_WMARK)
    cdef array.array bprev = _tw(tw, W_BPREV)
    cdef array.array sprev = _tw(tw, W_SPREV), smark = _tw(tw, W_SMARK)
    cdef dict wlast = tw._wlast, blast = tw._blast, slast = tw._slast
    cdef list hstk = _tw(tw, W_HSTK), lstk = _tw(tw, W_LSTK)
    cdef Py_ssize_t i0 = len(ts)
    tw._trades.extend(trades)
    tw._keys.extend(keys)
    for a in (ts, px, wprev, wmark, bprev, sprev, smark):
        array.resize_smart(<array.array>a, i0 + n)
    for a in (bvh, bvl, svh, svl, nvh, nvl, amh, aml, nbuy):
        array.resize_smart(<array.array>a, i0 + 1 + n)
    cdef long long* tsd = ts.data.as_longlongs
    cdef double* pxd = px.data.as_doubles
    cdef double* bvhd = bvh.data.as_doubles
    cdef double* bvld = bvl.data.as_doubles
    cdef double* svhd = svh.data.as_doubles
    cdef double* svld = svl.data.as_doubles
    cdef double* nvhd = nvh.data.as_doubles
    cdef double* nvld = nvl.data.as_doubles
    cdef double* amhd = amh.data.as_doubles
    cdef double* amld = aml.data.as_doubles
    cdef long long* nbd = nbuy.data.as_longlongs
    cdef long long* wprevd = wprev.data.as_longlongs
    cdef long long* wmarkd = wmark.data.as_longlongs
    cdef long long* bprevd = bprev.data.as_longlongs
    cdef long long* sprevd = sprev.data.as_longlongs
    cdef long long* smarkd = smark.data.as_longlongs
    cdef double bh = bvhd[i0], bl = bvld[i0], sh = svhd[i0], sl = svld[i0]
    cdef double nh = nvhd[i0], nl = nvld[i0], ah = amhd[i0], al = amld[i0]
    cdef long long nb = nbd[i0]
    cdef double p, x
    cdef long long q
    cdef Py_ssize_t i, k, top
    cdef object tr, w, pos
    for k in range(n):
        tr = trades[k]
        i = i0 + k
        p = _get(tr, TRADE, T_PRICE, "price_usd")
        w = _get(tr, TRADE, T_WALLET, "wallet")
        tsd[i] = _get(tr, TRADE, T_TS, "ts_ms")
        pxd[i] = p
        x = _get(tr, TRADE, T_VOLUME, "volume_usd")
        pos = i
        if _get(tr, TRADE, T_IS_BUY, "is_buy"):
            _add_dd(&bh, &bl, x)
            nb += 1
            q = _mark_last(blast, w, pos)
            bprevd[i] = q
            sprevd[i] = NO_PREV_SIDE
            smarkd[i] = 1
        else:
            _add_dd(&sh, &sl, x)
            q = _mark_last(slast, w, pos)
            sprevd[i] = q
            bprevd[i] = NO_PREV_SIDE
            smarkd[i] = SELL_UNIT
        if q >= 0:
            smarkd[q] = 0
        bvhd[i + 1] = bh
        bvld[i + 1] = bl
        svhd[i + 1] = sh
        svld[i + 1] = sl
        nbd[i + 1] = nb
        _add_dd(&nh, &nl, _get(tr, TRADE, T_NATIVE, "native_amount"))
        nvhd[i + 1] = nh
        nvld[i + 1] = nl
        _add_dd(&ah, &al, _get(tr, TRADE, T_AMOUNT, "token_amount"))
        amhd[i + 1] = ah
        amld[i + 1] = al
        q = _mark_last(wlast, w, pos)
        wprevd[i] = q
        wmarkd[i] = 1
        if q >= 0:
            wmarkd[q] = 0
        top = PyList_GET_SIZE(hstk)
        while top and pxd[<Py_ssize_t>hstk[top - 1]] <= p:
            hstk.pop()
            top -= 1
        hstk.append(pos)
        top = PyList_GET_SIZE(lstk)
        while top and pxd[<Py_ssize_t>lstk[top - 1]] >= p:
            lstk.pop()
            top -= 1
        lstk.append(pos)


cdef inline long long _count_below(const long long* prev, Py_ssize_t lo, Py_ssize_t hi,
                                   long long bound) noexcept:
    cdef long long n = 0
    cdef Py_ssize_t i
    for i in range(lo, hi):
        n += prev[i] < bound
    return n


cdef inline long long _sum(const long long* column, Py_ssize_t lo, Py_ssize_t hi) noexcept:
    cdef long long total = 0
    cdef Py_ssize_t i
    for i in range(lo, hi):
        total += column[i]
    return total


def move_windows(tw, long long t_eval, Py_ssize_t e0):
    """The window moves of ``TokenWindows.advance`` once the trades from position ``e0``
    on were appended: every window's start goes to the first trade after
    ``t_eval - duration``, and its distinct wallet / buyer / seller counts take in the
    entering trades (those whose previous trade of the same wallet, or wallet and side, is
    before the window's old start) and drop the marks its start passes."""
    cdef array.array ts = _tw(tw, W_TS)
    cdef array.array wprev = _tw(tw, W_WPREV), bprev = _tw(tw, W_BPREV)
    cdef array.array sprev = _tw(tw, W_SPREV)
    cdef array.array wmark = _tw(tw, W_WMARK), smark = _tw(tw, W_SMARK)
    cdef const long long* tsd = ts.data.as_longlongs
    cdef const long long* wp = wprev.data.as_longlongs
    cdef const long long* bp = bprev.data.as_longlongs
    cdef const long long* sp = sprev.data.as_longlongs
    cdef const long long* wm = wmark.data.as_longlongs
    cdef const long long* sm = smark.data.as_longlongs
    cdef Py_ssize_t end = len(ts)
    cdef Py_ssize_t s_old, s_new, lo, hi, mid
    cdef long long cut, wallets, sides
    for win in _tw(tw, W_WINDOWS):
        s_old = _get(win, WINDOW, S_START, "start")
        cut = t_eval - <long long>_get(win, WINDOW, S_DURATION, "duration_ms")
        lo, hi = s_old, end  # bisect_right(ts, cut, s_old)
        while lo < hi:
            mid = (lo + hi) >> 1
            if cut < tsd[mid]:
                hi = mid
            else:
                lo = mid + 1
        s_new = lo
        wallets = _get(win, WINDOW, S_WALLETS, "wallets")
        sides = _get(win, WINDOW, S_SIDES, "sides")
        if e0 < end:
            wallets += _count_below(wp, e0, end, s_old)
            sides += _count_below(bp, e0, end, s_old)
            sides += _count_below(sp, e0, end, s_old) * SELL_UNIT
        if s_new > s_old:
            wallets -= _sum(wm, s_old, s_new)
            sides -= _sum(sm, s_old, s_new)
        _set(win, WINDOW, S_START, "start", s_new)
        _set(win, WINDOW, S_WALLETS, "wallets", wallets)
        _set(win, WINDOW, S_SIDES, "sides", sides)


def add_rows(dict tokens, list trades, list floors, new_token, Py_ssize_t pending_limit):
    """``Market.add_all``'s loop: ``TokenWindows.add`` of each trade with its own floor, in
    order. ``tokens`` maps a token to its ``TokenWindows``; ``new_token(name)`` makes (and
    stores in ``tokens``) one for a token not seen yet, or gives None for a token this
    process does not own (its trade is skipped, not counted). A token made for a trade
    that is late holds nothing and leaves ``tokens`` again. Returns the trades applied by
    token (in the order applied) and the counts applied, duplicate and late."""
    cdef Py_ssize_t n = len(trades)
    if len(floors) != n:
        raise ValueError(f"{n} trades but {len(floors)} floors")
    cdef dict applied = {}
    cdef long long n_applied = 0, n_duplicate = 0, n_late = 0
    cdef long long t, floor, longest, newest
    cdef Py_ssize_t k, size
    cdef PyObject* found
    cdef list pending
    cdef set keyset
    for k in range(n):
        trade = trades[k]
        name = _get(trade, TRADE, T_TOKEN, "token")
        found = PyDict_GetItem(tokens, name)
        if found == NULL:
            tw = new_token(name)
            if tw is None:
                continue
        else:
            tw = <object>found
        t_obj = _get(trade, TRADE, T_TS, "ts_ms")
        t = t_obj
        floor = floors[k]
        longest = _tw(tw, W_LONGEST)
        newest = _tw(tw, W_NEWEST)
        if t <= <long long>_tw(tw, W_LATE) or t <= floor - longest:
            n_late += 1
            if newest == NEVER:
                del tokens[name]  # made for a late trade: holds nothing
            continue
        tx_hash = _get(trade, TRADE, T_TX, "tx_hash")
        event_index = _get(trade, TRADE, T_EVENT, "event_index")
        key = tx_hash if not event_index else (tx_hash, event_index)
        keyset = _tw(tw, W_KEYSET)
        size = len(keyset)
        keyset.add(key)
        if len(keyset) == size:
            n_duplicate += 1
            continue
        pending = _tw(tw, W_PENDING)
        pending.append(trade)
        (<list>_tw(tw, W_PENDING_TS)).append(t_obj)
        (<list>_tw(tw, W_PENDING_KEYS)).append(key)
        if t >= newest:
            _tw_set(tw, W_NEWEST, t_obj)
            _tw_set(tw, W_LATE, t - longest)
        else:
            _tw_set(tw, W_PENDING_SORTED, False)
        if len(pending) >= <Py_ssize_t>_tw(tw, W_PRUNE_AT):
            tw._prune(max(<long long>_tw(tw, W_LATE), floor - longest))
            _tw_set(tw, W_PRUNE_AT, max(pending_limit, 2 * len(_tw(tw, W_PENDING))))
        n_applied += 1
        found = PyDict_GetItem(applied, name)
        if found == NULL:
            applied[name] = [trade]
        else:
            (<list>found).append(trade)
    return applied, n_applied, n_duplicate, n_late


cdef extern from "math.h":
    double nextafter(double x, double y) nogil
    double fabs(double x) nogil
    bint isfinite(double x) nogil

cdef double U = 2.0 ** -53
cdef double TWO_U = 2.0 * U


cdef inline bint _window_sum(const double* hi, const double* lo, Py_ssize_t s, Py_ssize_t end,
                             double* out) noexcept:
    """``windows._window_sum`` step for step: 1 and the sum in ``out``, or 0 when the
    prefixes cannot tell which way the exact sum rounds."""
    cdef double a = hi[end], b = hi[s]
    cdef double d = a - b
    cdef double bb = d - a
    cdef double lo_d = lo[end] - lo[s]
    cdef double c = ((a - (d - bb)) + (-b - bb)) + lo_d
    cdef double r = d + c
    bb = r - d
    cdef double rho = (d - (r - bb)) + (c - bb)
    cdef double err = TWO_U * ((<double>(end - s)) * U * (<double>end) * a + fabs(lo_d) + fabs(c))
    if err == 0.0 or fabs(rho) + err < 0.5 * fabs(r - nextafter(r, 0.0)):
        out[0] = r
        return 1
    return 0


cdef inline Py_ssize_t _first_at_or_after(list stack, Py_ssize_t s):
    """``bisect_left(stack, s)`` over a list of positions."""
    cdef Py_ssize_t lo = 0, hi = len(stack), mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if <Py_ssize_t>stack[mid] < s:
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef enum:
    PARTIALS = 128  # far more than the ~40 partials a sum of finite doubles can need
    SUM_BUYS, SUM_SELLS, SUM_NATIVE, SUM_AMOUNT


cdef inline bint _fsum_window(tw, Py_ssize_t s, Py_ssize_t end, int which,
                              double* out) except -1:
    """``math.fsum`` over the window's trades (``tw._trades[s:end]``) of their USD volume
    (``SUM_BUYS``: buys only, ``SUM_SELLS``: sells only), native amount or token amount:
    the exact sum rounded once, by CPython's own algorithm (Shewchuk's partials, then the
    half-even correction across partials). 0 when a partial sum is not finite or the
    partials overflow the buffer (the caller then leaves it to the Python code)."""
    cdef double p[PARTIALS]
    cdef Py_ssize_t n = 0, i, j, k
    cdef double x, y, t, hi, lo = 0.0, yr
    cdef list trades = _tw(tw, W_TRADES)
    for k in range(s, end):
        trade = <object>PyList_GET_ITEM(trades, k)
        if which == SUM_BUYS or which == SUM_SELLS:
            if bool(_get(trade, TRADE, T_IS_BUY, "is_buy")) != (which == SUM_BUYS):
                continue
            x = _get(trade, TRADE, T_VOLUME, "volume_usd")
        elif which == SUM_NATIVE:
            x = _get(trade, TRADE, T_NATIVE, "native_amount")
        else:
            x = _get(trade, TRADE, T_AMOUNT, "token_amount")
        i = 0
        for j in range(n):
            y = p[j]
            if fabs(x) < fabs(y):
                t = x
                x = y
                y = t
            hi = x + y
            yr = hi - x
            lo = y - yr
            if lo != 0.0:
                p[i] = lo
                i += 1
            x = hi
        n = i
        if x != 0.0:
            if not isfinite(x) or n >= PARTIALS:
                return 0
            p[n] = x
            n += 1
    hi = 0.0
    if n > 0:
        n -= 1
        hi = p[n]
        while n > 0:  # sum_exact from the top, stop when the sum becomes inexact
            x = hi
            n -= 1
            y = p[n]
            hi = x + y
            yr = hi - x
            lo = y - yr
            if lo != 0.0:
                break
        # half-even rounding across several partials
        if n > 0 and ((lo < 0.0 and p[n - 1] < 0.0) or (lo > 0.0 and p[n - 1] > 0.0)):
            y = lo * 2.0
            x = hi + y
            yr = x - hi
            if y == yr:
                hi = x
    out[0] = hi
    return 1


def window_stats(tw, win, t_eval, stats_type):
    """``TokenWindows._window_stats``, or None when a sum could not be made here (the
    caller then runs the Python code): a sum the prefixes cannot settle is summed exactly
    over the window's trades as ``math.fsum`` does; an empty window gives the empty
    statistics at the last price."""
    cdef array.array ts = _tw(tw, W_TS), px = _tw(tw, W_PX), nbuy = _tw(tw, W_NBUY)
    cdef const long long* tsd = ts.data.as_longlongs
    cdef const double* pxd = px.data.as_doubles
    cdef const long long* nbd = nbuy.data.as_longlongs
    cdef array.array bvh = _tw(tw, W_BVH), bvl = _tw(tw, W_BVL)
    cdef array.array svh = _tw(tw, W_SVH), svl = _tw(tw, W_SVL)
    cdef array.array nvh = _tw(tw, W_NVH), nvl = _tw(tw, W_NVL)
    cdef array.array amh = _tw(tw, W_AMH), aml = _tw(tw, W_AML)
    cdef Py_ssize_t end = len(ts), s = _get(win, WINDOW, S_START, "start")
    if end == 0 or s > end:
        return None
    cdef double last_price = pxd[end - 1]
    if s == end:
        return stats_type(0, 0, 0, 0.0, 0.0, 0.0, 0.0, 0, 0, 0, last_price, last_price,
                          last_price, last_price, 0.0, None, None, None, t_eval)
    cdef long long buys = nbd[end] - nbd[s]
    cdef long long n = end - s
    cdef double bv = 0.0, sv = 0.0, nv, am
    # each sum from the prefixes, else exactly over the window's trades
    if buys and not (_window_sum(bvh.data.as_doubles, bvl.data.as_doubles, s, end, &bv)
                     or _fsum_window(tw, s, end, SUM_BUYS, &bv)):
        return None
    if n - buys and not (_window_sum(svh.data.as_doubles, svl.data.as_doubles, s, end, &sv)
                         or _fsum_window(tw, s, end, SUM_SELLS, &sv)):
        return None
    if not (_window_sum(nvh.data.as_doubles, nvl.data.as_doubles, s, end, &nv)
            or _fsum_window(tw, s, end, SUM_NATIVE, &nv)):
        return None
    if not (_window_sum(amh.data.as_doubles, aml.data.as_doubles, s, end, &am)
            or _fsum_window(tw, s, end, SUM_AMOUNT, &am)):
        return None
    if am == 0.0:
        return None
    cdef double total = bv + sv
    cdef double start_price = pxd[s - 1] if s > 0 else pxd[s]
    cdef long long sides = _get(win, WINDOW, S_SIDES, "sides")
    cdef long long sellers = sides // SELL_UNIT, buyers = sides % SELL_UNIT
    cdef list hstk = _tw(tw, W_HSTK), lstk = _tw(tw, W_LSTK)
    cdef double high = pxd[<Py_ssize_t>hstk[_first_at_or_after(hstk, s)]]
    cdef double low = pxd[<Py_ssize_t>lstk[_first_at_or_after(lstk, s)]]
    return stats_type(
        buys, n - buys, n, bv, sv, total, nv, _get(win, WINDOW, S_WALLETS, "wallets"),
        buyers, sellers, start_price,
        last_price, high, low, (last_price - start_price) / start_price * 100.0, total / am,
        tsd[s], tsd[end - 1], t_eval,
    )


# --- bars: a token's trades reduced a run of one minute at a time (``core.bars``) ---

cdef extern from *:
    """
    static inline unsigned long long tp_bits(double x) {
        unsigned long long b; memcpy(&b, &x, sizeof b); return b;
    }
    """
    unsigned long long tp_bits(double x) noexcept nogil

# Every finite double is an integer multiple of 2**-1074; scaled by 2**1074 it is an integer
# of at most 2098 bits (``core.bars._exact``). A sum of such integers is kept exactly in
# 32-bit pieces held in 64-bit limbs (limb ``i`` counts units of 2**(32 i)), added without
# carries (each addition is below 2**32, so 2**30 of them cannot overflow a limb) and made
# one Python integer at the end of the run.
cdef enum:
    LIMBS = 68
cdef long long MASK32 = 0xFFFFFFFF


cdef struct Exact:
    long long limb[LIMBS]
    int lo
    int hi


cdef inline void _exact_clear(Exact* acc) noexcept:
    memset(acc.limb, 0, sizeof(acc.limb))
    acc.lo = LIMBS
    acc.hi = -1


cdef inline bint _exact_add(Exact* acc, double x) noexcept:
    """``acc += x * 2**1074``; False when ``x`` is not finite."""
    cdef unsigned long long bits = tp_bits(x)
    cdef int e = <int>((bits >> 52) & 0x7FF)
    cdef unsigned long long m = bits & 0xFFFFFFFFFFFFF
    cdef long long sign = -1 if bits >> 63 else 1
    cdef int s, k, r
    cdef unsigned long long lo_part, hi_part
    if e == 0x7FF:
        return False
    if e == 0:  # zero or subnormal: m * 2**-1074
        s = 0
    else:  # (m + 2**52) * 2**(e - 1075)
        m |= 1ULL << 52
        s = e - 1
    k = s >> 5
    r = s & 31
    lo_part = (m & MASK32) << r  # below 2**63
    hi_part = (m >> 32) << r  # below 2**52
    acc.limb[k] += sign * <long long>(lo_part & MASK32)
    acc.limb[k + 1] += sign * <long long>((lo_part >> 32) + (hi_part & MASK32))
    acc.limb[k + 2] += sign * <long long>(hi_part >> 32)
    if k < acc.lo:
        acc.lo = k
    if k + 2 > acc.hi:
        acc.hi = k + 2
    return True


cdef object _exact_int(Exact* acc):
    """The exact sum as a Python integer (scaled by 2**1074)."""
    if acc.hi < 0:
        return 0
    cdef int n = acc.hi - acc.lo + 1
    cdef bytearray out = bytearray(4 * n)
    cdef unsigned char* p = out
    cdef long long carry = 0, v
    cdef unsigned long long piece
    cdef int i, j
    for i in range(n):
        v = acc.limb[acc.lo + i] + carry
        piece = <unsigned long long>v & MASK32
        carry = (v - <long long>piece) >> 32  # exact: v - piece is a multiple of 2**32
        for j in range(4):
            p[4 * i + j] = <unsigned char>((piece >> (8 * j)) & 0xFF)
    total = int.from_bytes(out, "little") + ((<object>carry) << (32 * n))
    return total << (32 * acc.lo)


def minute_runs(list trades, token):
    """``BarBuilder.add_many``'s reduction: ``trades`` (of ``token``, in order) cut into
    runs of one minute (consecutive trades whose ``ts_ms - ts_ms % 60_000`` is the same),
    each reduced to ``(start, trades, first_ms, open, last_ms, close, high, low, amount,
    bought, sold)``: open is the price of the first trade with the earliest time, close that
    of the last one with the latest time (what ``_Minute.add`` one trade at a time leaves),
    the sums exact integers scaled by 2**1074 (``_exact``). Returns the runs and the index
    of the first trade of another token (-1: none; the runs stop before it), or None when an
    amount is not finite (the caller then runs the Python code)."""
    cdef Py_ssize_t n = len(trades), k, first = -1
    cdef list runs = []
    cdef Exact amount, bought, sold
    cdef long long ts, start = 0, run_start = 0, first_ms = 0, last_ms = 0, count = 0
    cdef double price, open_ = 0.0, close = 0.0, high = 0.0, low = 0.0
    cdef bint ok
    _exact_clear(&amount)
    _exact_clear(&bought)
    _exact_clear(&sold)
    for k in range(n):
        tr = trades[k]
        name = _get(tr, TRADE, T_TOKEN, "token")
        if name is not token and name != token:
            first = k
            break
        ts = _get(tr, TRADE, T_TS, "ts_ms")
        price = _get(tr, TRADE, T_PRICE, "price_usd")
        start = ts - ts % 60000
        if count and start != run_start:
            runs.append((run_start, count, first_ms, open_, last_ms, close, high, low,
                         _exact_int(&amount), _exact_int(&bought), _exact_int(&sold)))
            _exact_clear(&amount)
            _exact_clear(&bought)
            _exact_clear(&sold)
            count = 0
        if count == 0:
            run_start = start
            first_ms = last_ms = ts
            open_ = close = high = low = price
        else:
            if ts < first_ms:
                first_ms, open_ = ts, price
            if ts >= last_ms:
                last_ms, close = ts, price
            if price > high:
                high = price
            elif price < low:
                low = price
        count += 1
        ok = _exact_add(&amount, _get(tr, TRADE, T_AMOUNT, "token_amount"))
        if _get(tr, TRADE, T_IS_BUY, "is_buy"):
            ok = _exact_add(&bought, _get(tr, TRADE, T_VOLUME, "volume_usd")) and ok
        else:
            ok = _exact_add(&sold, _get(tr, TRADE, T_VOLUME, "volume_usd")) and ok
        if not ok:
            return None
    if count:
        runs.append((run_start, count, first_ms, open_, last_ms, close, high, low,
                     _exact_int(&amount), _exact_int(&bought), _exact_int(&sold)))
    return runs, first


# --- the batch's columns and the event clock's floors ----------------------------------------

cdef PyObject* INT = <PyObject*>int


cdef inline int _cmp(object a, object b, int op) except -1:
    """``a > b`` (``Py_GT``) or ``a <= b`` (``Py_LE``): in C for two ``int`` of 64 bits."""
    cdef int oa = 1, ob = 1
    cdef long long x, y
    if <PyObject*>Py_TYPE(a) == INT and <PyObject*>Py_TYPE(b) == INT:
        x = PyLong_AsLongLongAndOverflow(a, &oa)
        y = PyLong_AsLongLongAndOverflow(b, &ob)
        if not oa and not ob:
            return x > y if op == Py_GT else x <= y
    return PyObject_RichCompareBool(a, b, op)


def observe_floors(dict newest, watermark, list partitions, list times, observe):
    """``EventClock.observe_all``'s loop: ``newest`` is the clock's newest time per
    partition read, ``watermark`` its watermark; a trade that may move the watermark is
    handed to ``observe(partition, time)``, which returns the new watermark. Returns the
    watermark right after each trade."""
    cdef Py_ssize_t n = len(partitions), k
    cdef PyObject* found
    cdef list out
    if len(times) != n:
        raise ValueError(f"{n} partitions but {len(times)} times")
    out = [None] * n
    for k in range(n):
        p = <object>PyList_GET_ITEM(partitions, k)
        ts = <object>PyList_GET_ITEM(times, k)
        found = PyDict_GetItem(newest, p)
        if found == NULL:
            watermark = observe(p, ts)
        elif _cmp(ts, <object>found, Py_GT):
            if _cmp(<object>found, watermark, Py_LE):  # the watermark may move
                watermark = observe(p, ts)
            else:  # the partition was ahead of the watermark: only its time moves
                PyDict_SetItem(newest, p, ts)
        out[k] = watermark
    return out


def batch_columns(list trades, list partitions, dict known):
    """The columns of a batch's trades that the worker needs before applying them:
    ``([t.ts_ms for t in trades], {t.token for t in trades}, {t.token: p for p, t in
    zip(partitions, trades) if t.token not in known})``."""
    cdef Py_ssize_t n = len(trades), k
    if len(partitions) != n:
        raise ValueError(f"{n} trades but {len(partitions)} partitions")
    cdef list times = [None] * n
    cdef set tokens = set()
    cdef dict new = {}
    for k in range(n):
        trade = <object>PyList_GET_ITEM(trades, k)
        times[k] = _get(trade, TRADE, T_TS, "ts_ms")
        name = _get(trade, TRADE, T_TOKEN, "token")
        tokens.add(name)
        if PyDict_GetItem(known, name) == NULL:
            PyDict_SetItem(new, name, <object>PyList_GET_ITEM(partitions, k))
    return times, tokens, new
