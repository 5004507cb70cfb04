"""Execute the notebooks in notebooks/ through a real Jupyter kernel and save them with their outputs.

    python tools/run_notebooks.py                     # every notebook, full mode, outputs written in place
    python tools/run_notebooks.py 04 05               # only the notebooks whose names start with these
    NANOSGM_QUICK=1 python tools/run_notebooks.py --check    # run, but write nothing (what the tests do)

MNIST is read through NANOSGM_DATA (an absolute path; a relative one is resolved here, against the folder
this command was started in, before the kernel starts in notebooks/). The kernel imports the nanosgm of
this checkout (PYTHONPATH), draws figures as PNG (matplotlib's inline backend, whatever MPLBACKEND says)
and starts in notebooks/, as Jupyter does. Each notebook's wall time is printed.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
NB_DIR = ROOT / "notebooks"
CELL_TIMEOUT_S = 1200
INLINE = "module://matplotlib_inline.backend_inline"


def kernel_env(quick: bool, base=None) -> dict:
    """The kernel's environment: `base` (default os.environ) with this checkout first on PYTHONPATH,
    NANOSGM_QUICK set or removed, inline PNG figures, and an absolute NANOSGM_DATA."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    env["MPLBACKEND"] = INLINE
    if quick:
        env["NANOSGM_QUICK"] = "1"
    else:
        env.pop("NANOSGM_QUICK", None)
    if env.get("NANOSGM_DATA"):
        env["NANOSGM_DATA"] = str(pathlib.Path(env["NANOSGM_DATA"]).expanduser().resolve())
    for name in ("NANOSGM_MODEL", "NANOSGM_BACKEND"):   # the committed outputs come from the defaults
        env.pop(name, None)
    return env


def execute(path, env: dict, cwd) -> "nbformat.NotebookNode":
    """Run the notebook at `path` top to bottom in a fresh kernel started in `cwd` with `env`; returns the
    executed notebook (the file itself is not modified). A failing cell raises nbclient's CellExecutionError."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(str(path), as_version=4)
    client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3", record_timing=False,
                            resources={"metadata": {"path": str(cwd)}})
    client.execute(env=env, cwd=str(cwd))
    return nb


def notebooks(prefixes=()) -> list[pathlib.Path]:
    found = sorted(NB_DIR.glob("*.ipynb"))
    return [p for p in found if not prefixes or any(p.name.startswith(s) for s in prefixes)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("prefixes", nargs="*", help="run only notebooks whose file names start with these")
    p.add_argument("--check", action="store_true", help="execute but do not write the outputs back")
    args = p.parse_args(argv)
    import nbformat

    quick = os.environ.get("NANOSGM_QUICK") == "1"
    if quick and not args.check:
        p.error("NANOSGM_QUICK=1 would commit rough QUICK outputs; unset it, or add --check")
    env = kernel_env(quick)
    chosen = notebooks(args.prefixes)
    if not chosen:
        p.error(f"no notebook in {NB_DIR} starts with {', '.join(args.prefixes)}")
    for path in chosen:
        start = time.perf_counter()
        nb = execute(path, env, NB_DIR)
        wall = time.perf_counter() - start
        if not args.check:
            nbformat.write(nb, str(path))
        size = path.stat().st_size / 1e6
        print(f"{path.name}: {wall:6.1f} s{'' if args.check else f', {size:.2f} MB written'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
