"""Exit 0 when two HDF5 files hold the same objects, every dataset equal bit for
bit (values and dtype) and every attribute equal; else say the first difference.
Used by the cluster checks (tools/slurm/check.sh, tools/k8s/check.sh) to compare
a merged feature file with an unsharded extraction.

    python tools/h5_same.py A.h5 B.h5
"""
import sys

import h5py
import numpy as np


def objects(f):
    out = {"/": f}
    f.visititems(lambda name, obj: out.__setitem__(name, obj))
    return out


def main(a_path, b_path):
    with h5py.File(a_path, "r") as a, h5py.File(b_path, "r") as b:
        oa, ob = objects(a), objects(b)
        if sorted(oa) != sorted(ob):
            return f"objects differ: {sorted(oa)} vs {sorted(ob)}"
        for name, x in oa.items():
            y = ob[name]
            if isinstance(x, h5py.Dataset):
                vx, vy = x[()], y[()]
                if vx.dtype != vy.dtype or not np.array_equal(vx, vy):
                    return f"dataset {name} differs"
            if sorted(x.attrs) != sorted(y.attrs):
                return f"attributes of {name} differ: {sorted(x.attrs)} vs {sorted(y.attrs)}"
            for k in x.attrs:
                if not np.array_equal(np.asarray(x.attrs[k]), np.asarray(y.attrs[k])):
                    return f"attribute {k} of {name} differs: {x.attrs[k]!r} vs {y.attrs[k]!r}"
        rows = a["data"].shape[0] if "data" in a else 0
        print(f"same: {rows} rows, {len(oa)} objects, every dataset and attribute equal")
    return None


if __name__ == "__main__":
    err = main(*sys.argv[1:3])
    if err:
        print(f"h5_same: {sys.argv[1]} and {sys.argv[2]}: {err}", file=sys.stderr)
        sys.exit(1)
