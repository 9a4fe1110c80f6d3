# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Compiled kernels of the window engine (``tradepulse.core.windows``).

* ``append_rows``: ``TokenWindows._append_loop`` (a token's trades appended to its columns);
* ``move_windows``: the window moves of ``TokenWindows.advance``;
* ``add_rows``: the loop of ``Market.add_all`` (``TokenWindows.add`` of each trade);
* ``window_stats``: ``TokenWindows._window_stats`` (None when a sum needs ``math.fsum``).

Each does the Python code's steps in the same order on the same columns, so every column,
count and statistic is bit for bit what the Python code gives (the double-double sums are
additions of doubles, compiled without contraction or reassociation). Where this module is
not built, the engine runs its Python code; the property tests run both and compare them.
"""
from cpython cimport array
from cpython.dict cimport PyDict_GetItem, PyDict_SetItem
from cpython.object cimport PyObject
from cpython.list cimport PyList_GET_SIZE

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
    cdef array.array ts = tw._ts, px = tw._px
    cdef array.array bvh = tw._bvh, bvl = tw._bvl, svh = tw._svh, svl = tw._svl
    cdef array.array nvh = tw._nvh, nvl = tw._nvl, amh = tw._amh, aml = tw._aml
    cdef array.array nbuy = tw._nbuy
    cdef array.array wprev = tw._wprev, wmark = tw._wmark, bprev = tw._bprev
    cdef array.array sprev = tw._sprev, smark = tw._smark
    cdef dict wlast = tw._wlast, blast = tw._blast, slast = tw._slast
    cdef list hstk = tw._hstk, lstk = tw._lstk
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
        p = tr.price_usd
        w = tr.wallet
        tsd[i] = tr.ts_ms
        pxd[i] = p
        x = tr.volume_usd
        pos = i
        if tr.is_buy:
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
        _add_dd(&nh, &nl, tr.native_amount)
        nvhd[i + 1] = nh
        nvld[i + 1] = nl
        _add_dd(&ah, &al, tr.token_amount)
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
    cdef array.array ts = tw._ts
    cdef array.array wprev = tw._wprev, bprev = tw._bprev, sprev = tw._sprev
    cdef array.array wmark = tw._wmark, smark = tw._smark
    cdef const long long* tsd = ts.data.as_longlongs
    cdef const long long* wp = wprev.data.as_longlongs
    cdef const long long* bp = bprev.data.as_longlongs
    cdef const long long* sp = sprev.data.as_longlongs
    cdef const long long* wm = wmark.data.as_longlongs
    cdef const long long* sm = smark.data.as_longlongs
    cdef Py_ssize_t end = len(ts)
    cdef Py_ssize_t s_old, s_new, lo, hi, mid
    cdef long long cut, wallets, sides
    for win in tw.windows:
        s_old = win.start
        cut = t_eval - <long long>win.duration_ms
        lo, hi = s_old, end  # bisect_right(ts, cut, s_old)
        while lo < hi:
            mid = (lo + hi) >> 1
            if cut < tsd[mid]:
                hi = mid
            else:
                lo = mid + 1
        s_new = lo
        wallets = win.wallets
        sides = win.sides
        if e0 < end:
            wallets += _count_below(wp, e0, end, s_old)
            sides += _count_below(bp, e0, end, s_old)
            sides += _count_below(sp, e0, end, s_old) * SELL_UNIT
        if s_new > s_old:
            wallets -= _sum(wm, s_old, s_new)
            sides -= _sum(sm, s_old, s_new)
        win.start = s_new
        win.wallets = wallets
        win.sides = sides


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
    cdef long long t, floor, longest
    cdef Py_ssize_t k, size
    cdef PyObject* found
    cdef list pending
    cdef set keyset
    for k in range(n):
        trade = trades[k]
        name = trade.token
        found = PyDict_GetItem(tokens, name)
        if found == NULL:
            tw = new_token(name)
            if tw is None:
                continue
        else:
            tw = <object>found
        t_obj = trade.ts_ms
        t = t_obj
        floor = floors[k]
        longest = tw._longest_ms
        if t <= <long long>tw._late_ms or t <= floor - longest:
            n_late += 1
            if <long long>tw.newest_ms == NEVER:
                del tokens[name]  # made for a late trade: holds nothing
            continue
        tx_hash = trade.tx_hash
        event_index = trade.event_index
        key = tx_hash if not event_index else (tx_hash, event_index)
        keyset = tw._keyset
        size = len(keyset)
        keyset.add(key)
        if len(keyset) == size:
            n_duplicate += 1
            continue
        pending = tw._pending
        pending.append(trade)
        tw._pending_ts.append(t_obj)
        tw._pending_keys.append(key)
        if t >= <long long>tw.newest_ms:
            tw.newest_ms = t_obj
            tw._late_ms = t - longest
        else:
            tw._pending_sorted = False
        if len(pending) >= <Py_ssize_t>tw._prune_at:
            tw._prune(max(<long long>tw._late_ms, floor - longest))
            tw._prune_at = max(pending_limit, 2 * len(tw._pending))
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


def window_stats(tw, win, t_eval, stats_type):
    """``TokenWindows._window_stats`` of a window holding trades (``win.start`` before the
    end), or None when one of its sums needs the exact re-summation (the caller then runs
    the Python code, which does it) or its token amounts sum to zero."""
    cdef array.array ts = tw._ts, px = tw._px, nbuy = tw._nbuy
    cdef const long long* tsd = ts.data.as_longlongs
    cdef const double* pxd = px.data.as_doubles
    cdef const long long* nbd = nbuy.data.as_longlongs
    cdef array.array bvh = tw._bvh, bvl = tw._bvl, svh = tw._svh, svl = tw._svl
    cdef array.array nvh = tw._nvh, nvl = tw._nvl, amh = tw._amh, aml = tw._aml
    cdef Py_ssize_t end = len(ts), s = win.start
    if s >= end:
        return None
    cdef long long buys = nbd[end] - nbd[s]
    cdef long long n = end - s
    cdef double bv = 0.0, sv = 0.0, nv, am
    if buys and not _window_sum(bvh.data.as_doubles, bvl.data.as_doubles, s, end, &bv):
        return None
    if n - buys and not _window_sum(svh.data.as_doubles, svl.data.as_doubles, s, end, &sv):
        return None
    if not _window_sum(nvh.data.as_doubles, nvl.data.as_doubles, s, end, &nv):
        return None
    if not _window_sum(amh.data.as_doubles, aml.data.as_doubles, s, end, &am):
        return None
    if am == 0.0:
        return None
    cdef double total = bv + sv
    cdef double last_price = pxd[end - 1]
    cdef double start_price = pxd[s - 1] if s > 0 else pxd[s]
    cdef long long sides = win.sides
    cdef long long sellers = sides // SELL_UNIT, buyers = sides % SELL_UNIT
    cdef list hstk = tw._hstk, lstk = tw._lstk
    cdef double high = pxd[<Py_ssize_t>hstk[_first_at_or_after(hstk, s)]]
    cdef double low = pxd[<Py_ssize_t>lstk[_first_at_or_after(lstk, s)]]
    return stats_type(
        buys, n - buys, n, bv, sv, total, nv, win.wallets, buyers, sellers, start_price,
        last_price, high, low, (last_price - start_price) / start_price * 100.0, total / am,
        tsd[s], tsd[end - 1], t_eval,
    )
