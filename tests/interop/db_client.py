"""Drive the real seamless-remote DatabaseClient against a database server and print what every
client method returns, one JSON line per call. tests/database.rs runs this against the Python
seamless-database and against `seamfs database` and requires identical output.

Usage: db_client.py URL
"""

import asyncio
import json
import sys

from seamless_remote.database_client import DatabaseClient

A, B, C = "a" * 64, "b" * 64, "c" * 64
T, R, R2 = "3" * 64, "4" * 64, "5" * 64
T2, R3 = "6" * 64, "7" * 64


def record(tf, result, **extra):
    rec = {"schema_version": 1, "tf_checksum": tf, "result_checksum": result}
    rec.update(extra)
    return rec


def plain(value):
    """Client results as JSON: Checksums become their hex text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "hex"):
        return value.hex()
    return repr(value)


async def call(label, coro):
    try:
        outcome = {"result": plain(await coro)}
    except Exception as exc:  # the error type and text are part of what we compare
        outcome = {"error": type(exc).__name__, "text": str(exc)}
    print(json.dumps({"call": label, **outcome}), flush=True)


async def main(url):
    client = DatabaseClient(readonly=False)
    client.url = url
    ro = DatabaseClient(readonly=True)
    ro.url = url

    await call("get_transformation_result miss", client.get_transformation_result(A))
    await call("set_transformation_result", client.set_transformation_result(A, B))
    await call("get_transformation_result hit", client.get_transformation_result(A))
    await call("set_transformation_result again", client.set_transformation_result(A, B))
    await call("get_rev_transformations", client.get_rev_transformations(B))
    await call("set_transformation_result overwrite", client.set_transformation_result(A, C))
    await call("get_transformation_result overwritten", client.get_transformation_result(A))
    await call("get_rev_transformations C", client.get_rev_transformations(C))
    await call("get_rev_transformations miss", client.get_rev_transformations("f" * 64))

    await call("get_execution_record miss", client.get_execution_record(T))
    rec = record(T, R, executor="probe", checksum_fields=["tf_checksum"], nested={"x": [1, 2.5, None]})
    await call("set_execution_record", client.set_execution_record(T, R, rec))
    await call("get_execution_record hit", client.get_execution_record(T))
    await call("set_execution_record same", client.set_execution_record(T, R, dict(reversed(list(rec.items())))))
    await call("set_execution_record different (409 -> False)", client.set_execution_record(T, R, record(T, R, executor="other")))
    await call("set_execution_record other result (409 -> error)", client.set_execution_record(T, R2, record(T, R2)))
    await call("get_transformation_result via record", client.get_transformation_result(T))
    await call("get_rev_transformations via record", client.get_rev_transformations(R))

    await call("get_bucket_probe miss", client.get_bucket_probe("node", "n1"))
    await call("set_bucket_probe", client.set_bucket_probe("node", "n1", A, {"tok": 1}, "2024-01-01T00:00:00Z"))
    await call("get_bucket_probe hit", client.get_bucket_probe("node", "n1"))
    await call("set_bucket_probe refresh", client.set_bucket_probe("node", "n1", B, {"tok": 2, "é": [1]}, "2024-01-02T00:00:00Z"))
    await call("get_bucket_probe refreshed", client.get_bucket_probe("node", "n1"))
    await call("set_bucket_probe bad kind (400 -> error)", client.set_bucket_probe("nope", "n1", A, {}, "x"))

    await call("get_irreproducible_records miss", client.get_irreproducible_records(T))
    await call("undo_transformation_result wrong result (404)", client.undo_transformation_result(T, R2))
    await call("undo_transformation_result", client.undo_transformation_result(T, R))
    await call("get_irreproducible_records hit", client.get_irreproducible_records(T))
    await call("get_irreproducible_records filtered", client.get_irreproducible_records(T, R))
    await call("get_irreproducible_records filtered miss", client.get_irreproducible_records(T, R2))
    await call("get_transformation_result after undo", client.get_transformation_result(T))
    await call("get_execution_record after undo", client.get_execution_record(T))
    await call("get_rev_transformations after undo", client.get_rev_transformations(R))
    await call("set_execution_record after undo (409 -> error)", client.set_execution_record(T, R, rec))
    await call("undo_transformation_result without record", client.undo_transformation_result(T2, R3))
    await call("get_irreproducible_records without record", client.get_irreproducible_records(T2))

    await call("readonly client setter", ro.set_transformation_result(A, B))
    await call("readonly client getter", ro.get_transformation_result(A))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
