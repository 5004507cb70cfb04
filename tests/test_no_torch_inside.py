"""torch is a test oracle only: no module under nanosgm/ imports it at import time."""
import pathlib
import subprocess
import sys

import nanosgm

PACKAGE = pathlib.Path(nanosgm.__file__).parent
MODULES = sorted("nanosgm." + ".".join(p.relative_to(PACKAGE).with_suffix("").parts)
                 for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" and p.name != "__main__.py")


def test_importing_every_module_never_imports_torch():
    code = "import sys\n" + "".join(f"import {m}\n" for m in MODULES) + \
        "assert 'torch' not in sys.modules, 'torch was imported'\nprint(len(sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_no_autodiff_library_is_imported_at_module_level():
    for path in PACKAGE.rglob("*.py"):
        for line in path.read_text().splitlines():
            if not line.startswith((" ", "\t")):          # module level only (bench.py, torch_bridge.py import torch lazily)
                assert not line.startswith(("import torch", "from torch", "import jax", "from jax",
                                            "import autograd")), f"{path}: {line}"
