"""dlcv reaches the libraries it builds on through their public names only: a private one changes without notice."""

from __future__ import annotations

import ast
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "src" / "dlcv"


def private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def library_names(tree: ast.AST) -> dict[str, str]:
    """Local name -> the library module (or module attribute) it is bound to, for every non-dlcv import."""
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] != "dlcv":
                    names[alias.asname or alias.name.split(".")[0]] = alias.name
        elif (isinstance(node, ast.ImportFrom) and node.module and node.level == 0
              and not node.module.startswith("dlcv")):
            for alias in node.names:
                names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return names


def uses_of_private_names(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and not node.module.startswith("dlcv"):
            parts = node.module.split(".") + [alias.name for alias in node.names]
            found += [f"{path.name}:{node.lineno} from {node.module} import {p}" for p in parts if private(p)]
        elif isinstance(node, ast.Import):
            found += [f"{path.name}:{node.lineno} import {a.name}" for a in node.names
                      if any(private(p) for p in a.name.split("."))]
    libraries = library_names(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and private(node.attr):
            root = node.value
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id in libraries:
                found.append(f"{path.name}:{node.lineno} {root.id}...{node.attr}")
    return found


def test_no_module_of_dlcv_uses_a_private_name_of_a_library():
    found = [use for path in sorted(SOURCE.rglob("*.py")) for use in uses_of_private_names(path)]
    assert found == []


def test_the_check_finds_each_way_of_reaching_a_private_name(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import torch\nfrom torchvision.transforms import v2\n"
                      "from torchvision.transforms.v2.functional._geometry import affine\n"
                      "from segment_anything import _hidden\n"
                      "torch._foreach_lerp_([], [], 0.5)\nspace = v2.RandAugment._AUGMENTATION_SPACE\n"
                      "ok = torch.__version__\n")
    assert len(uses_of_private_names(sample)) == 4
