"""Screenshots of the rendered documentation, taken in headless Chromium:
``python tools/screenshots.py [--out docs/screenshots]``.

    api-index.png           the API reference's front page (built by tools/build_docs.py)
    api-layers.png          its page of nanosgm.layers.base (the layer contract)
    notebook06-fig1-2.png   notebook 06's section 6 (Figures 1-2) as Jupyter renders it (nbconvert's
                            lab template, from the committed outputs: nothing is executed)

Needs pdoc and nbconvert (``pip install pdoc nbconvert``) and a Chromium binary (``--chromium``, default
the first of chromium, chromium-browser, google-chrome on PATH). Chromium runs with no network access
it needs: every page is a local file.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "06_reproducing_tables_4_and_5.ipynb"
SECTION = "## 6. Figures 1"             # the markdown cell that opens the section shown
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars"]


def find_chromium(name: str | None) -> str:
    for candidate in ([name] if name else ["chromium", "chromium-browser", "google-chrome"]):
        path = shutil.which(candidate)
        if path:
            return path
    raise SystemExit("error: no Chromium found; install it (Debian: apt install chromium) or pass --chromium PATH")


def shoot(chromium: str, page: Path, png: Path, size: str, profile: Path) -> None:
    """One screenshot of the local file ``page`` at window ``size`` ("W,H") into ``png``."""
    cmd = [chromium, *FLAGS, f"--user-data-dir={profile}", f"--window-size={size}",
           f"--screenshot={png}", page.as_uri()]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    if not png.is_file():
        raise SystemExit(f"error: Chromium wrote no screenshot for {page}")
    print(f"{png.relative_to(ROOT) if png.is_relative_to(ROOT) else png}: {page.name} at {size}")


def section_html(notebook: Path, heading: str, out: Path) -> Path:
    """The cells of ``notebook`` from the markdown cell starting with ``heading`` to the next markdown
    heading, exported with nbconvert's lab template (as Jupyter shows them), to ``out``."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(str(notebook), as_version=4)
    start = next(i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and c.source.startswith(heading))
    end = next((i for i in range(start + 1, len(nb.cells))
                if nb.cells[i].cell_type == "markdown" and nb.cells[i].source.startswith("#")), len(nb.cells))
    nb.cells = nb.cells[start:end]
    html, _ = HTMLExporter(template_name="lab").from_notebook_node(nb)
    out.write_text(html, encoding="utf-8")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(ROOT / "docs" / "screenshots"), help="folder for the PNG files")
    p.add_argument("--chromium", default=None, help="the Chromium binary (default: found on PATH)")
    args = p.parse_args(argv)
    chromium = find_chromium(args.chromium)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        subprocess.run([sys.executable, str(ROOT / "tools" / "build_docs.py"), "--out", str(tmp / "api")], check=True)
        shoot(chromium, tmp / "api" / "nanosgm.html", out / "api-index.png", "1280,1400", tmp / "profile")
        shoot(chromium, tmp / "api" / "nanosgm" / "layers" / "base.html", out / "api-layers.png", "1280,1400",
              tmp / "profile")
        page = section_html(NOTEBOOK, SECTION, tmp / "notebook06.html")
        shoot(chromium, page, out / "notebook06-fig1-2.png", "1100,1500", tmp / "profile")
    return 0


if __name__ == "__main__":
    sys.exit(main())
