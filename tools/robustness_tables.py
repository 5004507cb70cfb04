"""Markdown tables of robustness audits over seeds: ``python tools/robustness_tables.py AUDIT.json ... [--protocol DIR]``.

Each AUDIT.json is a ``robustness.json`` written by ``python -m nanosgm.robustness`` on networks of a
protocol (``<row>/models/run<i>-<arm>.npz``). Networks are grouped by arm over the runs (seeds) and every
cell is given as "median [min–max]" over the seeds, in percent: clean accuracy, then per eps each attack's
accuracy and the robust accuracy (the worst case per example); a second table gives each arm's robust accuracy
minus its own run's control's (the lock-step pairs), run by run, and a third the transfer pairs (PGD examples
crafted on one network of a run, classified by another), median [range] over seeds. With ``--protocol`` (the protocol's folder)
a fourth table gives each arm's training time per epoch against its own run's control (median and range of
the paired ratios; wall times, so they also carry the machine's load), and an audited network whose protocol
record names its weights' digest must have been audited with those weights (else an error). ``--figure PNG`` also draws robust
accuracy against eps per arm (median over seeds, the range as a band), ``--gain-figure PNG`` each arm's
gain over its own run's control, a dot per run. Audits made with different attack
settings are not pooled: that is an error. No training, no data, no attacks: it reads JSON only.

Nothing reaches a table unchecked: an audit's seal (audits written since the seal existed; older ones are read
as they are) and its structure, numbers no audit can measure (a percentage outside [0, 100], an attack above
clean accuracy, a worst case above an attack), and, with ``--protocol``, the protocol itself, read and checked
as ``python -m nanosgm.experiments`` reads it (records' seals and fields, refill entries, the lock-step); the
sanity checks an audit did not pass are named in a note.
"""
from __future__ import annotations

import json
import os
import re
import sys

import numpy as np

_NAME = re.compile(r"run(?P<run>\d{1,9})-(?P<slug>.+)$")
_POOLED = ("pgd_steps", "restarts", "apgd_steps", "queries", "seed", "batch_size", "eps", "check_eps")


class TableError(ValueError):
    """A problem with the inputs, said in one line."""


def _key(e) -> str:
    """The key of budget ``e`` in a robustness.json: its repr, exact, so that close budgets keep their own numbers."""
    return repr(float(e))


def _shown(e) -> str:
    """Budget ``e`` (a number or a key) as the tables print it: the shortest text that reads back exactly."""
    from nanosgm.methods.base import format_number
    return format_number(float(e))


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and np.isfinite(x)


def _check_audit(doc) -> str | None:
    """What is wrong with a robustness.json's structure, or None."""
    if not isinstance(doc, dict) or not isinstance(doc.get("networks"), dict) or not isinstance(doc.get("settings"), dict):
        return "no 'networks' and 'settings' objects"
    if not doc["networks"]:
        return "its 'networks' is empty (an audit names at least one network)"
    if not (isinstance(doc.get("checks", []), list) and all(isinstance(c, dict) for c in doc.get("checks", []))):
        return "its 'checks' is not a list of {check, network, status} objects"
    st = doc["settings"]
    if not (isinstance(st.get("eps"), list) and all(_number(e) for e in st["eps"]) and _number(st.get("pgd_steps"))
            and isinstance(st.get("images", {}), dict) and all(_number(n) for n in st.get("images", {}).values())):
        return "its 'settings' lack the eps list, pgd_steps or the images per network (numbers)"
    for name, net in doc["networks"].items():
        per_eps = [net.get("robust")] + list(net.get("accuracy", {}).values()) if isinstance(net, dict) else [None]
        if not (isinstance(net, dict) and _number(net.get("clean")) and isinstance(net.get("accuracy"), dict)
                and isinstance(net.get("info", {}), dict)
                and all(isinstance(d, dict) and all(_number(v) for v in d.values()) for d in per_eps)):
            return f"network {name!r} lacks a numeric 'clean', 'accuracy' or 'robust' (or its 'info' is no object)"
        problem = _impossible(net)
        if problem:
            return f"network {name!r}: {problem}"
    for t in doc.get("transfer", []) if isinstance(doc.get("transfer", []), list) else [None]:
        if not (isinstance(t, dict) and isinstance(t.get("source"), str) and isinstance(t.get("target"), str)
                and isinstance(t.get("accuracy"), dict) and all(_number(v) for v in t["accuracy"].values())):
            return "its 'transfer' is not a list of {source, target, accuracy} records"
    return None


def _impossible(net: dict) -> str | None:
    """What no audit can measure in a network's numbers, or None: a percentage outside [0, 100], an attack
    column above clean accuracy (it counts only examples correct clean), or a worst case ("robust", each
    example under every attack) above an attack's column at the same eps."""
    values = [net["clean"], *net["robust"].values()] + [v for d in net["accuracy"].values() for v in d.values()]
    if not all(0 <= v <= 100 for v in values):
        return "a percentage outside [0, 100]"
    for attack, per_eps in net["accuracy"].items():
        for e, v in per_eps.items():
            if v > net["clean"] + 1e-9:
                return f"{attack} at eps {e} ({v}) is above its clean accuracy ({net['clean']})"
            if e in net["robust"] and net["robust"][e] > v + 1e-9:
                return f"the worst case at eps {e} ({net['robust'][e]}) is above {attack}'s ({v})"
    return None


def _unpassed(path, doc) -> str | None:
    """A note naming the sanity checks of a robustness.json that did not pass, or None."""
    bad = [c for c in doc.get("checks", []) if isinstance(c, dict) and c.get("status") != "pass"]
    if not bad:
        return None
    return (f"note: {path}: {len(bad)} sanity check(s) did not pass (pooled anyway; read them before the tables): "
            + "; ".join(f"{c.get('check')} ({c.get('network')}): {c.get('status')}" for c in bad))


def _load(path) -> dict:
    from nanosgm.plumbing.seal import RecordEdited, check_seal, is_sealed
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except FileNotFoundError:
        raise TableError(f"{path}: no such file") from None
    except (OSError, ValueError, RecursionError) as exc:
        raise TableError(f"{path}: not readable JSON ({exc})") from None
    unsealed = isinstance(doc, dict) and not is_sealed(doc)     # written before audits were sealed: read as it is
    if isinstance(doc, dict) and not unsealed:
        try:
            doc = check_seal(doc, str(path), fix="restore it (e.g. git checkout), or audit again")
        except RecordEdited as exc:
            raise TableError(str(exc)) from None
    problem = _check_audit(doc)
    if problem:
        raise TableError(f"{path}: not a robustness.json written by python -m nanosgm.robustness: {problem}")
    if unsealed:
        print(f"note: {path} carries no content digest (written before audits were sealed), so an edit to it would "
              f"not be detected; python tools/seal_results.py seals a committed one", file=sys.stderr)
    note = _unpassed(path, doc)
    if note:
        print(note, file=sys.stderr)
    return doc


def _load_protocol(folder) -> dict:
    """The protocol in ``folder`` as ``python -m nanosgm.experiments`` reads it (every record checked, a sealed
    record edited by hand refused: its costs and weights digests are trusted only then), else TableError."""
    from nanosgm.experiments.protocol import load_protocol
    from nanosgm.plumbing.errors import NanosgmError
    if not os.path.isfile(os.path.join(folder, "protocol.json")):
        raise TableError(f"--protocol {folder}: no protocol.json there; give the folder "
                         f"python -m nanosgm.experiments wrote")
    try:
        return load_protocol(folder)
    except (NanosgmError, OSError) as exc:
        raise TableError(str(exc)) from None


def _label_of(slug: str) -> str:
    """The protocol's arm label of a file-name slug ("sgm_0.2_per-sample" -> "sgm:0.2:per-sample"): the label
    whose slug it is, by the rule that made it (``nanosgm.methods.arms.slug``), else the slug itself."""
    from nanosgm.methods.arms import parse_arm, slug as slug_of
    try:
        label = parse_arm(slug.replace("_", ":")).label
    except ValueError:
        return slug
    return label if slug_of(label) == slug else slug


def _arm_of(name: str) -> tuple:
    """(row, run, arm label) of a protocol network's name ("mnist-cnn/run1-sgm_0.2_per-sample" -> "mnist-cnn",
    1, "sgm:0.2:per-sample"), else ("", None, name)."""
    row, _, base = name.rpartition("/")
    m = _NAME.fullmatch(base)
    if not m:
        return "", None, name
    return row, int(m["run"]), _label_of(m["slug"])


def _namer(docs):
    """name -> (row, run, arm as the tables name it) for the networks of ``docs``: the arm label, prefixed by
    its protocol row ("mnist-cnn: control") when audits of several rows are pooled, to keep them apart."""
    rows = {_arm_of(name)[0] for _, doc in docs for name in doc["networks"]}

    def name_of(net: str) -> tuple:
        row, run, arm = _arm_of(net)
        return row, run, (f"{row}: {arm}" if len(rows) > 1 else arm)
    return name_of


def collect(docs) -> tuple:
    """({arm: {"clean": [...], "accuracy": {attack: {eps: [...]}}, "robust": {eps: [...]}, "runs": [...]}},
    the common settings) from robustness.json documents."""
    arms, settings, seen = {}, None, {}
    name_of = _namer(docs)
    for path, doc in docs:
        these = {k: doc["settings"].get(k) for k in _POOLED}
        these["images"] = sorted(set(doc["settings"].get("images", {}).values()))
        if settings is None:
            settings = these
        elif these != settings:
            differ = "; ".join(f"{k} {these[k]} against {settings[k]}" for k in these if these[k] != settings[k])
            raise TableError(f"{path}: audited with other settings than the first file ({differ}); "
                             "pool audits made with the same flags only")
        for name, net in doc["networks"].items():
            row, run, arm = name_of(name)
            if run is not None and (row, run, arm) in seen:
                raise TableError(f"{path}: {name} was already read from {seen[row, run, arm]}; give each audit once")
            seen[row, run, arm] = path
            a = arms.setdefault(arm, {"clean": [], "accuracy": {}, "robust": {}, "runs": []})
            a["runs"].append(run)
            a["clean"].append(net["clean"])
            for attack, per_eps in net["accuracy"].items():
                for e, v in per_eps.items():
                    a["accuracy"].setdefault(attack, {}).setdefault(e, []).append(v)
            for e, v in net["robust"].items():
                a["robust"].setdefault(e, []).append(v)
    return arms, settings


def collect_transfer(docs) -> dict:
    """{(source arm, target arm): {eps: [accuracy, one per seed]}} of the audits' transfer pairs (examples
    crafted on the source network, classified by the target of the same run), arms named as by collect()."""
    name_of = _namer(docs)
    pairs = {}
    for _, doc in docs:
        for t in doc.get("transfer", []):
            key = (name_of(t["source"])[2], name_of(t["target"])[2])
            for e, v in t["accuracy"].items():
                pairs.setdefault(key, {}).setdefault(e, []).append(v)
    return pairs


def transfer_table(pairs, settings) -> str:
    """One row per (source, target) pair: seeds and the transferred accuracy per eps, median [range]."""
    if not pairs:
        return ""
    eps = [_key(e) for e in settings["eps"]]
    lines = ["| crafted on | classified by | seeds | " + " | ".join(f"ε = {_shown(e)}" for e in eps) + " |",
             "| --- | --- | --- | " + " | ".join("---" for _ in eps) + " |"]
    for (src, tgt), per_eps in pairs.items():
        n = max(len(v) for v in per_eps.values())
        lines.append(f"| {src} | {tgt} | {n} | " + " | ".join(_mr(per_eps.get(e, [])) for e in eps) + " |")
    return "\n".join(lines)


def _mr(values) -> str:
    v = np.asarray(values, float)
    if len(v) == 0:
        return "–"
    return f"{np.median(v):.1f}" if len(v) == 1 else f"{np.median(v):.1f} [{v.min():.1f}–{v.max():.1f}]"


def accuracy_table(arms, settings) -> str:
    """One row per (arm, eps): seeds, clean, each attack, robust; eps the audit's own (not the check eps)."""
    attacks = list(dict.fromkeys(k for a in arms.values() for k in a["accuracy"]))
    eps = [_key(e) for e in settings["eps"]]
    lines = ["| arm | ε | seeds | clean | " + " | ".join(attacks) + " | **robust** |",
             "| --- | --- | --- | --- | " + " | ".join("---" for _ in attacks) + " | --- |"]
    for arm, a in arms.items():
        for e in eps:
            cells = [_mr(a["accuracy"].get(k, {}).get(e, [])) for k in attacks]
            lines.append(f"| {arm} | {_shown(e)} | {len(a['clean'])} | {_mr(a['clean'])} | " + " | ".join(cells)
                         + f" | **{_mr(a['robust'].get(e, []))}** |")
    return "\n".join(lines)


def _pyplot():
    """matplotlib.pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def paired_gains(arms, settings, control: str = "control") -> dict:
    """{(arm, eps): (runs, robust accuracy of the arm minus that of the same run's control)} for every arm
    but the control (of its own protocol row) and every audit eps at which a run has both networks."""
    base = {k: v for k, v in arms.items() if k == control or k.endswith(f": {control}")}
    gains = {}
    for arm, a in arms.items():
        row = arm.rpartition(": ")[0]                           # "" unless audits of several rows are pooled
        ctrl = base.get(f"{row}: {control}" if row else control)
        if ctrl is None or arm in base:
            continue
        for e in (_key(x) for x in settings["eps"]):
            mine = dict(zip(a["runs"], a["robust"].get(e, [])))
            theirs = dict(zip(ctrl["runs"], ctrl["robust"].get(e, [])))
            runs = sorted(r for r in mine if r is not None and r in theirs)
            if runs:
                gains[arm, e] = (runs, [mine[r] - theirs[r] for r in runs])
    return gains


def gain_figure(gains):
    """One panel per audit eps: each arm's robust-accuracy gain over its own run's control (``gains``, from
    :func:`paired_gains`), a dot per run (labelled with the run) and the median as a bar."""
    plt = _pyplot()
    names = list(dict.fromkeys(arm for arm, _ in gains))
    eps = list(dict.fromkeys(e for _, e in gains))
    fig, axes = plt.subplots(1, len(eps), figsize=(4.2 * len(eps), 4.2), sharey=True, squeeze=False)
    for ax, e in zip(axes[0], eps):
        for x, arm in enumerate(names):
            runs, d = gains.get((arm, e), ([], []))
            if d:
                ax.bar(x, np.median(d), color="0.85", width=0.6)
                ax.scatter([x] * len(d), d, s=18, zorder=3)
                for r, v in zip(runs, d):
                    ax.annotate(str(r), (x, v), xytext=(4, 0), textcoords="offset points", fontsize=7, va="center")
        ax.axhline(0.0, color="k", lw=0.8)
        ax.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=8)
        ax.set_title(f"ε = {_shown(e)}")
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("robust accuracy − same run's control (points)")
    fig.suptitle("gain over the lock-step control: one dot per run (its number beside it), bar = median", fontsize=9)
    fig.tight_layout()
    return fig


def gain_table(gains) -> str:
    """Robust accuracy of each arm minus that of the same run's control (``gains``, from :func:`paired_gains`),
    per eps: every pair's difference in run order, then their median and range; "" when there are none."""
    lines = []
    for (arm, e), (runs, d) in gains.items():
        each = ", ".join(f"{r}: {x:+.1f}" for r, x in zip(runs, d))
        lines.append(f"| {arm} | {_shown(e)} | {len(d)} | {each} | "
                     f"**{np.median(d):+.1f}** [{min(d):+.1f} to {max(d):+.1f}] |")
    if not lines:
        return ""
    return "\n".join(["| arm | ε | pairs | robust-accuracy gain over the same run's control, run: points | median [range] |",
                      "| --- | --- | --- | --- | --- |"] + lines)


def cost_table(protocol: dict, arms) -> str:
    """Training seconds per epoch of each audited arm, and its ratio to the same run's control."""
    nets = protocol["networks"]

    def per_epoch(key):
        r = nets.get(key)
        return r["train_seconds"] / max(1, len(r["history"])) if r else None
    lines = ["| arm | runs | training s/epoch, median [range] | ÷ same run's control, median [range] |",
             "| --- | --- | --- | --- |"]
    for arm, a in arms.items():
        runs = sorted(r for r in set(a["runs"]) if r is not None)
        own = [per_epoch(f"run{r}/{arm}") for r in runs]
        ratio = [o / c for o, c in zip(own, (per_epoch(f"run{r}/control") for r in runs)) if o and c]
        own = [o for o in own if o]
        if own:
            lines.append(f"| {arm} | {len(own)} | {_mr(own)} | "
                         + (f"{np.median(ratio):.2f} [{min(ratio):.2f}–{max(ratio):.2f}]" if ratio else "–") + " |")
    return "\n".join(lines)


def robust_figure(arms, settings):
    """Robust accuracy (%) against eps, one line per arm (clean accuracy at eps 0): the median over seeds,
    the range shaded."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    eps = sorted({float(e) for a in arms.values() for e in a["robust"]})
    for arm, a in arms.items():
        v = [np.asarray(a["clean"], float)] + [np.asarray(a["robust"].get(_key(e), [np.nan]), float) for e in eps]
        n = len(a["clean"])
        ax.plot([0.0] + eps, [np.median(x) for x in v], marker="o", label=f"{arm} ({n} seed{'s' if n != 1 else ''})")
        ax.fill_between([0.0] + eps, [x.min() for x in v], [x.max() for x in v], alpha=0.2)
    ax.set_xlabel("ε (L∞)")
    ax.set_ylabel("robust accuracy (%)")
    ax.set_title(f"worst case over the audit's attacks, {', '.join(str(n) for n in settings['images'])} test images")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _check_output(path, flag) -> None:
    """TableError unless a figure can be written at ``path``: its folder exists and matplotlib writes its type."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise TableError(f"{flag} {path}: no folder {folder}")
    if os.path.isdir(path):
        raise TableError(f"{flag} {path}: a folder, not a file name")
    kind = os.path.splitext(path)[1].lstrip(".").lower()
    plt = _pyplot()
    if kind not in plt.gcf().canvas.get_supported_filetypes():
        plt.close("all")
        raise TableError(f"{flag} {path}: Format {kind!r} is not supported; name a .png, .pdf or .svg file")
    plt.close("all")


def _save(fig, path, flag) -> None:
    plt = _pyplot()
    try:
        fig.savefig(path, dpi=90)
    except OSError as exc:
        raise TableError(f"{flag} {path}: {exc.strerror or exc}") from None
    except ValueError as exc:                       # matplotlib: a file type it cannot write (e.g. .txt)
        raise TableError(f"{flag} {path}: {exc}; name a .png, .pdf or .svg file") from None
    finally:
        plt.close(fig)


def check_weights(docs, protocol: dict, row: str) -> int:
    """Refuse an audited network of protocol row ``row`` whose weights (the audit's ``info.weights_sha256``) are
    not those its protocol.json names (its record's ``weights_sha256``, or the digest a refill of it recorded:
    ``records.recorded_weights``); name, in one note, the audited networks for which it names none (records
    made before the field existed, never refilled since). Returns how many audited networks are of that row
    (0: nothing could be checked)."""
    from nanosgm.experiments.records import recorded_weights
    seen, unnamed = 0, []
    for path, doc in docs:
        for name, net in doc["networks"].items():
            net_row, run, arm = _arm_of(name)
            if net_row != row or run is None:
                continue
            seen += 1
            if f"run{run}/{arm}" not in protocol["networks"]:
                raise TableError(f"{path}: the audited {name} has no record run{run}/{arm} in {row}/protocol.json, so "
                                 f"it is not a network of that protocol; give the protocol folder it was saved in")
            want = recorded_weights(protocol, f"run{run}/{arm}")
            got = (net.get("info") or {}).get("weights_sha256")
            if want is None:
                unnamed.append(name)
                continue
            if got == want:
                continue
            if not isinstance(got, str):
                raise TableError(f"{path}: the audited {name} names no weights digest, so it cannot be matched with "
                                 f"its record in {row}/protocol.json, which names one: audit it again")
            raise TableError(f"{path}: the audited {name} has weights {got[:12]}, not the recorded network's "
                             f"{str(want)[:12]} ({row}/protocol.json): audit the weights that protocol saved")
    if unnamed:
        print(f"note: {row}/protocol.json names no weights digest for {len(unnamed)} audited network(s) (records "
              f"made before digests, and no refill since recorded one), so they were not matched with their records: "
              f"{', '.join(unnamed)}", file=sys.stderr)
    return seen


def tables(paths, protocol_dir=None, figure=None, gain_png=None) -> str:
    docs = [(p, _load(p)) for p in paths]
    protocol = _load_protocol(protocol_dir) if protocol_dir is not None else None
    if protocol is not None:
        row = os.path.basename(os.path.abspath(protocol_dir))
        if not check_weights(docs, protocol, row):
            raise TableError(f"--protocol {protocol_dir}: no audited network is of its row {row!r} (the folder's name), "
                             f"so its records and costs are not these networks'; give the protocol folder the audited "
                             f"networks were saved in")
    arms, settings = collect(docs)
    gains = paired_gains(arms, settings)
    if gain_png is not None and not gains:          # refused before any figure is written
        raise TableError("--gain-figure: no arm has a control of the same run to be compared with")
    for path, flag in ((figure, "--figure"), (gain_png, "--gain-figure")):
        if path is not None:
            _check_output(path, flag)
    if figure is not None:
        _save(robust_figure(arms, settings), figure, "--figure")
    if gain_png is not None:
        _save(gain_figure(gains), gain_png, "--gain-figure")
    head = (f"Audited: {', '.join(str(n) for n in settings['images'])} test images; PGD {settings['pgd_steps']} and "
            f"{2 * settings['pgd_steps']} steps × {settings['restarts']} start(s), APGD {settings['apgd_steps']} steps, "
            f"Square {settings['queries']} queries; accuracy in %, median [range] over seeds.")
    out = [head, "", accuracy_table(arms, settings)]
    for extra in (gain_table(gains), transfer_table(collect_transfer(docs), settings)):
        if extra:
            out += ["", extra]
    if protocol is not None:
        out += ["", cost_table(protocol, arms)]
    return "\n".join(out)


def _main(argv: list) -> int:
    from nanosgm.plumbing.argparser import Parser
    p = Parser(prog="python tools/robustness_tables.py", allow_abbrev=False,
               description="Markdown tables of robustness audits over seeds (the module docstring says what).")
    p.add_argument("audits", nargs="+", metavar="AUDIT.json", help="robustness.json files of python -m nanosgm.robustness")
    p.add_argument("--protocol", default=None, metavar="DIR", help="the protocol folder the audited networks were "
                   "saved in: their weights checked against its records, and the training cost table")
    p.add_argument("--figure", default=None, metavar="PNG", help="robust accuracy against eps per arm")
    p.add_argument("--gain-figure", default=None, metavar="PNG", help="each arm's gain over its own run's control")
    args = p.parse_args(argv)
    print(tables(args.audits, args.protocol, args.figure, args.gain_figure))
    return 0


def main(argv=None) -> int:
    """The command; its exit status (errors: one line, status 1)."""
    from nanosgm.plumbing.cli import run_cli
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
