"""The names a traced model may call in this interpreter's torch, as JSON.

``dlcv.plain_source`` checks an exported model's operations against the file for the course machine's torch
(``src/dlcv/export_api/``).

Run under the interpreter whose torch is described (no dlcv needed), e.g. Debian's python3-torch, the course
machine's stand-in: ``/usr/bin/python3 tools/torch_api.py > src/dlcv/export_api/torch-1.13.json``.
"""
import inspect
import json
import sys

import torch
import torch.nn.functional as F
from torch import nn


def parameters(function):
    """The parameter names of a Python function, or None where it has no signature (a C function) or takes any
    keyword (``**kwargs``: a dispatcher such as adaptive_max_pool2d's)."""
    try:
        params = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return None
    return None if any(p.kind == p.VAR_KEYWORD for p in params) else sorted(p.name for p in params)


def public(module):
    return sorted(name for name in dir(module) if not name.startswith("__"))


def main():
    modules = {name: parameters(getattr(nn, name).__init__) for name in public(nn)
               if inspect.isclass(getattr(nn, name)) and issubclass(getattr(nn, name), nn.Module)}
    api = {"torch": torch.__version__.split("+")[0].split("a")[0],
           "namespaces": {"torch": public(torch), "torch.nn.functional": public(F),
                          "torch._C._nn": public(torch._C._nn), "torch.Tensor": public(torch.Tensor),
                          "torch.fft": public(torch.fft), "torch.linalg": public(torch.linalg),
                          "torch.special": public(torch.special)},
           "keywords": {"torch.nn.functional." + name: parameters(getattr(F, name)) for name in public(F)
                        if callable(getattr(F, name)) and parameters(getattr(F, name)) is not None},
           "modules": modules}
    json.dump(api, sys.stdout, indent=None, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
