# FLYP on your own image folders: the model, loss and optimizer of flyp_in1k.py (its
# comments cite them) on the data of zs-init-ft_custom.py. FLYP needs the class names when
# the model is built: list them once in `class_names` (in label order, which is also the
# sorted order of the folders); the data set is told the same names, so a folder that is not
# listed, or a name without its folder, stops the run before training.
_base_ = ['./zs-init-ft_custom.py']

class_names = [f'class {i}' for i in range(10)]
model = dict(
    _delete_=True,
    type='FLYPClassifier',
    backbone=dict(type='VisionTransformer', img_size=224, pre_norm=True,
                  norm_cfg=dict(type='LN', eps=1e-5), out_type='cls_token', final_norm=True),
    head=dict(type='ZeroShotClsHead', classes=class_names, templates='openai_imagenet'),
)
data_preprocessor = dict(num_classes=len(class_names))
train_dataloader = dict(dataset=dict(classes=class_names))
val_dataloader = dict(dataset=dict(classes=class_names))
test_dataloader = val_dataloader
optim_wrapper = dict(_delete_=True, optimizer=dict(type='AdamW', lr=1e-5, weight_decay=0.1))
