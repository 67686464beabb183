# Training on ImageNet-1k at 224 px, on top of the evaluation setup (imagenet_eval.py):
# the train split with a random resized crop and a flip; validation after each epoch is
# the test set, pipeline and metric of imagenet_eval.py.
_base_ = ['../imagenet_eval.py']

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=224, backend='pillow', interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=64,
    num_workers=5,
    # The same ImageNet root as the test set.
    dataset=dict(type='ImageNet', data_root=_base_.test_dataloader.dataset.data_root,
                 split='train', pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True),
)
val_dataloader = _base_.test_dataloader
val_evaluator = _base_.test_evaluator
