"""Drive the real seamless-remote BufferClient and seamless-core's buffer_writer against a buffer
server and print what every call returns, one JSON line per call. tests/hashserver.rs runs this
against the Python hashserver 1.1.0 and against `seamfs hashserver` (or the mount's buffer port)
and compares the outputs.

Usage: buffer_client.py URL DIRECTORY
DIRECTORY is the server's (prefix-layout) buffer directory: compressed-only buffers are placed
there directly, as another writer would.
"""

import asyncio
import concurrent.futures
import gzip
import json
import os
import sys

import zstandard
from seamless import Buffer
from seamless_remote.buffer_client import BufferClient
from seamless.caching import buffer_writer
import seamless_remote.buffer_remote as buffer_remote

MISSING = "0" * 64


def plain(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(plain(v) for v in value)
    if isinstance(value, Buffer):
        value = value.content
    if isinstance(value, (bytes, bytearray)):
        return {"bytes": bytes(value).decode("latin-1")}
    return repr(value)


def emit(label, outcome):
    print(json.dumps({"call": label, **outcome}), flush=True)


async def call(label, coro):
    try:
        outcome = {"result": plain(await coro)}
    except Exception as exc:  # the error type and text are part of what we compare
        outcome = {"error": type(exc).__name__}
    emit(label, outcome)


def sync_call(label, fn, *args, **kwargs):
    try:
        outcome = {"result": plain(fn(*args, **kwargs))}
    except Exception as exc:
        outcome = {"error": type(exc).__name__}
    emit(label, outcome)


def buf(data: bytes):
    b = Buffer(data)
    return b, b.get_checksum()


def place(directory, data: bytes, suffix: str):
    """Store a compressed-only buffer the way another hashserver writer would."""
    b, cs = buf(data)
    sub = os.path.join(directory, cs.hex()[:2])
    os.makedirs(sub, exist_ok=True)
    packed = gzip.compress(data) if suffix == ".gz" else zstandard.ZstdCompressor().compress(data)
    with open(os.path.join(sub, cs.hex() + suffix), "wb") as f:
        f.write(packed)
    return cs


async def main(url, directory):
    client = BufferClient(readonly=False)
    client.url = url
    hello, hello_cs = buf(b"probe buffer\n")
    big, big_cs = buf(bytes(range(256)) * (3 * 4096 + 7))  # 3 MiB and a bit: many body pieces

    await call("write", client.write(hello_cs, hello))
    await call("write again (201)", client.write(hello_cs, hello))
    await call("get", client.get(hello_cs))
    await call("get missing", client.get(MISSING))
    await call("write big", client.write(big_cs, big))
    await call("get big equal", _equal(client.get(big_cs), big.content))
    await call("buffer_lengths", client.buffer_lengths([hello_cs, MISSING]))
    await call("buffer_length", client.buffer_length(hello_cs))

    prom, prom_cs = buf(b"promised buffer")
    await call("promise", client.promise(prom_cs))
    await call("buffer_lengths promised", client.buffer_lengths([prom_cs]))
    sync_call("has_sync now", buffer_writer._has_sync, url, [hello_cs.hex(), MISSING, prom_cs.hex()], 5, now=True)
    sync_call("has_sync", buffer_writer._has_sync, url, [hello_cs.hex(), MISSING, prom_cs.hex()], 5, now=False)
    # A GET of a promised buffer waits for its upload.
    waiter = asyncio.ensure_future(client.get(prom_cs))
    await asyncio.sleep(0.5)
    await call("get promised, still waiting", _done(waiter))
    await call("write promised", client.write(prom_cs, prom))
    await call("get promised, after the upload", waiter)

    gz_cs = place(directory, b"gzip-only buffer\n", ".gz")
    zst_cs = place(directory, b"zstd-only buffer\n", ".zst")
    await call("get gz-only", client.get(gz_cs))
    await call("buffer_lengths compressed-only", client.buffer_lengths([gz_cs, zst_cs]))
    # Deliberate difference: hashserver sends zstd to a client that cannot decode it.
    await call("get zst-only", client.get(zst_cs))

    sync_call("healthcheck_sync", buffer_writer._healthcheck_sync, url, 5)
    put, put_cs = buf(b"written by buffer_writer\n")
    sync_call("put_sync", buffer_writer._put_sync, url, put_cs, put, 5)
    sync_call("put_sync again", buffer_writer._put_sync, url, put_cs, put, 5)
    await call("get put_sync", client.get(put_cs))

    wrong, _ = buf(b"wrong")
    await call("write wrong checksum", client.write("1" * 64, wrong))


def flush(url):
    """buffer_writer.flush(): what seamless does at interpreter exit with buffers still queued
    (synchronous, outside any event loop, as at exit)."""
    queued = [buf(b"flushed buffer %d\n" % i) for i in range(3)] + [buf(b"probe buffer\n")]
    for b, cs in queued:
        buffer_writer._entries[cs] = buffer_writer._QueueEntry(cs, b, concurrent.futures.Future())
    flusher = BufferClient(readonly=False)
    flusher.url = url
    buffer_remote._write_server_clients[:] = [flusher]
    sync_call("flush", buffer_writer.flush, 10)
    sync_call("flush left queued", lambda: len(buffer_writer._entries))
    return [cs for _, cs in queued]


async def check_flushed(url, checksums):
    client = BufferClient(readonly=False)
    client.url = url
    for i, cs in enumerate(checksums):
        await call(f"get flushed {i}", client.get(cs))


async def _equal(coro, expected):
    got = await coro
    return got is not None and got.content == expected


async def _done(task):
    return task.done()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
    flushed = flush(sys.argv[1])
    asyncio.run(check_flushed(sys.argv[1], flushed))
