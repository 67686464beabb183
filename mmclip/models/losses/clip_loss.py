"""CLIP's symmetric contrastive loss (open_clip's ``ClipLoss``), over all ranks' pairs."""
import torch
import torch.distributed as dist
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

    Equals ``open_clip.loss.ClipLoss()(image, text, scale)`` in one process: the batch's
    other pairs are the negatives.
    """
    logits = scale * image @ text.T
    labels = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def gather_across_ranks(x: torch.Tensor) -> torch.Tensor:
    """Every rank's rows, in rank order ([world_size * B, D]); gradients flow back to the
    rank that owns them. ``x`` itself without a process group of several ranks.

    With every rank computing ``clip_contrastive_loss`` on the gathered pairs, and
    DistributedDataParallel averaging the gradients, training sees the loss and gradient of
    one process holding the whole batch (open_clip's ``ClipLoss(gather_with_grad=True)``;
    FLYP ran one process with DataParallel and the batch of 512)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    return torch.cat(_AllGather.apply(x.contiguous()), dim=0)


class _AllGather(torch.autograd.Function):
    """``all_gather`` whose backward hands each rank the sum, over all ranks, of the
    gradients of its own rows (all_reduce: gloo has no reduce_scatter)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor):
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x)
        return tuple(parts)

    @staticmethod
    def backward(ctx, *grads: torch.Tensor) -> torch.Tensor:
        summed = torch.stack(grads)
        dist.all_reduce(summed)
        return summed[dist.get_rank()]
