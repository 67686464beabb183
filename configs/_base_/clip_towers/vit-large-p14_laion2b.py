# open_clip ViT-L-14, laion2b_s32b_b82k:
# both CLIP towers, for the robust fine-tuning recipes (docs/robust_finetune.md).
# Variables only: a recipe config wires them into its model
# and hooks. The weights are open_clip's files (configs/clip/zeroshot-metafile.yml).
clip_image_tower = dict(arch='l', patch_size=14, act_cfg=dict(type='GELU'))
clip_text_tower = dict(type='CLIPTextTransformer', arch='l', out_channels=768,
                       act_cfg=dict(type='GELU'))
# Head geometry: the image tower's width and the joint embedding size.
clip_head_widths = dict(in_channels=1024, out_channels=768)
clip_num_layers = 24
clip_weights = [
    'https://huggingface.co/laion/CLIP-ViT-L-14-laion2B-s32B-b82K/resolve/main/'
    'open_clip_model.safetensors',
    'https://huggingface.co/laion/CLIP-ViT-L-14-laion2B-s32B-b82K/resolve/main/'
    'open_clip_pytorch_model.bin',
]
# These weights were trained with mean = std = 0.5 (open_clip: INCEPTION_MEAN / STD).
clip_normalisation = dict(mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5])
