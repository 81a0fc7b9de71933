"""Streamed tiled prediction: images larger than memory, read, predicted and written by windows.

The image is covered by the tiles of ``sliding_window`` (same positions, same ``tile_batch_size``
chunks of the row-major tile list, same uniform/Gaussian weights, same float32 sums), so the class
ids equal the in-memory sliding window's bit for bit. What differs is what is held: the tiles of the
chunk in flight, the image rows under them, and float32 sums of logits and weights for one tile
height of rows (``C x tile_h x W``). Rows no later tile touches are final: they become class ids
(and probabilities) in a band of ``band_rows`` rows, which is saved as a part file next to the
output. Peak memory therefore depends on the tile size, the tile batch and the image **width**
(about ``(4 C + 4 + bands) x tile_h x W`` bytes plus ``band_rows x W`` for the ids, ``x C`` more
for probabilities), never on the image's height or area; the overlap changes only the work.

A run's parts (``.<output>.parts/``: one file per finished band and ``progress.json`` with a
fingerprint of the input, the model and the settings) are what a killed run resumes from: started
again with the same command, it computes only the missing bands (and the tile rows above the first
of them, whose logits reach into it). A fingerprint that differs is refused. When every band is
there, one process writes the output file band by band (``raster_files.write_prediction``) and the
parts are removed.

With several processes (``--trainer.devices N``) the missing bands are split into N contiguous runs;
each process writes its bands' parts and process 0 writes the file. Bands do not depend on which
process computes them, so the file is the same as with one process.

Nodata: a chunk of tiles without one valid pixel is not run; class ids of nodata pixels are the
output's nodata value. Test-time augmentation is applied per tile (``tta_logits`` on each chunk of
tiles); the log-averaged probabilities of the tiles are then blended like logits.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seglab.data.normalize import are_data_statistics, check_input, normalize
from seglab.errors import ConfigError, DataError
from seglab.inference.predict import Inference
from seglab.inference.raster_files import (
    OutputSpec,
    WindowSource,
    georeference_of,
    open_source,
    write_prediction,
)
from seglab.inference.sliding_window import gaussian_weights, pair, tile_starts, tile_stride
from seglab.inference.tta import tta_logits

Forward = Callable[[Tensor], Tensor]
InputCheck = Callable[[Tensor, str], None]  # check(image, name), as data modules give it
PROGRESS_FILE = "progress.json"
PROBABILITY_DTYPES = ("uint8", "float16")
EMIT_COLUMNS = 1024  # columns of finished rows turned into class ids at a time


def network_input(
    raw: np.ndarray, mean: Sequence[float], std: Sequence[float], device: Any
) -> Tensor:
    """Windows ``(B, bands, h, w)`` as a source gives them (``uint8``, or ``float32`` raw values of
    other types) as the network's normalised float32 input: the one conversion of the streamed
    path, ``seglab.data.normalize``'s rule for every type (``(value / 255 - mean) / std`` per
    band), as the in-memory path applies it."""
    x = torch.from_numpy(np.ascontiguousarray(raw)).to(device)
    return normalize(x, mean, std)


def check_source(source: WindowSource, check: InputCheck) -> None:
    """Runs the data's input check (``seglab.data.normalize.check_input``, as the in-memory
    predict path does for each image) on the bands and type the source gives, before any window
    is read: a band count other than the model's, or a type its normalisation does not fit, is
    refused naming the file."""
    probe = torch.from_numpy(np.zeros((source.bands, 1, 1), source.dtype))
    check(probe, str(source.path))


def tile_forward(model: Forward, settings: Inference) -> Forward:
    """The forward of one chunk of tiles: the model, or test-time augmentation of each tile."""
    if settings.passes == 1 and tuple(settings.scales) == (1.0,):
        return model
    return partial(
        tta_logits, model, hflip=settings.hflip, vflip=settings.vflip, scales=settings.scales
    )


def should_stream(settings: Inference, height: int, width: int, georeferenced: bool) -> bool:
    """Whether an image takes the streamed path: always, never, or (``auto``) when it is larger
    than ``stream_above`` pixels or georeferenced (its output keeps the georeference)."""
    if settings.streaming == "auto":
        return georeferenced or height * width > settings.stream_above
    return settings.streaming == "always"


@dataclass(frozen=True)
class Tiling:
    """Where the tiles of an image are (``sliding_window``'s positions) and its bands of rows."""

    height: int
    width: int
    tile: tuple[int, int]
    stride: tuple[int, int]
    band_rows: int

    @property
    def ys(self) -> list[int]:
        return tile_starts(max(self.height, self.tile[0]), self.tile[0], self.stride[0])

    @property
    def xs(self) -> list[int]:
        return tile_starts(max(self.width, self.tile[1]), self.tile[1], self.stride[1])

    @property
    def bands(self) -> int:
        return math.ceil(self.height / self.band_rows)

    @property
    def tiles(self) -> int:
        return len(self.ys) * len(self.xs)

    def band(self, b: int) -> tuple[int, int]:
        return b * self.band_rows, min((b + 1) * self.band_rows, self.height)

    def tile_rows(self, r0: int, r1: int) -> tuple[int, int]:
        """The tile rows ``[k0, k1)`` whose tiles touch image rows ``[r0, r1)``."""
        ys, th = self.ys, self.tile[0]
        touching = [k for k, y in enumerate(ys) if y < r1 and y + th > r0]
        return touching[0], touching[-1] + 1


def tiling_of(height: int, width: int, settings: Inference) -> Tiling:
    tile = pair(settings.tile_size)
    stride = tile_stride(tile, settings.overlap, settings.stride)
    if stride[0] > tile[0] or stride[1] > tile[1]:
        raise ConfigError(
            f"model.inference.stride {stride} is larger than the tile {tile}: pixels between tiles "
            "would not be predicted"
        )
    return Tiling(height, width, tile, stride, settings.band_rows)


class BandPredictor:
    """Computes finished bands of class ids (and probabilities) of one image, band by band."""

    def __init__(
        self,
        forward: Forward,
        source: WindowSource,
        tiling: Tiling,
        mean: Sequence[float],
        std: Sequence[float],
        weighting: str,
        tile_batch_size: int,
        device: Any,
        num_classes: int,
        ids_dtype: np.dtype,
        nodata: int | None,
        probabilities: str | None = None,
        on_tiles: Callable[[int], None] | None = None,
    ) -> None:
        self.forward, self.source, self.tiling = forward, source, tiling
        self.mean, self.std = mean, std
        self.batch, self.device = tile_batch_size, torch.device(device)
        self.num_classes = num_classes
        self.ids_dtype, self.nodata, self.probabilities = ids_dtype, nodata, probabilities
        th, tw = tiling.tile
        self.weights = gaussian_weights((th, tw)) if weighting == "gaussian" else torch.ones(th, tw)
        self.on_tiles = on_tiles or (lambda n: None)
        self.tiles_run = 0

    def chunks(self, k0: int, k1: int) -> range:
        """The ``tile_batch_size`` chunks of the row-major tile list that hold tile rows
        ``[k0, k1)`` (chunks are the same as in ``sliding_window``, whoever computes them)."""
        nx, b = len(self.tiling.xs), self.batch
        return range(k0 * nx // b, math.ceil(k1 * nx / b))

    def tiles_in(self, b0: int, b1: int) -> int:
        """The tiles ``run(b0, b1)`` goes through (for the progress bar)."""
        t = self.tiling
        k0, k1 = t.tile_rows(t.band(b0)[0], t.band(b1 - 1)[1])
        return sum(min((j + 1) * self.batch, t.tiles) - j * self.batch for j in self.chunks(k0, k1))

    def _read_row(self, k: int) -> tuple[np.ndarray, np.ndarray | None]:
        """The image rows under tile row ``k`` (clipped to the image) and their validity."""
        t, (th, _) = self.tiling, self.tiling.tile
        r0 = t.ys[k]
        r1 = min(r0 + th, t.height)
        return self.source.read(r0, r1, 0, t.width)

    def run(self, b0: int, b1: int) -> Iterator[tuple[int, np.ndarray, np.ndarray | None]]:
        """``(band, ids (h, W), probabilities (C, h, W) or None)`` for bands ``b0 .. b1 - 1``."""
        t = self.tiling
        (th, tw), xs, ys, nx = t.tile, t.xs, t.ys, len(t.xs)
        r_start, r_end = t.band(b0)[0], t.band(b1 - 1)[1]
        k0, k1 = t.tile_rows(r_start, r_end)
        state = _Rows(self, r_start, r_end, b0, ys[k0])
        rows: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}
        total = t.tiles
        for j in self.chunks(k0, k1):
            chunk = [
                (i // nx, i % nx) for i in range(j * self.batch, min((j + 1) * self.batch, total))
            ]
            for k in [k for k in rows if k < chunk[0][0]]:
                del rows[k]
            for k, _ in chunk:
                if k not in rows:
                    rows[k] = self._read_row(k)
            valid = [
                rows[k][1] is None or bool(rows[k][1][:, xs[i] : xs[i] + tw].any())
                for k, i in chunk
            ]
            self.on_tiles(len(chunk))
            if not any(valid):
                continue  # nodata only: not predicted
            raw = np.stack([rows[k][0][:, :, xs[i] : xs[i] + tw] for k, i in chunk])
            x = network_input(raw, self.mean, self.std, self.device)
            pad_h, pad_w = th - x.shape[-2], tw - x.shape[-1]
            if pad_h or pad_w:  # an image smaller than a tile, padded as sliding_window does
                x = F.pad(x, (0, pad_w, 0, pad_h))
            logits = self.forward(x)
            self.tiles_run += len(chunk)
            for (k, i), tile_logits in zip(chunk, logits, strict=True):
                if k0 <= k < k1:
                    yield from state.add(ys[k], xs[i], tile_logits)
        yield from state.finish()


class _Rows:
    """The float32 sums of the rows in flight (one tile height) and the band being filled."""

    def __init__(self, owner: BandPredictor, r_start: int, r_end: int, b0: int, top: int) -> None:
        self.o, self.r_start, self.r_end = owner, r_start, r_end
        self.top = top  # first row held in the sums
        self.sums: Tensor | None = None
        self.wsums: Tensor | None = None
        self.band = b0
        self.band_ids: np.ndarray | None = None
        self.band_probs: np.ndarray | None = None
        self.filled = 0

    def add(
        self, y: int, x: int, logits: Tensor
    ) -> Iterator[tuple[int, np.ndarray, np.ndarray | None]]:
        th, tw = self.o.tiling.tile
        if self.sums is None:
            width = max(self.o.tiling.width, tw)
            self.sums = torch.zeros(
                logits.shape[0], th, width, dtype=torch.float32, device=logits.device
            )
            self.wsums = torch.zeros(1, th, width, dtype=torch.float32, device=logits.device)
            self.weights = self.o.weights.to(logits.device)
        if y > self.top:
            yield from self.advance(y)
        logits = logits.to(self.sums.device, torch.float32)
        r = y - self.top
        self.sums[:, r : r + th, x : x + tw] += logits * self.weights
        self.wsums[:, r : r + th, x : x + tw] += self.weights

    def advance(self, y: int) -> Iterator[tuple[int, np.ndarray, np.ndarray | None]]:
        """Rows above the tile row starting at ``y`` are final: emit them one tile row's slab
        ``[ys[j], ys[j + 1])`` at a time and move the sums up. Slabs are the same whichever
        bands a process computes, so their results are too (vectorised ``exp`` rounds by the
        element's position in the tensor)."""
        t = self.o.tiling
        th, ys = t.tile[0], t.ys
        while self.top < y:
            j = ys.index(self.top)
            nxt = ys[j + 1] if j + 1 < len(ys) else max(t.height, th)
            n = nxt - self.top
            yield from self.emit(self.top, nxt)
            if self.sums is not None:
                self.sums[:, : th - n] = self.sums[:, n:].clone()
                self.wsums[:, : th - n] = self.wsums[:, n:].clone()
                self.sums[:, th - n :] = 0
                self.wsums[:, th - n :] = 0
            self.top = nxt

    def finish(self) -> Iterator[tuple[int, np.ndarray, np.ndarray | None]]:
        """Emits up to the first tile row below the last band (its rows are complete)."""
        t = self.o.tiling
        later = [y for y in t.ys if y >= self.r_end]
        yield from self.advance(later[0] if later else max(t.height, t.tile[0]))

    def emit(self, r0: int, r1: int) -> Iterator[tuple[int, np.ndarray, np.ndarray | None]]:
        """Class ids (and probabilities) of the finished rows ``[r0, r1)``, computed on the whole
        slab and kept where they fall in this run's bands; nodata where the input has none or no
        tile was run."""
        t = self.o.tiling
        a, b = max(r0, self.r_start), min(r1, self.r_end, t.height)
        if a >= b:
            return
        if self.sums is None:  # nothing predicted yet: rows under skipped (nodata) tiles only
            ids = np.zeros((b - a, t.width), self.o.ids_dtype)
            probs = None
            if self.o.probabilities:
                probs = np.zeros((self.o.num_classes, b - a, t.width), self.o.probabilities)
            covered = np.zeros((b - a, t.width), bool)
        else:
            n, rows = r1 - r0, slice(a - r0, b - r0)
            covered = (self.wsums[0, rows, : t.width] > 0).cpu().numpy()
            ids = np.empty((b - a, t.width), self.o.ids_dtype)
            probs = None
            if self.o.probabilities:
                probs = np.empty((self.o.num_classes, b - a, t.width), self.o.probabilities)
            # By columns of fixed position: temporaries do not grow with the width, and each
            # element sits where it sits in every run (see advance).
            for c0 in range(0, t.width, EMIT_COLUMNS):
                c1 = min(c0 + EMIT_COLUMNS, t.width)
                logits = self.sums[:, :n, c0:c1] / self.wsums[:, :n, c0:c1]
                ids[:, c0:c1] = logits.argmax(0)[rows].cpu().numpy()
                if probs is not None:
                    p = logits.softmax(0)
                    if self.o.probabilities == "uint8":
                        p = (p * 255).round()
                    probs[:, :, c0:c1] = p[:, rows].cpu().numpy()
        valid = self.o.source.valid(a, b, 0, t.width)
        valid = covered if valid is None else valid & covered
        if not valid.all():
            if self.o.nodata is None:
                raise RuntimeError(f"{self.o.source.path}: rows {a}-{b} have unpredicted pixels")
            ids[~valid] = self.o.nodata
            if probs is not None:
                probs[:, ~valid] = 0
        yield from self._fill(a, ids, probs)

    def _fill(
        self, a: int, ids: np.ndarray, probs: np.ndarray | None
    ) -> Iterator[tuple[int, np.ndarray, np.ndarray | None]]:
        t = self.o.tiling
        while ids.shape[0]:
            b0, b1 = t.band(self.band)
            if self.band_ids is None:
                self.band_ids = np.empty((b1 - b0, t.width), self.o.ids_dtype)
                if probs is not None:
                    self.band_probs = np.empty((probs.shape[0], b1 - b0, t.width), probs.dtype)
            n = min(ids.shape[0], b1 - b0 - self.filled)
            assert a == b0 + self.filled, "rows out of order"
            self.band_ids[self.filled : self.filled + n] = ids[:n]
            if probs is not None:
                self.band_probs[:, self.filled : self.filled + n] = probs[:, :n]
                probs = probs[:, n:]
            ids, a, self.filled = ids[n:], a + n, self.filled + n
            if self.filled == b1 - b0:
                yield self.band, self.band_ids, self.band_probs
                self.band, self.band_ids, self.band_probs, self.filled = (
                    self.band + 1,
                    None,
                    None,
                    0,
                )


# --- processes -------------------------------------------------------------------------------


class ProcessGroup(Protocol):
    """The processes that share an image's bands (one, or a Lightning strategy's)."""

    rank: int
    world_size: int

    def barrier(self) -> None: ...

    def any(self, flag: bool) -> bool: ...


class SingleProcess:
    rank = 0
    world_size = 1

    def barrier(self) -> None:
        pass

    def any(self, flag: bool) -> bool:
        return flag


def agree(group: ProcessGroup, error: BaseException | None, image: Path) -> None:
    """Every process stops when one failed: that one with its error, the others saying so."""
    if group.any(error is not None):
        if error is not None:
            raise error
        raise DataError(f"{image}: another process stopped (its message says why)")


def split(items: Sequence[int], parts: int, index: int) -> list[int]:
    """Part ``index`` of ``parts`` contiguous, nearly equal parts of ``items``."""
    n = len(items)
    return list(items[index * n // parts : (index + 1) * n // parts])


def runs(bands: Sequence[int]) -> list[tuple[int, int]]:
    """Consecutive bands as ``[b0, b1)`` runs."""
    out: list[tuple[int, int]] = []
    for b in bands:
        if out and out[-1][1] == b:
            out[-1] = (out[-1][0], b + 1)
        else:
            out.append((b, b + 1))
    return out


def model_fingerprint(model: nn.Module) -> str:
    """A hash of the model's weights (and buffers): a resumed run must use the same model."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


@dataclass
class StreamResult:
    """What a streamed prediction wrote, and how much of it this run computed."""

    outputs: list[Path]
    bands: int
    bands_done_before: int
    tiles: int
    tiles_run: int
    seconds: float
    parts: Path = field(default_factory=Path)


def parts_dir(output: Path) -> Path:
    return output.parent / f".{output.name}.parts"


def _save(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.save(f, array)
    os.replace(tmp, path)  # a part is there whole or not at all


def _prepare(
    parts: Path, outputs: list[Path], fingerprint: dict[str, Any], overwrite: bool
) -> None:
    """Process 0: refuses what is in the way, clears it with ``overwrite``, records the
    fingerprint of a new run."""
    progress = parts / PROGRESS_FILE
    if progress.exists():
        try:
            recorded = json.loads(progress.read_text())["fingerprint"]
        except (ValueError, KeyError):
            recorded = {}
        differs = sorted(
            k for k in {**recorded, **fingerprint} if recorded.get(k) != fingerprint.get(k)
        )
        if differs and not overwrite:
            raise DataError(
                f"{parts}: an unfinished prediction of {outputs[0].name} with another "
                f"{', '.join(differs)} is here; run with the same input, model and settings to "
                "finish it, or pass --overwrite true to start over"
            )
        if differs:
            shutil.rmtree(parts)
    if not progress.exists():
        existing = [p for p in outputs if p.exists()]
        if existing and not overwrite:
            raise FileExistsError(
                f"{existing[0]}: prediction output exists already; pass --overwrite true to "
                "replace it"
            )
        parts.mkdir(parents=True, exist_ok=True)
        progress.write_text(json.dumps({"fingerprint": fingerprint}, indent=1))


def stream_predict(
    model: Forward,
    image: str | Path,
    output: str | Path,
    settings: Inference | None = None,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    num_classes: int,
    in_channels: int = 3,
    palette: Sequence[Sequence[int]] | None = None,
    probabilities: str | None = None,
    overwrite: bool = False,
    cog: bool = False,
    model_id: str = "",
    group: ProcessGroup | None = None,
    progress: bool = False,
    device: Any = "cpu",
    exif_orientation: Any = "refuse",
    check: InputCheck | None = None,
) -> StreamResult:
    """Predicts ``image`` window by window into the class-id file ``output`` (a GeoTIFF when the
    input is georeferenced, else a tiled TIFF) and, with ``probabilities`` (``uint8``: 0-255 for
    0-1; ``float16``), ``<output stem>_probs.tif``. Resumes an unfinished run of the same input,
    model (``model_id``) and settings from its parts.

    Args:
        model: logits ``(B, C, h, w)`` of normalised tiles (``SegmentationModule`` pads to its
            stride); called under ``torch.no_grad``.
        settings: tiles, overlap/stride, weighting, tile batch, test-time augmentation,
            ``band_rows`` (``model.inference``).
        mean, std, num_classes, in_channels: the model's input normalisation (per band, on
            ``seglab.data.normalize``'s scale for every pixel type), classes and channels.
        palette: colour per class id, kept as the class-id file's colour table.
        group: the processes sharing the image (``SingleProcess`` by default).
        check: ``check(image, name)``, refusing an image the normalisation does not fit: the data
            module's ``input_check()`` (what its in-memory predict applies); by default
            ``check_input`` with ``mean`` (the image's bands must be ``len(mean)``, and ``uint8``
            when ``mean``/``std`` are ImageNet's).
        progress: show a progress bar in tiles (process 0).
    """
    settings = settings or Inference()
    if probabilities not in (None, *PROBABILITY_DTYPES):
        raise ConfigError(f"probabilities must be uint8 or float16, got {probabilities!r}")
    group = group or SingleProcess()
    if len(mean) != in_channels:
        raise ConfigError(
            f"mean/std have {len(mean)} values, but the model takes {in_channels} channels "
            "(model.in_channels): one value per band"
        )
    check = check or partial(
        check_input, mean=mean, statistics_given=are_data_statistics(mean, std)
    )
    image, output = Path(image), Path(output)
    started = time.perf_counter()
    source = open_source(image, exif_orientation)
    try:
        return _stream(
            model,
            source,
            output,
            settings,
            mean,
            std,
            num_classes,
            check,
            palette,
            probabilities,
            overwrite,
            cog,
            model_id,
            group,
            progress,
            device,
            started,
        )
    finally:
        source.close()


def _stream(
    model: Forward,
    source: WindowSource,
    output: Path,
    settings: Inference,
    mean: Sequence[float],
    std: Sequence[float],
    num_classes: int,
    check: InputCheck,
    palette: Sequence[Sequence[int]] | None,
    probabilities: str | None,
    overwrite: bool,
    cog: bool,
    model_id: str,
    group: ProcessGroup,
    progress: bool,
    device: Any,
    started: float,
) -> StreamResult:
    image = source.path
    check_source(source, check)
    tiling = tiling_of(source.height, source.width, settings)
    if tiling.band_rows % 16:
        raise ConfigError(
            f"model.inference.band_rows must be a multiple of 16, got {tiling.band_rows}"
        )
    # Class ids in uint8 when 255 is free for nodata, else uint16 (65535 for nodata).
    ids_dtype = np.dtype(np.uint8 if num_classes < 255 else np.uint16)
    nodata = int(np.iinfo(ids_dtype).max) if source.has_nodata else None
    outputs = [output] + ([output.with_name(f"{output.stem}_probs.tif")] if probabilities else [])
    stat = image.stat()
    fingerprint = {
        "input": f"{image.resolve()} ({stat.st_size} bytes, modified {stat.st_mtime_ns})",
        "model": model_id,
        "settings": json.dumps(
            {
                "tile": tiling.tile,
                "stride": tiling.stride,
                "band_rows": tiling.band_rows,
                "weighting": settings.weighting,
                "tile_batch_size": settings.tile_batch_size,
                "hflip": settings.hflip,
                "vflip": settings.vflip,
                "scales": list(settings.scales),
                "mean": list(mean),
                "std": list(std),
                "probabilities": probabilities,
                "ids": ids_dtype.name,
                "nodata": nodata,
            },
            sort_keys=True,
        ),
    }
    parts = parts_dir(output)
    error: BaseException | None = None
    if group.rank == 0:
        try:
            _prepare(parts, outputs, fingerprint, overwrite)
        except (DataError, FileExistsError, OSError) as e:
            error = e
    agree(group, error, image)
    group.barrier()

    def done(b: int) -> bool:
        names = [f"band_{b:06d}.ids.npy"] + ([f"band_{b:06d}.probs.npy"] if probabilities else [])
        return all((parts / n).exists() for n in names)

    missing = [b for b in range(tiling.bands) if not done(b)]
    mine = split(missing, group.world_size, group.rank)
    bar = None
    predictor = BandPredictor(
        tile_forward(model, settings),
        source,
        tiling,
        mean,
        std,
        settings.weighting,
        settings.tile_batch_size,
        device,
        num_classes,
        ids_dtype,
        nodata,
        probabilities,
    )
    if progress and group.rank == 0:
        from tqdm import tqdm

        share = "" if group.world_size == 1 else f" (process 0 of {group.world_size})"
        bar = tqdm(
            total=sum(predictor.tiles_in(b0, b1) for b0, b1 in runs(mine)),
            unit="tile",
            desc=f"{image.name}{share}",
            dynamic_ncols=True,
        )
        predictor.on_tiles = bar.update
    error = None
    try:
        for b0, b1 in runs(mine):
            for band, ids, probs in predictor.run(b0, b1):
                if probs is not None:
                    _save(parts / f"band_{band:06d}.probs.npy", probs)
                _save(parts / f"band_{band:06d}.ids.npy", ids)
    except (DataError, OSError) as e:
        error = e
    finally:
        if bar is not None:
            bar.close()
    agree(group, error, image)
    group.barrier()
    if group.rank == 0:
        try:
            _assemble(
                source, tiling, parts, outputs, ids_dtype, nodata, palette, probabilities, cog
            )
        except (DataError, OSError, ConfigError) as e:
            error = e
    agree(group, error, image)
    group.barrier()
    return StreamResult(
        outputs=outputs,
        bands=tiling.bands,
        bands_done_before=tiling.bands - len(missing),
        tiles=tiling.tiles,
        tiles_run=predictor.tiles_run,
        seconds=time.perf_counter() - started,
        parts=parts,
    )


def _assemble(
    source: WindowSource,
    tiling: Tiling,
    parts: Path,
    outputs: list[Path],
    ids_dtype: np.dtype,
    nodata: int | None,
    palette: Sequence[Sequence[int]] | None,
    probabilities: str | None,
    cog: bool,
) -> None:
    """Process 0 writes the output files from the parts, band by band, then removes the parts."""
    georeference = georeference_of(source) if source.georeferenced else {}

    def bands(kind: str) -> Iterator[np.ndarray]:
        for b in range(tiling.bands):
            array = np.load(parts / f"band_{b:06d}.{kind}.npy", mmap_mode="r")
            yield array[None] if kind == "ids" else array

    files = [("ids", outputs[0], 1, ids_dtype, nodata, palette)]
    if probabilities:
        first = np.load(parts / f"band_{0:06d}.probs.npy", mmap_mode="r")
        files.append(("probs", outputs[1], first.shape[0], np.dtype(probabilities), None, None))
    for kind, path, count, dtype, nd, pal in files:
        tmp = path.with_name(f".{path.name}.tmp")
        spec = OutputSpec(tmp, tiling.height, tiling.width, count, dtype, nd, pal, georeference)
        write_prediction(spec, bands(kind), tiling.band_rows, cog)
        os.replace(tmp, path)
    shutil.rmtree(parts)
