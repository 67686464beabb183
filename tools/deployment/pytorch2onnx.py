"""Export a model-zoo classifier to ONNX, with its normalisation inside the graph.

    python tools/deployment/pytorch2onnx.py CONFIG_OR_NAME CHECKPOINT OUT.onnx
        [--opset N] [--verify [--verify-images IMG ...]]

The graph's input ``images`` is a batch of uint8 RGB images [B, 3, H, W] (B dynamic; H, W
the config's crop size, after the config's resize and crop); its output ``logits`` is
float32 [B, K]. Channel order, mean and std are applied inside. Class names and the input
size are stored in the model's metadata. Weights go to OUT.onnx.data when the model is
over 2 GB. ``--verify`` runs ONNX Runtime and PyTorch on real images (default: the
demo photos) and prints the largest logit difference; it exits 1 above 1e-4.
"""
import argparse
import sys
from pathlib import Path
from typing import List, Optional

import mmclip  # noqa: F401
from mmclip.apis import get_model
from mmclip.cli.launch import ArgumentParser, add_debug_option, debug_requested, exit_code_of
from mmclip.cli.outputs import check_output_file
from mmclip.deployment import export_onnx, verify_onnx

ROOT = Path(__file__).resolve().parents[2]
DEMO_IMAGES = [ROOT / 'demo' / 'cat.jpg', ROOT / 'demo' / 'rocket.jpg']
TOLERANCE = 1e-4


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = ArgumentParser(description='Export an mmclip classifier to ONNX.')
    parser.add_argument('model', help='model-zoo name or config file')
    parser.add_argument('checkpoint', help='checkpoint path or http(s) URL')
    parser.add_argument('out', help='output .onnx file')
    parser.add_argument('--opset', type=int, help="ONNX opset (default: torch's exporter's)")
    parser.add_argument('--verify', action='store_true',
                        help='compare ONNX Runtime logits with PyTorch on real images')
    parser.add_argument('--verify-images', nargs='+', default=[str(p) for p in DEMO_IMAGES],
                        help='images for --verify (default: the demo photos)')
    add_debug_option(parser)
    args = parser.parse_args(argv)
    if not args.out.endswith('.onnx'):
        parser.error(f'OUT must end with .onnx; got {args.out}')
    return args


def is_export(path: str) -> bool:
    """Whether ``path`` is an .onnx this tool exported (its metadata says so): only such a
    file is replaced."""
    import onnx
    try:
        model = onnx.load(path, load_external_data=False)
    except Exception:  # noqa: BLE001  (anything onnx cannot read is not ours)
        return False
    return any(prop.key == 'mmclip.input' for prop in model.metadata_props)


def run(args: argparse.Namespace) -> int:
    check_output_file(args.out, 'OUT', 'tools/deployment/pytorch2onnx.py', is_ours=is_export)
    model = get_model(args.model, pretrained=args.checkpoint)
    out = export_onnx(model, args.out, opset=args.opset)
    print(f'Exported {out} (input: uint8 RGB [batch, 3, {model.backbone.img_size}, '
          f'{model.backbone.img_size}], normalisation inside)')
    if args.verify:
        diff = verify_onnx(model, out, args.verify_images)
        print(f'max |logit difference| ONNX Runtime vs PyTorch on '
              f'{len(args.verify_images)} images: {diff:.3g}')
        if diff > TOLERANCE:
            print(f'ERROR: the difference is above {TOLERANCE}', file=sys.stderr)
            return 1
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    return exit_code_of(lambda: run(args), debug=debug_requested(argv))


if __name__ == '__main__':
    sys.exit(main())
