# open_clip ViT-B-16, laion2b_s34b_b88k:
# both CLIP towers, for the robust fine-tuning recipes (docs/robust_finetune.md).
# Variables only: a recipe config wires them into its model
# and hooks. The weights are open_clip's files (configs/clip/zeroshot-metafile.yml).
clip_image_tower = dict(arch='b', patch_size=16, act_cfg=dict(type='GELU'))
clip_text_tower = dict(type='CLIPTextTransformer', arch='b', out_channels=512,
                       act_cfg=dict(type='GELU'))
# Head geometry: the image tower's width and the joint embedding size.
clip_head_widths = dict(in_channels=768, out_channels=512)
clip_num_layers = 12
clip_weights = [
    'https://huggingface.co/laion/CLIP-ViT-B-16-laion2B-s34B-b88K/resolve/main/'
    'open_clip_model.safetensors',
    'https://huggingface.co/laion/CLIP-ViT-B-16-laion2B-s34B-b88K/resolve/main/'
    'open_clip_pytorch_model.bin',
]
