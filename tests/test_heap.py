"""Tests for bmlib._heap: freed large blocks stay in the heap for reuse, then go back."""

from __future__ import annotations

import ctypes
import resource
import threading

import pytest

from bmlib._heap import cpu_heap_cache, heap_cache_supported

SIZE = 64 << 20  # 64 MB, above glibc's largest mmap threshold (32 MB)
PAGES = SIZE // 4096

glibc = pytest.mark.skipif(not heap_cache_supported(), reason="needs Linux with glibc")


def _faults_of_fresh_block() -> int:
    """Minor page faults of malloc, filling and free of a 64 MB block."""
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    ptr = libc.malloc(SIZE)
    assert ptr
    ctypes.memset(ptr, 1, SIZE)
    libc.free(ptr)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@glibc
def test_cache_reuses_large_blocks_and_restores_defaults() -> None:
    assert _faults_of_fresh_block() > PAGES // 2  # default glibc: mmap + munmap every time
    assert _faults_of_fresh_block() > PAGES // 2
    with cpu_heap_cache() as active:
        assert active
        _faults_of_fresh_block()  # the first use grows the heap
        faults = [_faults_of_fresh_block() for _ in range(3)]
        with cpu_heap_cache():  # nesting keeps it on
            pass
        faults.append(_faults_of_fresh_block())
    assert max(faults) < PAGES // 10, faults  # reused from the heap, no page faults
    assert _faults_of_fresh_block() > PAGES // 2  # defaults restored (and the heap trimmed)


def test_disabled_is_a_no_op() -> None:
    with cpu_heap_cache(enabled=False) as active:
        assert active is False


@glibc
def test_cache_stays_on_until_the_last_user_leaves() -> None:
    """Another thread entering and leaving does not switch the main thread's cache off."""
    inside = threading.Event()
    seen: list[bool] = []

    def other() -> None:
        with cpu_heap_cache() as active:
            seen.append(active)
            inside.set()

    with cpu_heap_cache():
        for _ in range(2):  # grow the heap
            _faults_of_fresh_block()
        worker = threading.Thread(target=other)
        worker.start()
        worker.join()
        assert inside.is_set() and seen == [True]
        faults = [_faults_of_fresh_block() for _ in range(3)]
    assert max(faults) < PAGES // 10, faults  # still cached after the other user left
    assert _faults_of_fresh_block() > PAGES // 2  # both left: defaults back
