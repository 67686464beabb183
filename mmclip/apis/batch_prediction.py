"""Classify many image files into one resumable ``.jsonl`` or ``.csv`` file.

Used by ``tools/predict.py``. Records, one per image, in input order:

* jsonl: ``{"path": ..., "labels": [top-k ints], "classes": [names or null], "scores":
  [softmax scores]}``, or ``{"path": ..., "error": "why it could not be read"}``;
* csv: a header ``path,label_1..k,class_1..k,score_1..k,error`` then one row per image.

The output is appended and flushed after every batch, so an interrupted run keeps what it
wrote; a rerun reads the file, drops a torn last line (the one being written when the
run stopped), and skips every image the file already holds. Under ``torchrun`` each rank
writes its share to ``OUT.part<rank>`` and rank 0 merges the shares into OUT, in input
order and without duplicates, then deletes them.
"""
import contextlib
import csv
import glob
import io
import json
import os
import re
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Set

import torch
from torch.utils.data import DataLoader, Dataset

from mmclip.datasets import IMG_EXTENSIONS

OUT_FORMATS = ('.jsonl', '.csv')
_GLOB_CHARS = re.compile(r'[*?\[]')


class OutputFileError(ValueError):
    """``--out`` exists but does not hold this tool's records (never overwritten)."""


# ---- inputs ---------------------------------------------------------------------------
def collect_inputs(inputs: Sequence[str]) -> List[str]:
    """Image paths from folders (recursive, sorted), globs, list files (one path per
    line) and image files, in argument order, each once.

    Raises:
        FileNotFoundError: an input that does not exist or a glob that matches nothing.
    """
    paths: Dict[str, None] = {}
    for item in inputs:
        if _GLOB_CHARS.search(item):
            found = sorted(p for p in glob.glob(item, recursive=True) if os.path.isfile(p))
            if not found:
                raise FileNotFoundError(f'{item}: the pattern matches no file.')
        elif os.path.isdir(item):
            found = sorted(str(p) for p in Path(item).rglob('*')
                           if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS)
        elif os.path.isfile(item) and not item.lower().endswith(IMG_EXTENSIONS):
            with open(item, encoding='utf-8') as f:
                found = [line.strip() for line in f if line.strip()]
        elif os.path.isfile(item):
            found = [item]
        else:
            raise FileNotFoundError(f'{item}: no such file, folder or pattern.')
        paths.update(dict.fromkeys(found))
    return list(paths)


class ImageFiles(Dataset):
    """``(index, packed inputs or None, error or None)`` per path through ``pipeline``.

    A file the pipeline cannot handle becomes a record of its error, not a stopped run.
    """

    def __init__(self, paths: Sequence[str], indices: Sequence[int],
                 pipeline: Callable[[dict], dict]) -> None:
        self.paths, self.indices, self.pipeline = paths, indices, pipeline

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        index = self.indices[i]
        try:
            return index, self.pipeline(dict(img_path=self.paths[index]))['inputs'], None
        except Exception as err:  # noqa: BLE001  (hostile files: record, go on)
            return index, None, f'{type(err).__name__}: {err}'


def _collate(items: list) -> list:
    return items


# ---- the output file -------------------------------------------------------------------
class PredictionFile:
    """Append-only records in ``fmt`` ('.jsonl' or '.csv') with ``topk`` predictions."""

    def __init__(self, path: str, fmt: str, topk: int) -> None:
        self.path, self.fmt, self.topk = path, fmt, topk
        self.header = (['path'] + [f'{k}_{i}' for k in ('label', 'class', 'score')
                                   for i in range(1, topk + 1)] + ['error'])

    def done(self) -> Dict[str, str]:
        """path -> its record line, for every complete record in the file; a torn last
        line is cut off the file first."""
        if not os.path.exists(self.path):
            return {}
        with open(self.path, 'rb') as f:
            data = f.read()
        complete = data[:data.rfind(b'\n') + 1]
        lines = complete.decode('utf-8').splitlines(keepends=True)
        if self.fmt == '.csv' and lines:
            if next(csv.reader(lines[:1])) != self.header:
                raise OutputFileError(
                    f'{self.path} exists with other columns than --topk {self.topk} gives '
                    f'({",".join(self.header)}); rerun with its --topk or another --out.')
            lines = lines[1:]
        records = {}
        for number, line in enumerate(lines, 2 if self.fmt == '.csv' else 1):
            path = self._path_of(line)
            if path is None:
                raise OutputFileError(f'{self.path}, line {number}: not a record of '
                                      f'tools/predict.py; use another --out.')
            records[path] = line
        if len(complete) < len(data):
            with open(self.path, 'r+b') as f:
                f.truncate(len(complete))
        return records

    def _path_of(self, line: str) -> Optional[str]:
        try:
            if self.fmt == '.jsonl':
                record = json.loads(line)
                return record.get('path') if isinstance(record, dict) else None
            (row, ) = list(csv.reader([line]))
            return row[0] if len(row) == len(self.header) else None
        except (ValueError, TypeError):
            return None

    def format(self, record: dict) -> str:
        if self.fmt == '.jsonl':
            return json.dumps(record, ensure_ascii=False) + '\n'
        k = self.topk
        if 'error' in record:
            row = [record['path']] + [''] * 3 * k + [record['error']]
        else:
            pad = [''] * (k - len(record['labels']))
            row = ([record['path']] + record['labels'] + pad +
                   [c if c is not None else '' for c in record['classes']] + pad +
                   record['scores'] + pad + [''])
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator='\n').writerow(row)
        return buffer.getvalue()

    def append(self, lines: Iterable[str]) -> None:
        """Append whole lines and flush: what returns is on disk for the next run."""
        new = not os.path.exists(self.path) or os.path.getsize(self.path) == 0
        with open(self.path, 'a', encoding='utf-8', newline='') as f:
            if new and self.fmt == '.csv':
                f.write(self.format_header())
            f.writelines(lines)
            f.flush()
            os.fsync(f.fileno())

    def format_header(self) -> str:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator='\n').writerow(self.header)
        return buffer.getvalue()


def output_format(out: str) -> str:
    fmt = os.path.splitext(out)[1].lower()
    if fmt not in OUT_FORMATS:
        raise ValueError(f'--out must end in one of {OUT_FORMATS}; got {out!r}.')
    return fmt


# ---- prediction ------------------------------------------------------------------------
def _records(model: torch.nn.Module, batch: list, paths: Sequence[str], topk: int,
             classes: Optional[Sequence[str]], autocast) -> List[dict]:
    """Records of one loader batch, in the batch's (input) order."""
    good = [(index, inputs) for index, inputs, _ in batch if inputs is not None]
    predicted = {}
    if good:
        data = model.data_preprocessor(dict(inputs=[x for _, x in good]), False)
        with torch.no_grad(), autocast():
            logits = model(data['inputs'])
        probs = torch.softmax(logits.float(), dim=1)
        scores, labels = probs.topk(min(topk, probs.shape[1]), dim=1)
        for (index, _), row_scores, row_labels in zip(good, scores.tolist(), labels.tolist()):
            predicted[index] = dict(
                path=paths[index], labels=row_labels,
                classes=[classes[c] if classes else None for c in row_labels],
                scores=[round(s, 6) for s in row_scores])
    return [predicted.get(index) or dict(path=paths[index], error=error)
            for index, _, error in batch]


def predict_files(model: torch.nn.Module,
                  pipeline: Callable[[dict], dict],
                  paths: Sequence[str],
                  out: str,
                  topk: int = 5,
                  batch_size: int = 32,
                  num_workers: int = 2,
                  autocast=None,
                  rank: int = 0,
                  world_size: int = 1,
                  progress_bar: Optional[Callable[[int], object]] = None,
                  barrier: Callable[[], None] = lambda: None) -> int:
    """Classify ``paths`` into ``out``; returns how many images this rank classified.

    ``model`` takes its ``data_preprocessor``'s output and returns logits [B, K];
    ``pipeline`` turns ``dict(img_path=...)`` into ``dict(inputs=uint8 [3, H, W])``.
    ``autocast`` is a context-manager factory (precision); ``progress_bar(total)`` builds an
    object whose ``update(n)`` is called after each batch. With ``world_size > 1``, rank
    ``r`` classifies the images ``i % world_size == r`` into ``out.part<r>``; after
    ``barrier()`` rank 0 merges.
    """
    fmt = output_format(out)
    target = PredictionFile(out, fmt, topk)
    done: Set[str] = set(target.done())
    part = PredictionFile(f'{out}.part{rank}', fmt, topk) if world_size > 1 else target
    if part is not target:
        done |= set(part.done())
    todo = [i for i in range(rank, len(paths), world_size) if paths[i] not in done]
    classes = (getattr(model, 'dataset_meta', None) or {}).get('classes')
    autocast = autocast or contextlib.nullcontext
    if todo:
        loader = DataLoader(ImageFiles(paths, todo, pipeline), batch_size=batch_size,
                            num_workers=num_workers, collate_fn=_collate)
        bar = progress_bar(len(todo)) if progress_bar is not None else None
        for batch in loader:
            records = _records(model, batch, paths, topk, classes, autocast)
            part.append(target.format(r) for r in records)
            if bar is not None:
                bar.update(len(batch))
    if world_size > 1:
        barrier()
        if rank == 0:
            merge_parts(target, paths)
        barrier()
    return len(todo)


def merge_parts(target: PredictionFile, paths: Sequence[str]) -> None:
    """Append the records of every ``<out>.part<N>`` that ``out`` lacks, in input order,
    then delete the part files (written by this tool, merged now)."""
    parts = sorted(p for p in glob.glob(glob.escape(target.path) + '.part*')
                   if re.fullmatch(r'\d+', p[len(target.path) + 5:]))
    held = target.done()
    records: Dict[str, str] = {}
    for part in parts:
        for path, line in PredictionFile(part, target.fmt, target.topk).done().items():
            if path not in held:
                records.setdefault(path, line)
    order = {path: i for i, path in enumerate(paths)}
    target.append(records[p] for p in sorted(records, key=lambda p: order.get(p, len(order))))
    for part in parts:
        os.remove(part)
