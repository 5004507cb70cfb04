"""A robustness audit a reviewer would accept: ``python -m nanosgm.robustness MODEL.npz [MORE.npz ...]``.

For each network: clean accuracy, then accuracy under FGSM (Eq. 20), PGD (steps x restarts, and twice the
steps for the check below), APGD-CE, APGD-DLR and the gradient-free Square attack (all in
:mod:`nanosgm.attacks`), and the worst case per example over all of them ("robust accuracy": an example
counts as robust only if it is classified correctly clean and under every attack), at each eps, on the
first N test images. An attack's column counts an example as correct only if it is correct clean too: the
unperturbed image lies in every eps-ball, so an attack that leaves a misclassified example classified
correctly (a random start or Square's first stripes can) has not found the worst case. Per example, then,
robust <= correct under each attack <= correct clean; results are checked against this when they are
combined (a result read back from the partial file that breaks it is refused). Then the sanity checks of
Carlini et al. 2019 ("On Evaluating Adversarial Robustness"), each printed as pass/warn with its numbers:

    iterative >= single-step   PGD and APGD are at least as strong as FGSM at every eps
    large eps -> ~0            the best gradient attack leaves at most 5 % (NEAR_ZERO) at eps = 0.5 (CHECK_EPS)
    more steps                 PGD with twice the steps is not weaker (by more than STEPS_TOL)
    gradient-free              Square does not beat the best gradient attack by more than MASKING_TOL:
                               if it does, the gradients are probably masked (Athalye et al. 2018)
    transfer                   (two or more networks) PGD crafted on a sibling network is weaker than
                               white-box PGD on the network itself

A ``model.npz`` written by ``python -m nanosgm.train`` has a ``results.json`` beside it whose "spec" names
the dataset and model (its seal is checked: an edited one is refused, :mod:`nanosgm.plumbing.seal`); without
one, give ``--dataset`` and ``--model``. Writes a table on the terminal, ``robustness.json`` (percent,
rounded to 2 decimals; command line, versions, settings) and ``robustness.png`` (accuracy against eps, one
curve per attack and network) into ``--out``. Until then, every finished attack is kept in
``--out``/robustness.partial.json: an interrupted audit run again with the same arguments resumes after its
last finished attack, with the same numbers (:mod:`nanosgm.plumbing.audit_resume`); Ctrl-C, SIGTERM and
SIGHUP say so.

Before the first attack the audit prints its plan (networks x attacks x eps x images, and how many gradient
evaluations and forward passes each attack costs per image and eps, at most), and after the first attack
that takes gradients one line estimating the time left from the measured cost of a forward pass (the clean
pass) and of a gradient evaluation (that attack). With ``--workers N`` the attacks run in N processes first
(:func:`prefill`), with the same numbers. It notes when the audited images are not the test
images the network's training run evaluated.
"""
from __future__ import annotations

import argparse
import functools
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from .. import attacks, backend
from ..methods.base import format_number
from ..plumbing.argparser import Parser
from ..plumbing.audit_resume import PARTIAL_NAME, FinishedAttacks, PartialFileError, digest
from ..plumbing.flags import named, numbers, whole
from ..plumbing.seal import RecordEdited, check_seal, is_sealed, seal, unsealed_note

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from tqdm.auto import tqdm

    from ..layers import Sequential

__all__ = ["Suite", "Network", "load_networks", "attack_plan", "attack_cost", "audit_network", "audit", "plan_lines",
           "sanity_checks", "format_report", "accuracy_figure", "report_json", "main", "prefill", "DEFAULT_EPS", "CHECK_EPS"]

DEFAULT_EPS = (0.001, 0.01, 0.1, 0.2, 0.3)    # the paper's four and the usual MNIST budget
CHECK_EPS = 0.5                                # "accuracy falls to about 0 as eps grows large"
NEAR_ZERO = 0.05
STEPS_TOL = 0.005                              # more PGD steps may be weaker by at most half a point
MASKING_TOL = 0.02                             # Square may beat the gradient attacks by at most 2 points


@dataclass(frozen=True)
class Suite:
    """The attacks' budgets. Every attack draws from its own generator seeded with `seed`."""
    pgd_steps: int = 10
    restarts: int = 3
    apgd_steps: int = 100
    queries: int = 1000
    seed: int = 0
    batch_size: int = 100


@dataclass
class Network:
    """One network to audit and the images to audit it on: X (N, ...) and y (N,) on the host."""
    name: str
    model: Sequential
    X: np.ndarray
    y: np.ndarray
    clip: tuple | None = (0.0, 1.0)
    dataset: str = ""
    info: dict = field(default_factory=dict)


def attack_plan(suite: Suite, num_classes: int) -> list:
    """[(column name, attack, keyword arguments)] in table order; APGD-DLR needs 3 or more classes."""
    k, r = suite.pgd_steps, suite.restarts
    plan = [("FGSM", "fgsm", {}),
            (f"PGD-{k}x{r}", "pgd", dict(steps=k, restarts=r, rng=suite.seed)),
            (f"PGD-{2 * k}x{r}", "pgd", dict(steps=2 * k, restarts=r, rng=suite.seed)),
            ("APGD-CE", "apgd", dict(steps=suite.apgd_steps, loss="ce", rng=suite.seed))]
    if num_classes >= 3:
        plan.append(("APGD-DLR", "apgd", dict(steps=suite.apgd_steps, loss="dlr", rng=suite.seed)))
    plan.append(("Square", "square", dict(queries=suite.queries, rng=suite.seed)))
    return plan


def attack_cost(attack: str, kw: dict, n_eps: int = 1) -> tuple:
    """(gradient evaluations, forward passes) one image costs under `attack` (a name of `attack_plan`, with
    its keyword arguments) at `n_eps` budgets, at most: the attacks stop on an example once it is fooled.
    Classifying the attacked image is one forward pass per eps. FGSM shares one gradient among every eps;
    PGD with R > 1 restarts scores each restart with a forward pass; APGD takes steps + 1 gradients;
    Square is gradient-free, one forward pass per query."""
    if attack == "fgsm":
        return 1, n_eps
    if attack == "pgd":
        r = kw["restarts"]
        return kw["steps"] * r * n_eps, ((r if r > 1 else 0) + 1) * n_eps
    if attack == "apgd":
        return (kw["steps"] + 1) * n_eps, n_eps
    if attack == "square":
        return 0, (kw["queries"] + 1) * n_eps
    raise ValueError(f"unknown attack {attack!r}")


def _num_classes(net: Network) -> int:
    return int(backend.to_host(net.model.forward(backend.to_device(net.X[:2]), training=False)).shape[1])


@functools.lru_cache(maxsize=1)
def _code_digest() -> str:
    """The source of the code an attack's numbers depend on: the attacks, the layers and the backend.
    Read once per process (the code in use is what was imported), not once per network and transfer pair."""
    from .. import layers

    def sources(package: ModuleType) -> list[str]:
        folder = os.path.dirname(os.path.abspath(cast(str, package.__file__)))     # a package loaded from files
        return sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".py"))
    files = sources(attacks) + [backend.__file__] + sources(layers)
    parts = []
    for path in files:
        with open(path, "rb") as f:
            parts.append(np.frombuffer(f.read(), dtype=np.uint8))
    return digest(*parts)


def _network_digest(net: Network) -> str:
    """What an attack's result on `net` depends on besides the attack: its weights, images, labels, clip,
    and the backend and code (`_code_digest`) that run it."""
    from .network import weights_digest
    return digest(weights_digest(net.model), net.X, net.y, list(net.clip) if net.clip else None,
                  backend.name(), _code_digest())


def _attack_key(net_key: str, name: str, attack: str, kw: dict, eps_list: list[float], suite: Suite) -> str:
    """The partial file's key of attack column `name` on the network whose `_network_digest` is `net_key`."""
    return digest(net_key, name, attack, kw, eps_list, suite.batch_size)


def _transfer_key(source_key: str, target_key: str, eps_list: list[float], suite: Suite) -> str:
    _, attack, kw = attack_plan(suite, 3)[1]
    return digest("transfer", source_key, target_key, attack, kw, eps_list, suite.batch_size)


def _attack_once(finished: FinishedAttacks, key: str, label: str, clean: np.ndarray, eps_list: list[float],
                 bar: tqdm | None, steps: int, compute: Callable[[], dict]) -> tuple[dict, bool]:
    """{eps: per-example bool} from `finished` if it holds this attack (the bar skips its `steps`), else
    `compute()` and'ed with `clean` (the module docstring says why), stored. Either way checked against
    `clean` (`_check_within_clean`). Returns (result, whether it was computed now)."""
    got = finished.get(key, eps_list, len(clean))
    ran = got is None
    if got is None:
        got = {e: v & clean for e, v in compute().items()}
    _check_within_clean(got, clean, label, None if ran else finished.path)
    if ran:
        finished.put(key, got, label)
    elif bar is not None:
        bar.update(steps)
    return got, ran


def _check_within_clean(got: dict, clean: np.ndarray, label: str, source: str | Path | None) -> None:
    """Refuse (AuditError, one line naming the attack and eps) a result that counts an example correct
    under the attack that is misclassified clean; `source`: the partial file it was read from, or None."""
    for e, correct in got.items():
        wrong = int((correct & ~clean).sum())
        if wrong:
            where = (f"it was read from {source}, which was edited: delete that file and run the same command"
                     if source else "it was computed now: a bug in the audit, please report it")
            raise AuditError(f"{label} at eps {format_number(e)}: {wrong} example(s) count as correct under "
                             f"the attack but are misclassified clean, which cannot be; {where}")


def attack_compute(net: Network, attack: str, kw: dict, eps_list: list[float], suite: Suite,
                   bar: tqdm | None = None) -> Callable[[], dict]:
    """The computation of one attack column on `net`: a callable returning {eps: per-example bool}."""
    return lambda: attacks.correct_under_attack(net.model, net.X, net.y, eps_list, attack, suite.batch_size, bar=bar,
                                                clip=net.clip, **kw)


def transfer_compute(source: Network, target: Network, eps_list: list[float], suite: Suite,
                     bar: tqdm | None = None) -> Callable[[], dict]:
    """The computation of a transfer pair: target under the PGD of `attack_plan` crafted on source."""
    _, attack, kw = attack_plan(suite, 3)[1]
    return lambda: attacks.correct_under_attack(target.model, target.X, target.y, eps_list,
                                                attacks.crafted_on(source.model, attack, **kw), suite.batch_size,
                                                bar=bar, clip=target.clip)


def _clean_correct(net: Network, suite: Suite, bar: tqdm | None = None) -> np.ndarray:
    return attacks.correct_under_attack(net.model, net.X, net.y, (0.0,), "fgsm", suite.batch_size, bar=bar)[0.0]


def audit_network(net: Network, eps_list: Iterable[float], suite: Suite, bar: tqdm | None = None,
                  log: Callable[[str], None] | None = None, finished: FinishedAttacks | None = None,
                  eta: _Estimate | None = None) -> dict:
    """{"clean": acc, "accuracy": {attack: {eps: acc}}, "robust": {eps: acc}, "correct": per-example
    bool arrays, "clean_correct": per-example bool}: `net` under every attack of `attack_plan` at every eps
    (fractions, not percent). ``log``: called with one line per finished attack (its accuracies and
    seconds), or None. ``finished``: a :class:`~nanosgm.plumbing.audit_resume.FinishedAttacks`; attacks it
    holds are not run again. ``eta``: an `_Estimate` told what each step cost, or None."""
    eps_list = [float(e) for e in eps_list]
    finished = finished if finished is not None else FinishedAttacks()
    t0 = time.perf_counter()
    clean = _clean_correct(net, suite, bar)
    if eta is not None:
        eta.done(f"{net.name}: clean", time.perf_counter() - t0, True)
    robust = {e: clean.copy() for e in eps_list}
    accuracy, correct = {}, {}
    net_key = _network_digest(net)
    for name, attack, kw in attack_plan(suite, _num_classes(net)):
        if bar is not None:
            bar.set_description(f"{net.name}: {name}")
        t0 = time.perf_counter()
        got, ran = _attack_once(
            finished, _attack_key(net_key, name, attack, kw, eps_list, suite), f"{net.name}: {name}", clean,
            eps_list, bar, attacks.n_steps(len(net.X), eps_list, attack, suite.batch_size),
            attack_compute(net, attack, kw, eps_list, suite, bar))
        seconds = time.perf_counter() - t0
        accuracy[name] = {e: float(got[e].mean()) for e in eps_list}
        if log is not None:
            log(f"{net.name}: {name} "
                + ", ".join(f"eps {format_number(e)}: {_pct(a)}" for e, a in accuracy[name].items())
                + (f" ({seconds:.0f} s)" if ran else " (from the partial file)"))
        if eta is not None:
            eta.done(f"{net.name}: {name}", seconds, ran)
        correct[name] = got
        for e in eps_list:
            robust[e] &= got[e]
    return {"clean": float(clean.mean()), "accuracy": accuracy,
            "robust": {e: float(robust[e].mean()) for e in eps_list}, "correct": correct, "clean_correct": clean}


def transfer_pgd(source: Network, target: Network, eps_list: Iterable[float], suite: Suite, bar: tqdm | None = None,
                 finished: FinishedAttacks | None = None, clean: np.ndarray | None = None,
                 eta: _Estimate | None = None) -> dict:
    """{eps: accuracy of target on PGD examples crafted on source} (the same images, the same PGD), an
    example counting only if target classifies it correctly clean too (``clean``: target's per-example
    result, computed if None)."""
    eps_list = [float(e) for e in eps_list]
    clean = _clean_correct(target, suite) if clean is None else clean
    label = f"transfer {source.name} -> {target.name}"
    t0 = time.perf_counter()
    got, ran = _attack_once(
        finished if finished is not None else FinishedAttacks(),
        _transfer_key(_network_digest(source), _network_digest(target), eps_list, suite), label, clean,
        eps_list, bar, attacks.n_steps(len(target.X), eps_list, "pgd", suite.batch_size),
        transfer_compute(source, target, eps_list, suite, bar))
    if eta is not None:
        eta.done(label, time.perf_counter() - t0, ran)
    return {float(e): float(v.mean()) for e, v in got.items()}


def _bar_total(nets: list[Network], eps_list: list[float], suite: Suite, transfer: str = "first") -> int:
    total = 0
    for net in nets:
        n = len(net.X)
        total += attacks.n_steps(n, (0.0,), "fgsm", suite.batch_size)
        total += sum(attacks.n_steps(n, eps_list, a, suite.batch_size) for _, a, _ in attack_plan(suite, _num_classes(net)))
    total += sum(attacks.n_steps(len(t.X), eps_list, "pgd", suite.batch_size) for _, t in _transfer_pairs(nets, transfer))
    return total


TRANSFER = ("first", "all", "none")


def _transfer_pairs(nets: list[Network], which: str = "first") -> list:
    """Ordered (source, target) pairs of networks audited on the same images: ``"first"`` pairs the first
    network with each other one, both ways (2 (N - 1) pairs, e.g. a control and its arms); ``"all"`` every
    ordered pair (N (N - 1)); ``"none"`` no pair."""
    def same_images(s: Network, t: Network) -> bool:
        return (s.dataset == t.dataset and s.X.shape == t.X.shape and np.array_equal(s.y, t.y)
                and np.array_equal(s.X, t.X))
    if which not in TRANSFER:
        raise ValueError(f"transfer must be one of {', '.join(TRANSFER)}, got {which!r}")
    pairs = [(s, t) for s in nets for t in nets if s is not t and same_images(s, t)]
    if which == "none":
        return []
    if which == "first" and nets:
        return [(s, t) for s, t in pairs if nets[0] in (s, t)]
    return pairs


@dataclass
class _Step:
    """One step of an audit: its label, its cost (gradient evaluations and forward passes, all images and
    eps together, at most) and whether the partial file holds its result."""
    label: str
    gradients: int
    forwards: int
    held: bool = False
    key: str = ""         # the partial file's key ("": the clean pass, which is not stored)
    job: tuple = ()       # ("attack", network index, column, attack, kw) or ("transfer", source, target index)


def _steps(nets: list[Network], eps_all: list[float], suite: Suite, transfer: str, finished: FinishedAttacks) -> list:
    """[_Step] in the order `audit` takes them: per network its clean pass and `attack_plan`, then transfer."""
    steps, keys = [], [_network_digest(net) for net in nets]
    for i, net in enumerate(nets):
        n = len(net.X)
        steps.append(_Step(f"{net.name}: clean", 0, n))
        for name, attack, kw in attack_plan(suite, _num_classes(net)):
            g, f = attack_cost(attack, kw, len(eps_all))
            key = _attack_key(keys[i], name, attack, kw, eps_all, suite)
            steps.append(_Step(f"{net.name}: {name}", n * g, n * f, finished.holds(key), key,
                               ("attack", i, name, attack, kw)))
    _, attack, kw = attack_plan(suite, 3)[1]
    index = {id(net): i for i, net in enumerate(nets)}
    for source, target in _transfer_pairs(nets, transfer):
        g, f = attack_cost(attack, kw, len(eps_all))
        s, t = index[id(source)], index[id(target)]
        key = _transfer_key(keys[s], keys[t], eps_all, suite)
        steps.append(_Step(f"transfer {source.name} -> {target.name}", len(target.X) * g, len(target.X) * f,
                           finished.holds(key), key, ("transfer", s, t)))
    return steps


def _span(values: list[int], what: str) -> str:
    lo, hi = min(values), max(values)
    return f"{lo} {what}" if lo == hi else f"{lo}-{hi} {what}"


def plan_lines(nets: list[Network], eps_all: list[float], suite: Suite, transfer: str, steps: list[_Step]) -> list:
    """The audit's plan, three lines: networks x attacks x eps x images (and the transfer pairs); what each
    attack costs per image and eps; the total of `steps` (`_steps`) less those the partial file holds."""
    plans = [attack_plan(suite, _num_classes(net)) for net in nets]
    pairs = len(_transfer_pairs(nets, transfer))
    head = (f"plan: {len(nets)} network(s) x {_span([len(p) for p in plans], 'attacks')} x {len(eps_all)} eps "
            f"({', '.join(format_number(e) for e in eps_all)}) x {_span([len(n.X) for n in nets], 'images')}"
            + (f", then PGD transfer for {pairs} pair(s) of networks" if pairs else ""))
    costs = []
    for name, attack, kw in max(plans, key=len):
        g, f = attack_cost(attack, kw)
        costs.append(f"{name} " + (f"{g} gradient{'s' * (g > 1)}" + (" (one for all eps)" if attack == "fgsm" else "")
                                   + f" + {f} forward" if g else f"{f} forward passes"))
    todo = [s for s in steps if not s.held]
    held = len(steps) - len(todo)
    return [head,
            "  cost per image and eps, at most (an attack stops on an example once it is fooled): " + ", ".join(costs),
            f"  in all at most {sum(s.gradients for s in todo):,} gradient evaluations and "
            f"{sum(s.forwards for s in todo):,} forward passes (one image each)"
            + (f", besides the {held} attack result(s) the partial file holds" if held else "")]


def _duration(seconds: float) -> str:
    """40 s, 12 min, 3 h 05 min."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 90 else f"{minutes // 60} h {minutes % 60:02d} min"


class _Estimate:
    """The time an audit has left, said once (one line through ``say``) after the first attack run that
    takes gradients: from the measured seconds per forward pass of one image (the latest clean pass) and
    per gradient evaluation (that attack's seconds less its forward passes), applied to the steps left."""

    def __init__(self, steps: list[_Step], say: Callable[[str], None]) -> None:
        self.left = [s for s in steps if not s.held]
        self.say = say
        self.per_forward: float | None = None
        self.said = False

    def done(self, label: str, seconds: float, ran: bool) -> None:
        """Step `label` took `seconds` (`ran`: computed now, not read from the partial file)."""
        step = next((s for s in self.left if s.label == label), None)
        if step is None:
            return
        self.left.remove(step)
        if not ran:
            return
        if step.gradients == 0 and step.forwards:
            self.per_forward = seconds / step.forwards
        elif step.gradients and self.per_forward is not None and not self.said:
            per_gradient = max((seconds - step.forwards * self.per_forward) / step.gradients, self.per_forward)
            rest = sum(s.gradients * per_gradient + s.forwards * self.per_forward for s in self.left)
            self.say(f"estimate: at most about {_duration(rest)} more, from {label}: {1e3 * per_gradient:.3g} ms per "
                     f"gradient evaluation, {1e3 * self.per_forward:.3g} ms per forward pass of one image (attacks "
                     f"stop on fooled examples, so often less)")
            self.said = True


def evaluated_eps(eps_list: Iterable[float], check_eps: float | None) -> list[float]:
    """Every eps an audit evaluates, ascending: `eps_list` and the check's eps."""
    return sorted({float(e) for e in eps_list} | ({float(check_eps)} if check_eps is not None else set()))


def audit(nets: list[Network], eps_list: Iterable[float] = DEFAULT_EPS, suite: Suite = Suite(), *,
          check_eps: float | None = CHECK_EPS, progress: bool = True, log: Callable[[str], None] | None = None,
          finished: FinishedAttacks | None = None, transfer: str = "first",
          say: Callable[[str], None] | None = None) -> dict:
    """Audit every network (see `audit_network`; ``log`` gets a line per finished attack) at `eps_list`
    plus `check_eps`, the transfer between siblings (``transfer``: which pairs, see `_transfer_pairs`), and
    the sanity checks. Returns {"eps", "check_eps", "networks": {name: result}, "transfer": [...],
    "checks": [...]} with accuracies as fractions. ``finished``: see `audit_network`. ``say``: called with
    the plan (`plan_lines`) before the first attack and with one line estimating the time left after the
    first attack that takes gradients, or None."""
    from tqdm.auto import tqdm

    eps_all = evaluated_eps(eps_list, check_eps)
    report: dict[str, Any] = {"eps": [float(e) for e in eps_list], "check_eps": check_eps, "eps_evaluated": eps_all,
                              "networks": {}, "transfer": [], "transfer_pairs": transfer}
    finished = finished if finished is not None else FinishedAttacks()
    eta = None
    if say is not None:
        steps = _steps(nets, eps_all, suite, transfer, finished)
        for line in plan_lines(nets, eps_all, suite, transfer, steps):
            say(line)
        eta = _Estimate(steps, say)
    with tqdm(total=_bar_total(nets, eps_all, suite, transfer), unit="batch x eps", disable=None if progress else True,
              leave=False, dynamic_ncols=True) as bar:
        for net in nets:
            report["networks"][net.name] = audit_network(net, eps_all, suite, bar, log, finished, eta)
        for source, target in _transfer_pairs(nets, transfer):
            bar.set_description(f"transfer {source.name} -> {target.name}")
            clean = report["networks"][target.name]["clean_correct"]
            report["transfer"].append({"source": source.name, "target": target.name, "accuracy": transfer_pgd(
                source, target, eps_all, suite, bar, finished, clean, eta)})
    report["checks"] = sanity_checks(report, suite)
    return report


# ------------------------------------------------------------------------------------ --workers
# Every attack draws from its own generator and is stored in the partial file under a key of everything it
# depends on, so the attacks can run in any order and in any process: `prefill` hands the steps the partial file
# lacks to worker processes (each loads the networks from their files once) and stores each result, and'ed with
# this process's clean pass by `_attack_once`; this process is the file's only writer. `audit` then reads every
# result back. The numbers are those of one process (tests/experiments/test_audit_workers.py) provided every
# process uses the same number of BLAS threads (NANOSGM_THREADS when set, else cores // workers): float32
# products can round differently with another count. A worker re-derives each step's key from the networks it
# loaded: a key that differs from this process's (a model file replaced meanwhile) stops the audit.

_LOADED: dict = {}          # in a worker: (paths, load arguments) -> [Network]


def _networks(paths: tuple, load_kw: tuple) -> list:
    """The networks of `paths`, loaded once per worker process."""
    key = (paths, load_kw)
    if key not in _LOADED:
        kw = dict(load_kw)
        _LOADED.clear()
        _LOADED[key] = load_networks(list(paths), kw.pop("n_images"), **kw)
    return _LOADED[key]


def compute_step(paths: tuple, load_kw: tuple, job: tuple, eps_all: list[float], suite: Suite,
                 threads: int) -> tuple[str, dict, float]:
    """In a worker: (partial-file key, {eps: per-example bool} as the attack computed it, seconds) of one
    step's `job` (see `_Step`)."""
    from ..plumbing.threads import set_threads
    set_threads(threads)
    nets = _networks(paths, load_kw)
    digests = [_network_digest(net) for net in nets]
    if job[0] == "attack":
        _, i, name, attack, kw = job
        key = _attack_key(digests[i], name, attack, kw, eps_all, suite)
        compute = attack_compute(nets[i], attack, kw, eps_all, suite)
    else:
        _, s, t = job
        key = _transfer_key(digests[s], digests[t], eps_all, suite)
        compute = transfer_compute(nets[s], nets[t], eps_all, suite)
    t0 = time.perf_counter()
    got = compute()
    return key, got, time.perf_counter() - t0


def prefill(paths: list[str], load_kw: dict, nets: list, eps_all: list[float], suite: Suite, transfer: str,
            finished: FinishedAttacks, workers: int, threads: int, log: Callable[[str], None]) -> int:
    """Compute, in `workers` processes, every step of the audit of `nets` (loaded from `paths` with
    `load_kw`: n_images, data_dir, dataset, model) that `finished` does not hold, storing each result in it;
    ``log`` gets one line per finished step and one before the first. Returns how many steps ran."""
    from .parallel import run_in_pool
    if backend.name() != "numpy":
        raise AuditError("--workers runs the attacks in CPU processes; with --backend cupy use one (--workers 1)")
    todo = [s for s in _steps(nets, eps_all, suite, transfer, finished) if s.job and not s.held]
    if not todo:
        return 0
    log(f"{len(todo)} attack step(s) in {workers} worker processes, {threads} BLAS thread(s) each")
    clean = [_clean_correct(net, suite) for net in nets]        # this process's, as the audit's own
    frozen = (tuple(paths), tuple(sorted(load_kw.items())))
    calls = [(s.label, compute_step, (*frozen, s.job, eps_all, suite, threads)) for s in todo]
    by_label = {s.label: s for s in todo}
    kept = f"the finished attack results are kept in {finished.path}"
    for label, (key, raw, seconds) in run_in_pool(calls, workers, doing="computing", kept=kept):
        step = by_label[label]
        if key != step.key:
            raise AuditError(f"{label}: a worker loaded other networks than this audit (was a model file "
                               f"replaced during the audit?); run the same command again")
        target = step.job[1] if step.job[0] == "attack" else step.job[2]
        got, _ = _attack_once(finished, key, label, clean[target], eps_all, None, 0, lambda: raw)
        log(f"{label} " + ", ".join(f"eps {format_number(e)}: {_pct(float(np.mean(v)))}" for e, v in got.items())
            + f" ({seconds:.0f} s, in a worker)")
    return len(todo)


# ------------------------------------------------------------------------------------ checks
def _check(name: str, net: str, ok: bool, detail: str) -> dict:
    return {"check": name, "network": net, "status": "pass" if ok else "warn", "detail": detail}


def _pct(a: float) -> str:
    return f"{100 * a:.2f}%"


def sanity_checks(report: dict, suite: Suite) -> list:
    """The Carlini et al. 2019 checks (module docstring), one dict per check and network:
    {"check", "network", "status": "pass" | "warn", "detail": the numbers}."""
    out = []
    pgd_k, pgd_2k = f"PGD-{suite.pgd_steps}x{suite.restarts}", f"PGD-{2 * suite.pgd_steps}x{suite.restarts}"
    eps = [e for e in report["eps_evaluated"] if e > 0]
    shown = [e for e in report["eps"] if e > 0] or eps[-1:]         # a passing check quotes the user's eps
    for name, res in report["networks"].items():
        acc = res["accuracy"]
        iterative = [a for a in acc if a.startswith(("PGD", "APGD"))]
        gradient = ["FGSM"] + iterative
        bad = [e for e in eps if min(acc[a][e] for a in iterative) > acc["FGSM"][e]]
        out.append(_check("iterative >= single-step", name, not bad, "; ".join(
            f"eps {format_number(e)}: FGSM {_pct(acc['FGSM'][e])}, "
            f"best iterative {_pct(min(acc[a][e] for a in iterative))}" for e in (bad or shown))))
        ce = report.get("check_eps")
        if ce is not None:
            best = min(acc[a][ce] for a in gradient)
            out.append(_check(f"eps {format_number(ce)} -> ~0", name, best <= NEAR_ZERO,
                              f"at eps {format_number(ce)}: best gradient attack {_pct(best)}, "
                              f"robust {_pct(res['robust'][ce])} "
                              f"(pass: gradient attacks <= {_pct(NEAR_ZERO)})"))
        worse = [e for e in eps if acc[pgd_2k][e] > acc[pgd_k][e] + STEPS_TOL]
        out.append(_check("more PGD steps", name, not worse, "; ".join(
            f"eps {format_number(e)}: {pgd_k} {_pct(acc[pgd_k][e])}, {pgd_2k} {_pct(acc[pgd_2k][e])}"
            for e in (worse or shown))))
        masked = [e for e in eps if acc["Square"][e] < min(acc[a][e] for a in gradient) - MASKING_TOL]
        out.append(_check("gradient-free not better", name, not masked, ("gradient masking? " if masked else "") + "; ".join(
            f"eps {format_number(e)}: Square {_pct(acc['Square'][e])}, "
            f"best gradient attack {_pct(min(acc[a][e] for a in gradient))}" for e in (masked or shown))))
    for t in report["transfer"]:
        white = report["networks"][t["target"]]["accuracy"][pgd_k]
        stronger = [e for e in eps if t["accuracy"][e] < white[e] - MASKING_TOL]
        out.append(_check("transfer weaker than white-box", t["target"], not stronger, f"from {t['source']}: " + "; ".join(
            f"eps {format_number(e)}: transfer {_pct(t['accuracy'][e])}, white-box {_pct(white[e])}"
            for e in (stronger or shown))))
    return out


# ------------------------------------------------------------------------------------ output
def format_report(report: dict) -> str:
    """The terminal table: per network, one row per eps (accuracy %, the columns of `attack_plan`,
    robust = worst case per example); then transfer and the checks."""
    lines, check_rows = [], False
    for name, res in report["networks"].items():
        cols = list(res["accuracy"]) + ["robust"]
        lines.append(f"{name}: clean accuracy {100 * res['clean']:.2f}%")
        head = f"{'eps':>7} | " + " | ".join(f"{c:>9}" for c in cols)
        lines += [head, "-" * len(head)]
        for e in report["eps_evaluated"]:
            vals = [res["accuracy"][c][e] for c in cols[:-1]] + [res["robust"][e]]
            mark = " (check)" if e not in report["eps"] else ""
            check_rows = check_rows or bool(mark)
            lines.append(f"{format_number(e):>7} | " + " | ".join(f"{100 * v:>8.2f}%" for v in vals) + mark)
        lines.append("")
    if report["networks"]:
        lines += _legend(report, check_rows)
    for t in report["transfer"]:
        lines.append(f"transfer (PGD crafted on {t['source']}, classified by {t['target']}): " + ", ".join(
            f"eps {format_number(e)}: {100 * a:.2f}%" for e, a in t["accuracy"].items()))
    if report["transfer"]:
        lines.append("")
    lines.append("sanity checks (Carlini et al. 2019):")
    lines += _check_lines(report["checks"])
    return "\n".join(lines)


def _legend(report: dict, check_rows: bool) -> list:
    """What "robust" and "(check)" in the table mean."""
    lines = ["robust: classified correctly clean and under every attack at that eps (the worst case per example); "
             "an attack's column counts an example only if it is correct clean too"]
    if check_rows:
        lines.append(f"(check): eps {format_number(report['check_eps'])} is not one of --eps; it is audited only for "
                     f"the sanity check that accuracy falls to ~0 at a large eps")
    return lines + [""]


def _check_lines(checks: list[dict]) -> list:
    """One line per check and network; a check that every one of 3 or more networks passes is one line
    (each network's numbers stay in robustness.json)."""
    by_name: dict[str, list[dict]] = {}
    for c in checks:
        by_name.setdefault(c["check"], []).append(c)
    lines = []
    for name, group in by_name.items():
        if len(group) >= 3 and all(c["status"] == "pass" for c in group):
            lines.append(f"  [pass] {name}: {len(group)} of {len(group)} pass (numbers in robustness.json)")
            continue
        lines += [f"  [{c['status']}] {c['check']} ({c['network']}): {c['detail']}" for c in group]
    return lines


def _percent(d: dict) -> dict:
    """{repr(eps): percent}: the exact budget as the key, so that close budgets keep their own numbers."""
    return {repr(float(e)): round(100 * a, 2) for e, a in d.items()}


def report_json(report: dict, nets: list[Network], suite: Suite, argv: Sequence[str] | None = None) -> dict:
    """robustness.json's content: accuracies in percent rounded to 2 decimals, keyed by repr(eps);
    the command line, the versions, the settings and each network's provenance."""
    from .recipe import git_commit, versions
    info = {n.name: n.info for n in nets}
    return {
        "command": "python -m nanosgm.robustness " + " ".join(sys.argv[1:] if argv is None else argv),
        "git_commit": git_commit(), "versions": versions(), "settings": {**asdict(suite), "eps": report["eps"], "check_eps": report["check_eps"],
                                             "transfer": report.get("transfer_pairs", "first"),
                                             "images": {n.name: int(len(n.X)) for n in nets}},
        "networks": {name: {"info": info.get(name, {}), "clean": round(100 * res["clean"], 2),
                            "accuracy": {a: _percent(v) for a, v in res["accuracy"].items()},
                            "robust": _percent(res["robust"])} for name, res in report["networks"].items()},
        "transfer": [{"source": t["source"], "target": t["target"], "attack": "PGD", "accuracy": _percent(t["accuracy"])}
                     for t in report["transfer"]],
        "checks": report["checks"],
    }


def accuracy_figure(report: dict) -> Figure:
    """Accuracy (%) against eps (log axis), one curve per attack (colour) and network (line style);
    a matplotlib Figure built without pyplot (headless, 7 x 4.5 inches)."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    styles = ["-", "--", ":", "-."]
    colours: dict[str, str] = {}
    eps = [e for e in report["eps_evaluated"] if e > 0]
    for i, (name, res) in enumerate(report["networks"].items()):
        curves = dict(res["accuracy"], robust=res["robust"])
        for attack, acc in curves.items():
            colour = colours.setdefault(attack, f"C{len(colours)}")
            ax.plot(eps, [100 * acc[e] for e in eps], styles[i % len(styles)], color=colour, marker="o", ms=3,
                    lw=2.2 if attack == "robust" else 1.2, label=f"{attack}, {name}")
    ax.set_xscale("log")
    ax.set_xlabel("eps (L-inf)")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(-2, 102)
    ax.set_title("Accuracy under attack (robust = worst case per example)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=2 if len(report["networks"]) > 1 else 1)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------ CLI
PROG = "python -m nanosgm.robustness"


def build_parser(prog: str = PROG) -> Parser:
    """The flags; ``prog`` is the command in the usage line and messages (``nanosgm robustness`` from
    :mod:`nanosgm.commands`)."""
    p = Parser(prog=prog,
               description="Audit networks written by python -m nanosgm.train: FGSM, PGD, APGD-CE, APGD-DLR, "
                           "Square, robust accuracy, transfer and the Carlini et al. sanity checks.")
    p.add_argument("models", nargs="+", metavar="MODEL.npz", help="model files; a results.json beside each (python -m "
                   "nanosgm.train) or a protocol.json one folder up (models/run<i>-<arm>.npz of python -m "
                   "nanosgm.experiments) names its dataset and model")
    p.add_argument("--dataset", default=None, help="the dataset, for a model without results.json")
    p.add_argument("--model", default=None, help="dnn, cnn or cifar_cnn, for a model without results.json")
    p.add_argument("--eps", type=numbers("--eps", above=0), default=",".join(f"{e:g}" for e in DEFAULT_EPS),
                   help="comma-separated L-inf budgets "
                   "(default: the paper's 0.001,0.01,0.1,0.2 and 0.3)")
    p.add_argument("--check-eps", type=float, default=CHECK_EPS, help="the large eps at which accuracy should be ~0 "
                   "(default 0.5; evaluated too)")
    p.add_argument("-n", "--images", type=int, default=1000, help="the first N test images (default 1000)")
    p.add_argument("--all", action="store_true", help="the whole test set")
    p.add_argument("--pgd-steps", type=int, default=Suite.pgd_steps, help="PGD steps (default 10; twice as many for the check)")
    p.add_argument("--restarts", type=int, default=Suite.restarts, help="PGD random restarts (default 3)")
    p.add_argument("--apgd-steps", type=int, default=Suite.apgd_steps, help="APGD steps (default 100)")
    p.add_argument("--queries", type=int, default=Suite.queries, help="Square queries (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="seeds every attack's generator (default 0)")
    p.add_argument("--transfer", default="first", choices=TRANSFER, help="transfer pairs: the first network with "
                   "each other one, both ways (default), every ordered pair, or none")
    p.add_argument("--batch-size", type=int, default=Suite.batch_size, help="images per batch (default 100)")
    p.add_argument("--data-dir", type=named("--data-dir"), default=None, help="where the dataset files are (else NANOSGM_DATA, ...)")
    p.add_argument("--backend", default=None, choices=["numpy", "cupy"], help="array backend")
    p.add_argument("--out", type=named("--out"), default=None, help="folder for robustness.json and robustness.png (default: the first "
                   "model's folder)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier robustness.json in --out")
    p.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (a line per finished attack on stderr instead)")
    p.add_argument("--workers", type=whole("--workers", least=1), default=1, help="run the attacks in this many "
                   "worker processes, NANOSGM_THREADS or else cores // workers BLAS threads each (default 1: in this process); the numbers "
                   "are the same as in one process with that many BLAS threads")
    p.add_argument("--keep-partial", action="store_true", help=f"keep --out/{PARTIAL_NAME} after the audit, so that a "
                   "later audit into the same --out (with --overwrite) that adds networks runs only what is new")
    return p


class AuditError(ValueError):
    """A bad file or flag: the message is printed as one `error: ...` line."""


def _read_record(path: str, run: bool) -> Any:
    """The JSON in a run's results.json (``run``: its seal checked, :mod:`nanosgm.plumbing.seal`; one written
    before results were sealed is returned as it is) or in a protocol.json, or AuditError."""
    try:
        with open(path) as f:
            saved = json.load(f)
    except (OSError, ValueError) as exc:
        raise AuditError(f"{path} is not a results.json written by python -m nanosgm.train nor a "
                         f"protocol.json ({exc!r})") from None
    if run and is_sealed(saved):
        try:
            check_seal(saved, path, fix="restore it (e.g. from a copy), or train the run again")
        except RecordEdited as exc:
            raise AuditError(str(exc)) from None
    return saved


def _record_beside(path: str) -> tuple[str, bool, Any] | None:
    """(file, whether it is a run's results.json, its JSON) of the record of saved model `path`: the
    results.json beside it (its seal checked), else the protocol.json one folder up (``models/run<i>-<arm>.npz``
    of a protocol); None where there is neither. Read once and given to :func:`_config_for` and
    :func:`_recorded_weights`."""
    if not os.path.isfile(path):
        raise AuditError(f"{path}: no such model file (give the model.npz that python -m nanosgm.train wrote)")
    here = os.path.dirname(os.path.abspath(path))
    for where, run in ((os.path.join(here, "results.json"), True),
                       (os.path.join(os.path.dirname(here), "protocol.json"), False)):
        if os.path.isfile(where):
            return where, run, _read_record(where, run)
    return None


def _config_for(path: str, args: argparse.Namespace, found: tuple[str, bool, Any] | None) -> dict:
    """dataset / model / limit / val_size of the run that wrote `path`: its record (`found`, from
    :func:`_record_beside`), else the flags; with a record also "eval_images": the first how many test images
    the run evaluated (None: the whole test set)."""
    if found is not None:
        results, run, saved = found
        try:
            cfg = saved.get("spec") or saved["config"]       # a network's record, or a protocol's config
            evaluated = saved.get("n_test", cfg.get("eval_limit"))
            cfg = {k: cfg[k] for k in ("dataset", "model")} | {k: cfg.get(k) for k in ("limit", "val_size")}
            cfg["eval_images"] = evaluated if isinstance(evaluated, int) else None
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise AuditError(f"{results} is not a results.json written by python -m nanosgm.train nor a "
                             f"protocol.json ({exc!r})") from None
        for flag in ("dataset", "model"):
            given = getattr(args, flag)
            if given is not None and given != cfg[flag]:
                raise AuditError(f"--{flag} {given} contradicts {results}, which says {cfg[flag]!r}; drop the flag")
        if run and not is_sealed(saved):
            print(unsealed_note(results, "read as it is"), file=sys.stderr)
        return cfg
    if args.dataset is None or args.model is None:
        raise AuditError(f"{path} has no results.json beside it; give --dataset and --model")
    return {"dataset": args.dataset, "model": args.model, "limit": None, "val_size": None}


def _recorded_weights(path: str, found: tuple[str, bool, Any] | None) -> tuple[str, str] | None:
    """(digest, where it is written) of the weights the record of the saved model `path` names (`found`, from
    :func:`_record_beside`): the ``weights_sha256`` of the results.json beside it, or the digest the
    protocol.json above ``models/run<i>-<arm>.npz`` knows for its network (its record's, or a refill's:
    :func:`.records.recorded_weights`); None where none is named (records made before the field existed)."""
    if found is None:
        return None
    from .records import recorded_weights
    where, run, doc = found
    if run:
        digest = doc.get("weights_sha256") if isinstance(doc, dict) else None
    else:
        stem = os.path.splitext(os.path.basename(path))[0]
        networks = doc.get("networks") if isinstance(doc, dict) else None
        if os.path.basename(os.path.dirname(os.path.abspath(path))) != "models" or not isinstance(networks, dict):
            return None
        key = next((k for k in networks if _file_stem(k) == stem), None)
        digest = recorded_weights(doc, key) if key is not None else None
    return (digest, where) if isinstance(digest, str) else None


def _file_stem(key: str) -> str | None:
    """The file name (no extension) a protocol saves network `key`'s weights under (None: not a network key)."""
    from .keys import file_stem, split_key
    try:
        return file_stem(*split_key(key))
    except ValueError:
        return None


def load_networks(paths: list[str], n_images: int | None = None, *, data_dir: str | None = None,
                  dataset: str | None = None, model: str | None = None) -> list[Network]:
    """[Network] for every saved model in ``paths``, each with the first ``n_images`` test images of its
    dataset (all when None), read as the audit reads them: the results.json beside each model gives its
    dataset and network (``dataset`` and ``model`` when there is none) and its seal is checked."""
    args = argparse.Namespace(models=list(paths), data_dir=data_dir, dataset=dataset, model=model)
    return _load_networks(args, n_images)


def _load_networks(args: argparse.Namespace, n_images: int | None) -> list[Network]:
    """[Network] for every MODEL.npz, each with the first `n_images` test images of its dataset."""
    from . import recipe
    from ..data import DataError
    from .network import weights_digest
    nets: list[Network] = []
    data_cache = {}
    for path in args.models:
        found = _record_beside(path)
        cfg = _config_for(path, args, found)
        key = (cfg["dataset"], cfg["limit"], cfg["val_size"])
        try:
            if key not in data_cache:
                data_cache[key] = recipe.load_data(cfg["dataset"], data_dir=args.data_dir, limit=cfg["limit"],
                                                  eval_limit=n_images, val_size=cfg["val_size"], progress=False)
            ds, clip = data_cache[key]
            backend.seed(0)
            model = recipe.build_model(cfg["model"], ds)
            model.load(path)
        except (DataError, ValueError, FileNotFoundError) as exc:
            raise AuditError(f"{path}: {exc}") from None
        folder = os.path.dirname(os.path.abspath(path))
        name = os.path.basename(folder) or path
        if name == "models":                               # a protocol's network: <row>/<run>-<arm>
            name = f"{os.path.basename(os.path.dirname(folder))}/{os.path.splitext(os.path.basename(path))[0]}"
        if any(n.name == name for n in nets):
            name = path
        weights = weights_digest(model)
        recorded = _recorded_weights(path, found)
        if recorded is not None and recorded[0] != weights:
            raise AuditError(f"{path}: these weights ({weights[:12]}) are not the ones its record in {recorded[1]} "
                             f"names ({recorded[0][:12]}); audit the weights that run saved (a protocol's lost or "
                             f"replaced weights: --refill-weights)")
        nets.append(Network(name, model, np.asarray(ds.X_test), np.asarray(ds.y_test), clip, ds.name,
                            info={"path": path, **cfg, "weights_sha256": weights}))
    return nets


def _image_note(nets: list[Network], requested: int | None) -> str | None:
    """One line naming the networks audited on other test images than their training run evaluated (the
    first N, ``requested``, None for --all, against the run's "eval_images"), or None."""
    differ = []
    for net in nets:
        if "eval_images" not in net.info:                  # no results.json: not known
            continue
        trained, n = net.info["eval_images"], len(net.X)
        cut = requested is not None and n >= requested        # the test set has more images than audited
        if (trained is None and cut) or (trained is not None and trained != n):
            differ.append(f"{net.name}: the first {n} test images here, "
                          + ("the whole test set" if trained is None else f"the first {trained}") + " in training")
    if not differ:
        return None
    return (f"note: the audit's images are not the ones training evaluated ({'; '.join(differ)}), so its clean "
            f"accuracy differs from the run's")


def _claim(out: str, overwrite: bool) -> None:
    """Refuse an --out that holds a finished audit's robustness.json (without --overwrite): called with the
    folder's lock held, so that an audit finishing meanwhile is seen."""
    if os.path.exists(os.path.join(out, "robustness.json")) and not overwrite:
        raise AuditError(f"{out} already holds a robustness.json; use --overwrite to replace it or --out elsewhere")


def _run(args: argparse.Namespace, argv: list[str]) -> int:
    from ..plumbing.cli import check_out_folder
    from .recipe import git_commit
    git_commit()                               # read now, while the code it names is the code in use
    eps = list(args.eps)                 # checked where parsed (plumbing.flags.numbers)
    if args.check_eps is not None and not (math.isfinite(args.check_eps) and args.check_eps > 0):
        raise AuditError(f"--check-eps must be a finite value > 0, got {args.check_eps}")
    for flag in ("images", "pgd_steps", "restarts", "apgd_steps", "queries", "batch_size"):
        if getattr(args, flag) < 1:
            raise AuditError(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    if args.seed < 0:
        raise AuditError(f"--seed must be >= 0 (it seeds every attack's generator), got {args.seed}")
    if args.backend:
        backend.use(args.backend)              # a BackendError is a NanosgmError: run_cli prints it in one line
    out = args.out or os.path.dirname(os.path.abspath(args.models[0]))
    check_out_folder(out)                      # one line, before any network is loaded
    from ..plumbing.runlock import RunLock
    lock = RunLock(out)                        # one audit per --out folder at a time
    if os.path.isdir(out):                     # an existing folder from the start, a new one once the networks load
        lock.acquire()
    try:
        if lock.held:
            _claim(out, args.overwrite)
        nets = _load_networks(args, None if args.all else args.images)
        if not lock.held:
            lock.acquire()
            _claim(out, args.overwrite)
        return _audit_locked(args, argv, out, nets, eps)
    finally:
        lock.release()


def _audit_locked(args: argparse.Namespace, argv: list[str], out: str, nets: list[Network], eps: list[float]) -> int:
    """The audit of `nets` into `out`, whose lock we hold."""
    from tqdm.auto import tqdm

    from ..plumbing.cli import CliError, interruption, interruption_status
    suite = Suite(args.pgd_steps, args.restarts, args.apgd_steps, args.queries, args.seed, args.batch_size)
    bar_shown = not args.no_progress and sys.stderr.isatty()          # else a line per attack says how far it is
    say = functools.partial(tqdm.write, file=sys.stderr)
    log = None if bar_shown else say
    note = _image_note(nets, None if args.all else args.images)
    if note:
        say(note)
    try:
        finished = FinishedAttacks(os.path.join(out, PARTIAL_NAME), say=say)
    except PartialFileError as exc:
        raise AuditError(str(exc)) from None
    if finished.loaded:
        say(f"resuming from {out}/{PARTIAL_NAME}: finished attacks on the same networks, images and settings are "
            "not run again")
    try:
        if args.workers > 1:
            _prefill(args, nets, eps, suite, finished, say)
        report = audit(nets, eps, suite, check_eps=args.check_eps, progress=not args.no_progress, log=log,
                       finished=finished, transfer=args.transfer, say=say)
    except KeyboardInterrupt:                  # Ctrl-C, and SIGTERM / SIGHUP through run_cli
        raise CliError(f"{interruption()}: {_kept(finished)}", code=interruption_status()) from None
    _write_outputs(out, report, nets, suite, argv)
    if not args.keep_partial:
        finished.remove()
    if finished.loaded:
        print(f"{finished.reused} attack result(s) came from the partial file", file=sys.stderr)
    return 0


def _prefill(args: argparse.Namespace, nets: list[Network], eps: list[float], suite: Suite,
             finished: FinishedAttacks, say: Callable[[str], None]) -> None:
    """--workers: the attacks not in the partial file yet, computed in worker processes into it (`prefill`)."""
    from .parallel import default_threads
    load_kw = dict(n_images=None if args.all else args.images, data_dir=args.data_dir, dataset=args.dataset,
                   model=args.model)
    threads = int(os.environ.get("NANOSGM_THREADS") or default_threads(args.workers))
    prefill(args.models, load_kw, nets, evaluated_eps(eps, args.check_eps), suite, args.transfer, finished,
            args.workers, threads, say)


def _kept(finished: FinishedAttacks) -> str:
    """What an interrupted audit keeps and how to go on."""
    n = len(finished.entries)
    if n and finished.path is not None and os.path.exists(finished.path):
        return (f"the {n} finished attack result(s) are kept in {finished.path}; run the same command to resume "
                f"after them")
    return "no attack had finished, so nothing is kept; run the same command to start again"


def _write_outputs(out: str, report: dict, nets: list[Network], suite: Suite, argv: list[str]) -> None:
    print(format_report(report))
    from ..plumbing.files import write_json_atomic
    # sealed (plumbing.seal): tools/robustness_tables.py refuses the file once it is edited by hand
    write_json_atomic(os.path.join(out, "robustness.json"), seal(report_json(report, nets, suite, argv)))
    accuracy_figure(report).savefig(os.path.join(out, "robustness.png"), dpi=100)
    print(f"wrote {out}/robustness.json and {out}/robustness.png")


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    """``python -m nanosgm.robustness`` (``prog`` names the command in its help and messages); the exit status."""
    from ..plumbing.cli import run_cli
    return run_cli(lambda a: _run(build_parser(prog).parse_args(a), a), argv)
