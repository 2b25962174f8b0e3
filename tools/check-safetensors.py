#!/usr/bin/env python3
"""check-safetensors.py - an independent reader of safetensors files.

Parses FILE per the safetensors spec with Python's own json module (not
cJSON), checks it as the reference implementation does, and prints a TSV
line per tensor: name, dtype, shape, first values, sum.  Metadata go to
stderr.  Exit 1 with one line on stderr if the file is invalid.

Used to check by hand that files written by libcore's checkpoint writer are
read by another implementation:  tools/check-safetensors.py weights/x.safetensors
"""
import json
import struct
import sys

SIZES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2,
         "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}
FORMATS = {"I32": "i", "F32": "f", "I64": "q", "F64": "d", "U8": "B", "I8": "b"}


def no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("duplicate key in the header")
    return dict(pairs)


def read(path):
    with open(path, "rb") as fp:
        buf = fp.read()
    if len(buf) < 8:
        raise ValueError("shorter than 8 bytes")
    (n,) = struct.unpack("<Q", buf[:8])
    if n > 100_000_000 or 8 + n > len(buf):
        raise ValueError(f"bad header length {n} for a file of {len(buf)} bytes")
    header = json.loads(buf[8:8 + n].decode("utf-8"), object_pairs_hook=no_duplicates)
    if not isinstance(header, dict):
        raise ValueError("header is not an object")
    meta = header.pop("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise ValueError("__metadata__ is not a map of strings")
    data = buf[8 + n:]
    end = 0
    tensors = []
    for name, t in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"]):
        begin, stop = t["data_offsets"]
        count = 1
        for d in t["shape"]:
            if not isinstance(d, int) or d < 0:
                raise ValueError(f"{name}: bad shape {t['shape']}")
            count *= d
        if begin != end or stop - begin != count * SIZES[t["dtype"]]:
            raise ValueError(f"{name}: data_offsets {t['data_offsets']} do not follow {end}")
        end = stop
        tensors.append((name, t["dtype"], t["shape"], data[begin:stop]))
    if end != len(data):
        raise ValueError(f"tensors end at {end}, data holds {len(data)} bytes")
    return meta, tensors, 8 + n


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: check-safetensors.py FILE")
    try:
        meta, tensors, data_start = read(sys.argv[1])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, json.JSONDecodeError) as e:
        sys.exit(f"{sys.argv[1]}: {e}")
    for k, v in meta.items():
        print(f"meta\t{k}\t{v}", file=sys.stderr)
    print(f"data starts at byte {data_start} (8-aligned: {data_start % 8 == 0})", file=sys.stderr)
    print("name\tdtype\tshape\tfirst\tsum")
    for name, dtype, shape, raw in tensors:
        fmt = FORMATS.get(dtype)
        vals = struct.unpack(f"<{len(raw) // SIZES[dtype]}{fmt}", raw) if fmt else ()
        first = ",".join(f"{v:.9g}" for v in vals[:4])
        print(f"{name}\t{dtype}\t{'x'.join(map(str, shape))}\t{first}\t{sum(vals):.9g}")


if __name__ == "__main__":
    main()
