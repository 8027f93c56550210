"""Random vectors from the real seamless-core, in the format of tests/data/vectors.json.

Usage: python gen_random_vectors.py SEED N > vectors.json

Builds random values (plain JSON values with awkward strings and floats, ints beyond 64 bits,
numpy arrays of several dtypes and layouts, bytes, nested mixed containers) and random
buffers (JSON fragments, truncated or corrupted .npy and mixed buffers), serializes and parses
them with seamless-core, and writes the cases for `seamfs compat-check` / tests/vectors.rs.
Error messages of corrupted .npy/mixed buffers are not compared (only the error class), and
Python-internal error classes there (JSONDecodeError, TokenError, SyntaxError, IndexError,
struct.error)
count as ValueError.
"""
import io, json, random, sys, hashlib, math
import numpy as np
from seamless import Buffer
from seamless.checksum.serialize import serialize_sync

random.seed(int(sys.argv[1]) if len(sys.argv) > 1 else 0)

def cstrides(a):
    s=[]; st=a.itemsize
    for n in reversed(a.shape): s.insert(0, st); st*=n
    return s
def enc(v):
    if isinstance(v, np.void):
        return {"$npscalar": {"dtype": enc(np.asarray(v))["$ndarray"]["dtype"], "aligned": bool(v.dtype.isalignedstruct),
                              "data_hex": v.tobytes().hex()}}
    if isinstance(v, np.generic) and not isinstance(v, np.ndarray):
        return {"$npscalar": {"dtype": v.dtype.str, "value": enc(v.item())}}
    if v is None or isinstance(v, bool): return v
    if isinstance(v, int):
        return v if -2**63 <= v <= 2**64-1 else {"$int": str(v)}
    if isinstance(v, float):
        if math.isnan(v): return {"$float": "nan"}
        if math.isinf(v): return {"$float": "inf" if v > 0 else "-inf"}
        return v
    if isinstance(v, str):
        try: v.encode(); return v
        except UnicodeEncodeError: return {"$codepoints": [ord(c) for c in v]}
    if isinstance(v, bytes): return {"$bytes_hex": v.hex()}
    if isinstance(v, tuple): return {"$tuple": [enc(x) for x in v]}
    if isinstance(v, list): return [enc(x) for x in v]
    if isinstance(v, dict): return {"$dict": [[enc(k), enc(x)] for k, x in v.items()]}
    if isinstance(v, np.ndarray):
        d = {"dtype": v.dtype.str if v.dtype.names is None else [list(x) if len(x)==2 else [x[0], x[1], list(x[2])] for x in v.dtype.descr],
             "shape": list(v.shape), "data_hex": v.tobytes(order="C").hex()}
        if v.dtype.names is not None: d["aligned"] = bool(v.dtype.isalignedstruct)
        if v.flags.c_contiguous and (list(v.strides) == cstrides(v) or v.size == 0): d["layout"] = "C"
        elif v.flags.f_contiguous and not v.flags.c_contiguous: d["layout"] = "F"
        else: d["layout"] = "strided"; d["strides"] = list(v.strides)
        return {"$ndarray": d}
    if isinstance(v, np.generic):
        return {"$npscalar": {"dtype": v.dtype.str, "value": enc(v.item())}}
    raise TypeError(type(v))

CHARS = ["a", "Z", "é", "ü", "\x00", "\x1f", "\x7f", "\x80", "\xa0", "\xad", "'", '"', "\\", "\n", "\r", "\t", "\u2028", "\ufeff", "😀", "\U0001f600", "\u0300", "\ud7ff", "\ue000", "\U000e0001", "/", "\u0378", "\u00ff", "\u061c"]
def rstr(): return "".join(random.choice(CHARS) for _ in range(random.randint(0, 6)))
def rfloat():
    r = random.random()
    if r < 0.3: return random.uniform(-1e6, 1e6)
    if r < 0.5: return np.frombuffer(random.getrandbits(64).to_bytes(8, "little"), "<f8")[0].item()
    if r < 0.7: return float(f"{random.randint(1,99)}e{random.randint(-330, 310)}")
    if r < 0.8: return random.choice([0.0, -0.0, 1e16, 1e15, 1e-5, 1e-4, 1e-7, 0.1, float("nan"), float("inf")])
    return float(random.randint(-10**17, 10**17))
def rint():
    return random.choice([random.randint(-10, 10), random.randint(-2**63, 2**64-1), random.randint(-2**70, 2**70)])
STRUCTS = [
    np.dtype([("a", "<i4"), ("b", "<i4")], align=True),
    np.dtype([("xy", "<f8", (2,)), ("id", "<u4"), ("flag", "<u4")], align=True),
    np.dtype([("é", "<i2"), ("s", "|S2")], align=True),
]
def rarray(extra=()):
    """A random array; `extra` adds dtypes only parsing can take (big-endian, unaligned structs)."""
    dt = np.dtype(random.choice(["<i4", "<f8", "|u1", "|b1", "<i8", "<f4", "|S3", "<u2", "<f2"] + STRUCTS + list(extra)))
    shape = tuple(random.randint(0, 3) for _ in range(random.randint(0, 3)))
    n = int(np.prod(shape)) if shape else 1
    a = np.frombuffer(bytes(random.getrandbits(8) for _ in range(n * dt.itemsize)), dt).reshape(shape).copy()
    if dt == np.dtype("|b1"): a = np.asarray(a.astype(np.uint8) % 2 == 1)
    r = random.random()
    if r < 0.2 and a.ndim == 2: a = a.T
    elif r < 0.3 and a.ndim >= 1 and a.shape[0] > 1: a = a[::2]
    return a
def rplain(d=0, keys=str):
    r = random.random()
    if d > 3 or r < 0.5:
        return random.choice([None, True, False, rint(), rfloat(), rstr()])
    if r < 0.75: return [rplain(d+1) for _ in range(random.randint(0, 3))]
    return {rstr(): rplain(d+1) for _ in range(random.randint(0, 3))}
def rmixed(d=0):
    r = random.random()
    if d > 3 or r < 0.4:
        return random.choice([None, True, rint(), rfloat(), rstr(), rarray(), bytes(random.getrandbits(8) for _ in range(random.randint(0,3)))])
    if r < 0.7: return [rmixed(d+1) for _ in range(random.randint(1, 3))]
    if r < 0.8: return tuple(rmixed(d+1) for _ in range(random.randint(1, 3)))
    return {rstr(): rmixed(d+1) for _ in range(random.randint(1, 3))}

NUMSTR = [" 1_000 ", "1e5", "inf", "-Infinity", "nan", "0x10", "+5", "-", "", " 7\n", "1__0", "_1", "1.", ".5", "5e", "1e-7",
          "0001", "-0", "  -3.25e2\t", "True", "9" * 30]
def rkey():
    return random.choice([rstr(), rstr(), random.randint(-5, 50), random.choice([1.5, -0.0, float("inf")]), True, None])
def rnpscalar():
    with np.errstate(all="ignore"):
        kind = random.choice([np.float16, np.float32, np.float64, np.int32, np.uint8, np.bool_])
        if kind in (np.int32, np.uint8):
            return kind(random.randint(0, 255))
        return kind(random.choice([rfloat(), random.randint(-100, 100), 0.1, 1e-5, 65504.0]))

def rpy(d=0):
    """Python values of any kind seamless-core's str()/repr paths meet."""
    r = random.random()
    if d > 3 or r < 0.5:
        return random.choice([None, True, rint(), rfloat(), rstr(), bytes(random.getrandbits(8) for _ in range(random.randint(0, 4))), rnpscalar()])
    if r < 0.65: return [rpy(d+1) for _ in range(random.randint(0, 3))]
    if r < 0.8: return tuple(rpy(d+1) for _ in range(random.randint(0, 3)))
    return {rkey(): rpy(d+1) for _ in range(random.randint(0, 3))}

cases = []
def add(value, celltype):
    try:
        buf = serialize_sync(value, celltype, use_cache=False)
    except Exception as e:
        cases.append({"id": f"rnd-{len(cases)}-{celltype}", "celltype": celltype, "value": enc(value), "value_repr": repr(value)[:200],
                      "expected": {"ok": False, "error_type": type(e).__name__, "error_message": str(e)}, "_inv": True})
        return
    try:
        v = Buffer(buf).get_value(celltype)
        if isinstance(v, Buffer): v = v.content
        pb = {"ok": True, "value": enc(v)}
    except Exception as e:
        pb = {"ok": False, "error_type": type(e).__name__, "error_message": str(e)}
    cases.append({"id": f"rnd-{len(cases)}-{celltype}", "celltype": celltype, "value": enc(value), "value_repr": repr(value)[:200],
                  "buffer_hex": bytes(buf).hex(), "checksum": hashlib.sha256(buf).hexdigest(), "deterministic": True, "parse_back": pb})

N = int(sys.argv[2]) if len(sys.argv) > 2 else 300
for _ in range(N):
    add(rpy(), random.choice(["text", "str", "bytes", "mixed", "plain"]))
    add(random.choice(NUMSTR), random.choice(["int", "float", "bool"]))
    add(rplain(), "plain")
    add(rplain(), random.choice(["text", "str", "bytes", "int", "float", "bool"]))
    add(random.choice([rstr(), rfloat(), rint(), str(rint()), " %s " % rfloat()]), random.choice(["str", "int", "float", "bool", "text"]))
    add(rmixed(), "mixed")
    add(rarray(), random.choice(["binary", "mixed", "bytes"]))
    add(rplain(), random.choice(["mixed", "binary"]))
FRAGS = ['1', '-0', '01', '1.', '1e5', '2.5E-3', '1E400', '-1e-400', '18446744073709551616', '"a"', '"\\ud800"', '"\\ud83d\\ude00"',
         '"\\u00e9"', 'NaN', 'Infinity', '-Infinity', 'true', 'null', '[', ']', '{', '}', ',', ':', ' ', '\n', '\r', '\t',
         '"x"', '\\', '"', '\x01', 'é', '\ufeff', '{"a": 1, "a": 2}', '"\\n"', '-', '0.0', '[1, 2]', '{"k": [true]}']
def rtext():
    r = random.random()
    if r < 0.3:
        return json.dumps(rplain(), ensure_ascii=random.random() < 0.5, indent=random.choice([None, 2])) + "\n" * random.randint(0, 2)
    return "".join(random.choice(FRAGS) for _ in range(random.randint(0, 5)))
des = []
def add_des(buf, celltype, compare_message=True):
    try:
        v = Buffer(buf).get_value(celltype)
        if isinstance(v, Buffer): v = v.content
        exp = {"ok": True, "value": enc(v)}
    except Exception as e:
        name = type(e).__name__
        if not compare_message and name in ("JSONDecodeError", "TokenError", "IndexError", "error", "SyntaxError"): name = "ValueError"
        exp = {"ok": False, "error_type": name, "error_message": str(e) if compare_message else ""}
    des.append({"id": f"rdes-{len(des)}-{celltype}", "celltype": celltype, "buffer_hex": bytes(buf).hex(), "expected": exp})
for _ in range(N):
    t = rtext().encode("utf-8", "surrogatepass")
    for ct in random.sample(["plain", "str", "int", "float", "bool", "mixed", "binary", "checksum", "text"], 3):
        add_des(t, ct)
    arr = np.asarray(rarray(extra=[">f8", ">i4", np.dtype([("a", "<i4"), ("b", "<f8")]), np.dtype([("a", ">u2"), ("b", "|b1")])]))
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    npy = buf.getvalue()
    r = random.random()
    if r < 0.4:
        npy = npy[:random.randint(0, len(npy))]
    elif r < 0.8:
        k = random.randint(10, min(len(npy), 80) - 1)
        npy = npy[:k] + bytes([random.getrandbits(8)]) + npy[k+1:]
    add_des(npy, random.choice(["binary", "mixed"]), compare_message=False)
    mixed = serialize_sync({"a": np.asarray(rarray()), "b": rplain()}, "mixed", use_cache=False)
    if random.random() < 0.5:
        mixed = mixed[:random.randint(0, len(mixed))]
    add_des(mixed, "mixed", compare_message=False)
ser = [c for c in cases if not c.get("_inv")]
inv = [c for c in cases if c.get("_inv")]
for c in inv: del c["_inv"]
json.dump({"serialize": ser, "invalid_serialize": inv, "deserialize": des}, sys.stdout)
