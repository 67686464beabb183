from .accuracy import Accuracy
from .dump_predictions import OUT_FORMATS, DumpPredictions, check_out_file, is_predictions_file

__all__ = ['Accuracy', 'DumpPredictions', 'OUT_FORMATS', 'check_out_file',
           'is_predictions_file']
