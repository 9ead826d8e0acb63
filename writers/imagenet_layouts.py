"""ImageNet as users have it: which images of a split belong to which class, in each layout the
data comes in, detected, and said in one line.

    class-folders  DIR/<split>/<wnid>/*                    (torchvision's ImageFolder, the usual script's result)
    kaggle         DIR/ILSVRC/Data/CLS-LOC/<split>/ with DIR/LOC_val_solution.csv (val) and
                   DIR/LOC_synset_mapping.txt: Kaggle's copy; train is class folders, val is flat
    devkit         DIR/val/ILSVRC2012_val_00000001.JPEG ... flat, labelled by the devkit
                   (ILSVRC2012_devkit_t12: data/ILSVRC2012_validation_ground_truth.txt, one
                   ILSVRC2012_ID per image, and data/meta.mat, ILSVRC2012_ID -> wnid, an order that
                   is not the sorted wnids'), a folder or its .tar.gz, --devkit or found beside DIR
    wnid-names     DIR/<split>/<wnid>_<anything>.JPEG flat (file names that carry the wnid)

What a label file calls for must hold: every wnid an ImageNet-1K class, every image labelled,
every label's image present; per-class tar files not yet unpacked are named with the command
that unpacks them. Each failure is one line naming the file and what to do.
"""

from __future__ import annotations

import csv
import io
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from ffcv_inat import UserError
from ffcv_inat.classes import class_by_wnid

LAYOUTS = ("class-folders", "kaggle", "devkit", "wnid-names")
KAGGLE_DIR = Path("ILSVRC", "Data", "CLS-LOC")
KAGGLE_VAL_LABELS = "LOC_val_solution.csv"
KAGGLE_SYNSETS = "LOC_synset_mapping.txt"
DEVKIT = "ILSVRC2012_devkit_t12"
DEVKIT_GROUND_TRUTH = "data/ILSVRC2012_validation_ground_truth.txt"
DEVKIT_META = "data/meta.mat"
VAL_NAME = re.compile(r"^ILSVRC2012_val_\d{8}\.(?i:jpe?g)$")  # the labels name this stem exactly
WNID_NAME = re.compile(r"^(n\d{8})_")
UNPACK_TARS = 'for f in *.tar; do d="${f%.tar}"; mkdir -p "$d" && tar -xf "$f" -C "$d" && rm "$f"; done'


@dataclass(frozen=True)
class SplitImages:
    """The images of one split, by class: class folders are listed per class when asked
    (`folder`); flat layouts carry every image's class, read from its labels (`by_wnid`)."""

    layout: str  # one of LAYOUTS
    said: str  # what write-beton prints: the layout and where its labels came from
    folder: Path  # the split's image folder
    by_wnid: dict[str, list[Path]] | None = None
    label_file: str = ""  # where flat layouts' labels came from (errors name it)
    details: dict = field(default_factory=dict)  # for the manifest: paths, counts

    def files(self, wnid: str) -> list[Path]:
        """The images of class `wnid`, sorted; none is a one-line error."""
        if self.by_wnid is None:
            class_dir = self.folder / wnid
            if not class_dir.is_dir():
                raise UserError(f"class folder missing: {class_dir}")
            files = sorted(f for f in class_dir.iterdir() if f.is_file() and not f.name.startswith("."))
            if not files:
                raise UserError(f"class folder is empty: {class_dir}")
            return files
        files = self.by_wnid.get(wnid)
        if not files:
            raise UserError(f"{self.label_file or self.folder}: no image of class {wnid} in {self.folder}")
        return files


def find_split(data_dir: str | Path, split: str, devkit: str | Path | None = None) -> SplitImages:
    """The layout of `split` under `data_dir` and its images by class (see the module's list)."""
    data_dir = Path(data_dir)
    kaggle = data_dir / KAGGLE_DIR / split
    if kaggle.is_dir():
        return _kaggle(data_dir, kaggle, split)
    folder = data_dir / split
    if not folder.is_dir():
        raise UserError(f"ImageNet split folder not found: {folder} (nor Kaggle's {kaggle})")
    entries = [e for e in folder.iterdir() if not e.name.startswith(".")]
    tars = sorted(e.name for e in entries if e.is_file() and e.name.endswith(".tar"))
    if tars:
        raise UserError(
            f"{folder} holds {len(tars)} unpacked .tar files ({tars[0]}, ...): unpack each into its class "
            f"folder first: cd {folder} && {UNPACK_TARS}"
        )
    if any(e.is_dir() for e in entries):
        return SplitImages("class-folders", f"class folders {folder}/<wnid>/", folder)
    names = sorted(e.name for e in entries if e.is_file())
    if names and all(VAL_NAME.match(n) for n in names):
        return _devkit(data_dir, folder, names, devkit)
    if names and all(WNID_NAME.match(n) for n in names):
        return _wnid_names(folder, names)
    example = next((n for n in names if not VAL_NAME.match(n) and not WNID_NAME.match(n)), None)
    raise UserError(
        f"{folder}: no ImageNet layout: neither class folders <wnid>/ nor files named ILSVRC2012_val_*.JPEG "
        f"or <wnid>_*.JPEG" + (f" (e.g. {example})" if example else " (it is empty)")
    )


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not text ({e.reason} at byte {e.start:,}): a damaged copy?") from None


def _check_wnid(wnid: str, where: str) -> str:
    if wnid not in class_by_wnid():
        raise UserError(f"{where}: {wnid} is not an ImageNet-1K class (a label file of another dataset?)")
    return wnid


def _grouped(labels: dict[str, str], folder: Path, names: list[str], label_file: str) -> dict[str, list[Path]]:
    """{wnid: sorted files} from {image stem: wnid}: every image labelled, every label's image there."""
    stems = {Path(n).stem: n for n in names}
    unlabelled = sorted(set(stems) - set(labels))
    if unlabelled:
        raise UserError(
            f"{folder / stems[unlabelled[0]]}: no label in {label_file} ({len(unlabelled):,} images lack one): "
            "images and labels must come from the same release"
        )
    missing = sorted(set(labels) - set(stems))
    if missing:
        raise UserError(
            f"{label_file} labels {len(labels):,} images, {len(missing):,} of them not in {folder} "
            f"(e.g. {missing[0]}): a partial copy? extract the whole archive"
        )
    out: dict[str, list[Path]] = {}
    for stem in sorted(stems):
        out.setdefault(labels[stem], []).append(folder / stems[stem])
    return out


def _kaggle(root: Path, folder: Path, split: str) -> SplitImages:
    synsets = root / KAGGLE_SYNSETS
    if synsets.is_file():
        for n, line in enumerate(_text(synsets).splitlines(), 1):
            if line.strip():
                _check_wnid(line.split()[0], f"{synsets} line {n}")
    if split != "val" or any(e.is_dir() for e in folder.iterdir()):
        return SplitImages("kaggle", f"Kaggle's layout, class folders {folder}/<wnid>/", folder)
    solution = root / KAGGLE_VAL_LABELS
    if not solution.is_file():
        raise UserError(f"{folder} is flat and {solution} is missing: Kaggle's val labels are in that file")
    labels = {}
    rows = csv.DictReader(io.StringIO(_text(solution)))
    if not {"ImageId", "PredictionString"} <= set(rows.fieldnames or ()):
        raise UserError(f"{solution}: no ImageId,PredictionString header: not Kaggle's val solution")
    for n, row in enumerate(rows, 2):
        image, words = row["ImageId"], (row["PredictionString"] or "").split()
        if not image or not words:
            raise UserError(f"{solution} line {n}: no image id or no wnid in it (a cut copy of the file?)")
        labels[image] = _check_wnid(words[0], f"{solution} line {n}")
    names = sorted(e.name for e in folder.iterdir() if e.is_file() and not e.name.startswith("."))
    by_wnid = _grouped(labels, folder, names, str(solution))
    said = f"Kaggle's layout, {folder} flat, labels from {solution.name}"
    return SplitImages("kaggle", said, folder, by_wnid, str(solution), {"labels": solution.name})


def _devkit_source(data_dir: Path, devkit: str | Path | None) -> Path:
    """The devkit: --devkit, else the folder or .tar.gz beside the data (in it or next to it)."""
    if devkit is not None:
        devkit = Path(devkit)
        if not devkit.exists():
            raise UserError(f"--devkit {devkit}: not found")
        return devkit
    for base in (data_dir, data_dir.parent):
        for name in (DEVKIT, f"{DEVKIT}.tar.gz"):
            if (base / name).exists():
                return base / name
    raise UserError(
        f"{data_dir / 'val'} is the official flat val/ (ILSVRC2012_val_*.JPEG): its labels are in the devkit; "
        f"give --devkit PATH ({DEVKIT} or {DEVKIT}.tar.gz) or put it beside {data_dir}"
    )


def _devkit_files(devkit: Path) -> tuple[str, bytes]:
    """(the ground truth's text, meta.mat's bytes) from a devkit folder or its .tar.gz."""
    wanted = (DEVKIT_GROUND_TRUTH, DEVKIT_META)
    if devkit.is_dir():
        root = devkit / DEVKIT if (devkit / DEVKIT).is_dir() else devkit
        paths = [root / w for w in wanted]
        for p in paths:
            if not p.is_file():
                raise UserError(f"--devkit {devkit}: {p} missing: not the ILSVRC2012 devkit (t12)?")
        return _text(paths[0]), paths[1].read_bytes()
    try:
        with tarfile.open(devkit) as tar:
            found = {}
            for member in tar.getmembers():
                for w in wanted:
                    if member.name.endswith(w) and member.isfile():
                        found[w] = tar.extractfile(member).read()
    except (tarfile.TarError, OSError) as e:
        raise UserError(f"--devkit {devkit}: not a readable .tar.gz ({e})") from None
    for w in wanted:
        if w not in found:
            raise UserError(f"--devkit {devkit}: holds no {w}: not the ILSVRC2012 devkit (t12)?")
    try:
        truth = found[DEVKIT_GROUND_TRUTH].decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"--devkit {devkit}: its {DEVKIT_GROUND_TRUTH} is not text ({e.reason})") from None
    return truth, found[DEVKIT_META]


def devkit_wnids(meta_mat: bytes, where: str) -> dict[int, str]:
    """ILSVRC2012_ID -> wnid of the 1,000 classes, from meta.mat's `synsets` (ids 1..1000)."""
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    try:
        synsets = loadmat(io.BytesIO(meta_mat), squeeze_me=True)["synsets"]
        pairs = {int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in synsets}
    except (ValueError, KeyError, TypeError, IndexError, MatReadError) as e:
        raise UserError(f"{where}: not the devkit's meta.mat ({e})") from None
    return {i: _check_wnid(w, f"{where} ILSVRC2012_ID {i}") for i, w in pairs.items() if 1 <= i <= 1000}


def _devkit(data_dir: Path, folder: Path, names: list[str], devkit: str | Path | None) -> SplitImages:
    source = _devkit_source(data_dir, devkit)
    truth, meta = _devkit_files(source)
    wnid_of = devkit_wnids(meta, f"{source}: {DEVKIT_META}")
    where = f"{source}: {DEVKIT_GROUND_TRUTH}"
    labels = {}
    for n, line in enumerate(truth.split(), 1):
        if not line.isdigit() or int(line) not in wnid_of:
            raise UserError(f"{where} line {n}: ILSVRC2012_ID {line} is none of meta.mat's 1,000 classes")
        labels[f"ILSVRC2012_val_{n:08d}"] = wnid_of[int(line)]
    by_wnid = _grouped(labels, folder, names, where)
    said = f"the official flat {folder}, labels from the devkit {source}"
    return SplitImages("devkit", said, folder, by_wnid, where, {"devkit": source.name})


def _wnid_names(folder: Path, names: list[str]) -> SplitImages:
    by_wnid: dict[str, list[Path]] = {}
    for n in names:
        wnid = _check_wnid(WNID_NAME.match(n).group(1), str(folder / n))
        by_wnid.setdefault(wnid, []).append(folder / n)
    return SplitImages("wnid-names", f"flat {folder}, each file's class from its name (<wnid>_...)", folder, by_wnid)
