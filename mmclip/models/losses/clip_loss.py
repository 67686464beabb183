"""CLIP's symmetric contrastive loss (open_clip's ``ClipLoss`` in one process)."""
import torch
import torch.nn.functional as F


def clip_contrastive_loss(image: torch.Tensor, text: torch.Tensor,
                          scale: torch.Tensor) -> torch.Tensor:
    """Mean of the image->text and text->image cross-entropies of ``scale * image @ text.T``,
    pair i matching pair i.

    Args:
        image: L2-normalised image embeddings [B, D].
        text: L2-normalised text embeddings [B, D], row i describing image i.
        scale: the logit scale already exponentiated (``logit_scale.exp()``), as open_clip
            passes it.

    Equals ``open_clip.loss.ClipLoss()(image, text, scale)`` with world size 1: the batch's
    other pairs are the negatives (FLYP, arXiv:2212.00638, uses it so, ``world_size=1``).
    """
    logits = scale * image @ text.T
    labels = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
