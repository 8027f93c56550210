"""Resolve one checksum with seamless-core's `Checksum.resolve()` through seamless-remote, with a
single extern read client, and print the buffer as one JSON line: {"content_hex": ...}.
tests/remote.rs runs it against a mount's `by-checksum/` and against the mount's buffer port.

Usage: resolve.py hashserver URL CHECKSUM
       resolve.py bufferfolder DIRECTORY CHECKSUM
"""

import json
import sys

import seamless_remote.buffer_remote as remote
from seamless import Checksum

kind, where, checksum = sys.argv[1:4]
if kind == "hashserver":
    remote.define_extern_client("under-test", "hashserver", url=where)
else:
    remote.define_extern_client("under-test", "bufferfolder", directory=where)
remote.activate(no_main=True, extern_clients=["under-test"])
buffer = Checksum(checksum).resolve()
print(json.dumps({"content_hex": None if buffer is None else buffer.content.hex()}))
