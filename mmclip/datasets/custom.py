"""Single-label image folders: class subfolders, or an annotation file of ``path label``."""
import logging
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple, Union

from mmengine.dataset import BaseDataset
from mmengine.logging import print_log

from mmclip.registry import DATASETS


class DatasetLayoutError(ValueError):
    """The files under ``data_root`` do not form a layout the dataset reads; the message
    names the file, line or folder and the layout that was expected."""


IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif', '.tiff', '.webp')


def _is_image(name: str, extensions: Sequence[str]) -> bool:
    return name.lower().endswith(tuple(extensions))


def read_class_names(classes: Union[str, Sequence[str]]) -> Tuple[str, ...]:
    """Class names from a sequence, or from a text file with one name per line."""
    if isinstance(classes, str):
        with open(classes, encoding='utf-8') as f:
            return tuple(line.strip() for line in f if line.strip())
    return tuple(classes)


@DATASETS.register_module()
class CustomDataset(BaseDataset):
    """Images with one class label each, for users' own data.

    Two layouts under ``data_root/data_prefix``:

    * class subfolders ``<class name>/<image>``: labels follow the sorted folder names,
      or the order of ``classes`` when given (which must name exactly those folders);
    * ``ann_file`` (relative to ``data_root``): one ``<image path> <label>`` per line,
      image paths relative to ``data_root/data_prefix``; labels must lie in
      ``[0, len(classes))`` when ``classes`` are known.

    Every image an annotation file names is checked to exist, so a wrong path fails at
    start-up, naming the line, not hours into a run.

    Config keys:
        data_root: dataset root folder.
        data_prefix: image folder relative to ``data_root`` (a str).
        ann_file: annotation file relative to ``data_root``; '' for class subfolders.
        classes: class names, or a text file with one per line; stored as
            ``metainfo['classes']``.
        extensions: image file endings considered in class subfolders.
        pipeline / test_mode / lazy_init / indices: as mmengine's ``BaseDataset``.

    Each item before the pipeline: ``dict(img_path=str, gt_label=int, sample_idx=int)``.
    """

    def __init__(self,
                 data_root: str = '',
                 data_prefix: str = '',
                 ann_file: str = '',
                 classes: Optional[Union[str, Sequence[str]]] = None,
                 extensions: Sequence[str] = IMG_EXTENSIONS,
                 metainfo: Optional[dict] = None,
                 **kwargs) -> None:
        if not isinstance(data_prefix, str):
            raise ValueError(f'data_prefix must be a folder name (str); got {data_prefix!r}.')
        metainfo = dict(metainfo or {})
        if classes is not None:
            metainfo['classes'] = read_class_names(classes)
        self.extensions = tuple(e.lower() for e in extensions)
        super().__init__(ann_file=ann_file, metainfo=metainfo, data_root=data_root,
                         data_prefix=dict(img_path=data_prefix), **kwargs)

    @property
    def img_prefix(self) -> str:
        return self.data_prefix['img_path']

    @property
    def CLASSES(self) -> Optional[Tuple[str, ...]]:  # noqa: N802 (OpenMMLab name)
        return self._metainfo.get('classes')

    def expected_layouts(self, ann_file: str = 'an annotation file (ann_file)') -> str:
        """The two layouts this dataset reads, spelled out for error messages."""
        return ('Expected one of two layouts:\n'
                f'  {self.img_prefix}/<class name>/<image>  (one subfolder per class), or\n'
                f'  {ann_file} with one "<image path relative to {self.img_prefix}> <label>" '
                'per line. See docs/evaluation.md.')

    def load_data_list(self) -> List[dict]:
        if self.data_root and not osp.isdir(self.data_root):
            raise DatasetLayoutError(f"data_root '{self.data_root}' does not exist. "
                                     + self.expected_layouts())
        if self.ann_file:
            samples = self._samples_from_ann_file()
        else:
            samples = self._samples_from_subfolders()
        return [dict(img_path=path, gt_label=label) for path, label in samples]

    def _samples_from_ann_file(self) -> List[Tuple[str, int]]:
        if not osp.isfile(self.ann_file):
            raise DatasetLayoutError(f"Annotation file '{self.ann_file}' does not exist. "
                                     + self.expected_layouts())
        with open(self.ann_file, encoding='utf-8') as f:
            entries = [self._parse_line(line, lineno)
                       for lineno, line in enumerate(f, 1) if line.strip()]
        self._check_labels(entries)
        self._check_files_exist(entries)
        return [(path, label) for _, path, label in entries]

    def _parse_line(self, line: str, lineno: int) -> Tuple[int, str, int]:
        """``(lineno, image path, label)`` of one annotation line."""
        # rsplit: image paths may contain spaces, the label never does.
        parts = line.strip().rsplit(maxsplit=1)
        if len(parts) != 2 or not parts[1].lstrip('-').isdigit():
            raise DatasetLayoutError(f"{self.ann_file}, line {lineno}: expected '<image "
                                     f"path> <integer label>'; got {line.strip()!r}.")
        return lineno, osp.join(self.img_prefix, parts[0]), int(parts[1])

    def _check_labels(self, entries: List[Tuple[int, str, int]]) -> None:
        num_classes = len(self.CLASSES) if self.CLASSES else None
        valid = f'[0, {num_classes - 1}]' if num_classes else 'non-negative'
        for lineno, _, label in entries:
            if label < 0 or (num_classes is not None and label >= num_classes):
                raise DatasetLayoutError(f'{self.ann_file}, line {lineno}: label {label} is '
                                         f'out of range; labels must be {valid}.')

    def _check_files_exist(self, entries: List[Tuple[int, str, int]]) -> None:
        # One listing per folder instead of one stat per image: 50k stats are slow
        # on network file systems.
        listings: Dict[str, set] = {}
        missing = []
        for lineno, path, _ in entries:
            folder = osp.dirname(path)
            if folder not in listings:
                listings[folder] = set(os.listdir(folder)) if osp.isdir(folder) else set()
            if osp.basename(path) not in listings[folder]:
                missing.append(f'  line {lineno}: {path}')
        if missing:
            raise DatasetLayoutError(
                f'{len(missing)} image(s) listed in {self.ann_file} do not exist (paths are '
                f"relative to '{self.img_prefix}'):\n" + '\n'.join(missing[:10]) +
                ('\n  ...' if len(missing) > 10 else ''))

    def _class_folders(self) -> List[str]:
        prefix = self.img_prefix
        if not osp.isdir(prefix):
            raise DatasetLayoutError(f"Image folder '{prefix}' does not exist. "
                                     + self.expected_layouts())
        folders = sorted(e.name for e in os.scandir(prefix) if e.is_dir())
        if not folders:
            num_images = sum(1 for e in os.scandir(prefix) if _is_image(e.name, self.extensions))
            raise DatasetLayoutError(
                f"'{prefix}' has {num_images} image(s) but no class subfolders, and no "
                'annotation file was given, so the images have no labels. '
                + self.expected_layouts())
        return folders

    def _folders_in_label_order(self, folders: List[str]) -> Sequence[str]:
        """The class subfolder of label i at index i: ``classes`` order, else sorted."""
        classes = self.CLASSES
        if classes is None:
            self._metainfo['classes'] = tuple(folders)
            return folders
        if set(classes) != set(folders):
            raise DatasetLayoutError(
                f"The class subfolders of '{self.img_prefix}' do not match `classes`: "
                f'missing folders {sorted(set(classes) - set(folders))[:10]}, unexpected '
                f'folders {sorted(set(folders) - set(classes))[:10]}.')
        return classes

    def _samples_from_subfolders(self) -> List[Tuple[str, int]]:
        folders = self._folders_in_label_order(self._class_folders())
        samples, skipped = [], 0
        for label, name in enumerate(folders):
            for root, _, files in sorted(os.walk(osp.join(self.img_prefix, name))):
                for file in sorted(files):
                    if _is_image(file, self.extensions):
                        samples.append((osp.join(root, file), label))
                    else:
                        skipped += 1
        if skipped:
            print_log(f"Ignored {skipped} file(s) in '{self.img_prefix}' whose names do not "
                      f'end with one of {self.extensions}.', logger='current',
                      level=logging.WARNING)
        self._check_no_empty_classes(folders, {label for _, label in samples})
        return samples

    def _check_no_empty_classes(self, folders: Sequence[str], seen: set) -> None:
        """No image at all ends the run here, naming the folders: later it would be
        numpy's 'need at least one array to concatenate'. Some empty classes only warn:
        the labels stay those of the folder order."""
        empty = [osp.join(self.img_prefix, name) for label, name in enumerate(folders)
                 if label not in seen]
        if not empty:
            return
        listed = ', '.join(f"'{folder}'" for folder in empty[:5]) + (
            f' and {len(empty) - 5} more' if len(empty) > 5 else '')
        if len(empty) == len(folders):
            raise DatasetLayoutError(
                f'The class folders of \'{self.img_prefix}\' hold no images ({listed}); '
                f'expected files ending with one of {self.extensions} in each.')
        print_log(f'{len(empty)} class folder(s) hold no images: {listed}; those classes '
                  'have no samples.', logger='current', level=logging.WARNING)
