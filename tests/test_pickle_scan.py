"""The opcode scan on its own: what it admits, refuses and rewrites."""
import io
import pickle
import zipfile

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer

from mmclip.checkpoint import pickle_scan
from mmclip.checkpoint.safe_load import CheckpointReadError, read_checkpoint_file


def data_pkl(obj, **save_kwargs) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer, **save_kwargs)
    archive = zipfile.ZipFile(io.BytesIO(buffer.getvalue()))
    return archive.read(next(n for n in archive.namelist() if n.endswith('data.pkl')))


def test_a_state_dict_with_optimizer_state_is_admitted_as_is():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4)).bfloat16()
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.ones(2, 3, dtype=torch.bfloat16)).sum().backward()
    optimizer.step()
    scanned = pickle_scan.scan(io.BytesIO(data_pkl(
        {'state_dict': model.state_dict(), 'optimizer': optimizer.state_dict(),
         'param': torch.nn.Parameter(torch.ones(1)), 'meta': {'epoch': 1, 'x': [None, 1.5]}})))
    assert scanned == pickle_scan.Scan((), None)


def test_statistics_are_rewritten_into_plain_data_that_torch_loads():
    buffer = HistoryBuffer()
    buffer.update(np.float64(2.0))
    stream = io.BytesIO(data_pkl({'w': torch.ones(2), 'stats': [buffer, np.arange(3)]}))
    scanned = pickle_scan.scan(stream)
    assert 'mmengine.logging.history_buffer.HistoryBuffer' in scanned.dropped_globals
    assert stream.tell() == len(stream.getvalue())  # left after the STOP
    # Only admitted names remain, so torch's own unpickler reads the result.
    assert pickle_scan.scan(io.BytesIO(scanned.rewritten)).dropped_globals == ()
    loaded = torch.load(io.BytesIO(_zip_with(scanned.rewritten)), weights_only=True)
    assert torch.equal(loaded['w'], torch.ones(2))
    assert all(pickle_scan.is_dropped(v) for v in loaded['stats'])


def _zip_with(pickle_bytes: bytes) -> bytes:
    """A torch zip file holding one storage (for 'w') and ``pickle_bytes``."""
    source = io.BytesIO()
    torch.save({'w': torch.ones(2)}, source)
    archive = zipfile.ZipFile(io.BytesIO(source.getvalue()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, 'w', zipfile.ZIP_STORED) as target:
        for info in archive.infolist():
            data = pickle_bytes if info.filename.endswith('data.pkl') else archive.read(info)
            target.writestr(info, data)
    return out.getvalue()


def test_protocol_4_is_refused_in_one_line(tmp_path):
    torch.save({'w': torch.ones(2)}, tmp_path / 'p4.pth', pickle_protocol=4)
    with pytest.raises(ValueError, match='p4.pth: it uses the STACK_GLOBAL opcode'):
        read_checkpoint_file(str(tmp_path / 'p4.pth'))


@pytest.mark.parametrize('stream', [b'\x80\x02}q\x00(', b'\x80\x02h\x05.', b'\x80\x02t.'],
                         ids=['truncated', 'unknown_memo', 'no_mark'])
def test_malformed_pickles_are_read_errors_not_refusals(stream, tmp_path):
    with pytest.raises(Exception):
        pickle.loads(stream)  # the reference unpickler agrees they are broken
    (tmp_path / 'broken.pth').write_bytes(_zip_with(stream))
    with pytest.raises(CheckpointReadError, match='broken.pth'):
        read_checkpoint_file(str(tmp_path / 'broken.pth'))
