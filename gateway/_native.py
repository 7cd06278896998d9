"""The native boundary: the only module that imports the compiled cffi extension.

It converts native status codes into typed exceptions and owns native memory with
``ffi.gc`` so that every allocation is freed with its Python owner.
"""

from __future__ import annotations

from typing import Any, Final, NoReturn

from gateway.errors import NativeCapacityError, NativeError, NativeMemoryError

from gateway._gateway_native import ffi, lib  # the one import of the extension

EXPECTED_ABI: Final = 1

ffi_: Any = ffi
lib_: Any = lib


def _raise(status: int, what: str) -> NoReturn:
    if status == lib.GW_ERR_NOMEM:
        raise NativeMemoryError(status, what)
    if status == lib.GW_ERR_OVERFLOW:
        raise NativeCapacityError(status, what)
    name = ffi.string(lib.gw_status_name(status)).decode()
    raise NativeError(status, f"{what}: {name}")


def check(status: int, what: str) -> int:
    """Return ``status`` if it is not an error, else raise the matching typed exception."""
    if status < 0:
        _raise(status, what)
    return status


def abi_version() -> int:
    """The ABI version the compiled extension was built with."""
    return int(lib.gw_native_abi())


if abi_version() != EXPECTED_ABI:  # pragma: no cover - a stale build in place
    raise ImportError(
        f"gateway._gateway_native has ABI {abi_version()}, expected {EXPECTED_ABI}: rebuild "
        "with `pip install -e .` or `python build.py`"
    )

__all__ = ["abi_version", "check"]
