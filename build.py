"""Build the native extension ``gateway._gateway_native`` with cffi (out-of-line API mode).

The C sources, the real headers and the cdef text all live in ``native/``:

* ``native/*.h``    real headers; every one is included by the generated source, so the
                    compiler checks that the cdef declarations agree with them;
* ``native/*.cdef`` declarations cffi exposes to Python, concatenated in name order;
* ``native/*.c``    implementation files, compiled into the extension.

Build knobs (environment variables):

* ``GATEWAY_NATIVE_DEBUG=1``     ``-O0 -g3`` with assertions on;
* ``GATEWAY_NATIVE_SANITIZE=1``  AddressSanitizer + UndefinedBehaviorSanitizer (run Python
                                 with ``LD_PRELOAD=$(gcc -print-file-name=libasan.so)``).

``python build.py`` builds the extension in place, next to ``gateway/``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from cffi import FFI

ROOT = Path(__file__).resolve().parent
NATIVE = ROOT / "native"


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _compile_args() -> tuple[list[str], list[str]]:
    cflags = ["-std=c11", "-Wall", "-Wextra", "-Werror=implicit-function-declaration",
              "-Wno-unused-parameter", "-D_GNU_SOURCE", "-pthread"]
    ldflags = ["-pthread"]
    if _flag("GATEWAY_NATIVE_DEBUG") or _flag("GATEWAY_NATIVE_SANITIZE"):
        cflags += ["-O1" if _flag("GATEWAY_NATIVE_SANITIZE") else "-O0", "-g3", "-UNDEBUG"]
    else:
        cflags += ["-O3", "-DNDEBUG", "-fno-plt"]
    if _flag("GATEWAY_NATIVE_SANITIZE"):
        san = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer",
               "-fno-sanitize-recover=undefined"]
        cflags += san
        ldflags += san
    return cflags, ldflags


def _make_builder() -> FFI:
    builder = FFI()
    cdefs = sorted(NATIVE.glob("*.cdef"))
    builder.cdef("\n".join(p.read_text() for p in cdefs))
    headers = sorted(p.name for p in NATIVE.glob("*.h"))
    sources = sorted(str(p.relative_to(ROOT)) for p in NATIVE.glob("*.c"))
    cflags, ldflags = _compile_args()
    builder.set_source(
        "gateway._gateway_native",
        "\n".join(f'#include "{h}"' for h in headers),
        sources=sources,
        include_dirs=[str(NATIVE.relative_to(ROOT))],
        extra_compile_args=cflags,
        extra_link_args=ldflags,
        libraries=["dl", "m"],
    )
    return builder


ffibuilder = _make_builder()

if __name__ == "__main__":
    os.chdir(ROOT)
    ffibuilder.compile(verbose="-q" not in sys.argv)
