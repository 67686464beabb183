from .convert import TIMM_TO_MMCLIP, convert_timm_state_dict, is_timm_state_dict, rename_key

__all__ = ['TIMM_TO_MMCLIP', 'convert_timm_state_dict', 'is_timm_state_dict', 'rename_key']
