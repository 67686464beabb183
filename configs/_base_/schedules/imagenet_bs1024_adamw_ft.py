# Fine-tuning a pre-trained ViT: AdamW with layer-wise LR decay, linear warm-up then
# cosine, gradient clipping; no weight decay on cls_token, pos_embed, norms and biases.
# Set for a total batch of 1024 (e.g. 8 GPUs x 128); --auto-scale-lr rescales the LR.
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=5e-4, weight_decay=0.05, betas=(0.9, 0.999)),
    # LR of layer i (embeddings 0, blocks 1..12, final norm + head 13) is
    # lr * layer_decay_rate ** (13 - i); 1-D params and no_decay_names get no weight decay.
    constructor='LearningRateDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.65, no_decay_names=('cls_token', 'pos_embed')),
    clip_grad=dict(max_norm=1.0),
)

# eta_min_ratio (not an absolute eta_min) keeps each layer's decayed LR proportional
# all the way down the cosine.
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=5,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min_ratio=1e-3, by_epoch=True, begin=5, end=50,
         convert_to_iter_based=True),
]

train_cfg = dict(by_epoch=True, max_epochs=50, val_interval=1)
val_cfg = dict()

auto_scale_lr = dict(base_batch_size=1024)
