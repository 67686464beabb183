# CLIP zero-shot classifier from the original towers (open_clip-format weights):
# image tower (pre-norm ViT, LayerNorm eps 1e-5, class token after ln_post) -> visual
# projection -> L2 norm -> logits against the prompt embeddings of each class, times
# exp(logit_scale). ViT-B text tower: width 512, 12 causal layers, 77 tokens. Leaf configs
# set the patch size, the activation (QuickGELU for OpenAI's towers) and the L/14 sizes.
# Evaluated on ImageNet-1k val (short edge bicubic to 224, center crop 224), never trained.
_base_ = ['./datasets/imagenet_bs64_224.py', './default_runtime.py']

model = dict(
    type='ZeroShotClassifier',
    backbone=dict(
        type='VisionTransformer',
        arch='b',
        img_size=224,
        patch_size=32,
        pre_norm=True,
        norm_cfg=dict(type='LN', eps=1e-5),
        act_cfg=dict(type='GELU'),
        out_type='cls_token',
        final_norm=True),
    text_backbone=dict(type='CLIPTextTransformer', arch='b', out_channels=512,
                       act_cfg=dict(type='GELU')),
    head=dict(type='ZeroShotClsHead', in_channels=768, out_channels=512,
              classes='imagenet', templates='openai_imagenet'),
)

# OpenAI CLIP mean / std times 255, RGB; images arrive as uint8 BGR.
data_preprocessor = dict(
    mean=[0.48145466 * 255, 0.4578275 * 255, 0.40821073 * 255],
    std=[0.26862954 * 255, 0.26130258 * 255, 0.27577711 * 255],
    to_rgb=True,
)

train_dataloader = None
val_cfg = dict()
test_cfg = dict()
