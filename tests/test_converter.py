"""tools/model_converters/timm_to_mmclip.py on a real-size ViT-B/32 (random timm weights)."""
import runpy
import sys
from pathlib import Path

import pytest
import torch

import mmclip
from mmclip.checkpoint import read_checkpoint_file
from mmclip.checkpoint.convert import rename_key

timm = pytest.importorskip('timm')
ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / 'tools' / 'model_converters' / 'timm_to_mmclip.py'
SEED_CONFIG = str(ROOT / 'configs' / 'clip' / 'vit-base-p32_pt-64xb64_in1k.py')


def run_tool(*argv: str) -> int:
    saved = sys.argv
    sys.argv = [str(TOOL), *argv]
    try:
        with pytest.raises(SystemExit) as exit_info:
            runpy.run_path(str(TOOL), run_name='__main__')
    finally:
        sys.argv = saved
    return exit_info.value.code


def test_converted_and_direct_safetensors_give_timm_logits(tmp_path, capsys):
    from safetensors.torch import save_file
    torch.manual_seed(0)
    reference = timm.create_model('vit_base_patch32_clip_224', pretrained=False).eval()
    src = tmp_path / 'model.safetensors'
    save_file(reference.state_dict(), str(src))
    dst = tmp_path / 'clip-vit-base-p32.pth'

    assert run_tool(str(src), str(dst), '--verify') == 0

    out = capsys.readouterr().out
    converted = read_checkpoint_file(str(dst))
    assert sorted(converted) == sorted(
        mmclip.get_model(SEED_CONFIG).state_dict())  # exactly the published keys
    assert 'published name: clip-vit-base-p32-' in out
    reported = float(out.split('max |logits difference| = ')[1].split()[0])
    assert reported <= 1e-4

    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        expected = reference(x)
        from_converted = mmclip.get_model(SEED_CONFIG, pretrained=str(dst))(x)
        from_timm_file = mmclip.get_model(SEED_CONFIG, pretrained=str(src))(x)
    assert torch.equal(from_converted, from_timm_file)
    assert (from_converted - expected).abs().max().item() <= 1e-4


def test_bin_to_safetensors_and_bad_input(tmp_path, tiny_config, capsys):
    reference = timm.create_model('vit_base_patch32_clip_224', pretrained=False, img_size=64,
                                  patch_size=16, embed_dim=64, depth=2, num_heads=2,
                                  mlp_ratio=2.0, num_classes=10)
    torch.save(reference.state_dict(), tmp_path / 'pytorch_model.bin')
    assert run_tool(str(tmp_path / 'pytorch_model.bin'), str(tmp_path / 'out.safetensors')) == 0
    converted = read_checkpoint_file(str(tmp_path / 'out.safetensors'))
    assert len(converted) == len(reference.state_dict())
    for timm_key, value in reference.state_dict().items():
        assert torch.equal(converted[rename_key(timm_key)], value), timm_key

    torch.save(converted, tmp_path / 'already_mmclip.pth')
    capsys.readouterr()
    assert run_tool(str(tmp_path / 'already_mmclip.pth'), str(tmp_path / 'again.pth')) == 1
    err = capsys.readouterr().err
    assert 'already_mmclip.pth is not a timm ViT state dict' in err
    assert 'converted already' in err and 'Traceback' not in err


@pytest.fixture
def tiny_timm_file(tmp_path) -> Path:
    reference = timm.create_model('vit_base_patch32_clip_224', pretrained=False, img_size=64,
                                  patch_size=16, embed_dim=64, depth=2, num_heads=2,
                                  mlp_ratio=2.0, num_classes=10)
    path = tmp_path / 'pytorch_model.bin'
    torch.save(reference.state_dict(), path)
    return path


def _refused(capsys, *argv: str) -> str:
    capsys.readouterr()
    assert run_tool(*argv) == 1
    err = capsys.readouterr().err
    assert 'Traceback' not in err and len(err.strip().splitlines()) == 1, err
    return err.strip()


def test_dst_symlink_is_refused_and_its_target_untouched(tiny_timm_file, tmp_path, capsys):
    target = tmp_path / 'someone_elses.pth'
    target.write_bytes(b'precious')
    for ext in ('.pth', '.safetensors'):
        link = tmp_path / f'link{ext}'
        link.symlink_to(target)
        for extra in ((), ('--overwrite', )):
            assert _refused(capsys, str(tiny_timm_file), str(link), *extra) == (
                f'ERROR: DST {link} is a symbolic link; the converter writes only a regular '
                f'file: give another path.')
        assert link.is_symlink() and target.read_bytes() == b'precious'
    dangling = tmp_path / 'dangling.pth'
    dangling.symlink_to(tmp_path / 'missing' / 'x.pth')
    assert 'is a symbolic link' in _refused(capsys, str(tiny_timm_file), str(dangling))


def test_existing_dst_is_kept_unless_overwrite_and_written_atomically(tiny_timm_file,
                                                                     tmp_path, capsys,
                                                                     monkeypatch):
    dst = tmp_path / 'out.pth'
    dst.write_bytes(b'an earlier file')
    assert _refused(capsys, str(tiny_timm_file), str(dst)) == (
        f'ERROR: DST {dst} exists; pass --overwrite to replace it.')
    assert dst.read_bytes() == b'an earlier file'
    assert run_tool(str(tiny_timm_file), str(dst), '--overwrite') == 0
    assert len(read_checkpoint_file(str(dst))) == len(torch.load(tiny_timm_file))
    assert sorted(p.name for p in tmp_path.iterdir()) == ['out.pth', 'pytorch_model.bin']

    # A save that fails half-way leaves neither a half-written DST nor a partial file.
    def fail_half_way(obj, f, *args, **kwargs):
        f.write(b'half a checkpoint')
        raise OSError('No space left on device')

    monkeypatch.setattr(torch, 'save', fail_half_way)
    before = dst.read_bytes()
    with pytest.raises(OSError, match='No space left'):
        run_tool(str(tiny_timm_file), str(dst), '--overwrite')
    assert dst.read_bytes() == before
    with pytest.raises(OSError, match='No space left'):
        run_tool(str(tiny_timm_file), str(tmp_path / 'new.pth'))
    assert sorted(p.name for p in tmp_path.iterdir()) == ['out.pth', 'pytorch_model.bin']
