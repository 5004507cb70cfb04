"""Tests for nanosgm.robustness: the audit, its sanity checks (which must fire on a masked network),
the JSON/PNG/table outputs and the CLI on a network written by python -m nanosgm.train."""
import json
import shutil

import numpy as np
import pytest

from nanosgm import backend
from nanosgm.experiments import audit as robustness
from nanosgm.layers import Dense, Flatten, ReLU, Sequential
from nanosgm.layers.base import Layer
from nanosgm.experiments.audit import Network, Suite, audit
from strategies import blob_images, train_small

SMALL = Suite(pgd_steps=3, restarts=2, apgd_steps=8, queries=300, seed=0, batch_size=100)


class Quantise(Layer):
    """Rounds its input to multiples of 1/levels and returns a ZERO input gradient: a deliberately
    masked layer. The decisions behind it are no more robust than without it."""

    def __init__(self, levels=8):
        super().__init__()
        self.levels = levels

    def forward(self, x, training=True):
        self._cache = x.shape
        return backend.array_module(x).round(x * self.levels) / self.levels

    def backward(self, dy):
        return backend.array_module(dy).zeros(self._need_cache(), dtype=dy.dtype)


def mlp(seed, masked=False):
    rng = np.random.default_rng(seed)
    layers = [Flatten(), Dense(36, 16, dtype="float64", rng=rng), ReLU(), Dense(16, 3, dtype="float64", rng=rng)]
    return Sequential(([Quantise()] if masked else []) + layers)


@pytest.fixture(scope="module")
def data():
    X, y = blob_images(0, 500)                  # one set of class patterns: 300 to train, 200 to audit
    return (X[:300], y[:300]), (X[300:], y[300:])


@pytest.fixture(scope="module")
def nets(data):
    (X, y), (Xt, yt) = data
    plain = train_small(mlp(0), X, y)
    sibling = train_small(mlp(1), X, y, seed=1)
    masked = train_small(mlp(0, masked=True), X, y)
    return {name: Network(name, m, Xt, yt, (0.0, 1.0), "blobs") for name, m in
            (("plain", plain), ("sibling", sibling), ("masked", masked))}


def checks_of(report, network):
    return {c["check"]: c for c in report["checks"] if c["network"] == network}


def test_masked_network_fires_the_masking_check(nets):
    """Zero input gradient: FGSM/PGD/APGD barely move it, but Square (no gradient) breaks it."""
    report = audit([nets["masked"]], (0.1, 0.2), SMALL, progress=False)
    res = report["networks"]["masked"]
    assert res["clean"] > 0.95
    assert res["accuracy"]["FGSM"][0.2] == res["clean"]               # sign(0) = 0: FGSM does nothing
    assert res["accuracy"]["Square"][0.2] < min(res["accuracy"][a][0.2] for a in res["accuracy"] if a != "Square") - 0.2
    checks = checks_of(report, "masked")
    assert checks["gradient-free not better"]["status"] == "warn"
    assert "gradient masking?" in checks["gradient-free not better"]["detail"]
    assert checks["eps 0.5 -> ~0"]["status"] == "warn"                 # gradients never get there
    assert res["robust"][0.2] <= res["accuracy"]["Square"][0.2]
    text = robustness.format_report(report)
    assert "[warn] gradient-free not better (masked)" in text


def test_plain_network_passes_and_the_worst_case_is_per_example(nets):
    report = audit([nets["plain"], nets["sibling"]], (0.05, 0.1), SMALL, progress=False)
    res = report["networks"]["plain"]
    assert report["eps_evaluated"] == [0.05, 0.1, 0.5]                 # the check eps is evaluated too
    assert list(res["accuracy"]) == ["FGSM", "PGD-3x2", "PGD-6x2", "APGD-CE", "APGD-DLR", "Square"]
    for e in report["eps_evaluated"]:
        every = np.logical_and.reduce([res["correct"][a][e] for a in res["accuracy"]])
        assert res["robust"][e] <= min(v[e] for v in res["accuracy"].values())
        assert res["robust"][e] == pytest.approx(every.mean())        # clean errors are not robust either
        assert res["robust"][e] <= res["clean"]
    checks = checks_of(report, "plain")
    assert {c["status"] for c in checks.values()} == {"pass"}, checks
    assert set(checks) == {"iterative >= single-step", "eps 0.5 -> ~0", "more PGD steps", "gradient-free not better",
                           "transfer weaker than white-box"}
    assert [(t["source"], t["target"]) for t in report["transfer"]] == [("plain", "sibling"), ("sibling", "plain")]
    t = report["transfer"][1]
    assert t["accuracy"][0.1] >= res["accuracy"]["PGD-3x2"][0.1]


def test_checks_warn_on_made_up_numbers():
    """Each check fires on numbers that break it (and reports them)."""
    acc = lambda v: {0.1: v}
    report = {"eps": [0.1], "check_eps": 0.1, "eps_evaluated": [0.1], "transfer": [
        {"source": "a", "target": "b", "accuracy": {0.1: 0.1}}], "networks": {
            "b": {"clean": 1.0, "robust": {0.1: 0.3}, "accuracy": {
                "FGSM": acc(0.5), "PGD-10x1": acc(0.6), "PGD-20x1": acc(0.7), "APGD-CE": acc(0.6), "Square": acc(0.3)}}}}
    checks = checks_of({"checks": robustness.sanity_checks(report, Suite(pgd_steps=10, restarts=1))}, "b")
    assert {k: c["status"] for k, c in checks.items()} == {
        "iterative >= single-step": "warn", "eps 0.1 -> ~0": "warn", "more PGD steps": "warn",
        "gradient-free not better": "warn", "transfer weaker than white-box": "warn"}
    assert "FGSM 50.00%, best iterative 60.00%" in checks["iterative >= single-step"]["detail"]


def test_a_passing_check_quotes_the_audited_eps_not_the_check_eps():
    acc = lambda a, b: {0.1: a, 0.5: b}
    report = {"eps": [0.1], "check_eps": 0.5, "eps_evaluated": [0.1, 0.5], "transfer": [], "networks": {
        "n": {"clean": 1.0, "robust": acc(0.5, 0.0), "accuracy": {
            "FGSM": acc(0.8, 0.02), "PGD-10x1": acc(0.6, 0.0), "PGD-20x1": acc(0.55, 0.0), "Square": acc(0.7, 0.0)}}}}
    checks = checks_of({"checks": robustness.sanity_checks(report, Suite(pgd_steps=10, restarts=1))}, "n")
    assert {c["status"] for c in checks.values()} == {"pass"}
    assert checks["gradient-free not better"]["detail"] == "eps 0.1: Square 70.00%, best gradient attack 55.00%"
    assert checks["more PGD steps"]["detail"] == "eps 0.1: PGD-10x1 60.00%, PGD-20x1 55.00%"


def test_outputs_json_and_png(nets, tmp_path):
    chosen = [nets["plain"], nets["masked"]]
    report = audit(chosen, (0.1,), SMALL, check_eps=None, progress=False)
    doc = report_doc = robustness.report_json(report, chosen, SMALL, argv=["m.npz", "--eps", "0.1"])
    json.dumps(doc)                                                     # plain JSON
    assert doc["command"] == "python -m nanosgm.robustness m.npz --eps 0.1"
    assert doc["settings"]["pgd_steps"] == 3 and doc["settings"]["images"] == {"plain": 200, "masked": 200}
    assert "numpy" in doc["versions"]
    for name in ("plain", "masked"):
        for per_eps in list(report_doc["networks"][name]["accuracy"].values()) + [doc["networks"][name]["robust"]]:
            assert list(per_eps) == ["0.1"]
            v = per_eps["0.1"]
            assert v == round(v, 2) and len(repr(v)) <= 6                # percent, no float noise
    assert doc["networks"]["plain"]["clean"] == round(100 * report["networks"]["plain"]["clean"], 2)
    path = tmp_path / "acc.png"
    robustness.accuracy_figure(report).savefig(path, dpi=100)
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    assert (w, h) == (700, 450)


# ---------------------------------------------------------------------------- the CLI
def run_cli(argv, capsys):
    code = robustness.main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_errors_are_one_line(tmp_path, capsys):
    code, _, err = run_cli([str(tmp_path / "none.npz")], capsys)
    assert code == 1 and err.count("\n") == 1 and err.startswith("error: ") and "no such model file" in err
    (tmp_path / "m.npz").write_bytes(b"junk")
    code, _, err = run_cli([str(tmp_path / "m.npz")], capsys)
    assert code == 1 and "give --dataset and --model" in err and err.count("\n") == 1
    code, _, err = run_cli([str(tmp_path / "m.npz"), "--eps", "0.1,x"], capsys)
    assert code == 1 and "--eps must be comma-separated numbers" in err
    for bad in ("nan", "0.1,inf", "-0.1"):
        code, _, err = run_cli([str(tmp_path / "m.npz"), "--eps", bad], capsys)
        assert code == 1 and "--eps values must be finite numbers > 0" in err
    code, _, err = run_cli([str(tmp_path / "m.npz"), "--check-eps", "-1"], capsys)
    assert code == 1 and "--check-eps must be a finite value > 0" in err
    code, _, err = run_cli([str(tmp_path / "m.npz"), "--restarts", "0"], capsys)
    assert code == 1 and "--restarts must be >= 1" in err
    for text in ("{}", "[1, 2]"):                                     # not an object: one line, not a traceback
        (tmp_path / "results.json").write_text(text)
        code, _, err = run_cli([str(tmp_path / "m.npz")], capsys)
        assert code == 1 and "is not a results.json" in err and err.count("\n") == 1
    (tmp_path / "results.json").write_text(json.dumps({"config": {"dataset": "mnist", "model": "cnn"}}))
    code, _, err = run_cli([str(tmp_path / "m.npz"), "--model", "dnn"], capsys)
    assert code == 1 and "--model dnn contradicts" in err
    code, _, err = run_cli([str(tmp_path / "m.npz"), "--bogus"], capsys)        # argparse's refusal: exit 1 too
    assert code == 1 and err == "error: unrecognized arguments: --bogus (see python -m nanosgm.robustness --help)\n"


def test_the_results_json_beside_a_model_is_checked_against_its_seal(tmp_path, capsys):
    """nanosgm train seals results.json: the audit refuses an edited one in one line naming it, reads a
    sealed one silently and one written before results were sealed with a one-line note."""
    from nanosgm.plumbing.seal import seal
    model, results = tmp_path / "model.npz", tmp_path / "results.json"
    model.write_bytes(b"weights")
    flags = robustness.build_parser().parse_args([str(model)])
    record = {"format": "nanosgm-network/2", "spec": {"dataset": "mnist", "model": "dnn", "limit": 600,
                                                      "val_size": None}, "n_test": 40}
    results.write_text(json.dumps(seal(record)))
    want = {"dataset": "mnist", "model": "dnn", "limit": 600, "val_size": None, "eval_images": 40}
    assert robustness._config_for(str(model), flags, robustness._record_beside(str(model))) == want and capsys.readouterr().err == ""
    results.write_text(json.dumps(dict(seal(record), n_test=10000)))
    code, _, err = run_cli([str(model)], capsys)
    assert code == 1 and err == (f"error: {results} was changed after it was written (its content no longer matches "
                                 "its sha256); restore it (e.g. from a copy), or train the run again\n")
    results.write_text(json.dumps(record))
    assert robustness._config_for(str(model), flags, robustness._record_beside(str(model))) == want
    assert capsys.readouterr().err == (f"note: {results} carries no content digest (written before results were "
                                       "sealed), so an edit to it cannot be detected; read as it is\n")


@pytest.mark.slow
def test_cli_audits_networks_written_by_train(mnist_real, tmp_path, capsys, monkeypatch):
    """python -m nanosgm.train writes a tiny CNN; the audit reads its results.json, prints the table,
    writes robustness.json and robustness.png; a copy without results.json needs --dataset/--model and
    then also gets the transfer check."""
    from conftest import require_real_data
    from nanosgm.experiments import train_cli as train
    data_dir = str(require_real_data("mnist"))
    run = tmp_path / "run"
    assert train.main(["mnist", "--limit", "600", "--eval-limit", "40", "--epochs", "1", "--pgd", "0",
                       "--no-progress", "--data-dir", data_dir, "--out", str(run)]) == 0
    capsys.readouterr()
    small = ["--images", "10", "--eps", "0.1", "--pgd-steps", "2", "--restarts", "1", "--apgd-steps", "3",
             "--queries", "15", "--no-progress", "--data-dir", data_dir]
    code, out, err = run_cli([str(run / "model.npz")] + small, capsys)
    assert code == 0, err
    assert "run: clean accuracy" in out and "APGD-DLR" in out and "(check)" in out and "sanity checks" in out
    assert "run: Square eps 0.1: " in err and "run: APGD-CE eps 0.1: " in err        # a line per attack in a log
    doc = json.loads((run / "robustness.json").read_text())
    from nanosgm.plumbing.seal import check_seal
    check_seal(doc, "robustness.json")                                 # sealed: an edit by hand is detectable
    net = doc["networks"]["run"]
    assert net["info"]["dataset"] == "mnist" and net["info"]["model"] == "cnn"
    assert set(net["accuracy"]) == {"FGSM", "PGD-2x1", "PGD-4x1", "APGD-CE", "APGD-DLR", "Square"}
    assert set(net["robust"]) == {"0.1", "0.5"} and doc["settings"]["images"] == {"run": 10}
    assert (run / "robustness.png").read_bytes()[:4] == b"\x89PNG"
    assert not (run / "robustness.partial.json").exists()             # the finished audit leaves no partial file
    code, _, err = run_cli([str(run / "model.npz")] + small, capsys)
    assert code == 1 and "--overwrite" in err                          # never overwritten silently
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(run / "model.npz", bare / "model.npz")
    code, _, err = run_cli([str(bare / "model.npz")] + small, capsys)
    assert code == 1 and "give --dataset and --model" in err
    code, out, err = run_cli([str(run / "model.npz"), str(bare / "model.npz"), "--dataset", "mnist", "--model", "cnn",
                              "--out", str(tmp_path / "both")] + small, capsys)
    assert code == 0, err
    doc = json.loads((tmp_path / "both" / "robustness.json").read_text())
    assert [(t["source"], t["target"]) for t in doc["transfer"]] == [("run", "bare"), ("bare", "run")]
    digests = {n["info"]["weights_sha256"] for n in doc["networks"].values()}    # which weights were audited
    assert len(digests) == 1 and len(digests.pop()) == 64 and "git_commit" in doc
    assert "transfer weaker than white-box" in out
    one = ["--out", str(tmp_path / "grow"), "--keep-partial"] + small
    code, _, err = run_cli([str(run / "model.npz")] + one, capsys)
    assert code == 0 and (tmp_path / "grow" / "robustness.partial.json").exists(), err
    other = tmp_path / "other"                                          # other weights (a copy would hit the cache)
    assert train.main(["mnist", "--limit", "600", "--eval-limit", "40", "--epochs", "1", "--pgd", "0", "--seed", "1",
                       "--no-progress", "--data-dir", data_dir, "--out", str(other)]) == 0
    code, _, err = run_cli([str(run / "model.npz"), str(other / "model.npz"), "--overwrite"] + one, capsys)
    assert code == 0, err                                               # a network added later: only it runs
    line = {ln.split(":")[0]: ln for ln in err.splitlines() if ": APGD-CE eps" in ln}
    assert line["run"].endswith("(from the partial file)") and not line["other"].endswith("(from the partial file)")
    grown = json.loads((tmp_path / "grow" / "robustness.json").read_text())
    assert grown["networks"]["run"]["accuracy"] == doc["networks"]["run"]["accuracy"]
    code, _, err = run_cli([str(bare / "model.npz"), "--dataset", "mnist", "--model", "dnn"] + small, capsys)
    assert code == 1 and err.startswith("error: ") and err.count("\n") == 1      # weights of another network


# ---------------------------------------------------------------------------- resuming an audit
def test_an_interrupted_audit_resumes_with_the_same_numbers(nets, tmp_path, monkeypatch):
    from nanosgm.plumbing.audit_resume import FinishedAttacks
    chosen = [nets["plain"], nets["sibling"]]
    whole = audit(chosen, (0.1, 0.3), SMALL, check_eps=None, progress=False)
    path = tmp_path / "robustness.partial.json"
    lines = []

    def stop_after_three(line):
        lines.append(line)
        if len(lines) == 3:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        audit(chosen, (0.1, 0.3), SMALL, check_eps=None, progress=False, log=stop_after_three,
              finished=FinishedAttacks(path))
    assert FinishedAttacks(path).loaded == 3
    calls = []
    real = robustness.attacks.correct_under_attack
    monkeypatch.setattr(robustness.attacks, "correct_under_attack", lambda *a, **kw: calls.append(a[4]) or real(*a, **kw))
    lines.clear()
    resumed = audit(chosen, (0.1, 0.3), SMALL, check_eps=None, progress=False, log=lines.append,
                    finished=FinishedAttacks(path))
    assert sum("(from the partial file)" in line for line in lines) == 3
    n_attacks = len(robustness.attack_plan(SMALL, 3))
    assert len(calls) == 2 + 2 * n_attacks - 3 + 2            # 2 clean passes, the rest, 2 transfers
    for name in ("plain", "sibling"):
        a, b = whole["networks"][name], resumed["networks"][name]
        assert a["accuracy"] == b["accuracy"] and a["robust"] == b["robust"] and a["clean"] == b["clean"]
        for attack in a["correct"]:
            for e in a["correct"][attack]:
                np.testing.assert_array_equal(a["correct"][attack][e], b["correct"][attack][e])
    assert whole["transfer"] == resumed["transfer"] and whole["checks"] == resumed["checks"]


def test_a_damaged_or_foreign_partial_file_is_ignored_with_a_note(nets, tmp_path):
    from nanosgm.plumbing.audit_resume import FinishedAttacks
    path = tmp_path / "robustness.partial.json"
    notes = []
    for text, why in (("{not json", "cannot be read as JSON"), (json.dumps({"format": "other", "entries": {}}),
                                                                "is not an audit's partial file"),
                      (json.dumps([1, 2]), "is not an audit's partial file")):
        path.write_text(text)
        notes.clear()
        assert FinishedAttacks(path, say=notes.append).loaded == 0
        assert notes == [f"note: {path} {why}: its attacks are not reused but run again, and the file is replaced"]
    f = FinishedAttacks(path, say=notes.append)
    f.put("k", {0.1: np.array([True, False, True])}, "net: FGSM")
    notes.clear()
    again = FinishedAttacks(path, say=notes.append)
    np.testing.assert_array_equal(again.get("k", [0.1], 3)[0.1], [True, False, True])
    assert again.get("k", [0.1], 4) is None and again.get("k", [0.2], 3) is None and again.get("x", [0.1], 3) is None
    assert notes == []
    again.entries["other"] = again.entries["k"]            # a sealed entry copied under another key: not trusted
    assert again.get("other", [0.1], 3) is None and "other" not in again.entries
    again.entries["k"]["correct"]["0.1"] = "111"           # a hand edit: dropped, named, recomputed
    assert again.get("k", [0.1], 3) is None and "k" not in again.entries
    assert len(notes) == 2 and all(n.startswith(f"warning: {path}: the entry of net: FGSM ") for n in notes)
    assert "edited or damaged" in notes[1] and "run again" in notes[1]
    again.remove()
    assert not path.exists()
    path.write_text("[" * 100_000 + "]" * 100_000)          # absurdly nested: ignored, not a crash
    assert FinishedAttacks(path, say=notes.append).loaded == 0
    path.unlink()
    path.mkdir()                                           # not a regular file: refused, never replaced
    from nanosgm.plumbing.audit_resume import PartialFileError
    with pytest.raises(PartialFileError, match="not a regular file; remove it"):
        FinishedAttacks(path)


def test_a_partial_file_of_the_unsealed_format_is_ignored_with_a_note(tmp_path):
    from nanosgm.plumbing.audit_resume import FinishedAttacks
    path = tmp_path / "robustness.partial.json"
    path.write_text(json.dumps({"format": "nanosgm-audit-partial/1", "entries": {"k": {"0.1": "111"}}}))
    notes = []
    f = FinishedAttacks(path, say=notes.append)
    assert f.loaded == 0 and f.get("k", [0.1], 3) is None
    assert notes == [f"note: {path} was written by an older nanosgm (nanosgm-audit-partial/1, whose entries carry no "
                     f"content digest): its attacks are not reused but run again, and the file is replaced"]


def test_an_attack_never_counts_an_example_misclassified_clean_as_correct(data, monkeypatch):
    """An attack that leaves a misclassified example classified correctly (Square's first stripes can) has
    not found the worst case in the eps-ball, which holds the unperturbed image: per example, correct under
    an attack <= correct clean, and the column counts only those."""
    _, (Xt, yt) = data
    net = Network("untrained", mlp(0), Xt, yt, (0.0, 1.0), "blobs")
    real = robustness.attacks.correct_under_attack

    def square_misses_everything(model, X, y, eps_list, attack, *a, **kw):
        got = real(model, X, y, eps_list, attack, *a, **kw)
        return {e: np.ones_like(v) for e, v in got.items()} if attack == "square" else got
    monkeypatch.setattr(robustness.attacks, "correct_under_attack", square_misses_everything)
    res = robustness.audit_network(net, (0.1, 0.2), SMALL)
    assert 0.1 < res["clean"] < 0.9
    for e in (0.1, 0.2):
        assert res["accuracy"]["Square"][e] == res["clean"]
        np.testing.assert_array_equal(res["correct"]["Square"][e], res["clean_correct"])
        for column in res["correct"].values():
            assert not (column[e] & ~res["clean_correct"]).any()


def test_attack_cost_bounds_what_each_attack_runs(nets, monkeypatch):
    """attack_cost's gradient evaluations and forward passes per image bound what each attack of the plan
    runs (exactly, where no example can be skipped: FGSM, one PGD restart)."""
    net = nets["plain"]
    model, n, eps = net.model, len(net.X), [0.05, 0.1, 0.3]
    rows = {"forward": 0, "backward": 0}
    for which in rows:
        real = getattr(model, which)

        def counted(x, *a, real=real, which=which, **kw):
            rows[which] += len(x)
            return real(x, *a, **kw)
        monkeypatch.setattr(model, which, counted)
    suite = Suite(pgd_steps=3, restarts=1, apgd_steps=8, queries=50, batch_size=100)
    for name, attack, kw in robustness.attack_plan(suite, 3) + robustness.attack_plan(SMALL, 3)[1:2]:
        rows.update(forward=0, backward=0)
        robustness.attacks.correct_under_attack(model, net.X, net.y, eps, attack, 100, clip=net.clip, **kw)
        gradients, forwards = robustness.attack_cost(attack, kw, len(eps))
        assert rows["backward"] <= n * gradients and rows["forward"] - rows["backward"] <= n * forwards, name
        if attack == "fgsm" or (attack == "pgd" and kw["restarts"] == 1):
            assert (rows["backward"], rows["forward"] - rows["backward"]) == (n * gradients, n * forwards), name


def test_the_estimate_applies_the_measured_costs_to_what_is_left_once():
    step = robustness._Step
    steps = [step("a: clean", 0, 10), step("a: FGSM", 10, 20), step("a: PGD", 100, 10),
             step("a: Square", 0, 500, held=True), step("b: clean", 0, 10)]
    said = []
    eta = robustness._Estimate(steps, said.append)
    eta.done("a: clean", 1.0, True)                       # 0.1 s per forward pass of one image
    assert said == []
    eta.done("a: FGSM", 3.0, True)                        # (3 s - 20 x 0.1 s) / 10 = 0.1 s per gradient
    # left: PGD 100 x 0.1 + 10 x 0.1, b's clean pass 10 x 0.1; Square is in the partial file
    assert said == ["estimate: at most about 12 s more, from a: FGSM: 100 ms per gradient evaluation, 100 ms per "
                    "forward pass of one image (attacks stop on fooled examples, so often less)"]
    eta.done("a: PGD", 50.0, True)
    assert len(said) == 1                                 # one line
    assert [robustness._duration(s) for s in (40, 600, 11_100)] == ["40 s", "10 min", "3 h 05 min"]


def test_a_note_says_when_the_audited_images_are_not_the_ones_training_evaluated(data):
    _, (Xt, yt) = data

    def net(name, n, **info):
        return Network(name, None, Xt[:n], yt[:n], info=info)
    assert robustness._image_note([net("a", 20, eval_images=20), net("b", 20)], 20) is None
    assert robustness._image_note([net("a", 200, eval_images=None)], None) is None          # --all, whole set
    assert robustness._image_note([net("a", 150, eval_images=None)], 1000) is None          # fewer than asked: all
    assert robustness._image_note([net("a", 20, eval_images=200), net("b", 20, eval_images=None)], 20) == (
        "note: the audit's images are not the ones training evaluated (a: the first 20 test images here, the first "
        "200 in training; b: the first 20 test images here, the whole test set in training), so its clean accuracy "
        "differs from the run's")


# -------------------------------------------------------------------- a real protocol for --protocol
@pytest.fixture(scope="module")
def made_protocol(tmp_path_factory):
    """The protocol.json of three lock-step runs of the control and sgm:0.2:per-sample (one epoch each on tiny
    synthetic data), written by nanosgm.experiments.run_protocol."""
    from protokit import write_protocol
    return write_protocol(tmp_path_factory.mktemp("made") / "p", runs=3, arms="sgm:0.2:per-sample")


def write_audit(path, doc) -> None:
    """``doc`` at ``path`` sealed, as python -m nanosgm.robustness writes a robustness.json."""
    from nanosgm.plumbing.seal import seal
    path.write_text(json.dumps(seal(doc)))


def with_recorded_weights(audit_doc, protocol):
    """``audit_doc`` with each audited network's weights digest set to its record's in ``protocol``."""
    for name, net in audit_doc["networks"].items():
        run, arm = name.split("/run")[1].split("-", 1)
        key = f"run{run}/{'sgm:0.2:per-sample' if arm != 'control' else 'control'}"
        net["info"] = {"weights_sha256": protocol["networks"][key]["weights_sha256"]}
    return audit_doc


def protocol_row(made, folder, seconds=None, digests=None, sessions=()):
    """``made`` written to ``folder``/protocol.json (the folder's name is the audited networks' row) with each
    named record's ``train_seconds`` from ``seconds`` and ``weights_sha256`` from ``digests`` (None: removed, as
    in a record made before digests), sealed again as the protocol would have written it; ``sessions`` appended.
    Returns the document written."""
    from nanosgm.plumbing.seal import seal
    doc = json.loads(json.dumps(made))
    nets = doc["networks"]
    for key, t in (seconds or {}).items():
        nets[key]["train_seconds"] = t
    for key, d in (digests or {}).items():
        nets[key].pop("weights_sha256", None)
        if d is not None:
            nets[key]["weights_sha256"] = d
    for key in nets:
        nets[key] = seal(nets[key])
    doc["sessions"] += [s(doc) if callable(s) else s for s in sessions]
    folder.mkdir(exist_ok=True)
    (folder / "protocol.json").write_text(json.dumps(doc))
    return doc


# ---------------------------------------------------------------------------- tables over seeds
def _audit_doc(run, values, restarts=1):
    """A robustness.json of one seed's control and per-sample networks; `values` = (control, arm) robust %."""
    def net(v):
        return {"info": {}, "clean": 99.0 + v / 100, "accuracy": {"FGSM": {"0.1": v + 20, "0.5": 1.0},
                                                               f"PGD-10x{restarts}": {"0.1": v + 5, "0.5": 0.0}},
                "robust": {"0.1": v, "0.5": 0.0}}
    return {"settings": {"pgd_steps": 10, "restarts": restarts, "apgd_steps": 100, "queries": 1000, "seed": 0,
                         "batch_size": 100, "eps": [0.1], "check_eps": 0.5, "images": {"a": 500, "b": 500}},
            "networks": {f"mnist-cnn/run{run}-control": net(values[0]),
                         f"mnist-cnn/run{run}-sgm_0.2_per-sample": net(values[1])},
            "transfer": [{"source": f"mnist-cnn/run{run}-control", "target": f"mnist-cnn/run{run}-sgm_0.2_per-sample",
                          "attack": "PGD", "accuracy": {"0.1": 90.0 + run, "0.5": 0.0}}], "checks": []}


def test_robustness_tables_give_median_and_range_over_seeds_and_the_cost(tmp_path, capsys, made_protocol):
    from conftest import load_tool
    tool = load_tool("robustness_tables")
    paths = []
    for run, values in enumerate([(50.0, 70.0), (52.0, 74.0), (48.0, 71.0)]):
        paths.append(tmp_path / f"seed{run}.json")
        write_audit(paths[-1], with_recorded_weights(_audit_doc(run, values), made_protocol))
    seconds = {f"run{r}/{arm}": s for r in range(3)           # one epoch each: seconds per epoch
               for arm, s in (("control", 100.0 + 10 * r), ("sgm:0.2:per-sample", 150.0 + 10 * r))}
    protocol_row(made_protocol, tmp_path / "mnist-cnn", seconds=seconds)      # the audited networks' row
    assert tool.main([str(p) for p in paths] + ["--protocol", str(tmp_path / "mnist-cnn"), "--figure", str(tmp_path / "r.png"),
                                                "--gain-figure", str(tmp_path / "g.png")]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG" and (tmp_path / "g.png").read_bytes()[:4] == b"\x89PNG"
    assert "| sgm:0.2:per-sample | 0.1 | 3 | 99.7 [99.7–99.7] | 91.0 [90.0–94.0] | 76.0 [75.0–79.0] | **71.0 [70.0–74.0]** |" in out
    assert "| control | 0.1 | 3 |" in out and "| 0.5 |" not in out                  # the check eps is not a row
    assert "| sgm:0.2:per-sample | 0.1 | 3 | 0: +20.0, 1: +22.0, 2: +23.0 | **+22.0** [+20.0 to +23.0] |" in out
    assert "| control | sgm:0.2:per-sample | 3 | 91.0 [90.0–92.0] |" in out                   # transfer, pooled
    assert "| sgm:0.2:per-sample | 3 | 160.0 [150.0–170.0] | 1.45 [1.42–1.50] |" in out
    paths.append(tmp_path / "other.json")
    write_audit(paths[-1], _audit_doc(3, (1.0, 2.0), restarts=3))
    assert tool.main([str(p) for p in paths]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "other settings" in err and err.count("\n") == 1
    (tmp_path / "bad.json").write_text("[]")
    assert tool.main([str(tmp_path / "bad.json")]) == 1 and "not a robustness.json" in capsys.readouterr().err
    assert tool.main([str(p) for p in paths[:3]] + ["--figure", str(tmp_path / "r.txt")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"error: --figure {tmp_path / 'r.txt'}: Format 'txt' is not supported" in err


def test_transfer_pairs_first_all_none_and_grouped_check_lines(nets):
    chosen = [nets["plain"], nets["sibling"], Network("third", nets["plain"].model, nets["plain"].X,
                                                      nets["plain"].y, (0.0, 1.0), "blobs")]
    names = {w: [(s.name, t.name) for s, t in robustness._transfer_pairs(chosen, w)] for w in robustness.TRANSFER}
    assert names["first"] == [("plain", "sibling"), ("plain", "third"), ("sibling", "plain"), ("third", "plain")]
    assert len(names["all"]) == 6 and names["none"] == []
    with pytest.raises(ValueError, match="^transfer must be one of first, all, none, got 'some'$"):
        robustness._transfer_pairs(chosen, "some")
    checks = [{"check": "c1", "network": n, "status": "pass", "detail": "d"} for n in ("a", "b", "c")]
    checks += [{"check": "c2", "network": n, "status": s, "detail": f"d{n}"} for n, s in (("a", "pass"), ("b", "warn"), ("c", "pass"))]
    lines = robustness._check_lines(checks)
    assert lines[0] == "  [pass] c1: 3 of 3 pass (numbers in robustness.json)"
    assert lines[1:] == ["  [pass] c2 (a): da", "  [warn] c2 (b): db", "  [pass] c2 (c): dc"]   # a warning shows all


def test_robustness_tables_refuse_malformed_duplicate_and_mixed_inputs(tmp_path, capsys):
    from conftest import load_tool
    tool = load_tool("robustness_tables")
    good = _audit_doc(0, (50.0, 70.0))
    bad_docs = {"no_clean": {**good, "networks": {"mnist-cnn/run0-control": {"accuracy": {}, "robust": {}}}},
                "net_list": {**good, "networks": [1, 2]}, "settings_list": {**good, "settings": []},
                "no_eps": {**good, "settings": {"pgd_steps": 10}}, "text_clean": {
                    **good, "networks": {"x": {"clean": "abc", "accuracy": {}, "robust": {}}}},
                "transfer_text": {**good, "transfer": [{"source": "a", "target": "b", "accuracy": {"0.1": "x"}}]},
                "transfer_dict": {**good, "transfer": {"a": 1}}}
    for name, doc in bad_docs.items():
        write_audit((tmp_path / f"{name}.json"), doc)
        assert tool.main([str(tmp_path / f"{name}.json")]) == 1, name
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and "not a robustness.json" in err, (name, err)
    write_audit((tmp_path / "s0.json"), good)
    assert tool.main([str(tmp_path / "s0.json"), str(tmp_path / "s0.json")]) == 1       # the same audit twice
    assert "give each audit once" in capsys.readouterr().err
    assert tool.main([str(tmp_path / "none.json")]) == 1 and "no such file" in capsys.readouterr().err
    from nanosgm.experiments.protocol import PROTOCOL_FORMAT
    (tmp_path / "row").mkdir()
    assert tool.main([str(tmp_path / "s0.json"), "--protocol", str(tmp_path / "row")]) == 1
    assert "no protocol.json there" in capsys.readouterr().err
    for protocol, why in (({"arms": "control"}, "format"), ([1], "format"), ("{", "not valid JSON"),
                          ("[" * 100000, "not valid JSON"), ('{"format": ' + "9" * 5000 + "}", "not valid JSON"),
                          ({"format": PROTOCOL_FORMAT, "arms": ["control"], "networks": {}}, "config")):
        (tmp_path / "row" / "protocol.json").write_text(protocol if isinstance(protocol, str) else json.dumps(protocol))
        assert tool.main([str(tmp_path / "s0.json"), "--protocol", str(tmp_path / "row")]) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and why in err, err
    assert tool.main([str(tmp_path / "s0.json"), "--figure", str(tmp_path / "no" / "dir.png")]) == 1
    assert capsys.readouterr().err.startswith("error: --figure")
    other = json.loads(json.dumps(good).replace("mnist-cnn/", "fashion-cnn/"))          # another protocol row
    write_audit((tmp_path / "f0.json"), other)
    assert tool.main([str(tmp_path / "s0.json"), str(tmp_path / "f0.json")]) == 0
    out = capsys.readouterr().out
    assert "| mnist-cnn: control | 0.1 | 1 |" in out and "| fashion-cnn: control | 0.1 | 1 |" in out
    assert "| fashion-cnn: control | fashion-cnn: sgm:0.2:per-sample | 1 | 90.0 |" in out     # rows kept apart
    assert "| mnist-cnn: sgm:0.2:per-sample | 0.1 | 1 |" in out        # the arm's label, from its file name alone
    odd = json.loads(json.dumps(good).replace("sgm_0.2_per-sample", "my_net"))          # no arm's slug: kept
    write_audit((tmp_path / "o0.json"), odd)
    assert tool.main([str(tmp_path / "o0.json")]) == 0 and "| my_net | 0.1 | 1 |" in capsys.readouterr().out
    alone = json.loads(json.dumps(good).replace("run0-control", "run0-other"))           # no control: no gains
    write_audit((tmp_path / "a0.json"), alone)
    assert tool.main([str(tmp_path / "a0.json"), "--gain-figure", str(tmp_path / "g.png")]) == 1
    assert "--gain-figure: no arm has a control" in capsys.readouterr().err


@pytest.mark.parametrize("change, why", [
    (lambda n: n.update(clean=150.0), "a percentage outside [0, 100]"),
    (lambda n: n["robust"].update({"0.1": -7.0}), "a percentage outside [0, 100]"),
    (lambda n: n["accuracy"]["FGSM"].update({"0.1": 99.9}), "FGSM at eps 0.1 (99.9) is above its clean accuracy"),
    (lambda n: n["robust"].update({"0.1": 60.0}), "the worst case at eps 0.1 (60.0) is above PGD-10x1's (55.0)")])
def test_robustness_tables_refuse_numbers_no_audit_can_measure(tmp_path, capsys, change, why):
    from conftest import load_tool
    tool = load_tool("robustness_tables")
    doc = _audit_doc(0, (50.0, 70.0))
    change(doc["networks"]["mnist-cnn/run0-control"])
    write_audit((tmp_path / "s0.json"), doc)
    assert tool.main([str(tmp_path / "s0.json")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"network 'mnist-cnn/run0-control': {why}" in err
    doc["networks"] = {}
    write_audit((tmp_path / "s0.json"), doc)
    assert tool.main([str(tmp_path / "s0.json")]) == 1
    assert "its 'networks' is empty" in capsys.readouterr().err


def test_robustness_tables_read_flag_equals_value_and_name_an_unknown_flag(tmp_path, capsys):
    from conftest import load_tool
    tool = load_tool("robustness_tables")
    write_audit((tmp_path / "s0.json"), _audit_doc(0, (50.0, 70.0)))
    assert tool.main([str(tmp_path / "s0.json"), f"--figure={tmp_path / 'r.png'}"]) == 0
    assert (tmp_path / "r.png").exists()
    capsys.readouterr()
    assert tool.main([str(tmp_path / "s0.json"), "--figures", "x.png"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: unrecognized arguments: --figures") and err.count("\n") == 1
    assert tool.main([]) == 1 and "required: AUDIT.json" in capsys.readouterr().err


def test_robustness_tables_refuse_a_sealed_audit_edited_by_hand(tmp_path, capsys):
    """The audit seals its robustness.json; the tables check the seal (and read an older, unsealed one as is)."""
    from conftest import load_tool
    from nanosgm.plumbing.seal import seal
    tool = load_tool("robustness_tables")
    doc = seal(_audit_doc(0, (50.0, 70.0)))
    (tmp_path / "s0.json").write_text(json.dumps(doc))
    assert tool.main([str(tmp_path / "s0.json")]) == 0
    capsys.readouterr()
    doc["networks"]["mnist-cnn/run0-control"]["robust"]["0.1"] = 40.0
    (tmp_path / "s0.json").write_text(json.dumps(doc))
    assert tool.main([str(tmp_path / "s0.json")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "s0.json was changed after it was written" in err


def test_an_audit_written_before_seals_is_read_with_a_note(tmp_path, capsys):
    from conftest import load_tool
    tool = load_tool("robustness_tables")
    (tmp_path / "s0.json").write_text(json.dumps(_audit_doc(0, (50.0, 70.0))))          # no seal
    assert tool.main([str(tmp_path / "s0.json")]) == 0
    out, err = capsys.readouterr()
    assert "| control | 0.1 | 1 |" in out
    assert err == (f"note: {tmp_path / 's0.json'} carries no content digest (written before audits were sealed), so an "
                   f"edit to it would not be detected; python tools/seal_results.py seals a committed one\n")


def test_robustness_tables_name_the_sanity_checks_that_did_not_pass(tmp_path, capsys):
    from conftest import load_tool
    tool = load_tool("robustness_tables")
    doc = _audit_doc(0, (50.0, 70.0))
    doc["checks"] = [{"check": "eps 0.5 -> ~0", "network": "mnist-cnn/run0-control", "status": "pass", "detail": ""},
                     {"check": "more PGD steps", "network": "mnist-cnn/run0-control", "status": "warn", "detail": ""}]
    write_audit((tmp_path / "s0.json"), doc)
    assert tool.main([str(tmp_path / "s0.json")]) == 0
    assert capsys.readouterr().err == (f"note: {tmp_path / 's0.json'}: 1 sanity check(s) did not pass (pooled anyway; "
                                       "read them before the tables): more PGD steps (mnist-cnn/run0-control): warn\n")


def test_robustness_tables_refuse_an_audit_of_other_weights_than_the_recorded_ones(tmp_path, capsys, made_protocol):
    from conftest import load_tool
    from nanosgm.experiments.records import refill_entry
    tool = load_tool("robustness_tables")
    doc = _audit_doc(0, (50.0, 70.0))
    doc["networks"]["mnist-cnn/run0-control"]["info"] = {"weights_sha256": "a" * 64}
    doc["networks"]["mnist-cnn/run0-sgm_0.2_per-sample"]["info"] = {"weights_sha256": "b" * 64}
    write_audit((tmp_path / "s0.json"), doc)
    row = tmp_path / "mnist-cnn"                  # the protocol's folder is the audited networks' row
    digests = {"run0/control": "a" * 64, "run0/sgm:0.2:per-sample": None}     # an older record: no digest
    protocol_row(made_protocol, row, digests=digests)
    assert tool.main([str(tmp_path / "s0.json"), "--protocol", str(row)]) == 0
    assert ("note: mnist-cnn/protocol.json names no weights digest for 1 audited network(s) (records made before "
            "digests, and no refill since recorded one), so they were not matched with their records: "
            "mnist-cnn/run0-sgm_0.2_per-sample\n") in capsys.readouterr().err
    for refilled, code in (("b" * 64, 0), ("d" * 64, 1)):       # a refill's digest stands in for the record's
        def session(doc, refilled=refilled):
            return {"refill": True, "refilled": {"run0/sgm:0.2:per-sample": refill_entry(
                doc["networks"]["run0/sgm:0.2:per-sample"], refilled)}}
        protocol_row(made_protocol, row, digests=digests, sessions=[session])
        assert tool.main([str(tmp_path / "s0.json"), "--protocol", str(row)]) == code
        err = capsys.readouterr().err
        assert "names no weights digest" not in err
        assert code == 0 or "the audited mnist-cnn/run0-sgm_0.2_per-sample has weights bbbbbbbbbbbb, not the " \
                            "recorded network's dddddddddddd" in err
    protocol_row(made_protocol, row, digests={**digests, "run0/control": "c" * 64})
    assert tool.main([str(tmp_path / "s0.json"), "--protocol", str(row)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the audited mnist-cnn/run0-control has weights aaaaaaaaaaaa, not the " \
                                    "recorded network's cccccccccccc" in err
    doc["networks"]["mnist-cnn/run0-control"]["info"] = {}              # an audit from before the digest
    write_audit((tmp_path / "s0.json"), doc)
    assert tool.main([str(tmp_path / "s0.json"), "--protocol", str(row)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the audited mnist-cnn/run0-control names no weights digest" in err
    other = tmp_path / "renamed"                  # another row's protocol: its records and costs are not these
    other.mkdir()
    (other / "protocol.json").write_text((row / "protocol.json").read_text())
    assert tool.main([str(tmp_path / "s0.json"), "--protocol", str(other)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"error: --protocol {other}: no audited network is of its row 'renamed'" in err


def test_robustness_tables_refuse_a_protocol_whose_records_do_not_hold(tmp_path, capsys, made_protocol):
    """The cost table reads train_seconds and the weights check reads digests from the protocol: a sealed record
    changed by hand, a damaged refill entry or a broken lock-step is refused, as python -m nanosgm.experiments
    refuses it."""
    from conftest import load_tool
    from nanosgm.plumbing.seal import seal
    tool = load_tool("robustness_tables")
    write_audit((tmp_path / "s0.json"), with_recorded_weights(_audit_doc(0, (50.0, 70.0)), made_protocol))
    row = tmp_path / "mnist-cnn"
    doc = protocol_row(made_protocol, row)
    assert tool.main([str(tmp_path / "s0.json"), "--protocol", str(row)]) == 0
    capsys.readouterr()
    edits = {"was changed after it was written": lambda d: d["networks"]["run0/control"].update(train_seconds=1.0),
             "refilled['run0/control'] is not a sealed": lambda d: d["sessions"].append(
                 {"refilled": {"run0/control": {"weights_sha256": "a" * 64}}}),
             "lock-step broken": lambda d: d["networks"].update({"run1/sgm:0.2:per-sample": seal(   # sealed again
                 {**d["networks"]["run1/sgm:0.2:per-sample"], "init_sha256": "0" * 64})})}
    for why, edit in edits.items():
        bad = json.loads(json.dumps(doc))
        edit(bad)
        (row / "protocol.json").write_text(json.dumps(bad))
        assert tool.main([str(tmp_path / "s0.json"), "--protocol", str(row)]) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and why in err, err


def test_robustness_tables_refuse_odd_audits_in_one_line_and_write_no_figure_before_a_refusal(tmp_path, capsys,
                                                                                             made_protocol):
    from conftest import load_tool
    tool = load_tool("robustness_tables")
    good = _audit_doc(0, (50.0, 70.0))
    odd = {"images_list": lambda d: d["settings"].update(images={"a": [1]}),
           "info_list": lambda d: d["networks"]["mnist-cnn/run0-control"].update(info=[1])}
    for name, change in odd.items():
        doc = json.loads(json.dumps(good))
        change(doc)
        write_audit(tmp_path / f"{name}.json", doc)
        assert tool.main([str(tmp_path / f"{name}.json")]) == 1, name
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and "not a robustness.json" in err, err
    huge = json.loads(json.dumps(good).replace("run0-", "run" + "7" * 5000 + "-"))    # no run of a protocol
    write_audit(tmp_path / "huge.json", huge)
    assert tool.main([str(tmp_path / "huge.json")]) == 0
    assert f"| mnist-cnn/run{'7' * 5000}-control | 0.1 | 1 |" in capsys.readouterr().out     # kept as a name
    alone = json.loads(json.dumps(good).replace("run0-control", "run0-other"))           # no control: no gains
    write_audit(tmp_path / "a0.json", alone)
    figure = tmp_path / "r.png"
    assert tool.main([str(tmp_path / "a0.json"), "--figure", str(figure), "--gain-figure", str(tmp_path / "g.png")]) == 1
    assert "no arm has a control" in capsys.readouterr().err and not figure.exists()   # nothing written
    write_audit(tmp_path / "s0.json", good)
    assert tool.main([str(tmp_path / "s0.json"), "--figure", str(figure), "--gain-figure", str(tmp_path / "g.txt")]) == 1
    assert "--gain-figure" in capsys.readouterr().err and not figure.exists()         # both checked first
    row = tmp_path / "mnist-cnn"
    protocol_row(made_protocol, row)
    other_run = with_recorded_weights(_audit_doc(0, (50.0, 70.0)), made_protocol)
    other_run = json.loads(json.dumps(other_run).replace("run0-", "run7-"))             # a run the protocol lacks
    write_audit(tmp_path / "s7.json", other_run)
    assert tool.main([str(tmp_path / "s7.json"), "--protocol", str(row)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the audited mnist-cnn/run7-control has no record run7/control in " \
                                    "mnist-cnn/protocol.json" in err
