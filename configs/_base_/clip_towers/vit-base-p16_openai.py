# OpenAI CLIP ViT-B/16 (open_clip ViT-B-16-quickgelu, openai):
# both CLIP towers, for the robust fine-tuning recipes (docs/robust_finetune.md).
# Variables only: a recipe config wires them into its model
# and hooks. The weights are open_clip's files (configs/clip/zeroshot-metafile.yml).
# OpenAI's towers were trained with QuickGELU; erf GELU would shift their embeddings.
clip_image_tower = dict(arch='b', patch_size=16, act_cfg=dict(type='QuickGELU'))
clip_text_tower = dict(type='CLIPTextTransformer', arch='b', out_channels=512,
                       act_cfg=dict(type='QuickGELU'))
# Head geometry: the image tower's width and the joint embedding size.
clip_head_widths = dict(in_channels=768, out_channels=512)
clip_num_layers = 12
clip_weights = [
    'https://huggingface.co/timm/vit_base_patch16_clip_224.openai/resolve/main/'
    'open_clip_model.safetensors',
    'https://huggingface.co/timm/vit_base_patch16_clip_224.openai/resolve/main/'
    'open_clip_pytorch_model.bin',
]
