"""The equations in docs/equations.md and in the notebooks' markdown are typeset math ($...$, $$...$$), not
Unicode inside code spans (where subscripts like w_{i→j} show literally); code identifiers stay in code
spans. And the READMEs say which notebooks read MNIST as the notebooks' code does."""
import json
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))

MATH_ONLY = re.compile(r"[∂Σ∇≈≤≥‖√Υ]|_\{")                  # never part of a Python identifier or call
SUBSCRIPT = re.compile(r"\b[A-Za-z]_(?:[A-Za-z0-9]\b|\{)")   # X_t, E_k, w_{ij}: math written as text


def _markdown_texts():
    yield "docs/equations.md", (ROOT / "docs" / "equations.md").read_text(encoding="utf-8")
    for path in NOTEBOOKS:
        for i, cell in enumerate(json.loads(path.read_text(encoding="utf-8"))["cells"]):
            if cell["cell_type"] == "markdown":
                yield f"{path.name} cell {i}", "".join(cell["source"])


def _split(text):
    """(code spans, prose outside math and code) of a markdown text."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    text = re.sub(r"\$\$.*?\$\$", "", text, flags=re.S)
    text = re.sub(r"\$[^$\n]+\$", "", text)
    return re.findall(r"`([^`\n]+)`", text), re.sub(r"`[^`\n]+`", "", text)


def test_there_is_math_to_check():
    texts = dict(_markdown_texts())
    assert len(texts) > 60 and sum(t.count("$") for t in texts.values()) > 800


def test_equations_are_math_not_code_spans():
    wrong = []
    for where, text in _markdown_texts():
        spans, prose = _split(text)
        wrong += [f"{where}: `{s}`" for s in spans if MATH_ONLY.search(s)]
        wrong += [f"{where}: {line.strip()}" for line in prose.splitlines()
                  if MATH_ONLY.search(line) or SUBSCRIPT.search(line)]
        if len(re.findall(r"\$\$", text)) % 2 or text.replace("$$", "").count("$") % 2:
            wrong.append(f"{where}: an unclosed $ or $$")
    assert wrong == []


def _notebooks_said(text):
    """The notebook numbers each "Notebooks 02–05 ..." or "Notebooks 02–05 and 07 ..." phrase in ``text`` names."""
    ranges = re.findall(r"Notebooks (\d\d)[–-](\d\d)(?: and (\d\d))?", text)
    assert ranges, "no 'Notebooks NN–NN' range found"
    return [{f"{n:02d}" for n in range(int(a), int(b) + 1)} | ({c} if c else set()) for a, b, c in ranges]


def test_the_readme_and_notebook_01_name_the_notebooks_that_read_mnist():
    loads = {p.name[:2] for p in NOTEBOOKS
             if re.search(r"""data\.load\(\s*["']mnist["']""", "".join(
                 "".join(c["source"]) for c in json.loads(p.read_text(encoding="utf-8"))["cells"]
                 if c["cell_type"] == "code"))}
    assert {"02", "03", "04", "05"} <= loads             # the search finds the notebooks known to read MNIST
    readme = (ROOT / "notebooks" / "README.md").read_text(encoding="utf-8")
    first_code = next("".join(c["source"]) for c in json.loads(NOTEBOOKS[0].read_text(encoding="utf-8"))["cells"]
                      if c["cell_type"] == "code")
    assert _notebooks_said(readme) == [loads]
    assert _notebooks_said(first_code) == [loads]
