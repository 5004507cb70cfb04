"""What a protocol.json must hold: checked when it is read, and for each network when it is filed.

A protocol's records are plain JSON that a person can open and edit, so nothing in one reaches a table
unchecked. :func:`check_protocol` refuses, in one line that names the file and the field:

    the file        no top-level field but those a protocol writes (:data:`TOP_LEVEL`), a ``config``
                    with the fields the tables read (eps: finite numbers >= 0, each once), ``arms``
                    (canonical labels, the control first, each once), ``networks`` (an object keyed
                    ``run<i>/<arm>``, :mod:`.keys`), ``blas_threads`` (when recorded: a whole number >= 1)
    each record     (:func:`check_record`) its seal (:mod:`nanosgm.plumbing.seal`), its spec against the
                    protocol's config and its key (what the protocol would train for that run and arm),
                    its BLAS thread count against the protocol's, and its accuracies: one per eps of the
                    config, each a percentage in [0, 100] of a whole number of the images measured, and
                    FGSM at eps 0 equal to the clean accuracy
    the lock-step   every network of a run started from the same weights (:func:`check_lockstep`)
    the refills     each session's ``refilled`` entries: sealed, each binding a kept weights digest to the
                    digest of the record it reproduced; one version of a record is never given two weights
                    (:func:`recorded_weights` reads them)

Records written before seals existed carry none: they are accepted, and :func:`check_protocol` returns
how many there are so that the caller can say so, in a file none of whose records is sealed; a file that is
written again gets every record sealed (:func:`seal_all`), so in a file with sealed records a record without
its digest had it removed, and is refused (:func:`_check_unsealed`). Records of format ``nanosgm-network/1`` name their
method by ``input_lr``, ``per_sample``, ``published`` and ``adversarial`` instead of ``method``; their
spec is read as the label those fields give.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeGuard

from ..methods.arms import CONTROL, parse_arm
from ..plumbing.errors import NanosgmError
from ..plumbing.seal import SEAL_KEY, RecordEdited, check_seal, content_digest, is_sealed, seal, unsealed
from .keys import split_key
from .network import pct

__all__ = ["ProtocolError", "LockstepBroken", "check_protocol", "check_record", "check_lockstep", "eps_keys",
           "record_threads", "authors_draw_seed", "record_differences", "recorded_weights", "record_digest", "refill_entry",
           "seal_all"]

RESTORE = "restore the file (e.g. git checkout)"
FIX = f"{RESTORE} or delete the record to recompute it"
LEGACY_FIELDS = ("input_lr", "per_sample", "published", "adversarial")      # nanosgm-network/1's method
ACCURACIES = ("fgsm_pct", "pgd_pct", "fgsm_pgd_images_pct", "fgsm_authors_pct")
ON_PGD_IMAGES = ("pgd_pct", "fgsm_pgd_images_pct")          # measured on the first pgd_images test images


class ProtocolError(NanosgmError, ValueError):
    """A protocol.json (or a record filed in it) that is malformed or disagrees with itself."""


class LockstepBroken(NanosgmError, RuntimeError):
    """The networks of one run did not start from the same initial weights."""


def _whole(v: object, least: int | None = None) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and (least is None or v >= least)


def _real(v: object) -> TypeGuard[float]:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# (check, what it must be) of each config field the tables, statistics and checks read
_CONFIG = {"dataset": (lambda v: isinstance(v, str), "a name"), "model": (lambda v: isinstance(v, str), "a name"),
           "augment": (lambda v: isinstance(v, bool), "true or false"),
           "optimizer": (lambda v: isinstance(v, str), "a name"),
           "epochs": (lambda v: _whole(v, 1), "a whole number >= 1"),
           "seed0": (_whole, "a whole number"), "pgd": (lambda v: _whole(v, 0), "a whole number >= 0"),
           "pgd_steps": (lambda v: _whole(v, 1), "a whole number >= 1")}


def eps_keys(config: dict) -> list:
    """The keys of a record's accuracies: ``repr`` of each eps of the config (exact, so close budgets differ)."""
    return [repr(float(e)) for e in config["eps"]]


def record_threads(record: dict) -> int | None:
    """The BLAS thread count a record says it was made with (None: not recorded)."""
    versions = record.get("versions")
    return versions.get("blas_threads") if isinstance(versions, dict) else None


def authors_draw_seed(record: dict) -> int:
    """The seed of a network's dropout draws under the authors' FGSM convention: the one its record was
    measured with (``results.fgsm_authors_seed``), else its spec's seed."""
    seed = (record.get("results") or {}).get("fgsm_authors_seed")
    return int(seed if seed is not None else record["spec"]["seed"])


#: What a network's record measured: equal in two records when their networks are the same (the rest is
#: when, how long, on which commit and with which versions, and the seal).
NUMBERS = ("init_sha256", "n_train", "n_test", "best_epoch", "weights_sha256", "weights_sha256_last", "results",
           "results_last_epoch", "history")
MEASURES = ("results", "results_last_epoch")        # what a network trained without evaluating lacks
TIMING = ("seconds",)       # per-epoch history keys that are times


def record_differences(stored: dict, new: dict, measured: bool = True) -> list[str]:
    """The fields (of :data:`NUMBERS`) in which two records of one network differ: [] when the new run
    measured exactly what the stored one did (the per-epoch times aside). ``measured`` False: the new
    network was trained without evaluating it (its spec's ``evaluate``), so its :data:`MEASURES` are not
    compared; the weights' digests must then be in the stored record (a ValueError otherwise)."""
    if not measured and "weights_sha256" not in stored:
        raise ValueError("a network trained without evaluating it compares with its record by the weights' "
                         "digests, which this record lacks")

    def numbers(r: dict, k: str) -> object:
        if k == "history" and isinstance(r.get(k), list):
            return [{hk: hv for hk, hv in h.items() if hk not in TIMING} for h in r[k]]
        return r.get(k)

    differ = []
    for k in (k for k in NUMBERS if k in stored and (measured or k not in MEASURES)):
        have, got = numbers(stored, k), numbers(new, k)
        if isinstance(have, dict) and isinstance(got, dict):
            got = {f: got.get(f) for f in have}          # an older record measured less: compare what it has
        if have != got:
            differ.append(k)
    return differ


def record_digest(record: dict) -> str:
    """The content digest of a network's record without its seal (:mod:`nanosgm.plumbing.seal`): the
    record's own ``sha256`` where it is sealed, computed alike for an older, unsealed one."""
    return content_digest(unsealed(record))


def refill_entry(stored: dict, weights_sha256: str) -> dict:
    """What a refill writes in its session's ``"refilled"`` for a network whose new weights reproduced the
    stored record: the weights' digest bound to the record's (:func:`record_digest`), sealed."""
    return seal({"weights_sha256": weights_sha256, "record_sha256": record_digest(stored)})


def _refills(doc: dict, key: str) -> list[tuple[int, Any]]:
    """(session index, entry) of every refill of network ``key`` named in ``doc``'s sessions, in order."""
    sessions = doc.get("sessions")
    return [(i, s["refilled"][key]) for i, s in enumerate(sessions if isinstance(sessions, list) else [])
            if isinstance(s, dict) and isinstance(s.get("refilled"), dict) and key in s["refilled"]]


def _entry_problem(entry: object) -> str | None:
    """What is wrong with a ``"refilled"`` entry (not a sealed {weights_sha256, record_sha256}), or None."""
    if not (isinstance(entry, dict) and is_sealed(entry)
            and set(entry) == {SEAL_KEY, "weights_sha256", "record_sha256"}
            and all(isinstance(entry[k], str) and len(entry[k]) == 64 and all(c in "0123456789abcdef" for c in entry[k])
                    for k in ("weights_sha256", "record_sha256"))):
        return "is not a sealed {weights_sha256, record_sha256} pair of 64-hex digests"
    try:
        check_seal(entry, "")
    except RecordEdited:
        return "was changed after it was written"
    return None


def recorded_weights(doc: dict, key: str) -> str | None:
    """The sha256 of network ``key``'s saved weights as protocol.json ``doc`` knows it: its record's
    ``weights_sha256``, else the digest the last refill of this very record kept (a session's ``"refilled"``
    entry whose seal holds and whose ``record_sha256`` is the record's: a refill keeps weights only when they
    reproduce the record); None where neither names one (a record made before digests, and no refill since
    recorded one). An entry of another version of the record, or a damaged one, is never trusted."""
    networks = doc.get("networks")
    record = networks.get(key) if isinstance(networks, dict) else None
    if not isinstance(record, dict):
        return None
    if isinstance(record.get("weights_sha256"), str):
        return record["weights_sha256"]
    mine = record_digest(record)
    kept = [e["weights_sha256"] for _, e in _refills(doc, key)
            if _entry_problem(e) is None and e["record_sha256"] == mine]
    return kept[-1] if kept else None


def _check_refilled(doc: dict, where: str) -> None:
    """Each session's ``"refilled"``: an object of sealed entries (:func:`refill_entry`); refills of one
    version of a record that kept different weights, or a digest other than the record's own, are refused.
    An entry of a record since deleted or recomputed is stale, not damaged: it is left as it is."""
    for i, session in enumerate(doc.get("sessions", [])):
        refilled = session.get("refilled") if isinstance(session, dict) else None
        if refilled is not None and not isinstance(refilled, dict):
            raise ProtocolError(f"{where}: sessions[{i}].refilled must be an object {{network key: entry}}; {RESTORE}")
    for key, record in doc["networks"].items():
        mine, kept = record_digest(record), set()
        for i, entry in _refills(doc, key):
            problem = _entry_problem(entry)
            if problem:
                raise ProtocolError(f"{where}: sessions[{i}].refilled[{key!r}] {problem}; {RESTORE}")
            if entry["record_sha256"] == mine:
                kept.add(entry["weights_sha256"])
        own = {record["weights_sha256"]} if kept and "weights_sha256" in record else set()
        if len(kept | own) > 1:
            raise ProtocolError(f"{where}: refills of {key} name other weights than its record or each other "
                                f"({', '.join(sorted(d[:12] for d in kept))}); {RESTORE}")


# ---------------------------------------------------------------------------------------- the file
def _check_config(cfg: object, where: str) -> None:
    if not isinstance(cfg, dict):
        raise ProtocolError(f"{where}: 'config' is missing or not an object; {RESTORE}")
    for k, (ok, what) in _CONFIG.items():
        if not ok(cfg.get(k)):
            raise ProtocolError(f"{where}: config.{k} must be {what}, got {cfg.get(k, 'nothing')!r}; "
                                f"{RESTORE}")
    eps = cfg.get("eps")
    if not (isinstance(eps, list) and eps and all(_real(e) and e >= 0 for e in eps) and len(set(eps)) == len(eps)):
        raise ProtocolError(f"{where}: config.eps must be a list of finite numbers >= 0, each given once, got "
                            f"{_listed(eps)}; {RESTORE}")


def _listed(value: object) -> str:
    """``value`` for a message: a list as its items joined by commas (no brackets), anything else as repr."""
    return ", ".join(repr(v) for v in value) if isinstance(value, list) and value else repr(value)


def _check_arms(arms: object, where: str) -> None:
    if not (isinstance(arms, list) and arms and arms[0] == CONTROL and all(isinstance(a, str) for a in arms)
            and len(set(arms)) == len(arms)):
        raise ProtocolError(f"{where}: 'arms' must be a list of arm labels, {CONTROL!r} first, each once, got "
                            f"{_listed(arms)}; {RESTORE}")
    for a in arms:
        try:
            label = parse_arm(a).label
        except ValueError as exc:
            raise ProtocolError(f"{where}: arms: {exc}") from None
        if label != a:
            raise ProtocolError(f"{where}: arms: {a!r} is not written as the protocol writes it ({label!r}); "
                                f"{RESTORE}")


# what protocol.json holds (:func:`~.protocol._json_result` writes no more)
TOP_LEVEL = frozenset({"format", "config", "arms", "blas_threads", "sessions", "networks"})


def check_protocol(doc: dict, where: str, expected_spec: Callable[[int, str], dict]) -> int:
    """Check a protocol's content (module docstring); ``where`` names its file in the messages and
    ``expected_spec(run, arm)`` gives the spec the protocol trains for a network. Returns how many records
    carry no seal; raises :class:`ProtocolError`, :class:`~nanosgm.plumbing.seal.RecordEdited` or
    :class:`LockstepBroken`."""
    odd = sorted(set(doc) - TOP_LEVEL)
    if odd:
        raise ProtocolError(f"{where}: unknown top-level field(s) {', '.join(map(repr, odd))} (a protocol holds "
                            f"{', '.join(sorted(TOP_LEVEL))}); {RESTORE}")
    _check_config(doc.get("config"), where)
    _check_arms(doc.get("arms"), where)
    threads = doc.get("blas_threads")
    if threads is not None and not _whole(threads, 1):
        raise ProtocolError(f"{where}: blas_threads must be a whole number >= 1, got {threads!r}; "
                            f"{RESTORE}")
    if not isinstance(doc.get("sessions", []), list):
        raise ProtocolError(f"{where}: 'sessions' must be a list; {RESTORE}")
    nets = doc.get("networks")
    if not isinstance(nets, dict):
        raise ProtocolError(f"{where}: 'networks' must be an object keyed run<i>/<arm>, got "
                            f"{type(nets).__name__}; {RESTORE}")
    unsealed = 0
    for key, record in nets.items():
        check_record(doc, key, record, where, expected_spec)
        unsealed += not is_sealed(record)
    _check_unsealed(nets, where)
    _check_refilled(doc, where)
    for run in sorted({split_key(k)[0] for k in nets}):
        try:
            check_lockstep(doc, run)
        except LockstepBroken as exc:
            raise LockstepBroken(f"{where}: {exc}; {RESTORE} or delete the run's records to recompute them") from None
    return unsealed


def _check_unsealed(nets: dict, where: str) -> None:
    """Records without a digest are ones written before records were sealed only in a file none of whose
    records has one (a protocol resumed since is written back with every record sealed: :func:`seal_all`);
    in a file with sealed records, a record without its digest had it removed, and is refused like an
    edited one."""
    if any(is_sealed(r) for r in nets.values()):
        bare = [k for k, r in nets.items() if not is_sealed(r)]
        if bare:
            raise RecordEdited(f"{where}: networks[{bare[0]!r}] carries no content digest while other records of "
                               f"this file do: its digest was removed; {FIX}")


def seal_all(nets: dict) -> dict:
    """``nets`` with every record sealed: how a protocol is written, its records checked when it was read."""
    return {k: r if is_sealed(r) else seal(r) for k, r in nets.items()}


# -------------------------------------------------------------------------------------- one record
def check_record(doc: dict, key: str, record: object, where: str, expected_spec: Callable[[int, str], dict]) -> None:
    """Check one record of ``doc`` (a protocol whose config and arms are checked) filed under ``key``."""
    try:
        run, arm = split_key(key)
    except ValueError as exc:
        raise ProtocolError(f"{where}: networks: {exc}; {FIX}") from None
    at = f"{where}: networks[{key!r}]"
    if arm not in doc["arms"]:
        raise ProtocolError(f"{at}: its arm {arm!r} is not among the protocol's arms "
                            f"({', '.join(map(str, doc['arms']))}); {FIX}")
    if not isinstance(record, dict):
        raise ProtocolError(f"{at} is not an object; {FIX}")
    if is_sealed(record):
        check_seal(record, at)
    for field, ok in (("spec", isinstance(record.get("spec"), dict)),
                      ("init_sha256", isinstance(record.get("init_sha256"), str)),
                      ("history", isinstance(record.get("history"), list)
                       and all(isinstance(h, dict) for h in record["history"])),
                      ("results", isinstance(record.get("results"), dict))):
        if not ok:
            raise ProtocolError(f"{at}.{field} is missing or malformed; {FIX}")
    _check_spec(record["spec"], expected_spec(run, arm), f"{at}.spec")
    _check_threads(doc.get("blas_threads"), record, at)
    n_test = record.get("n_test")
    if n_test is not None and not _whole(n_test, 1):
        raise ProtocolError(f"{at}.n_test must be a whole number >= 1, got {n_test!r}; {FIX}")
    _check_results(record["results"], doc["config"], n_test, f"{at}.results")
    if "results_last_epoch" in record:
        _check_results(record["results_last_epoch"], doc["config"], n_test, f"{at}.results_last_epoch")


def _legacy_method(spec: dict, where: str) -> str:
    """The arm label of a nanosgm-network/1 spec (``input_lr``, ``per_sample``, ``published``, ``adversarial``)."""
    try:
        adv = spec.get("adversarial")
        if spec.get("published"):
            text = "published"
        elif adv:
            kind, eps, steps = adv
            text = {"fgsm": f"fgsm-at:{eps!r}", "fgsm-rs": f"fgsm-rs:{eps!r}", "pgd": f"pgd-at:{eps!r}:{steps!r}"}[kind]
        elif spec.get("input_lr"):
            text = f"sgm:{spec['input_lr']!r}" + (":per-sample" if spec.get("per_sample") else "")
        else:
            text = CONTROL
        return parse_arm(text).label
    except (ValueError, TypeError, KeyError):
        raise ProtocolError(f"{where}: {', '.join(LEGACY_FIELDS)} name no training method; {FIX}") from None


def _check_spec(spec: dict, expected: dict, where: str) -> None:
    """A record's spec must be the spec the protocol trains for its key (a nanosgm-network/1 spec is read
    as the method its old fields name)."""
    if "method" not in spec:
        spec = dict({k: v for k, v in spec.items() if k not in LEGACY_FIELDS}, method=_legacy_method(spec, where))
    missing = object()
    wrong = [f"{k} {spec.get(k, missing)!r} where {expected.get(k, missing)!r} was expected"
             for k in sorted(set(spec) | set(expected)) if spec.get(k, missing) != expected.get(k, missing)]
    if wrong:
        text = "; ".join(wrong).replace(repr(missing), "nothing")
        raise ProtocolError(f"{where} disagrees with the protocol's config and the record's key ({text}); {FIX}")


def _check_threads(threads: int | None, record: dict, where: str) -> None:
    mine = record_threads(record)
    if threads is not None and mine is not None and mine != threads:
        raise ProtocolError(f"{where} was made with {mine} BLAS thread(s), the protocol with {threads} per network "
                            f"(its numbers would differ); {FIX}")


def _check_pct(v: object, n: int | None, where: str) -> None:
    """An accuracy: a percentage in [0, 100], and (``n`` images known) what :func:`.network.pct` makes of
    k / n for a whole number k."""
    if not (_real(v) and 0 <= v <= 100):
        raise ProtocolError(f"{where} must be a percentage in [0, 100], got {v!r}; {FIX}")
    if n and pct(round(v * n / 100.0) / n) != v:
        raise ProtocolError(f"{where} = {v!r} is no whole number of the {n} images measured; {FIX}")


def _check_results(res: object, config: dict, n_test: int | None, where: str) -> None:
    if not isinstance(res, dict):
        raise ProtocolError(f"{where} is missing or not an object; {FIX}")
    if "clean_pct" not in res or "fgsm_pct" not in res:
        raise ProtocolError(f"{where} has no {'clean_pct' if 'clean_pct' not in res else 'fgsm_pct'}; {FIX}")
    _check_pct(res["clean_pct"], n_test, f"{where}.clean_pct")
    k = res.get("pgd_images", 0)
    if not (_whole(k, 0) and (n_test is None or k <= n_test)):
        raise ProtocolError(f"{where}.pgd_images must be a whole number from 0 to n_test, got {k!r}; {FIX}")
    keys = eps_keys(config)
    for kind in ACCURACIES:
        if kind not in res:
            continue
        acc = res[kind]
        if not isinstance(acc, dict) or sorted(acc) != sorted(keys):
            got = (", ".join(sorted(map(str, acc))) or "none") if isinstance(acc, dict) else repr(acc)
            raise ProtocolError(f"{where}.{kind} must give one accuracy per eps of the config "
                                f"({', '.join(keys)}), got {got}; {FIX}")
        n = k if kind in ON_PGD_IMAGES else n_test
        for e, v in acc.items():
            _check_pct(v, n, f"{where}.{kind}[{e!r}]")
    if "0.0" in keys and res["fgsm_pct"]["0.0"] != res["clean_pct"]:
        raise ProtocolError(f"{where}: FGSM at eps 0 ({res['fgsm_pct']['0.0']!r}) is not the clean accuracy "
                            f"({res['clean_pct']!r}); {FIX}")


# ------------------------------------------------------------------------------------- the lock-step
def check_lockstep(result: dict, run: int) -> None:
    """Every network of run ``run`` must have started from the control's initial weights (LockstepBroken)."""
    digests = {split_key(k)[1]: r["init_sha256"] for k, r in result["networks"].items() if split_key(k)[0] == run}
    if len(set(digests.values())) > 1:
        said = ", ".join(f"{arm} {d}" for arm, d in digests.items())
        raise LockstepBroken(f"run {run}: its networks did not start from the same weights (lock-step broken; "
                             f"init_sha256: {said})")
