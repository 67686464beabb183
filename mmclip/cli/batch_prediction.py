"""Classify many image files into one resumable ``.jsonl`` or ``.csv`` file.

Used by ``tools/predict.py``. The first line marks the file as this tool's (jsonl: the
object ``JSONL_MARKER``, skip it when reading records; csv: the header
``path,label_1..k,class_1..k,score_1..k,error``), then one record per image, in input order:

* jsonl: ``{"path": ..., "labels": [top-k ints], "classes": [names or null], "scores":
  [softmax, or SigLIP's per-class sigmoid]}``, or ``{"path": ..., "error": "why it could
  not be read"}``; one JSON object per line, every line separator in a path escaped (it
  round-trips);
* csv: one row per image (a path holding a line break is refused: use jsonl).

An existing ``--out`` is appended to only when it starts with that marker: any other file
(the user's data, a symbolic link) is refused and left byte-identical. The output is
appended and flushed after every batch, so an interrupted run keeps what it wrote; a
rerun reads the file, drops a torn last line (the one being written when the run
stopped), and skips every image that has a trusted record. A line that is not a record
this tool writes (not an object, fields of other types, a second record of an image) is
not trusted: it is dropped, named in a warning, and its image classified again. Error
records are kept (the summary counts them); ``retry_errors`` (``--retry-errors``) drops
them and reads those images again. Under ``torchrun`` each rank writes its share to
``OUT.part<rank>`` and rank 0 merges the shares into OUT, in input order and without
duplicates, then deletes them.
"""
import contextlib
import csv
import glob
import io
import json
import logging
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Set, Tuple

import torch
from mmengine.logging import print_log
from torch.utils.data import DataLoader, Dataset

from mmclip.apis.inference import check_logits, class_scores
from mmclip.datasets import IMG_EXTENSIONS
from mmclip.utils.atomic_file import atomic_write

OUT_FORMATS = ('.jsonl', '.csv')
_GLOB_CHARS = re.compile(r'[*?\[]')


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


def image_batches(paths: Sequence[str], indices: Sequence[int],
                  pipeline: Callable[[dict], dict], batch_size: int,
                  num_workers: int) -> DataLoader:
    """Batches of ``ImageFiles`` items (lists, not collated: unreadable files stay in)."""
    return DataLoader(ImageFiles(paths, indices, pipeline), batch_size=batch_size,
                      num_workers=num_workers, collate_fn=list)


def preprocessed(model: torch.nn.Module, batch: list) -> Tuple[List[int], Optional[torch.Tensor]]:
    """The indices of a batch's readable images and their inputs after the model's data
    preprocessor, [B, 3, H, W] (none readable: an empty list and None)."""
    good = [(index, inputs) for index, inputs, _ in batch if inputs is not None]
    if not good:
        return [], None
    data = model.data_preprocessor(dict(inputs=[x for _, x in good]), False)
    return [index for index, _ in good], data['inputs']


# ---- the output file -------------------------------------------------------------------
# The first line of a jsonl output: it marks the file as this tool's, to append to.
JSONL_MARKER = {'mmclip': 'tools/predict.py records', 'version': 1}
# Characters json.dumps(ensure_ascii=False) leaves raw that str.splitlines (and so many
# jsonl readers) takes for line ends, and lone surrogates (undecodable file names) that
# UTF-8 cannot hold: written as \\u escapes, they round-trip through json.loads.
_JSON_UNSAFE = re.compile('[\x85\u2028\u2029\ud800-\udfff]')
_CSV_UNSAFE = re.compile('[\r\n]')
_NAMED_PROBLEMS = 5  # line numbers named in the warning about untrusted lines


class OutputFileError(ValueError):
    """``--out`` exists but was not written by this tool (it is left as it is)."""


def _json_line(record: dict) -> str:
    text = json.dumps(record, ensure_ascii=False)
    return _JSON_UNSAFE.sub(lambda m: f'\\u{ord(m.group()):04x}', text) + '\n'


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_score(value) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and 0 <= value <= 1)  # NaN fails both comparisons


def record_problem(record) -> Optional[str]:
    """Why ``record`` (parsed from an output line) is not one ``_records`` writes, or None.

    A rerun skips the images the file holds, so a record is trusted only when it has
    exactly the fields and types this tool writes."""
    if not isinstance(record, dict):
        return f'not a JSON object but {type(record).__name__}'
    if not isinstance(record.get('path'), str):
        return '"path" is not a string'
    if set(record) == {'path', 'error'}:
        return None if isinstance(record['error'], str) else '"error" is not a string'
    if set(record) != {'path', 'labels', 'classes', 'scores'}:
        return f'its fields are {sorted(record)}, not path, labels, classes, scores (or error)'
    labels, classes, scores = record['labels'], record['classes'], record['scores']
    if not (isinstance(labels, list) and isinstance(classes, list)
            and isinstance(scores, list) and 0 < len(labels) == len(classes) == len(scores)):
        return 'labels, classes and scores are not lists of one length'
    if not all(_is_int(v) and v >= 0 for v in labels):
        return '"labels" are not class indices'
    if not all(c is None or isinstance(c, str) for c in classes):
        return '"classes" are not names (or null)'
    if not all(_is_score(s) for s in scores):
        return '"scores" are not probabilities'
    return None


@dataclass
class HeldRecords:
    """What an existing output holds, as ``PredictionFile.read`` judged it.

    ``lines`` are the records kept, (path, line) in file order; ``done`` the input paths they
    settle; ``dropped`` says why each dropped line was not trusted; ``retried`` the
    inputs whose error record is dropped to read them again; ``torn`` is the size of a
    torn last line."""
    lines: List[Tuple[str, str]] = field(default_factory=list)
    done: Set[str] = field(default_factory=set)
    errors: int = 0
    dropped: List[str] = field(default_factory=list)
    retried: Set[str] = field(default_factory=set)
    others: int = 0
    torn: int = 0


class PredictionFile:
    """Records in ``fmt`` ('.jsonl' or '.csv') with ``topk`` predictions, appended to a
    file that starts with this tool's marker line (the jsonl marker, or the csv header).

    Any other existing file (no marker: the user's data, or a symbolic link) is refused,
    never truncated, rewritten or appended to."""

    def __init__(self, path: str, fmt: str, topk: int) -> None:
        self.path, self.fmt, self.topk = path, fmt, topk
        self.header = (['path'] + [f'{k}_{i}' for k in ('label', 'class', 'score')
                                   for i in range(1, topk + 1)] + ['error'])
        self.marker = (_json_line(JSONL_MARKER) if fmt == '.jsonl' else
                       self._csv_line(self.header)).encode('utf-8')

    # -- reading --------------------------------------------------------------------------
    def _read_bytes(self) -> Optional[bytes]:
        """The file's content, None when there is no file; never through a link."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)  # FIFO: no wait
        except FileNotFoundError:
            return None
        except OSError:
            if os.path.islink(self.path):
                raise OutputFileError(f'{self.path} is a symbolic link; tools/predict.py '
                                      f'writes only a regular file it created.') from None
            raise
        with os.fdopen(fd, 'rb') as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise OutputFileError(f'{self.path} is not a regular file; use another --out.')
            return f.read()

    def _check_marker(self, data: bytes) -> None:
        if data.startswith(self.marker):
            return
        first = data.split(b'\n', 1)[0].decode('utf-8', 'replace')
        if self.fmt == '.csv' and first.startswith('path,') and first.endswith(',error'):
            raise OutputFileError(
                f'{self.path} exists with other columns than --topk {self.topk} gives '
                f'({",".join(self.header)}); rerun with its --topk or another --out.')
        raise OutputFileError(
            f'{self.path} exists and was not written by tools/predict.py (its first line is '
            f'not the {"header" if self.fmt == ".csv" else "marker"} '
            f'{self.marker.decode().strip()}); it is left as it is: use another --out.')

    def check(self) -> None:
        """Raise ``OutputFileError`` now if the file may not be written (see ``read``)."""
        data = self._read_bytes()
        if data:
            self._check_marker(data)

    def read(self, inputs: Set[str], retry_errors: bool = False) -> HeldRecords:
        """Judge every complete line after the marker; see ``HeldRecords``.

        Raises:
            OutputFileError: the file exists and does not start with this tool's marker.
        """
        data = self._read_bytes()
        held = HeldRecords()
        if not data:  # no file, or an empty one: nothing to lose
            return held
        self._check_marker(data)
        body = data[len(self.marker):]
        complete = body[:body.rfind(b'\n') + 1]
        held.torn = len(body) - len(complete)
        for number, line in enumerate(complete.split(b'\n')[:-1], 2):
            record, why = self._parse(line)
            path = record.get('path')
            if why is None and path in held.done:
                why = f'a second record of {path!r}'
            if why is not None:
                held.dropped.append(f'line {number}: {why}')
                continue
            if path not in inputs:
                held.others += 1  # an earlier run's other images: kept, never used
            elif 'error' in record and retry_errors:
                held.retried.add(path)
                continue
            else:
                held.done.add(path)
                held.errors += 'error' in record
            held.lines.append((path, line.decode('utf-8') + '\n'))
        return held

    def _parse(self, line: bytes) -> tuple:
        """(record, None) for a trusted line, else ({}, why not)."""
        try:
            text = line.decode('utf-8')
            if self.fmt == '.jsonl':
                record = json.loads(text)
            else:
                record = self._csv_record(next(csv.reader([text])))
        except (ValueError, StopIteration) as err:
            return {}, f'not a record ({type(err).__name__})'
        why = record_problem(record)
        return (record, None) if why is None else ({}, why)

    def _csv_record(self, row: List[str]) -> dict:
        """A csv row as the record ``_records`` wrote it (ValueError if it cannot be)."""
        if len(row) != len(self.header):
            raise ValueError('wrong number of columns')
        k = self.topk
        path, labels, classes, scores, error = (row[0], row[1:k + 1], row[k + 1:2 * k + 1],
                                                row[2 * k + 1:3 * k + 1], row[-1])
        if error:
            if any(labels + classes + scores):
                raise ValueError('an error row with predictions')
            return dict(path=path, error=error)
        n = sum(map(bool, labels))
        if any(labels[n:] + classes[n:] + scores[n:]):
            raise ValueError('predictions after an empty label')
        return dict(path=path, labels=[int(v) for v in labels[:n]],
                    classes=[c or None for c in classes[:n]],
                    scores=[float(s) for s in scores[:n]])

    # -- writing --------------------------------------------------------------------------
    def tidy(self, held: HeldRecords) -> None:
        """Leave only ``held.lines`` after the marker: a torn last line is cut off; when
        lines were dropped the file is rewritten whole (atomically) without them."""
        if held.dropped or held.retried:
            with atomic_write(self.path) as f:
                f.write(self.marker)
                f.writelines(line.encode('utf-8') for _, line in held.lines)
        elif held.torn:
            fd = os.open(self.path, os.O_WRONLY | os.O_NOFOLLOW)
            try:
                os.ftruncate(fd, os.fstat(fd).st_size - held.torn)
            finally:
                os.close(fd)

    def format(self, record: dict) -> str:
        if self.fmt == '.jsonl':
            return _json_line(record)
        k = self.topk
        if 'error' in record:
            row = [record['path']] + [''] * 3 * k + [record['error']]
        else:
            pad = [''] * (k - len(record['labels']))
            row = ([record['path']] + record['labels'] + pad +
                   [c if c is not None else '' for c in record['classes']] + pad +
                   record['scores'] + pad + [''])
        return self._csv_line(row)

    @staticmethod
    def _csv_line(row: list) -> str:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator='\n').writerow(row)
        return buffer.getvalue()

    def append(self, lines: Iterable[str]) -> None:
        """Append whole lines and flush: what returns is on disk for the next run. A new
        (or empty) file starts with the marker; ``read`` checked any other."""
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o666)
        with os.fdopen(fd, 'wb') as f:
            first = self.marker if os.fstat(f.fileno()).st_size == 0 else b''
            f.write(first + ''.join(lines).encode('utf-8'))
            f.flush()
            os.fsync(f.fileno())


def output_format(out: str) -> str:
    fmt = os.path.splitext(out)[1].lower()
    if fmt not in OUT_FORMATS:
        raise ValueError(f'--out must end in one of {OUT_FORMATS}; got {out!r}.')
    return fmt


def check_paths_fit(paths: Sequence[str], fmt: str) -> None:
    """A csv row is one line: an image path holding a line break is refused there (the
    jsonl output escapes it)."""
    if fmt == '.csv':
        bad = [p for p in paths if _CSV_UNSAFE.search(p)]
        if bad:
            raise ValueError(f'{bad[0]!r}: a path holding a line break cannot be written to '
                             f'a .csv --out; use a .jsonl --out.')


def report_untrusted(file: PredictionFile, held: HeldRecords) -> None:
    """Warn, once each, of the lines of ``file`` that were not trusted (dropped, so that
    an input without a trusted record is classified again) and of the records of images
    that are not among the inputs (kept in the file, not used)."""
    if held.dropped:
        named = '; '.join(held.dropped[:_NAMED_PROBLEMS])
        more = len(held.dropped) - _NAMED_PROBLEMS
        print_log(f'{file.path}: {len(held.dropped)} line(s) are not records tools/predict.py '
                  f'writes and were dropped; images without a trusted record are classified '
                  f'again ({named}{f"; and {more} more" if more > 0 else ""}).',
                  logger='current', level=logging.WARNING)
    if held.others:
        print_log(f'{file.path}: {held.others} record(s) of images that are not among the '
                  f'inputs are kept in the file and not used.',
                  logger='current', level=logging.WARNING)


# ---- prediction ------------------------------------------------------------------------
def _records(model: torch.nn.Module, batch: list, paths: Sequence[str], topk: int,
             classes: Optional[Sequence[str]], autocast, weights: str) -> List[dict]:
    """Records of one loader batch, in the batch's (input) order."""
    indices, inputs = preprocessed(model, batch)
    predicted = {}
    if indices:
        with torch.no_grad(), autocast():
            logits = model(inputs)
        check_logits(logits, classes, weights)
        probs = class_scores(model, logits)
        scores, labels = probs.topk(min(topk, probs.shape[1]), dim=1)
        for index, row_scores, row_labels in zip(indices, scores.tolist(), labels.tolist()):
            predicted[index] = dict(
                path=paths[index], labels=row_labels,
                classes=[classes[c] if classes else None for c in row_labels],
                scores=[round(s, 6) for s in row_scores])
    return [predicted.get(index) or dict(path=paths[index], error=error)
            for index, _, error in batch]


@dataclass
class PredictionSummary:
    """What ``predict_files`` did on one rank: images classified now, of them those whose
    error record was dropped to read them again (``retry_errors``), those of them that
    could not be read (an error record written now), the error records the output keeps
    (not retried), and the untrusted lines dropped from the output."""
    classified: int
    retried: int
    failed: int
    kept_errors: int
    dropped: int


def _held(file: PredictionFile, inputs: Set[str], retry_errors: bool,
          owner: bool) -> HeldRecords:
    """``file.read``; its ``owner`` (the one process that writes it) also reports the
    untrusted lines and tidies the file."""
    held = file.read(inputs, retry_errors)
    if owner:
        report_untrusted(file, held)
        file.tidy(held)
    return held


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
                  barrier: Callable[[], None] = lambda: None,
                  retry_errors: bool = False,
                  weights: str = 'the checkpoint') -> PredictionSummary:
    """Classify ``paths`` into ``out``; returns what this rank did.

    ``model`` takes its ``data_preprocessor``'s output and returns logits [B, K];
    ``pipeline`` turns ``dict(img_path=...)`` into ``dict(inputs=uint8 [3, H, W])``.
    ``autocast`` is a context-manager factory (precision); ``progress_bar(total)`` builds an
    object whose ``update(n)`` is called after each batch. With ``world_size > 1``, rank
    ``r`` classifies the images ``i % world_size == r`` into ``out.part<r>``; after
    ``barrier()`` rank 0 merges. ``retry_errors``: read the images whose record in ``out``
    is an error again (the error record is dropped). ``weights`` names the checkpoint in
    the error about non-finite outputs.

    Raises:
        OutputFileError: ``out`` (or a part file) exists and was not written by this tool.
        ValueError: a csv output and a path holding a line break; non-finite outputs.
    """
    fmt = output_format(out)
    check_paths_fit(paths, fmt)
    inputs = set(paths)
    target = PredictionFile(out, fmt, topk)
    held = _held(target, inputs, retry_errors, owner=rank == 0)
    done, retried = set(held.done), set(held.retried)
    kept_errors, dropped = held.errors, len(held.dropped)
    part = PredictionFile(f'{out}.part{rank}', fmt, topk) if world_size > 1 else target
    if part is not target:
        part_held = _held(part, inputs, retry_errors, owner=True)
        done |= part_held.done
        retried |= part_held.retried
        kept_errors += part_held.errors
        dropped += len(part_held.dropped)
    todo = [i for i in range(rank, len(paths), world_size) if paths[i] not in done]
    classes = (getattr(model, 'dataset_meta', None) or {}).get('classes')
    autocast = autocast or contextlib.nullcontext
    failed = 0
    if todo:
        loader = image_batches(paths, todo, pipeline, batch_size, num_workers)
        bar = progress_bar(len(todo)) if progress_bar is not None else None
        for batch in loader:
            records = _records(model, batch, paths, topk, classes, autocast, weights)
            failed += sum('error' in r for r in records)
            part.append(target.format(r) for r in records)
            if bar is not None:
                bar.update(len(batch))
    if world_size > 1:
        barrier()
        if rank == 0:
            merge_parts(target, paths)
        barrier()
    return PredictionSummary(len(todo), sum(paths[i] in retried for i in todo), failed,
                             kept_errors, dropped)


def merge_parts(target: PredictionFile, paths: Sequence[str]) -> None:
    """Append the records of every ``<out>.part<N>`` that ``out`` lacks, in input order,
    then delete the part files (each starts with this tool's marker: ``read`` checks it)."""
    parts = sorted(p for p in glob.glob(glob.escape(target.path) + '.part*')
                   if re.fullmatch(r'\d+', p[len(target.path) + 5:]))
    inputs = set(paths)
    held = target.read(inputs).done
    records: Dict[str, str] = {}
    for part in parts:
        for path, line in PredictionFile(part, target.fmt, target.topk).read(inputs).lines:
            if path in inputs and path not in held:
                records.setdefault(path, line)
    order = {path: i for i, path in enumerate(paths)}
    target.append(records[p] for p in sorted(records, key=order.__getitem__))
    for part in parts:
        os.remove(part)
