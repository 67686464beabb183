# CLIP zero-shot classifier from the original towers (open_clip-format weights): image
# tower (pre-norm ViT, LayerNorm eps 1e-5, class token after ln_post) -> visual projection
# -> L2 norm -> logits against the prompt embeddings of each class, times exp(logit_scale).
# ViT-B text tower: width 512, 12 causal layers, 77 tokens. A model config sets the patch
# size, the activation (QuickGELU for OpenAI's towers) and the L/14 sizes. Its data
# preprocessor (CLIP mean / std) and evaluation are in imagenet_eval.py; never trained.
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
