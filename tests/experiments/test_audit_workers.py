"""An audit with ``--workers N`` gives the numbers of an audit in one process (nanosgm.experiments.audit.prefill)."""
import json

import pytest

from nanosgm.experiments import audit as robustness
from nanosgm.experiments import parallel
from nanosgm.plumbing.threads import set_threads

pytestmark = pytest.mark.usefixtures("numpy_backend")

SMALL = ["--images", "12", "--eps", "0.1,0.2", "--pgd-steps", "2", "--restarts", "2", "--apgd-steps", "3",
         "--queries", "15", "--no-progress"]


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    """Two tiny MNIST CNNs written by python -m nanosgm.train (other seeds, so other weights)."""
    from conftest import require_real_data
    from nanosgm.experiments import train_cli as train
    data_dir = str(require_real_data("mnist"))
    top = tmp_path_factory.mktemp("nets")
    for seed in (0, 1):
        assert train.main(["mnist", "--limit", "600", "--eval-limit", "40", "--epochs", "1", "--pgd", "0",
                           "--seed", str(seed), "--no-progress", "--data-dir", data_dir,
                           "--out", str(top / f"s{seed}")]) == 0
    return data_dir, [str(top / "s0" / "model.npz"), str(top / "s1" / "model.npz")]


def audit_doc(models, data_dir, out, capsys, *extra):
    code = robustness.main(models + SMALL + ["--data-dir", data_dir, "--out", str(out), *extra])
    err = capsys.readouterr().err
    assert code == 0, err
    return json.loads((out / "robustness.json").read_text()), err


def test_an_audit_in_worker_processes_gives_the_numbers_of_one_process(two_models, tmp_path, capsys, monkeypatch):
    data_dir, models = two_models
    monkeypatch.setattr(parallel, "default_threads", lambda workers: 1)
    restore, _ = set_threads(1)                     # the same BLAS thread count in this process as in the workers
    try:
        alone, _ = audit_doc(models, data_dir, tmp_path / "one", capsys)
        spread, err = audit_doc(models, data_dir, tmp_path / "two", capsys, "--workers", "2", "--keep-partial")
    finally:
        restore()
    n_steps = 2 * len(robustness.attack_plan(robustness.Suite(), 10)) + 2          # attacks and both transfers
    assert f"{n_steps} attack step(s) in 2 worker processes" in err
    assert err.count(", in a worker)") == n_steps
    assert err.count("(from the partial file)") == n_steps - 2                     # the audit read them all back
    for name in alone["networks"]:
        a, b = alone["networks"][name], spread["networks"][name]
        assert (a["clean"], a["accuracy"], a["robust"]) == (b["clean"], b["accuracy"], b["robust"])
    assert alone["transfer"] == spread["transfer"] and alone["checks"] == spread["checks"]
    code = robustness.main(models + SMALL + ["--data-dir", data_dir, "--out", str(tmp_path / "two"), "--workers", "2",
                                             "--overwrite"])
    err = capsys.readouterr().err
    assert code == 0 and "worker processes" not in err                            # nothing left for the workers


def test_workers_must_be_a_whole_number_of_one_or_more(two_models, tmp_path, capsys):
    data_dir, models = two_models
    code = robustness.main(models + SMALL + ["--data-dir", data_dir, "--out", str(tmp_path / "x"), "--workers", "0"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "--workers must be a whole number >= 1" in err


def test_a_step_that_fails_in_a_worker_is_named_with_what_is_kept(two_models, tmp_path):
    from nanosgm.experiments.audit import prefill
    from nanosgm.plumbing.audit_resume import FinishedAttacks
    from nanosgm.plumbing.errors import TaskFailed
    data_dir, models = two_models
    nets = robustness.load_networks(models[:1], 12, data_dir=data_dir)
    broken = tmp_path / "s0" / "model.npz"                  # the worker reads this copy, cut short
    broken.parent.mkdir()
    (broken.parent / "results.json").write_bytes(open(models[0].replace("model.npz", "results.json"), "rb").read())
    broken.write_bytes(open(models[0], "rb").read()[:100])
    finished = FinishedAttacks(tmp_path / "partial.json")
    suite = robustness.Suite(pgd_steps=2, restarts=1, apgd_steps=3, queries=5)
    with pytest.raises(TaskFailed, match=r"s0: [^:]+: .*not a readable .npz.*the finished attack results are kept in .*partial.json"):
        prefill([str(broken)], dict(n_images=12, data_dir=data_dir, dataset=None, model=None), nets, [0.1], suite,
                "none", finished, 2, 1, lambda line: None)
    assert finished.entries == {}


def test_weights_that_are_not_the_ones_their_record_names_are_refused(two_models, tmp_path):
    """A run's results.json, or a protocol's record, names its saved weights' digest: the audit loads no others."""
    import shutil
    data_dir, models = two_models
    record = json.loads(open(models[0].replace("model.npz", "results.json")).read())
    swapped = tmp_path / "s0" / "model.npz"                  # s1's weights beside s0's results.json
    swapped.parent.mkdir()
    shutil.copy(models[0].replace("model.npz", "results.json"), swapped.parent / "results.json")
    shutil.copy(models[1], swapped)
    with pytest.raises(robustness.AuditError, match=r"model.npz: these weights \(\w{12}\) are not the ones its record "
                                                    r"in .*results.json names \(\w{12}\)"):
        robustness.load_networks([str(swapped)], 12, data_dir=data_dir)
    row = tmp_path / "row"                                   # a protocol's network, models/run<i>-<arm>.npz
    (row / "models").mkdir(parents=True)
    config = {"dataset": "mnist", "model": "cnn", "limit": 600, "val_size": None, "eval_limit": 40}
    (row / "protocol.json").write_text(json.dumps({"config": config, "networks": {
        "run0/sgm:0.2": {"weights_sha256": record["weights_sha256"]}}}))
    shutil.copy(models[1], row / "models" / "run0-sgm_0.2.npz")
    with pytest.raises(robustness.AuditError, match=r"record in .*protocol.json names"):
        robustness.load_networks([str(row / "models" / "run0-sgm_0.2.npz")], 12, data_dir=data_dir)
    from nanosgm.experiments.records import refill_entry               # an older record, refilled
    refilled = [{"refill": True, "refilled": {"run0/sgm:0.2": refill_entry({}, record["weights_sha256"])}}]
    (row / "protocol.json").write_text(json.dumps({"config": config, "networks": {"run0/sgm:0.2": {}},
                                                   "sessions": refilled}))
    with pytest.raises(robustness.AuditError, match=r"record in .*protocol.json names"):
        robustness.load_networks([str(row / "models" / "run0-sgm_0.2.npz")], 12, data_dir=data_dir)
    shutil.copy(models[0], row / "models" / "run0-sgm_0.2.npz")
    nets = robustness.load_networks([str(row / "models" / "run0-sgm_0.2.npz")], 12, data_dir=data_dir)
    assert nets[0].info["weights_sha256"] == record["weights_sha256"]
    shutil.copy(models[1], row / "models" / "run0-control.npz")      # no record names its weights: audited as before
    assert robustness.load_networks([str(row / "models" / "run0-control.npz")], 12, data_dir=data_dir)
