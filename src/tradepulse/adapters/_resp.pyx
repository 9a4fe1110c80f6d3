# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""A Redis command packed into its RESP bytes (``*<argc>\\r\\n`` then ``$<len>\\r\\n<arg>\\r\\n``
per argument), byte for byte what ``hiredis.pack_command`` gives, in one pass over
arguments that are ``bytes``, ``str`` (UTF-8) or ``int`` (decimal).

hiredis formats each argument's length with ``sprintf`` (about 1,100 instructions per
argument, ~45 arguments per token's script call); here the lengths and integers are
written by hand into one buffer of the exact size. A command holding any other argument
(a float, a bool, an integer beyond 64 bits, a string that is not valid UTF-8) is handed
to ``hiredis.pack_command`` as a whole, so every command packs as hiredis packs it.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.long cimport PyLong_AsLongLongAndOverflow
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.object cimport PyObject, Py_TYPE
from libc.string cimport memcpy

import hiredis

cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object unicode, Py_ssize_t* size) except NULL

cdef object _hiredis_pack = hiredis.pack_command
cdef PyObject* BYTES = <PyObject*>bytes
cdef PyObject* STR = <PyObject*>str
cdef PyObject* INT = <PyObject*>int


cdef inline int _digits(unsigned long long v) noexcept:
    cdef int n = 1
    while v >= 10:
        v //= 10
        n += 1
    return n


cdef inline char* _put_uint(char* p, unsigned long long v, int digits) noexcept:
    """Write ``v`` in ``digits`` decimal digits at ``p``; returns the end."""
    cdef char* end = p + digits
    cdef char* q = end
    while True:
        q -= 1
        q[0] = <char>(48 + v % 10)
        v //= 10
        if v == 0:
            break
    return end


cdef inline char* _put_bulk_header(char* p, Py_ssize_t n) noexcept:
    p[0] = 36  # '$'
    p = _put_uint(p + 1, <unsigned long long>n, _digits(<unsigned long long>n))
    p[0] = 13
    p[1] = 10
    return p + 2


def pack_command(tuple command):
    """``hiredis.pack_command(command)``."""
    cdef Py_ssize_t argc = len(command), i, size, total
    if argc == 0:
        return _hiredis_pack(command)
    cdef const char** data = <const char**>PyMem_Malloc(argc * sizeof(const char*))
    cdef Py_ssize_t* sizes = <Py_ssize_t*>PyMem_Malloc(argc * sizeof(Py_ssize_t))
    cdef char* numbers = <char*>PyMem_Malloc(argc * 24)  # "-9223372036854775808" fits
    cdef char* p
    cdef long long v
    cdef unsigned long long magnitude
    cdef int overflow, digits
    cdef PyObject* kind
    cdef bytes out
    if data == NULL or sizes == NULL or numbers == NULL:
        PyMem_Free(data)
        PyMem_Free(sizes)
        PyMem_Free(numbers)
        raise MemoryError()
    try:
        total = 1 + _digits(<unsigned long long>argc) + 2
        for i in range(argc):
            arg = command[i]
            kind = <PyObject*>Py_TYPE(arg)
            if kind == BYTES:
                data[i] = PyBytes_AS_STRING(arg)
                size = PyBytes_GET_SIZE(arg)
            elif kind == STR:
                try:
                    data[i] = PyUnicode_AsUTF8AndSize(arg, &size)
                except UnicodeError:
                    return _hiredis_pack(command)
            elif kind == INT:
                v = PyLong_AsLongLongAndOverflow(arg, &overflow)
                if overflow:
                    return _hiredis_pack(command)
                p = numbers + 24 * i
                data[i] = p
                if v < 0:
                    p[0] = 45  # '-'
                    p += 1
                    magnitude = <unsigned long long>(-(v + 1)) + 1
                else:
                    magnitude = <unsigned long long>v
                digits = _digits(magnitude)
                _put_uint(p, magnitude, digits)
                size = (p - data[i]) + digits
            else:
                return _hiredis_pack(command)
            sizes[i] = size
            total += 1 + _digits(<unsigned long long>size) + 2 + size + 2
        out = PyBytes_FromStringAndSize(NULL, total)
        p = PyBytes_AS_STRING(out)
        p[0] = 42  # '*'
        p = _put_uint(p + 1, <unsigned long long>argc, _digits(<unsigned long long>argc))
        p[0] = 13
        p[1] = 10
        p += 2
        for i in range(argc):
            p = _put_bulk_header(p, sizes[i])
            memcpy(p, data[i], sizes[i])
            p += sizes[i]
            p[0] = 13
            p[1] = 10
            p += 2
        return out
    finally:
        PyMem_Free(data)
        PyMem_Free(sizes)
        PyMem_Free(numbers)
