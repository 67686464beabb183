"""The evaluation suite behind ``tools/eval_suite.py``: datasets, runs, results file.

Each dataset of the suite is read from its own folder in the layout its authors ship
(``SUITE_DATASETS``: the folder name under ``--data-root`` and the mmclip dataset that
reads it; clip_benchmark's zero-shot datasets are read by clip_benchmark itself). A model
is evaluated on one dataset at a time (in a process group, each process computes a share
of it) with the test pipeline of its own config; the numbers are computed as
clip_benchmark computes them (``metrics/benchmark.py``) and written as one JSON line per
dataset in clip_benchmark's result format (``dataset``, ``model``, ``pretrained``,
``task``, ``metrics``, ``language``), so that a run can resume: a dataset with a line for
the same model, weights and protocol options is not evaluated again.
"""
import json
import os
import os.path as osp
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

import torch
from mmengine.dataset import pseudo_collate
from mmengine.dist import all_gather_object, get_rank, get_world_size
from mmengine.registry import DefaultScope
from torch.utils.data import DataLoader, Subset

from mmclip.registry import DATASETS

from .embeddings import embed_images, embed_texts
from .metrics.benchmark import classification_metrics, project_scores, retrieval_metrics

CLASSIFICATION, RETRIEVAL = 'classification', 'retrieval'
Prompts = Tuple[List[str], Optional[List[str]]]
# clip_benchmark's names for the two kinds of run; a fine-tuned ImageNet head is not
# zero-shot, but it is scored with the same numbers.
TASKS = {CLASSIFICATION: 'zeroshot_classification', RETRIEVAL: 'zeroshot_retrieval'}
RESULT_KEYS = ('dataset', 'model', 'pretrained', 'task', 'metrics')


@dataclass(frozen=True)
class SuiteDataset:
    """One dataset of the suite.

    name: clip_benchmark's name of the dataset (the ``dataset`` of a result line).
    dataset: the mmclip dataset config, without ``data_root`` and ``pipeline``.
    folder: its folder under ``--data-root`` (the name its archive extracts to).
    kind: ``CLASSIFICATION`` or ``RETRIEVAL``.
    num_images: the size of the published set; another count is warned about, since
        its numbers would not compare with published ones.
        None where it is not known here (no check).
    tower_prompts: for a zero-shot model, the class names and templates (None: the
        model's) of the dataset's own head, from its metainfo; None: the model's ImageNet
        head, restricted by the dataset's ``class_map`` where it has one (the same logits
        as a head built for those classes: each class's row comes from its own prompts).
    needs_text: only a model with a text tower can be evaluated on it.
    """

    name: str
    dataset: dict
    folder: str
    kind: str
    num_images: Optional[int]
    tower_prompts: Optional[Callable[[dict], Prompts]] = field(default=None, compare=False)
    needs_text: bool = False


def _objectnet_prompts(metainfo: dict) -> Prompts:
    # clip_benchmark's ObjectNet: its labels, lower-cased, with the ImageNet templates.
    return [name.lower() for name in metainfo['classes']], None


def _clip_benchmark_prompts(metainfo: dict) -> Prompts:
    return list(metainfo['classes']), list(metainfo['templates'])


def _zero_shot(name: str, num_images: Optional[int]) -> 'SuiteDataset':
    """A clip_benchmark zero-shot dataset, in a folder of its name."""
    return SuiteDataset(name, dict(type='ClipBenchmarkDataset', name=name), name,
                        CLASSIFICATION, num_images, _clip_benchmark_prompts, needs_text=True)


SUITE_DATASETS: Dict[str, SuiteDataset] = {d.name: d for d in (
    SuiteDataset('imagenet1k', dict(type='ImageNet', split='val'), 'imagenet',
                 CLASSIFICATION, 50000),
    SuiteDataset('imagenetv2', dict(type='ImageNetV2'),
                 'imagenetv2-matched-frequency-format-val', CLASSIFICATION, 10000),
    SuiteDataset('imagenetv2-threshold0.7', dict(type='ImageNetV2'),
                 'imagenetv2-threshold0.7-format-val', CLASSIFICATION, 10000),
    SuiteDataset('imagenetv2-top-images', dict(type='ImageNetV2'),
                 'imagenetv2-top-images-format-val', CLASSIFICATION, 10000),
    SuiteDataset('imagenet_sketch', dict(type='ImageNetSketch'), 'sketch', CLASSIFICATION,
                 50889),
    SuiteDataset('imagenet-r', dict(type='ImageNetR'), 'imagenet-r', CLASSIFICATION, 30000),
    SuiteDataset('imagenet-a', dict(type='ImageNetA'), 'imagenet-a', CLASSIFICATION, 7500),
    SuiteDataset('objectnet', dict(type='ObjectNet'), 'objectnet-1.0', CLASSIFICATION, 18574,
                 _objectnet_prompts),
    SuiteDataset('mscoco_captions', dict(type='CocoCaptions'), 'mscoco', RETRIEVAL, 5000,
                 needs_text=True),
    SuiteDataset('flickr30k', dict(type='FlickrCaptions'), 'flickr30k', RETRIEVAL, 1000,
                 needs_text=True),
    SuiteDataset('flickr8k', dict(type='FlickrCaptions', ann_file='flickr8k_test_karpathy.txt'),
                 'flickr8k', RETRIEVAL, 1000, needs_text=True),
    # Test-split sizes; None where clip_benchmark uses a whole dataset of varying size.
    *(_zero_shot(name, num) for name, num in (
        ('cifar10', 10000), ('cifar100', 10000), ('stl10', 8000), ('food101', 25250),
        ('flowers', 6149), ('pets', 3669), ('dtd', 1880), ('eurosat', 27000),
        ('gtsrb', 12630), ('fgvc_aircraft', 3333), ('cars', 8041), ('country211', 21100),
        ('sun397', None), ('caltech101', None), ('renderedsst2', 1821), ('mnist', 10000),
        ('fer2013', 7178), ('pcam', 32768), ('svhn', 26032), ('voc2007', None))),
)}
SUITES: Dict[str, Tuple[str, ...]] = {
    'imagenet-shifts': ('imagenet1k', 'imagenetv2', 'imagenetv2-threshold0.7',
                        'imagenetv2-top-images', 'imagenet_sketch', 'imagenet-r',
                        'imagenet-a', 'objectnet'),
    'retrieval': ('mscoco_captions', 'flickr30k', 'flickr8k'),
    'zeroshot': ('cifar10', 'cifar100', 'stl10', 'food101', 'flowers', 'pets', 'dtd',
                 'eurosat', 'gtsrb', 'fgvc_aircraft', 'cars', 'country211', 'sun397',
                 'caltech101', 'renderedsst2', 'mnist', 'fer2013', 'pcam', 'svhn', 'voc2007'),
}


def suite_names(suite: str) -> Tuple[str, ...]:
    """The dataset names of a suite name, or of a comma-separated list of dataset names."""
    if suite in SUITES:
        return SUITES[suite]
    names = tuple(n.strip() for n in suite.split(',') if n.strip())
    unknown = [n for n in names if n not in SUITE_DATASETS]
    if unknown or not names:
        raise ValueError(f'--suite {suite!r}: unknown dataset(s) {unknown}; give a suite '
                         f'({", ".join(SUITES)}) or names from {", ".join(SUITE_DATASETS)}.')
    return names


def build_dataset(spec: SuiteDataset, root: str, pipeline: Sequence[dict], **options):
    """The mmclip dataset of ``spec`` under ``root`` (``options`` update its config); its
    layout is checked here (a ``DatasetLayoutError`` names what was expected)."""
    # serialize_data=False: mmengine's packing runs a full gc.collect() per dataset,
    # seconds in a process holding a model; a list of paths is small enough as it is.
    with DefaultScope.overwrite_default_scope('mmclip'):
        return DATASETS.build(dict(spec.dataset, data_root=root, pipeline=list(pipeline),
                                   serialize_data=False, **options))


def _my_share(count: int) -> range:
    """The indices this process computes: every world_size-th from its rank (all of them
    in a single process), so that N processes together compute each item once."""
    return range(get_rank(), count, get_world_size())


def _in_order(share: range, rows: torch.Tensor) -> torch.Tensor:
    """Every process's ``rows`` (one per index of its share), gathered and put back in
    index order: the tensor a single process would have computed."""
    if get_world_size() == 1:
        return rows
    parts = all_gather_object((list(share), rows))
    index = torch.tensor([i for indices, _ in parts for i in indices])
    return torch.cat([part for _, part in parts])[index.argsort()]


def _batches(model, dataset, batch_size: int, num_workers: int,
             progress: Callable[[int, int], None]) -> Iterable[dict]:
    """This process's share of the dataset in order, batched, through the model's data
    preprocessor."""
    loader = DataLoader(Subset(dataset, _my_share(len(dataset))), batch_size=batch_size,
                        shuffle=False, num_workers=num_workers, collate_fn=pseudo_collate)
    for i, batch in enumerate(loader):
        yield model.data_preprocessor(batch, False)
        progress(i + 1, len(loader))


@torch.no_grad()
def classify(model, dataset, batch_size: int = 64, num_workers: int = 0,
             progress: Callable[[int, int], None] = lambda i, n: None) -> Dict[str, float]:
    """clip_benchmark's classification numbers of ``model`` on ``dataset``: the model's
    logits, restricted to the dataset's classes by its ``class_map`` when it has one.
    In a process group, each process computes its share and all get the numbers."""
    meta = dataset.metainfo
    width = len(meta['classes'])
    logits, labels = [], []
    for data in _batches(model, dataset, batch_size, num_workers, progress):
        scores = model(data['inputs'], mode='tensor').float().cpu()
        scores = project_scores(scores, meta.get('class_map'), width)
        if scores.shape[1] != width:
            raise ValueError(f'The model has {scores.shape[1]} outputs and the dataset '
                             f'{width} classes (and no map between them).')
        logits.append(scores)
        labels += [int(s.gt_label[0]) for s in data['data_samples']]
    share = _my_share(len(dataset))
    logits = torch.cat(logits) if logits else torch.zeros(0, width)
    return classification_metrics(_in_order(share, logits),
                                  _in_order(share, torch.tensor(labels, dtype=torch.long)))


@torch.no_grad()
def retrieve(model, dataset, batch_size: int = 64, num_workers: int = 0,
             progress: Callable[[int, int], None] = lambda i, n: None) -> Dict[str, float]:
    """clip_benchmark's retrieval numbers of a zero-shot ``model`` on a caption dataset:
    recall@1/5/10 both ways from the L2-normalised image and text embeddings. In a
    process group, each process embeds its share of the images and of the captions."""
    images = [embed_images(model, data['inputs'])
              for data in _batches(model, dataset, batch_size, num_workers, progress)]
    texts, owners = [], []
    for i in range(len(dataset)):
        captions = dataset.get_data_info(i)['captions']
        texts += captions
        owners += [i] * len(captions)
    mine = [texts[i] for i in _my_share(len(texts))]
    embedded = embed_texts(model, mine, batch_size)
    width = model.head.class_embeddings.shape[1]  # D, with or without an image projection
    images = torch.cat(images) if images else torch.zeros(0, width)
    embedded = embedded if len(mine) else torch.zeros(0, width)
    return retrieval_metrics(_in_order(_my_share(len(dataset)), images),
                             _in_order(_my_share(len(texts)), embedded), torch.tensor(owners))


def evaluate(model, spec: SuiteDataset, dataset, batch_size: int = 64, num_workers: int = 0,
             progress: Callable[[int, int], None] = lambda i, n: None) -> Dict[str, float]:
    """Run ``spec``'s task; a zero-shot model gets the dataset's own classes (and
    templates) when the protocol gives it some, and its own back afterwards."""
    if spec.needs_text and not hasattr(model, 'encode_text'):
        raise ValueError(f'{spec.name} needs a model with a text tower (a *zeroshot* model).')
    if spec.kind == RETRIEVAL:
        return retrieve(model, dataset, batch_size, num_workers, progress)
    if spec.tower_prompts is None or not hasattr(model, 'set_classes'):
        return classify(model, dataset, batch_size, num_workers, progress)
    own = (model.head.classes, model.head.templates)
    model.set_classes(*spec.tower_prompts(dataset.metainfo))
    try:
        return classify(model, dataset, batch_size, num_workers, progress)
    finally:
        model.set_classes(*own)


# ---- the results file ------------------------------------------------------------------------
def read_results(path: str) -> List[dict]:
    """The result lines of an existing ``--out`` file ([] if there is none).

    Raises:
        ValueError: the file holds a line that is not a result line, i.e. it is not a
            file this suite wrote: it is never appended to.
    """
    if not os.path.exists(path):
        return []
    records = []
    with open(path, encoding='utf-8') as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if not isinstance(record, dict) or not set(RESULT_KEYS) <= set(record):
                raise ValueError(f"'{path}', line {lineno}: not a result line of "
                                 f'eval_suite (JSON with keys {list(RESULT_KEYS)}); it is '
                                 'not appended to. Choose another --out.')
            records.append(record)
    return records


def result_line(spec: SuiteDataset, model: str, pretrained: str, metrics: Dict[str, float],
                num_images: int, options: Optional[dict] = None) -> dict:
    """clip_benchmark's result fields, plus ``num_images`` and the protocol ``options``
    the dataset was read with (ObjectNet's ``border``)."""
    return dict(dataset=spec.name, model=model, pretrained=pretrained,
                task=TASKS[spec.kind], metrics=metrics, language='en',
                num_images=num_images, options=options or {})


def result_key(record: dict) -> str:
    """What makes two result lines the same evaluation (a resumed run skips it)."""
    return json.dumps([record['dataset'], record['model'], record['pretrained'],
                       record.get('options') or {}], sort_keys=True)


def append_result(path: str, record: dict) -> None:
    """Append one line, complete or not at all as far as a crash allows (one write of
    the whole line, then fsync), so a killed run resumes from the datasets it ended."""
    data = (json.dumps(record, allow_nan=True) + '\n').encode('utf-8')
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


@lru_cache(maxsize=None)
def published_results() -> dict:
    """The published numbers shipped with mmclip (``published_results.json``): per source
    (timm's results CSVs for the fine-tuned zoo, open_clip's results tables for the
    towers) the files and commits they were copied from and what they measure; per zoo
    model its source row and numbers as printed; the zoo models with no published row."""
    with open(osp.join(osp.dirname(osp.abspath(__file__)), 'published_results.json'),
              encoding='utf-8') as f:
        return json.load(f)


class Published(NamedTuple):
    """A published classification number: ``metric`` ('acc1', or 'mean_per_class_recall'
    where the source reports that), ``value`` (a fraction) and the number of images the
    source measured it on (None where it does not say)."""
    metric: str
    value: float
    num_images: Optional[int]


def published_classification(model: str, dataset: str) -> Optional[Published]:
    """What the source of zoo model ``model`` publishes for ``dataset``, if anything."""
    entry = published_results()['models'].get(model)
    value = entry and entry['classification'].get(dataset)
    if value is None:
        return None
    source = published_results()['sources'][entry['source']]
    if entry['source'] == 'timm':
        return Published('acc1', value['acc1'] / source['scale'], None)
    spec = source['datasets'][dataset]
    return Published(spec['metric'], value / source['scale'], spec['num_images'])


def published_retrieval(model: str, dataset: str) -> Optional[Dict[str, float]]:
    """The published recalls (``image_retrieval_recall@k`` / ``text_retrieval_recall@k``,
    fractions) of zoo model ``model`` on ``dataset``, if any."""
    entry = published_results()['models'].get(model)
    return (entry or {}).get('retrieval', {}).get(dataset)


def _published_cell(record: dict) -> str:
    """The table's ``published`` cell: the number (and its metric and image count where
    they differ from this row's) or, for retrieval, the image and text R@1."""
    def pct(value: float) -> str:
        return f'{100 * value:.2f}'

    recalls = published_retrieval(record['model'], record['dataset'])
    if recalls is not None:
        return (f"image R@1 {pct(recalls['image_retrieval_recall@1'])}, "
                f"text R@1 {pct(recalls['text_retrieval_recall@1'])}")
    published = published_classification(record['model'], record['dataset'])
    if published is None:
        return '-'
    notes = ['per-class recall'] if published.metric == 'mean_per_class_recall' else []
    if published.num_images not in (None, record.get('num_images')):
        notes.append(f'on {published.num_images} images')
    return pct(published.value) + (f" ({', '.join(notes)})" if notes else '')


def markdown_table(records: Sequence[dict]) -> str:
    """One row per result line: classification accuracies or retrieval recalls, in %,
    beside what the model's source publishes where mmclip ships it."""
    rows = ['| dataset | images | top-1 | published | top-5 | mean per-class recall '
            '| image R@1/5/10 | text R@1/5/10 |',
            '| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |']

    def pct(value) -> str:
        return '-' if value is None or value != value else f'{100 * value:.2f}'

    for r in records:
        m = r['metrics']
        image_r = '/'.join(pct(m.get(f'image_retrieval_recall@{k}')) for k in (1, 5, 10))
        text_r = '/'.join(pct(m.get(f'text_retrieval_recall@{k}')) for k in (1, 5, 10))
        retrieval = 'image_retrieval_recall@1' in m
        rows.append(f"| {r['dataset']} | {r.get('num_images', '-')} | {pct(m.get('acc1'))} | "
                    f"{_published_cell(r)} | {pct(m.get('acc5'))} | "
                    f"{pct(m.get('mean_per_class_recall'))} | "
                    f"{image_r if retrieval else '-'} | {text_r if retrieval else '-'} |")
    return '\n'.join(rows)


CHART_SOFTWARE = 'mmclip tools/eval_suite.py'


def check_chart_file(path: str) -> None:
    """Raise unless ``path`` ends in .png and is free or a chart this suite wrote (its
    PNG ``Software`` text says so): another file there is never overwritten."""
    if not path.lower().endswith('.png'):
        raise ValueError(f"--chart '{path}': the chart is a PNG file; name it *.png.")
    if not os.path.exists(path):
        return
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as img:
            ours = img.format == 'PNG' and img.info.get('Software') == CHART_SOFTWARE
    except (OSError, UnidentifiedImageError):
        ours = False
    if not ours:
        raise ValueError(f"--chart '{path}' exists and is not a chart written by "
                         'eval_suite; it is not overwritten. Choose another name.')


def _headline(record: dict) -> Tuple[str, Optional[float], Optional[float]]:
    """What a chart shows for a result line: its name, the measured and the published
    number (the source's metric: top-1, or mean per-class recall where it reports that;
    for retrieval, image R@1)."""
    metrics, model, dataset = record['metrics'], record['model'], record['dataset']
    if 'acc1' not in metrics:
        recalls = published_retrieval(model, dataset) or {}
        return ('image R@1', metrics.get('image_retrieval_recall@1'),
                recalls.get('image_retrieval_recall@1'))
    published = published_classification(model, dataset)
    if published is None or published.metric == 'acc1':
        return 'top-1', metrics['acc1'], published and published.value
    return 'per-class recall', metrics.get(published.metric), published.value


def write_chart(records: Sequence[dict], path: str, title: str) -> None:
    """A bar per dataset, measured (``_headline``) beside published where mmclip ships a
    number; written whole or not at all."""
    from matplotlib.figure import Figure  # no pyplot: no global backend is touched

    from mmclip.utils.atomic_file import atomic_write
    names = [r['dataset'] for r in records]
    measured = [100 * (_headline(r)[1] or 0) for r in records]
    published = [100 * (_headline(r)[2] or 0) for r in records]
    fig = Figure(figsize=(max(6.0, 0.9 * len(records) + 2), 4.5), dpi=100)
    ax = fig.subplots()
    x = list(range(len(records)))
    ax.bar([i - 0.2 for i in x], measured, width=0.4, label='measured')
    if any(published):
        ax.bar([i + 0.2 for i in x], published, width=0.4, label='published')
    ax.set_xticks(x, [f'{n}\n({_headline(r)[0]})' for n, r in zip(names, records)],
                  rotation=30, ha='right', fontsize=8)
    ax.set_ylabel('%')
    ax.set_ylim(0, 100)
    ax.set_title(title, fontsize=9)
    ax.legend()
    fig.tight_layout()
    with atomic_write(path) as f:
        fig.savefig(f, format='png', metadata={'Software': CHART_SOFTWARE})


class Progress:
    """Prints ``name: i/n batches, ETA`` about every ``interval`` seconds (and at the end)."""

    def __init__(self, name: str, interval: float = 30.0,
                 write: Callable[[str], None] = print) -> None:
        self.name, self.interval, self.write = name, interval, write
        self.start = self.last = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self.last < self.interval:
            return
        self.last = now
        eta = (now - self.start) / done * (total - done)
        self.write(f'  {self.name}: {done}/{total} batches, {now - self.start:.0f} s, '
                   f'ETA {eta:.0f} s')
