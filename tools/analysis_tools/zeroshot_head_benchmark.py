"""Time building a zero-shot head: mmclip's (sorted, cut batches) vs open_clip's.

    python tools/analysis_tools/zeroshot_head_benchmark.py \
        clip_vit-base-p32_openai_zeroshot-cls_in1k --classes 10

Both build the same head (the first ``--classes`` ImageNet classes x OpenAI's 80 templates)
from the same text tower: random weights, or ``--pretrained`` (an open_clip file), loaded
into both. open_clip's ``build_zero_shot_classifier`` runs every prompt at the full 77
tokens; mmclip sorts prompts by length and cuts each batch to its longest prompt. Reports
each one's time, prompts per second, the ratio and the largest difference of the heads;
``--classes`` below 1000 also extrapolates the 1000-class time. The cache is not used.
"""
import argparse
import os.path as osp
import tempfile
import time

import torch

import mmclip
from mmclip.apis import get_model_info
from mmclip.checkpoint import load_checkpoint
from mmclip.datasets.zeroshot_prompts import IMAGENET_CLIP_CLASSNAMES, OPENAI_IMAGENET_TEMPLATES
from mmclip.models.utils.zero_shot import build_class_embeddings


def parse_args():
    parser = argparse.ArgumentParser(description='Time building a zero-shot ImageNet head.')
    parser.add_argument('model', help='a zero-shot zoo name (mmclip.list_models("*zeroshot*"))')
    parser.add_argument('--pretrained', help='open_clip state dict file (default: random)')
    parser.add_argument('--classes', type=int, default=1000, help='ImageNet classes to use')
    parser.add_argument('--threads', type=int, default=None, help='torch CPU threads')
    parser.add_argument('--skip-open-clip', action='store_true',
                        help="time mmclip's build only (open_clip's is ~9x slower)")
    return parser.parse_args()


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    args = parse_args()
    if not 1 <= args.classes <= 1000:
        raise SystemExit(f'error: --classes must be in 1..1000; got {args.classes}.')
    if args.threads:
        torch.set_num_threads(args.threads)
    import open_clip  # the reference implementation, as in the tests
    oc_name, tag = get_model_info(args.model).metadata['Converted From']['Model'].split()
    oc = open_clip.create_model(oc_name).eval()
    if args.pretrained:
        oc.load_state_dict(torch.load(args.pretrained, map_location='cpu', weights_only=True))
    with tempfile.TemporaryDirectory() as tmp:
        path = osp.join(tmp, 'open_clip_pytorch_model.bin')
        torch.save(oc.state_dict(), path)
        model = mmclip.get_model(args.model)
        load_checkpoint(model, path)  # not through get_model: that would build and cache
    classes = IMAGENET_CLIP_CLASSNAMES[:args.classes]
    prompts = len(classes) * len(OPENAI_IMAGENET_TEMPLATES)
    ours, t_ours = timed(lambda: build_class_embeddings(model.text_backbone, classes,
                                                        OPENAI_IMAGENET_TEMPLATES, progress=True))
    timings = [('mmclip', t_ours)]
    if not args.skip_open_clip:
        with torch.no_grad():
            theirs, t_theirs = timed(lambda: open_clip.build_zero_shot_classifier(
                oc, tokenizer=open_clip.get_tokenizer(oc_name), classnames=classes,
                templates=OPENAI_IMAGENET_TEMPLATES, num_classes_per_batch=10, device='cpu'))
        timings.append(('open_clip', t_theirs))
    scale = 1000 / len(classes)
    print(f'{args.model}: {len(classes)} classes x 80 templates = {prompts} prompts, '
          f'{torch.get_num_threads()} threads')
    for label, seconds in timings:
        print(f'  {label:<9} {seconds:8.1f} s  {prompts / seconds:7.1f} prompts/s  '
              f'1000 classes: ~{seconds * scale / 60:.1f} min')
    if not args.skip_open_clip:
        print(f'  speed-up {t_theirs / t_ours:.2f}x; max |head difference| '
              f'{(ours - theirs.T).abs().max():.2e}')


if __name__ == '__main__':
    main()
