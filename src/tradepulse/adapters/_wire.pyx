# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Compiled steps of the wire module (``tradepulse.adapters.wire``) and of the Redis store's
trade lines (``tradepulse.adapters.redis_store``).

* ``convert``: the loop of ``wire._convert`` as ``decode_many`` runs it (each decoded ``WireTrade`` made a ``Trade``)
  for the usual trade: side exactly ``buy`` or ``sell``, ``trans_time`` an integer >= 0
  of 64 bits, not later than the future-time limit, and a finite USD volume. Any other
  trade is handed to the Python code (``slow``), which converts or rejects it as before;
  so every trade and every error is exactly what the Python loop gives.
* ``line_rows``: the row of each trade in a token's Redis list (``(ts_ms, wallet, is_buy,
  native_amount, token_amount, price_usd, tx_hash, event_index)``), as the store's Python
  list comprehension builds it.

The fields are read by their slot offsets (taken once by ``bind``), as in
``core._kernels``; an object of another type (a subclass) is read through ``getattr``.
Where this module is not built, the Python code runs; the tests compare the two.
"""
from types import MemberDescriptorType

from cpython.float cimport PyFloat_AS_DOUBLE, PyFloat_FromDouble
from cpython.long cimport PyLong_AsLongLongAndOverflow, PyLong_FromLongLong
from cpython.object cimport PyObject, Py_TYPE
from cpython.ref cimport Py_INCREF
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM


cdef extern from "Python.h":
    ctypedef struct PyMemberDef:
        Py_ssize_t offset
    ctypedef struct PyMemberDescrObject:
        PyMemberDef* d_member
    void PyUnicode_InternInPlace(PyObject** p)
    void Py_DECREF(PyObject* o)


cdef PyObject* WIRE = NULL
cdef PyObject* TRADE = NULL
cdef object TRADE_TYPE = None
cdef Py_ssize_t R_TOKEN, R_WALLET, R_SIDE, R_NATIVE, R_AMOUNT, R_PRICE, R_TIME, R_TX, R_EVENT
cdef Py_ssize_t T_WALLET, T_IS_BUY, T_NATIVE, T_AMOUNT, T_PRICE, T_TS, T_TX, T_EVENT
cdef long long SECONDS_LIMIT = 0
cdef double INF = float("inf")
cdef PyObject* FLOAT = <PyObject*>float
cdef PyObject* INT = <PyObject*>int
cdef PyObject* STR = <PyObject*>str


cdef Py_ssize_t _offset(object cls, str name) except -1:
    descr = cls.__dict__.get(name)
    if type(descr) is not MemberDescriptorType:
        raise TypeError(f"{cls.__name__}.{name} is not a slot")
    return (<PyMemberDescrObject*><PyObject*>descr).d_member.offset


def bind(wire_type, trade_type, long long epoch_seconds_limit):
    """Take the slot offsets of ``WireTrade`` and ``Trade`` (called once by
    ``adapters.wire``) and the limit below which an epoch time is in seconds."""
    global WIRE, TRADE, TRADE_TYPE, SECONDS_LIMIT, R_TOKEN, R_WALLET, R_SIDE, R_NATIVE
    global R_AMOUNT, R_PRICE, R_TIME, R_TX, R_EVENT, T_WALLET, T_IS_BUY, T_NATIVE, T_AMOUNT
    global T_PRICE, T_TS, T_TX, T_EVENT
    R_TOKEN = _offset(wire_type, "token")
    R_WALLET = _offset(wire_type, "wallet")
    R_SIDE = _offset(wire_type, "sell_buy")
    R_NATIVE = _offset(wire_type, "native_amount")
    R_AMOUNT = _offset(wire_type, "token_amount")
    R_PRICE = _offset(wire_type, "price_usd")
    R_TIME = _offset(wire_type, "trans_time")
    R_TX = _offset(wire_type, "tx_hash")
    R_EVENT = _offset(wire_type, "event_index")
    T_WALLET = _offset(trade_type, "wallet")
    T_IS_BUY = _offset(trade_type, "is_buy")
    T_NATIVE = _offset(trade_type, "native_amount")
    T_AMOUNT = _offset(trade_type, "token_amount")
    T_PRICE = _offset(trade_type, "price_usd")
    T_TS = _offset(trade_type, "ts_ms")
    T_TX = _offset(trade_type, "tx_hash")
    T_EVENT = _offset(trade_type, "event_index")
    SECONDS_LIMIT = epoch_seconds_limit
    TRADE_TYPE = trade_type
    WIRE, TRADE = <PyObject*>wire_type, <PyObject*>trade_type


cdef inline PyObject* _slot(object o, Py_ssize_t offset) noexcept:
    return (<PyObject**>((<char*><PyObject*>o) + offset))[0]


cdef inline object _interned(PyObject* s):
    """``sys.intern(s)`` of an exact ``str``."""
    Py_INCREF(<object>s)
    PyUnicode_InternInPlace(&s)
    result = <object>s
    Py_DECREF(s)
    return result


def convert(wires, long long latest_ms, list trades, slow):
    """``wire._convert`` of ``wires`` (as ``wire.decode_many`` calls it): each usual trade of ``wires`` made a ``Trade`` and
    appended to ``trades``; any other wire trade passed to ``slow`` (which appends its
    ``Trade`` or its error, in order). ``latest_ms`` is now plus the allowed skew. An error
    raised while iterating ``wires`` (a value msgspec refused) is raised from here."""
    cdef PyObject* token
    cdef PyObject* wallet
    cdef PyObject* side
    cdef PyObject* tt
    cdef PyObject* amount
    cdef PyObject* price
    cdef PyObject* native
    cdef PyObject* tx
    cdef PyObject* event
    cdef long long t
    cdef int overflow
    cdef double volume
    cdef bint is_buy
    if WIRE == NULL:
        raise RuntimeError("bind() was not called")
    for wire in wires:
        if <PyObject*>Py_TYPE(wire) != WIRE:
            slow(wire)
            continue
        token = _slot(wire, R_TOKEN)
        wallet = _slot(wire, R_WALLET)
        side = _slot(wire, R_SIDE)
        tt = _slot(wire, R_TIME)
        amount = _slot(wire, R_AMOUNT)
        price = _slot(wire, R_PRICE)
        native = _slot(wire, R_NATIVE)
        tx = _slot(wire, R_TX)
        event = _slot(wire, R_EVENT)
        if (token == NULL or wallet == NULL or side == NULL or tt == NULL or amount == NULL
                or price == NULL or native == NULL or tx == NULL or event == NULL
                or <PyObject*>Py_TYPE(<object>tt) != INT
                or <PyObject*>Py_TYPE(<object>amount) != FLOAT
                or <PyObject*>Py_TYPE(<object>price) != FLOAT
                or <PyObject*>Py_TYPE(<object>token) != STR
                or <PyObject*>Py_TYPE(<object>wallet) != STR
                or <PyObject*>Py_TYPE(<object>side) != STR):
            slow(wire)
            continue
        if <str>side == "buy":
            is_buy = True
        elif <str>side == "sell":
            is_buy = False
        else:
            slow(wire)
            continue
        t = PyLong_AsLongLongAndOverflow(<object>tt, &overflow)
        if overflow or t < 0:
            slow(wire)
            continue
        if t < SECONDS_LIMIT:
            t *= 1000
            ts = PyLong_FromLongLong(t)
        else:
            ts = <object>tt
        volume = PyFloat_AS_DOUBLE(<object>amount) * PyFloat_AS_DOUBLE(<object>price)
        if t > latest_ms or volume == INF:
            slow(wire)
            continue
        trades.append(TRADE_TYPE(
            _interned(token), _interned(wallet), is_buy, <object>native, <object>amount,
            <object>price, PyFloat_FromDouble(volume), ts, <object>tx, <object>event))


cdef inline object _field(object trade, Py_ssize_t offset, str name):
    cdef PyObject* v
    if <PyObject*>Py_TYPE(trade) == TRADE:
        v = _slot(trade, offset)
        if v != NULL:
            return <object>v
    return getattr(trade, name)


cdef inline void _put(tuple row, Py_ssize_t i, object value) noexcept:
    Py_INCREF(value)
    PyTuple_SET_ITEM(row, i, value)


def line_rows(trades):
    """``[(t.ts_ms, t.wallet, t.is_buy, t.native_amount, t.token_amount, t.price_usd,
    t.tx_hash, t.event_index) for t in trades]``."""
    cdef list rows = []
    cdef tuple row
    if TRADE == NULL:
        raise RuntimeError("bind() was not called")
    for t in trades:
        row = PyTuple_New(8)
        _put(row, 0, _field(t, T_TS, "ts_ms"))
        _put(row, 1, _field(t, T_WALLET, "wallet"))
        _put(row, 2, _field(t, T_IS_BUY, "is_buy"))
        _put(row, 3, _field(t, T_NATIVE, "native_amount"))
        _put(row, 4, _field(t, T_AMOUNT, "token_amount"))
        _put(row, 5, _field(t, T_PRICE, "price_usd"))
        _put(row, 6, _field(t, T_TX, "tx_hash"))
        _put(row, 7, _field(t, T_EVENT, "event_index"))
        rows.append(row)
    return rows
