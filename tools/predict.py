"""Classify folders, globs or lists of images into one .jsonl or .csv file.

    python tools/predict.py INPUT [INPUT ...] --model NAME_OR_CONFIG --out FILE.jsonl|FILE.csv
        [--checkpoint PATH_OR_URL_OR_ONNX] [--topk K] [--backend torch|onnxruntime|openvino]
        [--batch-size N] [--num-workers N] [--precision fp32|bf16|fp16] [--device DEVICE]
        [--retry-errors]

INPUT is a folder (searched recursively for images), a glob ('photos/**/*.jpg', quoted),
a text file with one image path per line, or an image. Each image gets one record: its
path, its top-k labels, class names and softmax scores, or the error that kept it from
being read (the run goes on). The output is flushed after every batch: rerunning the same
command after an interruption classifies only the images the file does not hold yet.

--out is appended to only when this tool wrote it (its first line is the jsonl marker or
the csv header); any other existing file is refused and left as it is. A line in it that
is not a record this tool writes is dropped with a warning and its image classified
again. Error records are kept on a rerun (the summary counts them); --retry-errors reads
those images again.

    python tools/predict.py INPUT [INPUT ...] --model NAME_OR_CONFIG
        --embeddings FILE.safetensors|FILE.npy [--texts PROMPTS.txt] [...]

--embeddings writes, instead of classes, each readable image's embedding (a zero-shot
tower's L2-normalised image embedding, a classifier's pre-logits feature) with the image
paths as ids, and with --texts the text embeddings of the prompts in a file (one per line;
zero-shot models): the embeddings retrieval compares (``mmclip.evaluation.embeddings``).
It runs in one process and never writes over an existing file.

The checkpoint defaults to the zoo weights of a model name; an .onnx checkpoint (from
tools/deployment/pytorch2onnx.py) runs in ONNX Runtime, or in OpenVINO with --backend
openvino. Several processes share the work with ``torchrun --nproc-per-node N
tools/predict.py ...``; rank 0 writes the one output.
"""
import argparse
import os
from typing import List, Optional

import torch
import torch.distributed as dist
from mmengine.utils import ProgressBar

import mmclip  # noqa: F401
from mmclip.apis import get_model
from mmclip.apis.backends import BACKENDS, CLI, choose_backend
from mmclip.apis.model_zoo import resolve_config
from mmclip.cli.batch_prediction import (
    PredictionFile,
    collect_inputs,
    image_batches,
    output_format,
    predict_files,
    preprocessed,
)
from mmclip.cli.launch import (
    ArgumentParser,
    add_debug_option,
    debug_requested,
    default_device,
    exit_code_of,
    exit_process,
)
from mmclip.cli.outputs import check_output_file, make_parent_folder
from mmclip.datasets import IMG_EXTENSIONS
from mmclip.datasets.transforms import build_test_pipeline
from mmclip.evaluation.embeddings import (
    embed_images,
    embed_texts,
    embedding_files,
    save_embeddings,
)
from mmclip.utils import PRECISIONS, autocast_context, check_precision
from mmclip.utils.cpu import default_num_workers, usable_cores


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = ArgumentParser(description='Classify many images into one file.')
    parser.add_argument('inputs', nargs='+', metavar='INPUT',
                        help='image folders (recursive), globs, list files or images')
    parser.add_argument('--model', required=True, help='model-zoo name or config file')
    parser.add_argument('--checkpoint', help='weights (path, URL or .onnx); default: the '
                        "zoo model's published weights")
    parser.add_argument('--out', help='output file of the classes, .jsonl or .csv')
    parser.add_argument('--embeddings', help='instead of classes: write the image embeddings '
                        'and their ids to this .safetensors or .npy file')
    parser.add_argument('--texts', help='with --embeddings and a zero-shot model: a text file '
                        'of prompts, one per line, whose text embeddings are written too')
    parser.add_argument('--topk', type=int, default=5, help='classes per image')
    parser.add_argument('--backend', choices=BACKENDS,
                        help='default: for an .onnx checkpoint openvino on the CPU where '
                        'installed, else onnxruntime; torch otherwise')
    parser.add_argument('--batch-size', type=int, default=32, help='images per forward pass')
    parser.add_argument('--num-workers', type=int, default=default_num_workers(),
                        help='DataLoader workers decoding images (default: %(default)s)')
    parser.add_argument('--precision', choices=PRECISIONS, default='fp32',
                        help='torch backend: autocast precision (bf16 on recent CPUs and GPUs)')
    parser.add_argument('--device', help='default: cuda:<local rank> if available, else cpu')
    parser.add_argument('--retry-errors', action='store_true',
                        help='read again the images whose record in --out is an error')
    add_debug_option(parser)
    args = parser.parse_args(argv)
    try:
        args.backend = choose_backend(args.checkpoint, args.backend, args.precision,
                                      spelling=CLI._replace(weights='--checkpoint'),
                                      device=args.device or default_device())
    except ValueError as err:
        parser.error(str(err))
    if (args.out is None) == (args.embeddings is None):
        parser.error('give --out FILE (the classes of each image) or --embeddings FILE (the '
                     'embeddings), one of the two')
    if args.embeddings is not None and (args.backend != 'torch' or args.retry_errors):
        parser.error('--embeddings runs the torch model (an .onnx gives only logits) and '
                     'has no records to retry: drop --backend / --retry-errors')
    if args.texts is not None and args.embeddings is None:
        parser.error('--texts goes with --embeddings')
    if args.topk < 1 or args.batch_size < 1 or args.num_workers < 0:
        parser.error('--topk and --batch-size must be >= 1, --num-workers >= 0')
    try:
        if args.out is not None:
            output_format(args.out)
        else:
            embedding_files(args.embeddings, args.texts is not None)
    except ValueError as err:
        parser.error(str(err))
    return args


def init_distributed() -> tuple:
    """(rank, world size, local world size) under torchrun, else (0, 1, 1)."""
    world = int(os.environ.get('WORLD_SIZE', 1))
    if world > 1 and not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get('LOCAL_RANK', 0)))
        dist.init_process_group('nccl' if torch.cuda.is_available() else 'gloo')
    rank = dist.get_rank() if world > 1 else 0
    return rank, world, int(os.environ.get('LOCAL_WORLD_SIZE', 1))


def build_model(args: argparse.Namespace, device: str, local_world: int) -> torch.nn.Module:
    if args.backend != 'torch':
        from mmclip.deployment import build_exported_classifier
        threads = max(1, usable_cores() // local_world)  # the node's cores, shared by its ranks
        return build_exported_classifier(args.backend, resolve_config(args.model)[0],
                                         args.checkpoint, device, threads, args.precision)
    return get_model(args.model, pretrained=args.checkpoint or True, device=device)


def weights_name(args: argparse.Namespace, model: torch.nn.Module) -> str:
    """The checkpoint the messages name: --checkpoint, else the zoo weights loaded."""
    return args.checkpoint or getattr(model, 'weights_source', None) or args.model


def run(args: argparse.Namespace) -> int:
    rank, world, local_world = init_distributed()
    local_rank = int(os.environ.get('LOCAL_RANK', 0))
    default = f'cuda:{local_rank}' if torch.cuda.is_available() else 'cpu'
    device = args.device or default
    if args.backend == 'torch':
        check_precision(args.precision, device)
    paths = collect_inputs(args.inputs)
    if not paths:
        raise ValueError(f'no image in {" ".join(args.inputs)} (folders are searched for '
                         f'{", ".join(IMG_EXTENSIONS)} files; a list file names one image per '
                         f'line): nothing to classify. See tools/predict.py --help for INPUT.')
    if args.embeddings is not None:
        return write_embeddings(args, paths, device)
    # Before the model loads: an --out this tool may not write is refused now.
    PredictionFile(args.out, output_format(args.out), args.topk).check()
    make_parent_folder(args.out, '--out')  # every rank writes a part file there; rank 0 says so
    model = build_model(args, device, local_world)
    pipeline, _ = build_test_pipeline(model.cfg)
    summary = predict_files(
        model, pipeline, paths, args.out, topk=args.topk, batch_size=args.batch_size,
        num_workers=args.num_workers, rank=rank, world_size=world,
        autocast=lambda: autocast_context(device, args.precision),
        progress_bar=ProgressBar if rank == 0 else None, barrier=dist.barrier,
        retry_errors=args.retry_errors, weights=weights_name(args, model))
    if rank == 0:
        print(f'\n{len(paths)} images; {summary.classified} classified now by rank 0 of '
              f'{world} ({summary.failed} of them unreadable: error records; '
              f'{summary.retried} retried after an error record); {summary.kept_errors} error '
              f'records kept from before (--retry-errors reads them again); {summary.dropped} '
              f'untrusted lines dropped; results in {args.out}')
    return 0


def read_texts(path: str) -> List[str]:
    with open(path, encoding='utf-8') as f:
        texts = [line.strip() for line in f if line.strip()]
    if not texts:
        raise ValueError(f'--texts {path}: no prompt in it (one per line).')
    return texts


def write_embeddings(args: argparse.Namespace, paths: List[str], device: str) -> int:
    """``--embeddings``: one process embeds every readable image (and the ``--texts``),
    then writes them with their ids (``mmclip.evaluation.embeddings``)."""
    if int(os.environ.get('WORLD_SIZE', 1)) > 1:
        raise ValueError('--embeddings runs in one process; run it without torchrun.')
    texts = read_texts(args.texts) if args.texts else None
    for file in embedding_files(args.embeddings, texts is not None):  # never over a file
        check_output_file(file, '--embeddings', 'tools/predict.py')
    model = build_model(args, device, 1)
    if texts is not None and not hasattr(model, 'encode_text'):
        raise ValueError(f'--texts: {args.model} has no text tower; text embeddings need a '
                         f'zero-shot model (mmclip.list_models("*zeroshot*")).')
    loader = image_batches(paths, range(len(paths)), build_test_pipeline(model.cfg)[0],
                           args.batch_size, args.num_workers)
    ids, parts, unreadable = [], [], []
    bar = ProgressBar(len(paths))
    for batch in loader:
        indices, inputs = preprocessed(model, batch)
        unreadable += [paths[i] for i, _, error in batch if error is not None]
        if indices:
            with autocast_context(device, args.precision):
                parts.append(embed_images(model, inputs))
            ids += [paths[i] for i in indices]
        bar.update(len(batch))
    if not parts:
        raise ValueError(f'none of the {len(paths)} images could be read; nothing written.')
    images = torch.cat(parts)
    with autocast_context(device, args.precision):
        text_embeddings = embed_texts(model, texts) if texts else None
    written = save_embeddings(args.embeddings, images, ids, text_embeddings, texts or ())
    said = f' and {len(texts)} texts' if texts else ''
    skipped = (f'; {len(unreadable)} unreadable, left out: {", ".join(unreadable[:5])}'
               f'{" ..." if len(unreadable) > 5 else ""}' if unreadable else '')
    print(f'\n{len(ids)} of {len(paths)} images{said} embedded ({images.shape[1]} values '
          f'each){skipped}; written: {", ".join(written)}')
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    return exit_code_of(lambda: run(args), debug=debug_requested(argv))


if __name__ == '__main__':
    exit_process(main())
