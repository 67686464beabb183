"""Output paths of the tools, checked before any work is done: a run that would refuse
its output at the end (or destroy a file it did not write) stops at once instead.

Every tool treats a missing parent folder the same way: it is created, and the console
says so.
"""
import os
import os.path as osp
from typing import Callable, Optional


def _say(message: str) -> None:
    if os.environ.get('RANK', '0') == '0':  # once under torchrun
        print(message, flush=True)


def _make_folder(folder: str, option: str, not_a_folder: str) -> None:
    """Create ``folder`` if it is missing, and say so; ``not_a_folder`` is the error when
    something else is there."""
    if osp.isdir(folder):
        return
    if osp.lexists(folder):
        raise NotADirectoryError(not_a_folder)
    os.makedirs(folder, exist_ok=True)
    _say(f'Created the folder {folder} for {option}')


def make_parent_folder(path: str, option: str) -> None:
    """Create the missing folder that ``path`` (the value of ``option``) goes into."""
    parent = osp.dirname(osp.abspath(path))
    _make_folder(parent, option, f'{option} {path}: {parent} is not a folder.')


def check_output_file(path: str, option: str, tool: str,
                      is_ours: Optional[Callable[[str], bool]] = None) -> None:
    """Before the work: ``path`` must be free, or a file ``is_ours`` recognises as one
    ``tool`` wrote (the tool then replaces or extends it); its missing folder is created.

    Raises:
        ValueError: a symbolic link, a folder, or another existing file: left as it is.
    """
    if osp.islink(path):
        raise ValueError(f'{option} {path} is a symbolic link; {tool} writes only a regular '
                         f'file it created.')
    if osp.isdir(path):
        raise ValueError(f'{option} {path} is a folder; expected a file name.')
    if osp.exists(path) and not (is_ours is not None and is_ours(path)):
        raise ValueError(f'{option} {path} exists and was not written by {tool}; it is left '
                         f'as it is: choose another {option}.')
    make_parent_folder(path, option)


def check_work_dir(path: Optional[str], option: str = '--work-dir') -> None:
    """A work dir that exists must be a folder; a missing one is created, and said."""
    if path:
        _make_folder(path, option, f'{option} {path} is a file; expected a folder.')
