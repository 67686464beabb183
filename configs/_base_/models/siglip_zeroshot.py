# SigLIP zero-shot classifier from the original towers (open_clip-format weights, open_clip's
# CustomTextCLIP with a timm image tower). Image tower: ViT without class token or pre-norm
# (so its patch convolution has a bias), LayerNorm eps 1e-6, erf GELU, tokens pooled by
# multi-head attention (MAP head, out_type='attn_pool'); the pooled feature is the embedding
# (no projection). Text tower: bidirectional attention over all 64 positions, pooled at the
# last one, projected with a bias. Scores: sigmoid(exp(logit_scale) * cosine + logit_bias).
# ViT-B/16 sizes (its text tower has CLIP L/14's sizes, 'l'); a model config sets the input
# size, the L / SO400M sizes, and SigLIP 2's tokenizer, vocabulary and text activation. Its
# data preprocessor (mean / std 0.5) and squash resize are in each config.
model = dict(
    type='ZeroShotClassifier',
    backbone=dict(
        type='VisionTransformer',
        arch='b',
        img_size=224,
        patch_size=16,
        pre_norm=False,
        with_cls_token=False,
        norm_cfg=dict(type='LN', eps=1e-6),
        act_cfg=dict(type='GELU'),
        out_type='attn_pool',
        final_norm=True),
    text_backbone=dict(type='CLIPTextTransformer', arch='l', out_channels=768,
                       context_length=64, vocab_size=32000, act_cfg=dict(type='GELU'),
                       causal=False, pool_type='last', proj_bias=True, norm_eps=1e-6),
    head=dict(type='ZeroShotClsHead', in_channels=768, out_channels=768, with_proj=False,
              logit_bias=-10.0, classes='imagenet', templates='openai_imagenet'),
    # open_clip's model config: hf_tokenizer_name, tokenizer_kwargs clean='canonicalize'.
    tokenizer=dict(type='HFTokenizer', name='timm/ViT-B-16-SigLIP', context_length=64,
                   clean='canonicalize'),
)
