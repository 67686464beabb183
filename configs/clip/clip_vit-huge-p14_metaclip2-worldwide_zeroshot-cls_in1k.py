# clip_vit-huge-p14_metaclip2-worldwide_zeroshot-cls_in1k
# open_clip ViT-H-14-worldwide-quickgelu metaclip2_worldwide (Meta's MetaCLIP 2, worldwide data
# in 300+ languages, ViT-H/14): zero-shot ImageNet-1k with OpenAI's 80 prompt templates and
# 1000 class names. Preprocessing as open_clip's for these weights: bicubic (pillow) resize of
# the short edge to 224, 224 px center crop, OpenAI mean / std.
# The weights were trained with QuickGELU (open_clip's pretrained config sets quick_gelu). The
# text tower is CLIP's causal one over the XLM-V vocabulary (901,629 tokens, end-of-text id 2,
# pooled at the first end-of-text), tokenized by the Hugging Face tokenizer open_clip's model
# config names.
_base_ = ['../_base_/models/clip_zeroshot.py', '../_base_/imagenet_eval.py']

model = dict(
    backbone=dict(arch='h', patch_size=14, act_cfg=dict(type='QuickGELU')),
    text_backbone=dict(arch='h', out_channels=1024, vocab_size=901629, pool_type='eos',
                       eos_id=2, act_cfg=dict(type='QuickGELU')),
    head=dict(in_channels=1280, out_channels=1024),
    tokenizer=dict(type='HFTokenizer', name='facebook/xlm-v-base', context_length=77,
                   clean='whitespace'),
)
