"""ResNet parity fixtures for tests/it/resnet.rs.

Run from the repository root:
    /work/pyref/bin/python scripts/reference/resnet_fixtures.py
(any Python with torch, torchvision and numpy: `pip install torch torchvision numpy`).

Writes into tests/fixtures/resnet/:
  features.json  torchvision resnet18/resnet50 (eval) pooled features of formula inputs, with
                 formula weights that src/model/resnet/formula.rs computes bit for bit the same
                 way (splitmix64 over (fnv1a64(name), k)); no weights are committed.
  small.pth      a tiny torch.save state_dict: f32, f16, a non-contiguous tensor, a parameter,
                 torchvision's nested `_metadata` OrderedDict; values are formula values.
  evil.pth       a torch.save file whose pickle calls os.system; loading it must be refused.
"""

import collections
import json
import os
import pathlib

import numpy as np
import torch
import torchvision

OUT = pathlib.Path("tests/fixtures/resnet")
M64 = (1 << 64) - 1
GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def fnv1a64(s):
    h = 0xCBF29CE484222325
    for b in s.encode():
        h = ((h ^ b) * 0x100000001B3) & M64
    return h


def values(name, n, lo, hi):
    """Mirror of formula::values: f64 arithmetic, rounded to f32 at the end."""
    seed = np.uint64(fnv1a64(name))
    k = np.arange(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = seed + (k + np.uint64(1)) * GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    u = (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    return (lo + (hi - lo) * u).astype(np.float32)


def value_range(name, shape):
    """Mirror of formula::range."""
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    if name.endswith("running_var"):
        return 0.5, 1.5
    if name.endswith("running_mean"):
        return -0.2, 0.2
    if name == "fc.weight":
        b = 1.0 / np.sqrt(float(fan_in))
        return -b, b
    if name == "fc.bias":
        return -0.01, 0.01
    if len(shape) == 4:
        b = np.sqrt(6.0 / float(fan_in))
        return -b, b
    if name.endswith("weight"):
        return 0.5, 1.0
    return -0.2, 0.2


def formula_tensor(name, shape, lo=None, hi=None):
    if lo is None:
        lo, hi = value_range(name, list(shape))
    n = int(np.prod(shape))
    return torch.from_numpy(values(name, n, lo, hi).reshape(shape))


def formula_model(arch):
    model = getattr(torchvision.models, arch)(weights=None).eval()
    sd = model.state_dict()
    new = collections.OrderedDict()
    for name, t in sd.items():
        if name.endswith("num_batches_tracked"):
            new[name] = t
        else:
            new[name] = formula_tensor(name, tuple(t.shape))
    model.load_state_dict(new)
    return model, len([k for k in sd if not k.endswith("num_batches_tracked")])


def features(model, x):
    trunk = torch.nn.Sequential(*list(model.children())[:-1])
    with torch.no_grad():
        return torch.flatten(trunk(x), 1)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    out = {"input": {"name": "input", "shape": [2, 3, 224, 224], "lo": -2.0, "hi": 2.0}}
    x = formula_tensor("input", (2, 3, 224, 224), -2.0, 2.0)
    for arch in ["resnet18", "resnet50"]:
        model, n_params = formula_model(arch)
        f = features(model, x.clone())
        logits = model.fc(f)
        out[arch] = {
            "state_dict_len": n_params,
            "features": [[float(v) for v in row] for row in f.tolist()],
            "logits_first10": [[float(v) for v in row[:10]] for row in logits.tolist()],
        }
        print(arch, "feature max", float(f.abs().max()), "dim", f.shape[1])
    with open(OUT / "features.json", "w") as fh:
        json.dump(out, fh)

    # A small state_dict shaped like torchvision's: OrderedDict with `_metadata`.
    sd = collections.OrderedDict()
    sd["conv.weight"] = formula_tensor("conv.weight", (4, 3, 3, 3), -1.0, 1.0)
    sd["bn.running_var"] = formula_tensor("bn.running_var", (4,), 0.5, 1.5)
    sd["bn.num_batches_tracked"] = torch.tensor(7, dtype=torch.long)
    sd["half.weight"] = formula_tensor("half.weight", (5, 6), -1.0, 1.0).half()
    # Saved as a transposed view of a larger storage: strides (1, 5), not contiguous.
    sd["transposed"] = formula_tensor("transposed", (6, 5), -1.0, 1.0).t()
    sd["param"] = torch.nn.Parameter(formula_tensor("param", (3,), -1.0, 1.0))
    sd._metadata = collections.OrderedDict([("", {"version": 1}), ("bn", {"version": 2})])
    torch.save(sd, OUT / "small.pth")

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > /tmp/captioner_pwned",))

    torch.save({"w": torch.zeros(2), "x": Evil()}, OUT / "evil.pth")
    for p in sorted(OUT.iterdir()):
        print(p, p.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
