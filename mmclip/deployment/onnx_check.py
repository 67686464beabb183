"""Checks on an ``.onnx`` file before a runtime (ONNX Runtime, OpenVINO) opens it.

An ``.onnx`` is a file from someone else: data, not code. Its tensors may keep their bytes
in other files (``external_data``: location, offset, length), and a runtime reads whatever
those name. So the model is first read without its external data and every such reference
must name an existing regular file inside the model's folder (symlinks resolved) that holds
the bytes it claims; its ``mmclip.*`` metadata (class names, image size) must be what the
exporter writes. Any other file gets one line naming the file and the tensor or key.
"""
import json
import os
from pathlib import Path
from typing import Iterator, Mapping, NamedTuple, Optional, Tuple, Union

from mmclip.models.heads.vision_transformer_head import SCORE_FUNCTIONS

# Protobuf cannot hold more than 2 GiB; a bigger .onnx is not a model, and parsing it would
# cost its size in memory.
MAX_ONNX_BYTES = 2**31
# Bits per element of the tensor types whose size numpy cannot tell (packed sub-byte types).
_PACKED_BITS = {'INT4': 4, 'UINT4': 4, 'FLOAT4E2M1': 4, 'INT2': 2, 'UINT2': 2}


class UnsafeOnnxError(ValueError):
    """An ``.onnx`` file that would make a runtime read outside its folder or past a file."""


class OnnxMetadataError(ValueError):
    """An ``.onnx`` file whose ``mmclip.*`` metadata is not what the exporter writes."""


class OnnxFileInfo(NamedTuple):
    """What the exporter stored: class names (or None), the input image size (or None)
    and how the logits are scored ('softmax', also for files from before it was stored,
    or 'sigmoid': SigLIP's zero-shot heads)."""
    classes: Optional[Tuple[str, ...]]
    image_size: Optional[int]
    scores: str = 'softmax'


def _graph_tensors(graph, where: str) -> Iterator[Tuple[str, object]]:
    """(name, TensorProto) of every tensor in ``graph`` and its subgraphs: initializers,
    sparse initializers' values and indices, and node attributes (a runtime reads all)."""
    for tensor in graph.initializer:
        yield f'{where}{tensor.name}', tensor
    for sparse in graph.sparse_initializer:
        yield from _sparse_tensors(sparse, f'{where}{sparse.values.name}')
    for node in graph.node:
        yield from _node_tensors(node, f'{where}{node.name or node.op_type}.')


def _sparse_tensors(sparse, name: str) -> Iterator[Tuple[str, object]]:
    yield f'{name} (values)', sparse.values
    yield f'{name} (indices)', sparse.indices


def _node_tensors(node, where: str) -> Iterator[Tuple[str, object]]:
    for attr in node.attribute:
        name = f'{where}{attr.name}'
        if attr.HasField('t'):
            yield name, attr.t
        for i, tensor in enumerate(attr.tensors):
            yield f'{name}[{i}]', tensor
        if attr.HasField('sparse_tensor'):
            yield from _sparse_tensors(attr.sparse_tensor, name)
        for i, sparse in enumerate(attr.sparse_tensors):
            yield from _sparse_tensors(sparse, f'{name}[{i}]')
        if attr.HasField('g'):
            yield from _graph_tensors(attr.g, f'{name}/')
        for i, graph in enumerate(attr.graphs):
            yield from _graph_tensors(graph, f'{name}[{i}]/')


def _model_tensors(model) -> Iterator[Tuple[str, object]]:
    yield from _graph_tensors(model.graph, '')
    for function in model.functions:
        for node in function.node:
            yield from _node_tensors(node, f'{function.name}.{node.name or node.op_type}.')


def _tensor_bytes(tensor) -> int:
    """The bytes ``tensor``'s shape and type need (what a runtime reads without ``length``)."""
    import numpy as np
    from onnx import TensorProto, helper
    if any(d < 0 for d in tensor.dims):
        raise ValueError('negative dimension')
    count = int(np.prod(tensor.dims, dtype=np.int64)) if tensor.dims else 1
    type_name = TensorProto.DataType.Name(tensor.data_type)
    if type_name in _PACKED_BITS:
        return (count * _PACKED_BITS[type_name] + 7) // 8
    return count * helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize


def _external_fields(tensor, describe: str) -> dict:
    fields = {}
    for entry in tensor.external_data:
        if entry.key in fields:
            raise UnsafeOnnxError(f'{describe}: external_data names {entry.key!r} twice.')
        fields[entry.key] = entry.value
    return fields


def _byte_count(fields: dict, key: str, describe: str) -> int:
    value = fields.get(key, '0')
    if not (value.isascii() and value.isdigit()):
        raise UnsafeOnnxError(f'{describe}: external_data {key} must be a non-negative '
                              f'integer; got {value!r}.')
    return int(value)


def _check_external_tensor(tensor, model_dir: str, describe: str) -> None:
    """Refuse a reference a runtime must not follow: no location, an absolute one, one that
    leaves ``model_dir`` (after symlinks), a missing or non-regular file, or more bytes than
    the file holds."""
    fields = _external_fields(tensor, describe)
    location = fields.get('location', '')
    if not location or '\0' in location:
        raise UnsafeOnnxError(f'{describe}: external_data has no location (or a NUL in it).')
    if os.path.isabs(location) or Path(location).drive:
        raise UnsafeOnnxError(f'{describe}: external data location {location!r} is an '
                              f'absolute path; it must be relative to the model\'s folder.')
    data_file = os.path.realpath(os.path.join(model_dir, location))
    if os.path.commonpath([data_file, model_dir]) != model_dir:
        raise UnsafeOnnxError(f'{describe}: external data location {location!r} leads '
                              f'outside the model\'s folder {model_dir} (to {data_file}).')
    if not os.path.isfile(data_file):
        raise UnsafeOnnxError(f'{describe}: external data file {location!r} does not exist '
                              f'in {model_dir} (or is not a regular file).')
    offset = _byte_count(fields, 'offset', describe)
    if 'length' in fields:
        length = _byte_count(fields, 'length', describe)
    else:
        try:
            length = _tensor_bytes(tensor)
        except (KeyError, ValueError, TypeError):  # STRING, UNDEFINED, negative dims
            raise UnsafeOnnxError(f'{describe}: external data without a length, for a '
                                  f'tensor whose size its type and shape do not give.') from None
    size = os.path.getsize(data_file)
    if offset + length > size:
        raise UnsafeOnnxError(f'{describe}: external data claims bytes {offset}..'
                              f'{offset + length} of {location!r}, which holds {size} bytes.')


def _class_count(model) -> Optional[int]:
    """The fixed last dimension of the first output (logits [B, K]), if any."""
    dims = model.graph.output[0].type.tensor_type.shape.dim if model.graph.output else []
    return dims[-1].dim_value if dims and dims[-1].HasField('dim_value') else None


def parse_metadata(props: Mapping[str, str], num_classes: Union[int, str, None],
                   source: str) -> OnnxFileInfo:
    """The exporter's ``mmclip.classes`` (a JSON list of ``num_classes`` strings) and
    ``mmclip.image_size`` (a positive integer) from ``props``; ``source`` names the file
    in the error."""
    classes = props.get('mmclip.classes')
    if classes is not None:
        try:
            classes = json.loads(classes)
        except ValueError:
            raise OnnxMetadataError(f"{source}: metadata 'mmclip.classes' is not JSON; "
                                    f'expected a list of class names.') from None
        if not (isinstance(classes, list) and all(isinstance(c, str) for c in classes)):
            raise OnnxMetadataError(f"{source}: metadata 'mmclip.classes' must be a list of "
                                    f'class-name strings; got {type(classes).__name__}.')
        if not isinstance(num_classes, int):
            raise OnnxMetadataError(f"{source}: metadata 'mmclip.classes' names "
                                    f'{len(classes)} classes but the model\'s output has no '
                                    f'fixed class count ({num_classes!r}).')
        if len(classes) != num_classes:
            raise OnnxMetadataError(f"{source}: metadata 'mmclip.classes' names "
                                    f'{len(classes)} classes but the model outputs '
                                    f'{num_classes} scores per image.')
        classes = tuple(classes)
    size = props.get('mmclip.image_size')
    if size is not None:
        if not (size.isascii() and size.isdigit() and 0 < int(size) <= 65536):
            raise OnnxMetadataError(f"{source}: metadata 'mmclip.image_size' must be a "
                                    f'positive integer; got {size[:40]!r}.')
        size = int(size)
    scores = props.get('mmclip.scores', 'softmax')
    if scores not in SCORE_FUNCTIONS:
        raise OnnxMetadataError(f"{source}: metadata 'mmclip.scores' must be one of "
                                f'{SCORE_FUNCTIONS}; got {scores[:40]!r}.')
    return OnnxFileInfo(classes, size, scores)


def check_onnx_file(onnx_file: Union[str, os.PathLike]) -> OnnxFileInfo:
    """Check ``onnx_file`` as described in the module docstring, before any runtime reads
    it; return its validated metadata. Raises ``UnsafeOnnxError`` / ``OnnxMetadataError``
    (``ValueError``s: the tools print them as one line) or ``FileNotFoundError``."""
    import onnx
    path = os.fspath(onnx_file)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'ONNX model {path} does not exist.')
    size = os.path.getsize(path)
    if size > MAX_ONNX_BYTES:
        raise UnsafeOnnxError(f'{path}: {size} bytes, more than an .onnx can hold '
                              f'({MAX_ONNX_BYTES}); weights that big belong in external data.')
    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as err:  # protobuf's DecodeError and friends: not an ONNX model
        raise UnsafeOnnxError(f'{path}: not an ONNX model ({type(err).__name__}).') from None
    model_dir = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    for name, tensor in _model_tensors(model):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            _check_external_tensor(tensor, model_dir, f'{path}: tensor {name!r}')
    props = {p.key: p.value for p in model.metadata_props}
    return parse_metadata(props, _class_count(model), path)
