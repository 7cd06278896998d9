"""An officer device in its own process, for tests that stop and continue it with signals.

Usage: python officer_proc.py KEY_FILE DEVICE OUT_FILE
Writes "attached" once attached, then one line "lane seq kind alert_id" per stream item.
"""

from __future__ import annotations

import sys
from typing import TextIO

import anyio

from gateway import wire
from gateway.client import load_key, open_officer


def open_line_buffered(path: str) -> TextIO:
    return open(path, "a", buffering=1, encoding="utf-8")


async def main(key_file: str, device: str, out_file: str) -> None:
    key = load_key(key_file)
    with open_line_buffered(out_file) as out:
        async with open_officer(key, device=device, heartbeat_s=0.1) as client:
            out.write("attached\n")
            while True:
                item = await client.next()
                if isinstance(item, wire.AlertPush):
                    out.write(f"{int(item.lane)} {item.seq} alert {item.alert.alert_id}\n")
                else:
                    out.write(f"{int(item.lane)} {item.seq} sync {item.alert_id}\n")


if __name__ == "__main__":
    anyio.run(main, *sys.argv[1:4])
