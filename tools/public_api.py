#!/usr/bin/env python3
"""Counts the xfer library's public API: what a crate outside it can name.

rustdoc's JSON (stable toolchain, unstable flag allowed by RUSTC_BOOTSTRAP):

    RUSTC_BOOTSTRAP=1 cargo rustdoc --release --lib -- -Z unstable-options --output-format json
    python3 tools/public_api.py [target/doc/xfer.json] [--list]

Prints two tables. "paths": the entries of the JSON's `paths` map that belong
to the crate (crate_id 0), by kind: every module, type, function, constant...
reachable by a path from outside (re-exports counted where the item lives).
"members": the public methods, associated constants and fields of those
types, and the `pub use` re-exports (`use`): the `index` items marked public
that `paths` does not hold. --list prints
the paths themselves. docs/ARCHITECTURE.md ("The front door") quotes the
totals; rerun after changing what the library makes `pub`.
"""
import collections
import json
import sys

args = [a for a in sys.argv[1:] if not a.startswith("--")]
doc = json.load(open(args[0] if args else "target/doc/xfer.json"))
paths = {k: v for k, v in doc["paths"].items() if v["crate_id"] == 0}
by_kind = collections.Counter(v["kind"] for v in paths.values())
members = collections.Counter(
    next(iter(item["inner"])) if isinstance(item["inner"], dict) else item["inner"]
    for key, item in doc["index"].items()
    if item["crate_id"] == 0 and item["visibility"] == "public" and key not in paths
)
for title, counts in (("paths", by_kind), ("members", members)):
    print(f"{title}: {sum(counts.values())}")
    for kind, n in counts.most_common():
        print(f"  {kind:<16}{n:>5}")
if "--list" in sys.argv:
    for v in sorted(paths.values(), key=lambda v: v["path"]):
        print(f"{v['kind']:<12}{'::'.join(v['path'])}")
