# Robust fine-tuning from the zero-shot head on your own image folders (N classes, here 10):
# the recipe of zs-init-ft_in1k.py on
#   data/custom/train/<class name>/<image>   and   data/custom/val/<class name>/<image>
# (--data-root DIR points it elsewhere). The folder names are the class names the zero-shot
# head is built from (ZeroShotInitHook with classes=None), so name them as words: "golden
# retriever", not "n02099601". One GPU x 32 images; the learning rate stays WiSE-FT's for a
# batch of 512 unless --auto-scale-lr scales it to yours. Warm-up: the first epoch (an
# mmclip choice: WiSE-FT's 500 steps can outlast a small data set's whole schedule).
_base_ = ['./zs-init-ft_in1k.py']

num_classes = 10
model = dict(head=dict(num_classes=num_classes))
data_preprocessor = dict(num_classes=num_classes)

# Class folders instead of ImageNet (_delete_ drops ImageNet's `split`); val and test read
# the root from the train set.
train_dataloader = dict(
    batch_size=32,
    num_workers=4,
    dataset=dict(_delete_=True, type='CustomDataset', data_root='data/custom',
                 data_prefix='train', pipeline=_base_.train_pipeline),
)
val_dataloader = dict(
    batch_size=32,
    num_workers=4,
    dataset=dict(_delete_=True, type='CustomDataset',
                 data_root=train_dataloader['dataset']['data_root'], data_prefix='val',
                 pipeline=_base_.test_pipeline),
)
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_dataloader = val_dataloader
test_evaluator = val_evaluator

param_scheduler = [
    dict(type='LinearLR', start_factor=1 / 500, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=True, begin=0, end=10,
         convert_to_iter_based=True),
]
