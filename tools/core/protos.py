"""Caffe's proto files read and written with protobuf alone (no pycaffe net needed), and
weights copied into a live net by layer name with one shape rule.

- text protos: `read_net`, `read_solver` (`read_proto` for any message), `write_proto`;
- binary protos: `read_binary`; caffemodels: `read_caffemodel`, `layer_blobs` ({layer: [arrays]}), `replace_blobs`;
- `fit_arrays` (Caffe's shape rule) and `copy_blobs` (into `net.params`, all or nothing).
Every reader raises `ToolError` naming the file and the fault. No size limit: Caffe's own
512 MB reader limit is lifted by the build (third_party/caffe/patches/05), and these readers
never had one (A2's caffemodel is 551 MB).

Blob data goes through its packed wire bytes: a protobuf repeated float field is read or
filled element by element in Python otherwise, minutes for DepthNet's 94M-weight fc.
"""

import numpy as np
from caffe.proto import caffe_pb2
from google.protobuf import message as protobuf_message
from google.protobuf import text_format

from tools.core import ToolError

_DATA_FIELD = caffe_pb2.BlobProto.DESCRIPTOR.fields_by_name['data'].number
_DOUBLE_DATA_FIELD = caffe_pb2.BlobProto.DESCRIPTOR.fields_by_name['double_data'].number
_LENGTH_DELIMITED = 2


def read_proto(path, message):
    """Parse text-format `path` into `message` (a fresh protobuf message) and return it."""
    try:
        with open(path) as f:
            text_format.Merge(f.read(), message)
    except OSError as err:
        raise ToolError(f'{path}: cannot read: {err.strerror}') from None
    except (text_format.ParseError, UnicodeDecodeError) as err:
        raise ToolError(f'{path}: not a valid {message.DESCRIPTOR.name}: {err}') from None
    return message


def read_net(path):
    """A text-format NetParameter (a train, test or deploy net)."""
    return read_proto(path, caffe_pb2.NetParameter())


def read_solver(path):
    """A text-format SolverParameter."""
    return read_proto(path, caffe_pb2.SolverParameter())


def write_proto(path, message):
    """Text-format `message` to `path`."""
    with open(path, 'w') as f:
        f.write(text_format.MessageToString(message))


def read_binary(path, message, what):
    """Parse binary `path` into `message` (a fresh protobuf message) and return it; ToolError
    `<path>: cannot read: ...` or `<path>: not a <what> (truncated or damaged: ...)`."""
    try:
        with open(path, 'rb') as f:
            message.ParseFromString(f.read())
    except OSError as err:
        raise ToolError(f'{path}: cannot read: {err.strerror}') from None
    except (protobuf_message.DecodeError, ValueError) as err:
        raise ToolError(f'{path}: not a {what} (truncated or damaged: {err})') from None
    return message


def read_caffemodel(path):
    """A binary NetParameter (weights as Caffe's Net::ToProto writes them)."""
    return read_binary(path, caffe_pb2.NetParameter(), 'caffemodel')


def all_layers(net):
    """Layers of both formats: `layer` (current) and the legacy V1 `layers` field."""
    return list(net.layer) + list(net.layers)


def blob_shape(blob):
    """The blob's shape: `shape.dim`, or the legacy num/channels/height/width."""
    if blob.HasField('shape'):
        return tuple(blob.shape.dim)
    return (blob.num, blob.channels, blob.height, blob.width)


def _varint(raw, pos):
    value, shift = 0, 0
    while True:
        byte = raw[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _varint_bytes(value):
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _skip(raw, pos, wire_type):
    if wire_type == 0:
        return _varint(raw, pos)[1]
    if wire_type == 1:
        return pos + 8
    if wire_type == 5:
        return pos + 4
    if wire_type == _LENGTH_DELIMITED:
        length, pos = _varint(raw, pos)
        return pos + length
    raise ValueError(f'unexpected protobuf wire type {wire_type}')


def _packed_values(raw, field_number, dtype):
    """Values of a packed repeated numeric field, read straight from the message bytes."""
    chunks, pos = [], 0
    while pos < len(raw):
        key, pos = _varint(raw, pos)
        field, wire_type = key >> 3, key & 7
        if field == field_number and wire_type == _LENGTH_DELIMITED:
            length, pos = _varint(raw, pos)
            chunks.append(np.frombuffer(raw, dtype=dtype, count=length // np.dtype(dtype).itemsize, offset=pos))
            pos += length
        else:
            pos = _skip(raw, pos, wire_type)
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype)


def blob_array(blob):
    """The blob's values as float32, in its own shape (legacy 4-D shapes kept as they are)."""
    field, values, dtype = _DATA_FIELD, blob.data, '<f4'
    if len(blob.double_data) and not len(blob.data):
        field, values, dtype = _DOUBLE_DATA_FIELD, blob.double_data, '<f8'
    flat = _packed_values(blob.SerializeToString(), field, dtype)
    if flat.size != len(values):  # unpacked encoding (old writers): the slow, general path
        flat = np.array(values, dtype=dtype)
    return flat.astype(np.float32).reshape(blob_shape(blob))


def set_blob_data(blob, array):
    """Replace the blob's values (float32), keeping its shape fields as they are."""
    flat = np.ascontiguousarray(array, dtype='<f4').ravel()
    count = int(np.prod(blob_shape(blob)))
    if flat.size != count:
        raise ValueError(f'{flat.size} values for a blob of shape {blob_shape(blob)} ({count})')
    blob.ClearField('data')
    blob.ClearField('double_data')
    if flat.size:
        payload = flat.tobytes()
        key = _varint_bytes(_DATA_FIELD << 3 | _LENGTH_DELIMITED)
        blob.MergeFromString(key + _varint_bytes(len(payload)) + payload)


def layer_blobs(net):
    """{layer name: [float32 arrays in Caffe's blob order]} for every layer holding blobs."""
    return {layer.name: [blob_array(b) for b in layer.blobs] for layer in all_layers(net) if len(layer.blobs)}


def replace_blobs(net, blobs):
    """Write `blobs` ({layer: [arrays]}) into the matching layers of `net` (a NetParameter), in place."""
    by_name = {layer.name: layer for layer in all_layers(net)}
    missing = sorted(set(blobs) - set(by_name))
    if missing:
        raise KeyError(f'layers not in the template caffemodel: {", ".join(missing)}')
    for name, arrays in blobs.items():
        layer = by_name[name]
        if len(layer.blobs) != len(arrays):
            raise ValueError(f'layer {name}: {len(arrays)} blobs given, the template has {len(layer.blobs)}')
        for blob, array in zip(layer.blobs, arrays):
            if np.size(array) != int(np.prod(blob_shape(blob))):
                raise ValueError(
                    f"layer {name}: blob of shape {np.shape(array)} does not fit the template's {blob_shape(blob)}"
                )
            set_blob_data(blob, array)
    return net


def _shapes(shapes):
    return ', '.join('x'.join(map(str, s)) for s in shapes)


def shape_fits(saved, wanted):
    """Caffe's rule: equal shapes, or a legacy 4-D shape that is `wanted` padded with leading 1s
    (V1 caffemodels)."""
    saved, wanted = tuple(saved), tuple(wanted)
    return saved == wanted or (len(saved) == 4 and len(wanted) < 4 and saved == (1,) * (4 - len(wanted)) + wanted)


def fit_arrays(arrays, shapes):
    """(`arrays` reshaped to `shapes`, None) when every array fits its net blob's shape
    (`shape_fits`), else (None, why not)."""
    file_shapes = [np.shape(a) for a in arrays]
    if len(arrays) != len(shapes):
        return None, f'{len(arrays)} blobs in the file, {len(shapes)} in the net'
    out = []
    for array, shape in zip(arrays, shapes):
        if not shape_fits(np.shape(array), shape):
            return None, f'shapes {_shapes(file_shapes)} in the file, {_shapes(shapes)} in the net'
        out.append(np.reshape(array, shape))
    return out, None


def copy_blobs(net, blobs, source):
    """Copy `blobs` ({net layer: [arrays]}) into `net.params` by layer name, all or nothing.

    Every layer must exist in the net and fit `fit_arrays`' rule; `source` (the file the
    arrays came from) names the fault. Returns the copied layer names."""
    fitted, faults = [], []
    for name, arrays in blobs.items():
        if name not in net.params:
            faults.append(f'the net has no layer {name}')
            continue
        out, why = fit_arrays(arrays, [b.data.shape for b in net.params[name]])
        if out is None:
            faults.append(f'{name}: {why}')
        fitted.append((name, out))
    if faults:
        raise ToolError(f'{source} does not fit the net: {"; ".join(faults)}')
    for name, arrays in fitted:
        for blob, array in zip(net.params[name], arrays):
            blob.data[...] = array
    return [name for name, _ in fitted]
