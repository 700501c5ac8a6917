"""A Caffe deploy net as a torch.nn.Module, built layer by layer with Caffe's semantics.

`CaffeNet(net_param)` follows the TEST-phase layers of a NetParameter in order; each layer
becomes a submodule (`tools.porting.layers`) named after the Caffe layer ('.' becomes '_'), so the
state_dict reads `conv1_1.weight`, `conv1_1.bias`, ... Parameters keep Caffe's blob shapes and
order (`CaffeNet.caffe_blobs()` maps them back), so weights move between the two without
reshaping.
"""

import torch
from caffe.proto import caffe_pb2
from torch import nn

from tools.porting.layers import LAYER_BUILDERS, UnsupportedLayerError, unsupported

__all__ = ['CaffeNet', 'UnsupportedLayerError', 'active_layers', 'module_key']


def _meets_rule(rule, phase):
    """Caffe's Net::StateMeetsRule for the default TEST state (level 0, no stages)."""
    if rule.HasField('phase') and rule.phase != phase:
        return False
    if rule.HasField('min_level') and 0 < rule.min_level:
        return False
    if rule.HasField('max_level') and 0 > rule.max_level:
        return False
    return not len(rule.stage)


def active_layers(net_param, phase=caffe_pb2.TEST):
    """The layers Caffe instantiates for `phase` (Net::FilterNet), V1 `layers` refused."""
    if len(net_param.layers):
        raise UnsupportedLayerError("legacy V1 'layers' net: upgrade it with Caffe's upgrade_net_proto_text")
    kept = []
    for layer in net_param.layer:
        if len(layer.include):
            if any(_meets_rule(rule, phase) for rule in layer.include):
                kept.append(layer)
        elif not any(_meets_rule(rule, phase) for rule in layer.exclude):
            kept.append(layer)
    return kept


def _net_level_inputs(net_param):
    """Inputs declared with the old net-level `input` + `input_shape`/`input_dim` fields."""
    names = list(net_param.input)
    if len(net_param.input_shape):
        shapes = [tuple(s.dim) for s in net_param.input_shape]
    else:
        dims = list(net_param.input_dim)
        shapes = [tuple(dims[4 * i : 4 * i + 4]) for i in range(len(names))]
    if len(shapes) != len(names):
        raise UnsupportedLayerError(f'{len(names)} net inputs but {len(shapes)} input shapes')
    return list(zip(names, shapes))


def module_key(layer_name):
    """Submodule (and state_dict prefix) name for a Caffe layer: '.' is not allowed there."""
    return layer_name.replace('.', '_')


class CaffeNet(nn.Module):
    """A Caffe deploy net in torch. forward(*inputs) -> {output blob name: tensor}.

    Inputs are given positionally in `input_names` order; outputs are the blobs no layer
    consumes (Caffe's net.outputs, sorted by name), plus any blob named in `blobs`.
    """

    def __init__(self, net_param):
        super().__init__()
        self.name = net_param.name
        inputs = _net_level_inputs(net_param)
        layers = active_layers(net_param)
        inputs += [
            (top, tuple(shape.dim))
            for layer in layers
            if layer.type == 'Input'
            for top, shape in zip(layer.top, layer.input_param.shape)
        ]
        self.input_names = [name for name, _ in inputs]
        self.input_shapes = {name: shape for name, shape in inputs}
        self.graph = []  # (module key, caffe layer name, type, bottoms, tops)
        with torch.device('meta'):
            self._build([layer for layer in layers if layer.type != 'Input'])
        self.to_empty(device='cpu')
        for param in self.parameters():
            nn.init.zeros_(param)

    def _build(self, layers):
        blobs = {name: torch.empty(shape) for name, shape in self.input_shapes.items()}
        available = set(blobs)  # Caffe's net outputs: blobs no later layer consumes
        for layer in layers:
            build = LAYER_BUILDERS.get(layer.type)
            if build is None:
                raise unsupported(layer, f'type not supported (supported: Input, {", ".join(LAYER_BUILDERS)})')
            missing = [b for b in layer.bottom if b not in blobs]
            if missing:
                raise unsupported(layer, f'bottom blob(s) {missing} not produced by any earlier layer')
            key = module_key(layer.name)
            if key in self._modules or hasattr(self, key):
                raise unsupported(layer, f"name clashes with another layer or a module attribute ('{key}')")
            module = build(layer, [tuple(blobs[b].shape) for b in layer.bottom])
            self.add_module(key, module)
            tops = module(*[blobs[b] for b in layer.bottom])
            tops = tops if isinstance(tops, tuple) else (tops,)
            if len(tops) != len(layer.top):
                raise unsupported(layer, f'{len(layer.top)} tops given, the layer makes {len(tops)}')
            available.difference_update(layer.bottom)
            available.update(layer.top)
            blobs.update(zip(layer.top, tops))
            self.graph.append((key, layer.name, layer.type, tuple(layer.bottom), tuple(layer.top)))
        self.output_names = sorted(available)
        self.blob_shapes = {name: tuple(t.shape) for name, t in blobs.items()}

    def forward(self, *inputs, blobs=()):
        if len(inputs) != len(self.input_names):
            raise ValueError(f'{len(inputs)} inputs given, the net takes {self.input_names}')
        values = dict(zip(self.input_names, inputs))
        for key, _, _, bottoms, tops in self.graph:
            out = getattr(self, key)(*[values[b] for b in bottoms])
            values.update(zip(tops, out if isinstance(out, tuple) else (out,)))
        unknown = [b for b in blobs if b not in values]
        if unknown:
            raise KeyError(f'no blob(s) {unknown} in this net')
        return {name: values[name] for name in list(self.output_names) + list(blobs)}

    def caffe_blobs(self):
        """[(caffe layer name, [parameter names in Caffe's blob order])] for layers with blobs."""
        return [
            (name, list(getattr(self, key).caffe_blobs))
            for key, name, *_ in self.graph
            if getattr(getattr(self, key), 'caffe_blobs', ())
        ]

    def load_caffe_blobs(self, blobs):
        """Copy {layer name: [arrays]} (Caffe blob order; legacy shapes allowed) into the parameters."""
        missing = [name for name, _ in self.caffe_blobs() if name not in blobs]
        if missing:
            raise KeyError(f'no weights for layer(s): {", ".join(missing)}')
        with torch.no_grad():
            for name, param_names in self.caffe_blobs():
                arrays = blobs[name]
                if len(arrays) != len(param_names):
                    raise ValueError(
                        f'layer {name}: {len(arrays)} blobs in the weights, '
                        f'the net expects {len(param_names)} ({", ".join(param_names)})'
                    )
                module = getattr(self, module_key(name))
                for param_name, array in zip(param_names, arrays):
                    param = getattr(module, param_name)
                    if array.size != param.numel():
                        raise ValueError(
                            f'layer {name}: blob {param_name} has shape {array.shape}, '
                            f'the net expects {tuple(param.shape)}'
                        )
                    param.copy_(torch.from_numpy(array.reshape(param.shape)))
        return self

    def state_dict_to_caffe_blobs(self, state_dict):
        """{layer name: [float32 arrays]} from a state_dict of this net, Caffe's blob order."""
        blobs = {}
        for name, param_names in self.caffe_blobs():
            key = module_key(name)
            arrays = []
            for param_name in param_names:
                entry = f'{key}.{param_name}'
                if entry not in state_dict:
                    raise KeyError(f"state_dict has no '{entry}' (Caffe layer {name})")
                value = state_dict[entry]
                value = value.detach().cpu().numpy() if torch.is_tensor(value) else value
                expected = tuple(getattr(getattr(self, key), param_name).shape)
                if tuple(value.shape) != expected:
                    raise ValueError(f"state_dict '{entry}' has shape {tuple(value.shape)}, expected {expected}")
                arrays.append(value.astype('float32'))
            blobs[name] = arrays
        return blobs
