"""`python bench/slow_link.py --upstream PORT --delay S --ready-file F`: a TCP proxy that holds every chunk
`delay` seconds (tests/support/tcp_proxy.py), in a process of its own so that its forwarding never competes
for the GIL with the client being measured. Announces {"host", "port", "pid"} in the ready file and runs
until SIGTERM."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.tcp_proxy import TcpProxy  # after the path above


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--upstream", type=int, required=True, help="the port to forward to")
    parser.add_argument("--delay", type=float, required=True, help="seconds each chunk is held")
    parser.add_argument("--ready-file", type=Path, required=True)
    args = parser.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with TcpProxy(args.upstream) as proxy:
        proxy.delay = args.delay
        partial = args.ready_file.with_name(args.ready_file.name + ".partial")
        partial.write_text(json.dumps({"host": "127.0.0.1", "port": proxy.port, "pid": os.getpid()}))
        partial.replace(args.ready_file)
        stop.wait()


if __name__ == "__main__":
    main()
