"""Accuracy and DumpPredictions through mmengine's Evaluator, against numpy loops."""
import json
import os
import pickle

import numpy as np
import pytest
import torch
from mmengine.evaluator import Evaluator

from mmclip.evaluation import Accuracy, DumpPredictions
from mmclip.structures import DataSample

NUM_CLASSES = 6


def _samples(num: int, seed: int = 0, errors=()):
    rng = np.random.RandomState(seed)
    scores = torch.from_numpy(rng.rand(num, NUM_CLASSES)).float().softmax(dim=1)
    labels = rng.randint(0, NUM_CLASSES, num)
    samples = []
    for i in range(num):
        sample = DataSample().set_gt_label(int(labels[i])).set_pred_score(scores[i])
        sample.set_pred_label(int(scores[i].argmax()))
        sample.set_metainfo(dict(img_path=f'img{i}.JPEG', sample_idx=i,
                                 load_error=f"Cannot read image 'img{i}.JPEG'"
                                 if i in errors else None))
        samples.append(sample)
    return scores.numpy(), labels, samples


def _evaluate(metrics, samples, batch=4, classes=None):
    evaluator = Evaluator(metrics)
    if classes is not None:
        evaluator.dataset_meta = dict(classes=classes)
    for start in range(0, len(samples), batch):
        evaluator.process(samples[start:start + batch])
    return evaluator.evaluate(len(samples))


def test_topk_equals_an_independent_count():
    scores, labels, samples = _samples(23)
    results = _evaluate([Accuracy(topk=(1, 3, 5))], samples)
    ranks = np.argsort(-scores, axis=1)
    for k in (1, 3, 5):
        expected = 100.0 * np.mean([labels[i] in ranks[i, :k] for i in range(23)])
        assert results[f'accuracy/top{k}'] == pytest.approx(expected)
    assert results['accuracy/num_images'] == 23
    assert results['accuracy/num_skipped'] == 0


def test_per_class_and_confusion_matrix():
    scores, labels, samples = _samples(40, seed=1)
    results = _evaluate([Accuracy(per_class=True, confusion_matrix=True)], samples,
                        classes=[f'c{i}' for i in range(NUM_CLASSES)])
    pred = scores.argmax(axis=1)
    expected = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    for gt, p in zip(labels, pred):
        expected[gt, p] += 1
    np.testing.assert_array_equal(results['accuracy/confusion_matrix'].numpy(), expected)
    for c in range(NUM_CLASSES):
        mask = labels == c
        want = 100.0 * np.mean(pred[mask] == c) if mask.any() else np.nan
        np.testing.assert_allclose(results['accuracy/per_class'][c].item(), want)


def test_skipped_images_are_left_out_and_counted():
    scores, labels, samples = _samples(10, seed=2, errors=(3, 7))
    results = _evaluate([Accuracy()], samples)
    keep = [i for i in range(10) if i not in (3, 7)]
    assert results['accuracy/top1'] == pytest.approx(
        100.0 * np.mean(scores[keep].argmax(axis=1) == labels[keep]))
    assert results['accuracy/num_images'] == 8
    assert results['accuracy/num_skipped'] == 2


def test_all_images_unreadable_is_an_error():
    _, _, samples = _samples(3, errors=(0, 1, 2))
    with pytest.raises(ValueError, match='None of the 3 images could be read'):
        _evaluate([Accuracy()], samples)


def test_bad_topk_is_rejected():
    with pytest.raises(ValueError, match='topk must be positive ints'):
        Accuracy(topk=(0, 5))


@pytest.mark.parametrize('suffix', ['.json', '.pkl'])
def test_dump_predictions_round_trips_in_order(tmp_path, suffix):
    scores, labels, samples = _samples(9, seed=3, errors=(4, ))
    out = tmp_path / 'sub' / f'preds{suffix}'
    assert _evaluate([DumpPredictions(str(out))], samples) == {}
    if suffix == '.json':
        records = json.loads(out.read_text())
    else:
        records = pickle.loads(out.read_bytes())
    assert [r['img_path'] for r in records] == [f'img{i}.JPEG' for i in range(9)]
    assert [r['gt_label'] for r in records] == labels.tolist()
    for i, record in enumerate(records):
        if i == 4:
            assert record['pred_label'] is None and 'img4.JPEG' in record['load_error']
            continue
        assert record['pred_label'] == int(scores[i].argmax())
        assert record['pred_score'] == pytest.approx(float(scores[i].max()))
        assert record['load_error'] is None


def test_dump_predictions_rejects_other_formats():
    with pytest.raises(ValueError, match=r"\('.json', '.pkl'\)"):
        DumpPredictions('preds.csv')


def _dump_samples():
    scores = torch.tensor([[0.1, 0.9], [float('nan'), float('nan')]])
    return [dict(img_path=f'{i}.jpg', gt_label=torch.tensor([1]), pred_score=s)
            for i, s in enumerate(scores)]


def test_dump_predictions_writes_valid_json_with_null_for_nan(tmp_path):
    out = tmp_path / 'preds.json'
    metric = DumpPredictions(str(out))
    metric.process(None, _dump_samples())
    metric.compute_metrics(metric.results)
    text = out.read_text()
    assert 'NaN' not in text
    records = json.loads(text)
    assert records[0]['pred_label'] == 1 and abs(records[0]['pred_score'] - 0.9) < 1e-6
    assert records[1]['pred_score'] is None
    assert [p.name for p in tmp_path.iterdir()] == ['preds.json']  # no temporary left


def test_dump_predictions_never_leaves_a_truncated_file(tmp_path, monkeypatch):
    out = tmp_path / 'preds.json'
    out.write_text('[previous complete results]')
    metric = DumpPredictions(str(out))
    metric.process(None, _dump_samples())

    def fail(*args):
        raise OSError('disk full')

    monkeypatch.setattr(os, 'replace', fail)
    with pytest.raises(OSError, match='disk full'):
        metric.compute_metrics(metric.results)
    assert out.read_text() == '[previous complete results]'
    assert [p.name for p in tmp_path.iterdir()] == ['preds.json']
