# OpenAI CLIP ViT-L/14 (open_clip ViT-L-14-quickgelu, openai):
# both CLIP towers, for the robust fine-tuning recipes (docs/robust_finetune.md).
# Variables only: a recipe config wires them into its model
# and hooks. The weights are open_clip's files (configs/clip/zeroshot-metafile.yml).
# OpenAI's towers were trained with QuickGELU; erf GELU would shift their embeddings.
clip_image_tower = dict(arch='l', patch_size=14, act_cfg=dict(type='QuickGELU'))
clip_text_tower = dict(type='CLIPTextTransformer', arch='l', out_channels=768,
                       act_cfg=dict(type='QuickGELU'))
# Head geometry: the image tower's width and the joint embedding size.
clip_head_widths = dict(in_channels=1024, out_channels=768)
clip_num_layers = 24
clip_weights = [
    'https://huggingface.co/timm/vit_large_patch14_clip_224.openai/resolve/main/'
    'open_clip_model.safetensors',
    'https://huggingface.co/timm/vit_large_patch14_clip_224.openai/resolve/main/'
    'open_clip_pytorch_model.bin',
]
