"""Image and text embeddings: what retrieval compares (``suite.retrieve``) and what
``tools/predict.py --embeddings`` writes, computed by the same two functions.

The file holds the embeddings and the ids they belong to (image paths, prompt texts):
``.safetensors`` keeps tensors ``image_embeddings`` [N, D] (and ``text_embeddings``
[T, D]) with the ids as JSON lists in its metadata (``image_ids``, ``text_ids``); ``.npy``
keeps the image array in the file and its ids in ``<file>.ids.json``, the text array in
``<stem>.texts.npy`` with ``<stem>.texts.npy.ids.json``.
"""
import json
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from mmclip.utils.atomic_file import atomic_write

EMBEDDING_FORMATS = ('.safetensors', '.npy')


@torch.no_grad()
def embed_images(model: torch.nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """Preprocessed images [B, 3, H, W] -> float32 [B, D] on the CPU: a zero-shot tower's
    L2-normalised embedding (open_clip's ``encode_image(normalize=True)``), else a
    classifier's pre-logits feature (its head's input, as the backbone gives it)."""
    if hasattr(model, 'encode_image'):
        return model.encode_image(inputs).float().cpu()
    return model.head.pre_logits(model.extract_feat(inputs)).float().cpu()


@torch.no_grad()
def embed_texts(model: torch.nn.Module, texts: Sequence[str],
                batch_size: int = 64) -> torch.Tensor:
    """Texts -> float32 [N, D] on the CPU, L2-normalised (a zero-shot tower's
    ``encode_text``, open_clip's ``encode_text(normalize=True)``).

    Raises:
        ValueError: the model has no text tower.
    """
    if not hasattr(model, 'encode_text'):
        raise ValueError('text embeddings need a zero-shot model (image and text towers); '
                         'this one is a vision-only classifier.')
    parts = [model.encode_text(list(texts[s:s + batch_size])).float().cpu()
             for s in range(0, len(texts), batch_size)]
    return torch.cat(parts) if parts else torch.zeros(0, 0)


def embedding_files(path: str, with_texts: bool) -> List[str]:
    """Every file ``save_embeddings`` writes for ``path`` (to check before the work).

    Raises:
        ValueError: ``path`` ends in neither ``.safetensors`` nor ``.npy``.
    """
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in EMBEDDING_FORMATS:
        raise ValueError(f'--embeddings {path}: the file ends in one of {EMBEDDING_FORMATS}.')
    if suffix == '.safetensors':
        return [path]
    files = [path, path + '.ids.json']
    if with_texts:
        texts = path[:-len('.npy')] + '.texts.npy'
        files += [texts, texts + '.ids.json']
    return files


def save_embeddings(path: str, images: torch.Tensor, image_ids: Sequence[str],
                    texts: Optional[torch.Tensor] = None,
                    text_ids: Sequence[str] = ()) -> List[str]:
    """Write the embeddings and their ids (see the module docstring), each file whole or
    not at all; returns the files written."""
    arrays: Dict[str, Tuple[torch.Tensor, Sequence[str]]] = {'image': (images, image_ids)}
    if texts is not None:
        arrays['text'] = (texts, text_ids)
    files = embedding_files(path, texts is not None)
    if path.lower().endswith('.safetensors'):
        from safetensors.torch import save
        data = save({f'{kind}_embeddings': tensor.contiguous()
                     for kind, (tensor, _) in arrays.items()},
                    metadata={f'{kind}_ids': json.dumps(list(ids))
                              for kind, (_, ids) in arrays.items()})
        with atomic_write(path) as f:
            f.write(data)
        return files
    for (array_file, ids_file), (tensor, ids) in zip(zip(files[::2], files[1::2]),
                                                     arrays.values()):
        with atomic_write(array_file) as f:
            np.save(f, tensor.numpy())
        with atomic_write(ids_file) as f:
            f.write(json.dumps(list(ids)).encode('utf-8'))
    return files
