"""Markdown tables of committed protocols beside the paper: ``python tools/results_tables.py results/mnist-cnn ...``.

For each protocol folder (its ``protocol.json``; no training, no data): every Table 4 and Table 5 cell
that was measured, per arm, as "median [min-max]" of the control and of the arm, their median paired
difference and the Wilcoxon p-value, beside the paper's control / updates / difference; then the PGD
cells, the pooled tests and how far each arm moved the stored images; last, the verdict on each of the
paper's claims by the fixed rules of :mod:`nanosgm.experiments.verdicts`. This is what results/README.md quotes:
``python tools/results_tables.py --update results/README.md`` rewrites its marked table blocks.

``--conventions FOLDER ...`` (and a block ``<!-- results_conventions: FOLDER ... -->``): per protocol, every
measured Table 4-5 cell with FGSM accuracy under both conventions of :mod:`nanosgm.attacks.conventions`
side by side (the inference-mode FGSM and the authors'), beside the paper, and each claim's verdict per
convention; a folder without ``protocol.json`` yet is listed as pending.

``--decomposition FOLDER ...`` (and a block ``<!-- results_decomposition: FOLDER ... -->``): per protocol, its
``decomposition.json`` (``python -m nanosgm.decompose``; seal checked) as one table: for each factor of the
authors' FGSM alone, the authors' reading with and without the clip, and its attack batch sizes, the control's
FGSM accuracy with its paired difference from the inference-mode FGSM, and each arm's paired gain over the
control under that reading; a folder without ``decomposition.json`` yet is listed as pending.

``--length LONG SHORT`` (and a block ``<!-- results_length: LONG SHORT -->``): two protocols of the same seeds
at different run lengths (the 50-epoch MNIST-CNN beside the 10-epoch one), the paper's claims judged on their
common runs at each length by the same rules (:mod:`nanosgm.experiments.length`), and whether a verdict changed.
"""
from __future__ import annotations

import os
import re
import shlex
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from nanosgm import experiments
from nanosgm.experiments import paper_tables, verdicts  # noqa: E402
from nanosgm.methods.base import format_number  # noqa: E402
from nanosgm.plumbing.cli import CliError, run_cli  # noqa: E402
from nanosgm.plumbing.files import atomic_write  # noqa: E402


def _base(folder) -> str:
    """A protocol folder's name, as a README block names it (``results/mnist-cnn-ten/`` -> ``mnist-cnn-ten``)."""
    return os.path.basename(os.path.normpath(str(folder)))


def _mr(s) -> str:
    return f"{s['median']:.2f} [{s['min']:.2f}–{s['max']:.2f}]" if s["per_run"] else "–"


def _p(w) -> str:
    return f"{w['p']:.3f}" if w["n"] else "–"


def _row(label, arm, b, paper) -> str:
    pc, pu = paper if paper else (None, None)
    ppart = f"{pc:.2f} / {pu:.2f} / {pu - pc:+.2f}" if pc is not None else "–"
    return (f"| {label} | {arm} | {len(b['arm']['per_run'])} | {_mr(b['control'])} | {_mr(b['arm'])} | "
            f"{b['wilcoxon']['median_diff']:+.2f} | {_p(b['wilcoxon'])} | {ppart} |")


def _shift(result, arm) -> str:
    nets = [r for k, r in result["networks"].items() if k.split("/", 1)[1] == arm]
    shifts = [r["history"][-1].get("input_shift_max") for r in nets if r["history"]]
    means = [r["history"][-1].get("input_shift_mean") for r in nets if r["history"]]
    if not shifts:
        return "–"
    if shifts[0] is None:
        return "0 (the stored images never move)"
    return f"max {min(shifts):.3g}–{max(shifts):.3g}, mean {min(means):.2g}–{max(means):.2g}"


def tables(folder) -> str:
    if not os.path.isfile(os.path.join(_folder(folder), "protocol.json")):
        raise CliError(f"{folder} holds no protocol.json; give a folder that python -m nanosgm.experiments wrote")
    result = experiments.load_protocol(folder)
    cfg = result["config"]
    summary = experiments.summarize(result)
    name = experiments.paper_experiment_name(cfg["dataset"], cfg["model"], cfg["augment"])
    p4 = paper_tables.lookup(paper_tables.TABLE4, name)
    p5 = paper_tables.lookup(paper_tables.TABLE5, name)
    head = ("| cell | arm | pairs | control, median [range] | arm, median [range] | Δ median | Wilcoxon p | "
            "paper control / updates / Δ |\n| --- | --- | --- | --- | --- | --- | --- | --- |")
    lines = [f"### {name or folder}: {cfg['model']}, {cfg['epochs']} epochs, optimizer {cfg['optimizer']}, "
             f"{len(result['networks'])} networks recorded", "", head]
    for arm, s in summary.items():
        if s["runs"]:
            lines.append(_row("clean (Table 4)", arm, s["clean"], (p4["control"], p4["updates"]) if p4 else None))
    for e in [float(x) for x in cfg["eps"]]:
        for arm, s in summary.items():
            if s["fgsm"]:
                paper = (p5["control"][e], p5["updates"][e]) if p5 and e in p5["control"] else None
                lines.append(_row(f"FGSM ε={format_number(e)} (Table 5)", arm, s["fgsm"][e], paper))
    for e in [float(x) for x in cfg["eps"]]:
        for arm, s in summary.items():
            if s["pgd"]:
                lines.append(_row(f"PGD-{cfg['pgd_steps']} ε={format_number(e)}, first {cfg['pgd']}", arm, s["pgd"][e], None))
    lines += ["", "| arm | pooled FGSM cells: n, Δ median, p | pooled PGD cells: n, Δ median, p | how far the stored images moved, abs(X_t − X_0) after the last epoch |",
              "| --- | --- | --- | --- |"]
    for arm, s in summary.items():
        if not s["runs"]:                   # an arm named in the protocol but without a finished network yet
            continue
        f, g = s.get("pooled_fgsm"), s.get("pooled_pgd")
        fp = f"{f['n']}, {f['median_diff']:+.2f}, {f['p']:.3g}" if f else "–"
        gp = f"{g['n']}, {g['median_diff']:+.2f}, {g['p']:.3g}" if g else "–"
        lines.append(f"| {arm} | {fp} | {gp} | {_shift(result, arm)} |")
    return "\n".join(lines + ["", verdict_table(result, summary)])


def verdict_table(result, summary=None) -> str:
    """The paper's claims, one row per arm and claim, judged by the rules of nanosgm.experiments.verdicts."""
    lines = ["| claim | arm | paper Δ | pairs | Δ median [range] | verdict | why |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for c in verdicts.claims(result, summary):
        lo, hi = c["range"]
        lines.append(f"| {c['claim']} | {c['arm']} | {c['paper_diff']:+.2f} | {c['pairs']} | "
                     f"{c['median_diff']:+.2f} [{lo:+.2f} to {hi:+.2f}] | **{c['verdict']}** | {c['reason']} |")
    return "\n".join(lines) if len(lines) > 2 else "(the paper has no such experiment: no claims to judge)"


#: the FGSM conventions side by side, in the order of nanosgm.experiments.verdicts.CONVENTIONS: name -> column title
_CONVENTION_TITLES = {"inference": "inference FGSM", "authors": "the authors' FGSM"}


def _paper_cell(paper) -> str:
    pc, pu = paper if paper else (None, None)
    return f"{pc:.2f} / {pu:.2f} / {pu - pc:+.2f}" if pc is not None else "–"


def _both_row(label, arm, paper, blocks) -> str:
    """One cell of the paper beside ours under each convention; ``blocks``: one block per convention of
    _CONVENTION_TITLES (None: not measured), or one block for clean accuracy, which no convention changes."""
    parts = []
    for b in blocks:
        parts += ["not measured", "", ""] if b is None else [_mr(b["control"]), _mr(b["arm"]),
                                                              f"{b['wilcoxon']['median_diff']:+.2f}"]
    if len(blocks) == 1:
        parts += ["the same (no attack)", "", ""]
    pairs = max(len(b["arm"]["per_run"]) for b in blocks if b)
    return f"| {label} | {arm} | {pairs} | {_paper_cell(paper)} | " + " | ".join(parts) + " |"


def _both_verdicts(result, summary) -> list:
    """The verdict rows of one protocol, the two conventions of one Table 5 claim next to each other."""
    rows = [(c, c["claim"].replace(verdicts.CLAIM_SUFFIX.get(c["convention"], ""), ""))
            for c in verdicts.claims(result, summary)]
    arms, bases = list(dict.fromkeys(c["arm"] for c, _ in rows)), list(dict.fromkeys(b for _, b in rows))
    conventions = [None, *_CONVENTION_TITLES]
    rows.sort(key=lambda r: (arms.index(r[0]["arm"]), bases.index(r[1]), conventions.index(r[0]["convention"])))
    lines = ["| arm | claim | convention | paper Δ | pairs | Δ median [range] | verdict | why |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for c, base in rows:
        lo, hi = c["range"]
        conv = _CONVENTION_TITLES.get(c["convention"], "–")
        lines.append(f"| {c['arm']} | {base} | {conv} | {c['paper_diff']:+.2f} | {c['pairs']} | "
                     f"{c['median_diff']:+.2f} [{lo:+.2f} to {hi:+.2f}] | **{c['verdict']}** | {c['reason']} |")
    if not any(c["convention"] for c, _ in rows):
        lines.append(f"\nNo Table 5 claim to judge: the paper's Δ is below {verdicts.GAIN_CLAIM:g} point at every ε "
                     f"(a claimed gain needs at least that, nanosgm.experiments.verdicts.GAIN_CLAIM).")
    return lines if rows else ["(the paper has no such experiment: no claims to judge)"]


def conventions_tables(folder, label=None) -> str:
    """Markdown for one protocol folder: its measured Table 4-5 cells, the paper beside ours under each FGSM
    convention (median [range] of the control and of the arm, median paired Δ), then the verdict of each
    claim per convention. A folder without protocol.json gives one line: pending."""
    label = label or _base(folder)
    if not os.path.isfile(os.path.join(folder, "protocol.json")):
        return f"### `{label}/`: pending (no protocol.json yet)"
    result = experiments.load_protocol(folder)
    cfg, summary = result["config"], experiments.summarize(result)
    name = experiments.paper_experiment_name(cfg["dataset"], cfg["model"], cfg["augment"])
    p4 = paper_tables.lookup(paper_tables.TABLE4, name)
    p5 = paper_tables.lookup(paper_tables.TABLE5, name)
    lines = [f"### {name or label} (`{label}/`): {cfg['model']}, {cfg['epochs']} epochs, optimizer {cfg['optimizer']}, "
             f"backend {cfg.get('backend', 'numpy')}, {len(result['networks'])} networks recorded", "",
             "| cell | arm | pairs | paper control / updates / Δ | "
             + " | ".join(f"{t}: control | arm | Δ median" for t in _CONVENTION_TITLES.values()) + " |",
             "| --- " * 10 + "|"]
    for arm, s in summary.items():
        if s["runs"]:
            lines.append(_both_row("clean (Table 4)", arm, (p4["control"], p4["updates"]) if p4 else None,
                                   [s["clean"]]))
    for e in [float(x) for x in cfg["eps"]]:
        for arm, s in summary.items():
            if s["fgsm"]:
                paper = (p5["control"][e], p5["updates"][e]) if p5 and e in p5["control"] else None
                blocks = [(s.get(kind) or {}).get(e) for kind, _ in verdicts.CONVENTIONS]
                lines.append(_both_row(f"FGSM ε={format_number(e)} (Table 5)", arm, paper, blocks))
    return "\n".join(lines + [""] + _both_verdicts(result, summary))


def _diffs_cell(c) -> str:
    return ", ".join(f"{d:+.2f}" for d in c["diffs"]) + f" → **{c['median_diff']:+.2f}**"


def length_table(long_folder, short_folder, long_label=None, short_label=None) -> str:
    """Markdown: the paper's claims judged on the runs two protocols share (same settings but the length, same
    initial weights), at each one's length, by the same rules (nanosgm.experiments.length.length_claims): per
    claim the paired gains per run and their median at each length, both verdicts, and whether the length
    changed it; then what was left out, and why. A folder without protocol.json gives one line: pending."""
    from nanosgm.experiments.length import MIN_LENGTH_PAIRS, length_claims
    long_label, short_label = long_label or _base(long_folder), short_label or _base(short_folder)
    for folder, label in ((long_folder, long_label), (short_folder, short_label)):
        if not os.path.isfile(os.path.join(folder, "protocol.json")):
            return f"### `{long_label}/` beside `{short_label}/`: pending (`{label}/` has no protocol.json yet)"
    try:
        cmp = length_claims(experiments.load_protocol(long_folder), experiments.load_protocol(short_folder))
    except ValueError as exc:
        raise CliError(f"{long_folder} beside {short_folder}: {exc}") from None
    (n_long, n_short), runs = cmp["epochs"], cmp["runs"]
    shared = "; ".join(f"{arm}: run{'s' if len(r) > 1 else ''} {', '.join(map(str, r))}" for arm, r in runs.items())
    lines = [f"### `{long_label}/` ({n_long} epochs) beside `{short_label}/` ({n_short} epochs)", "",
             f"The runs both hold, each network from the same initial weights at both lengths: {shared or 'none'}.", "",
             f"| arm | claim | paper Δ | {n_short} epochs: Δ per run → median | verdict | {n_long} epochs: Δ per run "
             f"→ median | verdict | changed |", "| --- " * 8 + "|"]
    for r in cmp["rows"]:
        lines.append(f"| {r['arm']} | {r['claim']} | {r['paper_diff']:+.2f} | {_diffs_cell(r['short'])} | "
                     f"{r['short']['verdict']} | {_diffs_cell(r['long'])} | {r['long']['verdict']} | "
                     f"{'**yes**' if r['changed'] else 'no'} |")
    if not cmp["rows"]:
        lines.append("| – | no claim measured at both lengths | | | | | | |")
    fewest = min((len(r) for r in runs.values()), default=0)
    lines += ["", f"The rules of nanosgm.experiments.verdicts on the runs shared, their least number of pairs "
                  f"({verdicts.MIN_PAIRS}) lowered to the runs shared but not below {MIN_LENGTH_PAIRS}"
                  + (f" (so {fewest} pair{'s' if fewest != 1 else ''}: not decidable yet)" if fewest < MIN_LENGTH_PAIRS else "")
                  + "; each network's best-validation epoch."]
    lines += [f"Left out: {why}." for why in cmp["left_out"]]
    paths = cmp["paths"].values()
    if paths:
        same, lr = sorted({p[0] for p in paths}), sorted({p[1] for p in paths})
        lines.append(f"One path until the schedules part: the two records of each network agree epoch by epoch "
                     f"(loss, errors, drift) for the first {_span(same)} epoch(s), their learning rates for the first "
                     f"{_span(lr)} ({len(cmp['paths'])} networks).")
    return "\n".join(lines)


def _span(values) -> str:
    return f"{values[0]}" if len(values) == 1 else f"{values[0]}–{values[-1]}"


_BLOCK = re.compile(r"(<!-- results_tables: (?P<folder>\S+) -->).*?(<!-- /results_tables -->)", re.S)
_LEN_BLOCK = re.compile(r"(<!--\s*results_length:\s*(?P<long>\S+)\s+(?P<short>\S+)\s*-->).*?(<!-- /results_length -->)", re.S)
_CONV_BLOCK = re.compile(r"(<!-- results_conventions: (?P<folders>[^>]*?) -->).*?(<!-- /results_conventions -->)", re.S)


# the readings the results README shows (decomposition.json holds 24): each factor alone, the authors' reading
# with and without the clip, and the authors' reading at the other attack batch sizes
DECOMPOSITION_ROWS = ("inference", "dropout", "batch-stats", "no-clip", "keras-ce", "dropout+batch-stats",
                      "authors-clipped", "authors", "authors@32", "authors@512")


def _signed(v) -> str:
    return "–" if v is None else f"{v:+.2f}"


def decomposition_table(folder, label=None) -> str:
    """The markdown table of FOLDER/decomposition.json (see the module docstring)."""
    from nanosgm.experiments.decompose import load_decomposition
    label = label or folder
    path = os.path.join(folder, "decomposition.json")
    if not os.path.exists(path):
        return f"### `{label}/`: decomposition pending"
    doc = load_decomposition(path)
    summary, eps = doc["summary"], [repr(float(e)) for e in doc["settings"]["eps"]]
    arms = [a for a in summary if a != "control"]
    control = summary["control"]["readings"]
    cfg = doc["settings"]["protocol_config"]
    head = (f"### `{label}/`: {cfg['model']}{' (elastic distortions)' if cfg.get('augment') else ''}, "
            f"{doc['settings']['images']} test images, {summary['control']['networks']} control network(s)"
            + "".join(f", {summary[a]['pairs']} pair(s) of {a}" for a in arms))
    cols = ["reading"] + [f"control ε {format_number(float(e))} (vs inference)" for e in eps] + \
           [f"{a} gain ε {format_number(float(e))}" for a in arms for e in eps] + ["zero grad / saturated (control)"]
    lines = [head, "", "| " + " | ".join(cols) + " |", "|" + " --- |" * len(cols)]
    for name in [r for r in DECOMPOSITION_ROWS if r in control]:
        c = control[name]
        cells = [f"`{name}`"] + [f"{c['fgsm'][e]['median']:.2f} ({_signed(c['fgsm'][e]['minus_inference'])})"
                                 for e in eps]
        cells += [_signed(summary[a]["readings"][name]["fgsm"][e]["minus_control"]) for a in arms for e in eps]
        cells.append(f"{c['zero_gradient_pct']:.2f} / {c['saturated_pct']:.2f} %")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"Medians over networks; gains are median paired differences from the same run's control under "
                 f"the same reading. Made by `{in_repository(doc['command'], _base(folder))}` at {doc['git_commit'][:7]}.")
    return "\n".join(lines)


def in_repository(command: str, folder: str) -> str:
    """``command`` as typed in a checkout's root: a word that is a path to ``folder`` inside some checkout's
    ``results/`` (``/work/run/results/mnist-cnn-ten``, where the background queue ran it; also after ``--flag=``)
    becomes ``results/<folder>``; every other word is left as it was.

    >>> in_repository("python -m nanosgm.decompose /work/run/results/mnist-cnn-ten -n 1000", "mnist-cnn-ten")
    'python -m nanosgm.decompose results/mnist-cnn-ten -n 1000'
    """
    def word(w: str) -> str:
        flag, eq, path = w.rpartition("=") if w.startswith("--") else ("", "", w)
        if os.path.isabs(path) and os.path.normpath(path).endswith(f"/results/{folder}"):
            path = f"results/{folder}"
        return flag + eq + path
    return shlex.join(word(w) for w in shlex.split(command))


_DEC_BLOCK = re.compile(r"(<!-- results_decomposition: (?P<folders>[^>]*?) -->).*?(<!-- /results_decomposition -->)",
                        re.S)


def _conventions_block(base, folders) -> str:
    paths = [os.path.normpath(os.path.join(base, f)) for f in folders.split()]
    return "\n\n".join(conventions_tables(p, os.path.basename(p)) for p in paths)


def update(markdown_path) -> int:
    """Rewrite the table blocks of a markdown file in place (:func:`rewritten`, atomically); the number of
    blocks rewritten."""
    new, n = rewritten(markdown_path)
    if n:                                   # atomically: a crash never leaves half a README
        atomic_write(markdown_path, lambda f: f.write(new.encode("utf-8")), suffix=".md")
    return n


def rewritten(markdown_path) -> tuple[str, int]:
    """The text of a markdown file with every block ``<!-- results_tables: FOLDER -->`` ...
    ``<!-- /results_tables -->`` holding the tables of FOLDER (relative to the file's own folder), every block
    ``<!-- results_conventions: FOLDER ... -->`` ... ``<!-- /results_conventions -->`` :func:`conventions_tables`
    of each FOLDER, every ``results_decomposition`` block :func:`decomposition_table` of each, and every
    ``<!-- results_length: LONG SHORT -->`` block :func:`length_table` of the two; the prose
    around them kept. Returns the text and the number of blocks."""
    base = os.path.dirname(os.path.abspath(markdown_path))
    with open(markdown_path, encoding="utf-8") as f:
        text = f.read()
    _check_markers(text, markdown_path)
    new, n = _BLOCK.subn(lambda m: f"{m.group(1)}\n{tables(os.path.join(base, m.group('folder')))}\n{m.group(3)}", text)
    new, n_conv = _CONV_BLOCK.subn(
        lambda m: f"{m.group(1)}\n{_conventions_block(base, m.group('folders'))}\n{m.group(3)}", new)
    new, n_dec = _DEC_BLOCK.subn(lambda m: f"{m.group(1)}\n" + "\n\n".join(
        decomposition_table(os.path.join(base, f), f) for f in m.group("folders").split()) + f"\n{m.group(3)}", new)
    new, n_len = _LEN_BLOCK.subn(lambda m: f"{m.group(1)}\n" + length_table(
        os.path.join(base, m.group("long")), os.path.join(base, m.group("short")), m.group("long"), m.group("short"))
        + f"\n{m.group(4)}", new)
    return new, n + n_conv + n_dec + n_len


_MARKER = re.compile(r"<!--\s*(results_(?:tables|conventions|decomposition|length)):")


def _check_markers(text, markdown_path) -> None:
    """CliError naming the line of an opening block marker that its block's pattern does not match (a typo
    would leave that block's old tables in place, unnoticed), or of one without its closing marker."""
    patterns = {"results_tables": _BLOCK, "results_conventions": _CONV_BLOCK, "results_decomposition": _DEC_BLOCK,
                "results_length": _LEN_BLOCK}
    starts = {name: {m.start() for m in pattern.finditer(text)} for name, pattern in patterns.items()}
    for m in _MARKER.finditer(text):
        if m.start() not in starts[m.group(1)]:
            line = text.count("\n", 0, m.start()) + 1
            raise CliError(f"{markdown_path}:{line}: a {m.group(1)} block marker that does not parse (its folders, "
                           f"or no <!-- /{m.group(1)} --> after it); write it as the others are")


def _folder(folder) -> str:
    """``folder``, refused in one line when it is not a folder (a mistyped name is not a pending protocol)."""
    if not os.path.isdir(folder):
        raise CliError(f"{folder}: no such folder; give a protocol folder, e.g. results/mnist-cnn")
    return folder


def main(argv=None) -> int:
    """The command line (module docstring); every user error is one line on stderr and exit status 1."""
    return run_cli(_main, argv)


def _main(args: list) -> int:
    """--update FILE, --decomposition / --conventions FOLDER..., --length LONG SHORT, or FOLDER...: print or
    rewrite the tables."""
    if args[:1] == ["--update"] and len(args) == 2:
        n = update(args[1])
        if not n:
            raise CliError(f"{args[1]} has no <!-- results_tables: FOLDER --> (or results_conventions / "
                           f"results_decomposition / results_length) block to rewrite")
        print(f"{args[1]}: {n} table block(s) rewritten")
        return 0
    if args[:1] == ["--decomposition"] and len(args) > 1:     # on the command line a missing folder is a typo;
        print("\n\n".join(decomposition_table(_folder(f)) for f in args[1:]))   # in a README block, pending
        return 0
    if args[:1] == ["--length"]:
        if len(args) != 3:
            raise CliError("--length takes two protocol folders, the longer run first: --length results/<long> "
                           "results/<short>")
        print(length_table(_folder(args[1]), _folder(args[2])))
        return 0
    if args[:1] == ["--conventions"] and len(args) > 1:
        print("\n\n".join(conventions_tables(_folder(f)) for f in args[1:]))
        return 0
    if not args or args[0].startswith("-"):
        print("usage: python tools/results_tables.py results/<row> [...]   (print the tables)\n"
              "       python tools/results_tables.py --conventions results/<row> [...]   (both FGSM conventions)\n"
              "       python tools/results_tables.py --decomposition results/<row> [...]   (the authors' FGSM taken apart)\n"
              "       python tools/results_tables.py --length results/<long> results/<short>   (run length: same seeds)\n"
              "       python tools/results_tables.py --update results/README.md   (rewrite its table blocks)",
              file=sys.stderr)
        return 2
    print("\n\n".join(tables(f) for f in args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
