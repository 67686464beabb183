"""Mixup / CutMix / RandomBatchAugment against direct computations, and in the preprocessor."""
import numpy as np
import pytest
import torch

from mmclip.models.utils.batch_augments import CutMix, Mixup
from mmclip.registry import BATCH_AUGMENTS, MODELS
from mmclip.structures import DataSample

B, K, H, W = 4, 6, 16, 20


def constant_batch():
    """Image i is filled with the value i + 1, so every pixel tells its source image."""
    inputs = torch.arange(1, B + 1, dtype=torch.float32).view(B, 1, 1, 1).expand(B, 3, H, W)
    labels = torch.tensor([0, 2, 3, 5])
    return inputs.contiguous(), torch.nn.functional.one_hot(labels, K).float()


def test_mixup_mix_is_the_convex_combination():
    inputs, scores = torch.randn(B, 3, H, W), torch.rand(B, K)
    perm = torch.tensor([2, 0, 3, 1])
    mixed, mixed_scores = Mixup(alpha=0.8).mix(inputs, scores, 0.3, perm)
    for i in range(B):
        torch.testing.assert_close(mixed[i], 0.3 * inputs[i] + 0.7 * inputs[perm[i]])
        torch.testing.assert_close(mixed_scores[i], 0.3 * scores[i] + 0.7 * scores[perm[i]])


def test_mixup_and_cutmix_calls_draw_from_the_seeded_generators():
    inputs, scores = constant_batch()
    np.random.seed(0)
    lam = np.random.beta(0.8, 0.8)
    torch.manual_seed(0)
    perm = torch.randperm(B)
    np.random.seed(0)
    torch.manual_seed(0)
    mixed, mixed_scores = Mixup(alpha=0.8)(inputs, scores)
    expected = Mixup(alpha=0.8).mix(inputs, scores, lam, perm)
    torch.testing.assert_close((mixed, mixed_scores), expected)

    np.random.seed(1)
    lam = np.random.beta(1.0, 1.0)
    center = (np.random.uniform(0, H), np.random.uniform(0, W))
    torch.manual_seed(1)
    perm = torch.randperm(B)
    np.random.seed(1)
    torch.manual_seed(1)
    got = CutMix(alpha=1.0)(inputs, scores)
    torch.testing.assert_close(got, CutMix(alpha=1.0).mix(inputs, scores, lam, perm, center))
    assert torch.equal(inputs, constant_batch()[0]), 'the input batch must not be modified'


@pytest.mark.parametrize('lam, center',
                         [(0.6, (8.0, 10.0)), (0.3, (1.0, 18.0)), (0.9, (15.5, 0.2))])
def test_cutmix_scores_follow_the_pasted_area(lam, center):
    inputs, scores = constant_batch()
    perm = torch.tensor([1, 2, 3, 0])
    mixed, mixed_scores = CutMix(alpha=1.0).mix(inputs, scores, lam, perm, center)
    for i in range(B):
        pasted = (mixed[i, 0] == perm[i] + 1).float().mean().item()
        kept = (mixed[i, 0] == i + 1).float().mean().item()
        assert pasted + kept == pytest.approx(1.0)
        torch.testing.assert_close(mixed_scores[i], kept * scores[i] + pasted * scores[perm[i]])
        # The box is one rectangle centred at ``center`` (clipped at the borders).
        ys, xs = torch.nonzero(mixed[i, 0] == perm[i] + 1, as_tuple=True)
        if len(ys):
            assert (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1) == len(ys)
            assert ys.min() <= center[0] <= ys.max() + 1 and xs.min() <= center[1] <= xs.max() + 1
    unclipped = int(H * np.sqrt(1 - lam)) // 2 * 2 * (int(W * np.sqrt(1 - lam)) // 2 * 2)
    assert (mixed[0, 0] == perm[0] + 1).sum() <= unclipped


def test_random_batch_augment_picks_each_with_its_probability():
    np.random.seed(0)
    torch.manual_seed(0)
    inputs, scores = constant_batch()
    augment = BATCH_AUGMENTS.build(dict(
        type='RandomBatchAugment',
        augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)],
        probs=[0.5, 0.3]))
    counts = dict(mixup=0, cutmix=0, none=0)
    for _ in range(400):
        mixed, _ = augment(inputs, scores)
        values = set(mixed[:, 0].unique().tolist())
        if torch.equal(mixed, inputs):
            counts['none'] += 1
        elif values <= {1.0, 2.0, 3.0, 4.0}:
            counts['cutmix'] += 1  # pasted pixels keep the source values
        else:
            counts['mixup'] += 1
    assert abs(counts['mixup'] / 400 - 0.5) < 0.08
    assert abs(counts['cutmix'] / 400 - 0.3) < 0.08  # an empty box counts as 'none'
    assert abs(counts['none'] / 400 - 0.2) < 0.08


@pytest.mark.parametrize('cfg, match', [
    (dict(type='Mixup', alpha=0.0), 'alpha'),
    (dict(type='RandomBatchAugment', augments=[dict(type='Mixup', alpha=1.0)], probs=[0.5, 0.5]),
     'one per augment'),
    (dict(type='RandomBatchAugment', augments=[]), 'at least one'),
])
def test_bad_arguments_are_refused(cfg, match):
    with pytest.raises(ValueError, match=match):
        BATCH_AUGMENTS.build(cfg)


def test_preprocessor_writes_soft_targets_in_training_only():
    pre = MODELS.build(dict(
        type='ClsDataPreprocessor', num_classes=K,
        batch_augments=dict(type='Mixup', alpha=0.8)))
    labels = [0, 2, 3, 5]
    data = dict(inputs=[torch.randint(0, 255, (3, H, W), dtype=torch.uint8) for _ in labels],
                data_samples=[DataSample().set_gt_label(label) for label in labels])
    out = pre(data, training=True)
    scores = torch.stack([s.gt_score for s in out['data_samples']])
    assert scores.shape == (B, K)
    torch.testing.assert_close(scores.sum(1), torch.ones(B))
    assert all(s[label] >= 0.5 - 1e-6 or s.max() > s[label] for s, label in zip(scores, labels))
    evaluated = pre(dict(inputs=data['inputs'],
                         data_samples=[DataSample().set_gt_label(label) for label in labels]),
                    training=False)
    assert 'gt_score' not in evaluated['data_samples'][0]
