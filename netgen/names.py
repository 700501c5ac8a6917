"""The one registry of net names: the nets, DepthNet's stages, the 'depthnet' alias.

DepthNet's three parts are trained one after another (paper L183-188), so the name users
type, 'depthnet', is an alias: for training it means its stages (`stages`), in training
order; for deployment it means the refine stage's deploy net (`deploy_spec_name`), whose
refining net gives the output (L267-268) and which holds the frozen global and gradient
nets: DepthNet's joint deploy net. Every other net is its own single stage.
"""

from . import config

#: The nets users name (docs/DESIGN.md, `--net`).
NETS = ('a1', 'a2', 'deeplab_aspp', 'depthnet')
#: Alias -> its training stages, in training order (paper L183-188).
STAGES = {'depthnet': ('depthnet_global', 'depthnet_gradient', 'depthnet_refine')}
#: Alias -> the stage whose deploy net is the alias's joint deploy net.
JOINT_DEPLOY = {'depthnet': 'depthnet_refine'}
#: Alias -> what its joint deploy net is (docs/nets/README.md).
JOINT_DOC = {'depthnet': 'DepthNet joint deploy net (the three stages)'}
#: Every name `paths`, `build` and the command line accept.
NAMES = NETS + tuple(s for net in NETS for s in STAGES.get(net, ()))
DATASETS = config.DATASETS


def stages(net):
    """Trainable nets behind `net`: an alias's stages, or (net,)."""
    return STAGES.get(net, (net,))


def expand(nets):
    """Trainable nets (DepthNet's stages instead of 'depthnet'), in order, no repeats."""
    out = []
    for n in nets:
        for m in stages(n):
            if m not in out:
                out.append(m)
    return out


#: Every trainable net (A1, A2, DeepLab-ASPP, DepthNet's stages), in order.
TRAINABLE = tuple(expand(NETS))


def deploy_spec_name(net):
    """The trainable net whose deploy net `net` deploys: 'depthnet' -> 'depthnet_refine';
    any other name -> itself."""
    return JOINT_DEPLOY.get(net, net)


def deploy_name(net):
    """Name the deploy net of trainable net `net` is filed under: the alias for the stage
    that holds a joint deploy net ('depthnet_refine' -> 'depthnet'); otherwise `net`."""
    for alias, stage in JOINT_DEPLOY.items():
        if stage == net:
            return alias
    return net


#: Names with a deploy net of their own, in `NAMES` order: every name but the stage whose
#: deploy net is its alias's joint deploy net.
DEPLOY_NETS = tuple(n for n in NAMES if deploy_name(n) == n)


def check_names(nets=(), datasets=()):
    """Raise ValueError naming the valid choices if any name is unknown."""
    bad = [n for n in nets if n not in NAMES]
    if bad:
        raise ValueError('unknown net %s; valid nets: %s' % (', '.join(map(repr, bad)), ', '.join(NAMES)))
    bad = [d for d in datasets if d not in DATASETS]
    if bad:
        raise ValueError('unknown dataset %s; valid datasets: %s' % (', '.join(map(repr, bad)), ', '.join(DATASETS)))
