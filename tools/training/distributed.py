"""Data-parallel training: one pycaffe solver per rank, gradients averaged by torch.distributed.

    torchrun --nproc_per_node=N -m tools.train --net a2 --dataset cityscapes [--gpu 0 | --cpu]

torchrun (or `python -m torch.distributed.run`, single or multi node) starts one process per rank
and sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; `setup` finds them and joins
the process group (gloo between CPU ranks, NCCL between GPU ranks, a rank's GPU = LOCAL_RANK).
Without them `setup` returns `SINGLE` and the driver runs exactly as one process.

What each rank does (docs/TRAINING.md, "Several GPUs or machines"):

- its own copy of the nets, whose `HybridData` layers serve the rank's slice of every global batch
  (param_str `rank`, `world`: N ranks at batch b read what one process reads at batch N x b);
- after backward, before Caffe applies the update (pycaffe's `solver.add_callback`,
  docs/REFERENCE.md), every learnable blob's diff is summed over the ranks and divided by N (on
  gloo the big ones in place, the small ones through one buffer: `GradientAverager`); every rank
  then applies the same update, so the weights stay identical (rank 0's weights are broadcast
  once after the nets are built, fresh or resumed);
- once per iteration the ranks agree on the stop flag (a MAX all-reduce of the signal number), so
  SIGINT/SIGTERM on any rank stops all of them after the same iteration, with rank 0's snapshot;
- rank 0 alone writes the run directory (log, snapshots, plots); the other ranks write their
  copies of the nets into a private temporary directory and restore rank 0's snapshots;
- a collective that fails (a rank died, or none answered within `collective_timeout` seconds)
  ends the rank at once with one line naming the cause, exit status 2 (no hang).
"""

import atexit
import dataclasses
import datetime
import faulthandler
import json
import math
import os
import shutil
import signal
import sys
import tempfile

import numpy as np
from tqdm import tqdm

from tools.core import ToolError

#: Environment torchrun sets for every rank.
ENVIRONMENT = ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT')
#: `--lr-scaling` choices: the factor on base_lr for N ranks (Goyal et al. 2017: linear).
LR_SCALING = {'none': lambda n: 1.0, 'linear': float, 'sqrt': math.sqrt}
#: Floats per all-reduce bucket (64 MB).
BUCKET = 16 * 2**20
#: On gloo, blobs of at least this many floats (4 MB) are all-reduced in place, the rest in one buffer.
DIRECT = 2**20
#: Exit status of a rank that lost its peers (docs/DESIGN.md: an expected fault).
EXIT_PEER = 2
DATA_LAYER_MODULE = 'data_prep.layers'


def launched_by_torchrun(environ=os.environ):
    return all(name in environ for name in ENVIRONMENT)


class Single:
    """The one-process world: every collective is a no-op."""

    rank, size, main, backend = 0, 1, True, None

    def device(self, gpu):
        return gpu

    def rng_seed(self, seed):
        return seed

    def base_lr(self, override, generated, rule):
        return override

    def shard_data(self, net_path):
        pass

    def join(self, stage_run):
        pass

    def stop_agreed(self, stop, iteration=None):
        return bool(stop)

    def from_main(self, function, *args):
        return function(*args)

    def agree(self, value):
        return value

    def barrier(self):
        pass

    def finish(self, clean):
        pass

    def private_dir(self, run_dir):
        return run_dir

    def rank_options(self, options):
        return options


SINGLE = Single()


def setup(gpu=None, timeout_s=600, environ=os.environ):
    """The world this process belongs to: `SINGLE` unless launched by torchrun, else a `World`
    with the process group joined (NCCL when `gpu` is given, else gloo)."""
    if not launched_by_torchrun(environ):
        return SINGLE
    import torch.distributed as dist  # noqa: PLC0415 (only a torchrun launch needs torch)

    local_rank = int(environ['LOCAL_RANK'])
    backend = 'gloo' if gpu is None else 'nccl'
    if backend == 'nccl':
        import torch  # noqa: PLC0415

        if not torch.cuda.is_available():
            raise ToolError('--gpu under torchrun needs torch with CUDA for NCCL (this torch has none); use --cpu')
        torch.cuda.set_device(local_rank)
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 PID` prints a rank's Python stacks (a hang)
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    return World(dist, dist.get_rank(), dist.get_world_size(), local_rank, backend)


class World(Single):
    """Rank `rank` of `size` processes in torch.distributed's default group."""

    def __init__(self, dist, rank, size, local_rank, backend):
        import torch  # noqa: PLC0415

        self.dist, self.torch = dist, torch
        self.rank, self.size, self.local_rank, self.backend = rank, size, local_rank, backend
        self.main = rank == 0
        self.log = None  # rank 0's TrainLog: a lost peer is logged there
        self.iteration = None
        self._guarded = False
        self._private = None

    def __repr__(self):
        return 'rank %d of %d (%s)' % (self.rank, self.size, self.backend)

    # --- what differs per rank ---

    def device(self, gpu):
        return None if gpu is None else self.local_rank

    def rng_seed(self, seed):
        """Caffe's seed of an iteration (dropout masks) on this rank: rank 0 draws the masks of
        a single process, the others masks of their own."""
        return (seed + 7919 * self.rank) % 2**31

    def base_lr(self, override, generated, rule):
        factor = LR_SCALING[rule](self.size)
        return override if factor == 1 else (override if override is not None else generated) * factor

    def shard_data(self, net_path):
        """Write `rank` and `world` into every HybridData layer of the net file `net_path`."""
        from tools.core.protos import read_net, write_proto  # noqa: PLC0415

        net = read_net(net_path)
        for layer in net.layer:
            if layer.type == 'Python' and layer.python_param.module == DATA_LAYER_MODULE:
                params = json.loads(layer.python_param.param_str)
                params.update(rank=self.rank, world=self.size)
                layer.python_param.param_str = json.dumps(params, sort_keys=True)
        write_proto(net_path, net)

    def rank_options(self, options):
        """The other ranks show no progress bar, print nothing on stdout and draw no plot."""
        if self.main:
            return options
        sys.stdout = open(os.devnull, 'w')  # for the life of the process
        return dataclasses.replace(options, quiet=True, no_plot=True)

    def private_dir(self, run_dir):
        """Rank 0 writes the run directory; the others write their own nets and log into a
        temporary directory, removed at exit."""
        if self.main:
            return run_dir
        if self._private is None:
            self._private = tempfile.mkdtemp(prefix='hybridnet-rank%d-' % self.rank)
            atexit.register(shutil.rmtree, self._private, True)
        return self._private

    # --- collectives ---

    def fail(self, what, err):
        """A collective failed: one line, rank 0's log, exit without running destructors (Caffe
        may be inside a step)."""
        at = '' if self.iteration is None else ' at iteration %d' % self.iteration
        message = (
            'rank %d of %d: %s failed%s (%s: %s): another rank died or stopped answering; the job ends '
            "(the run directory keeps rank 0's last snapshot: continue with --resume auto)"
            % (self.rank, self.size, what, at, type(err).__name__, str(err).splitlines()[0] if str(err) else '')
        )
        if self.log is not None:
            try:
                self.log.write('stop', iter=self.iteration, reason='peer', message=message)
                self.log.close()
            except Exception:  # the message below matters more
                pass
        if self._private:
            shutil.rmtree(self._private, True)  # os._exit skips atexit
        sys.stdout.flush()
        sys.stderr.write('error: %s\n' % message)
        sys.stderr.flush()
        os._exit(EXIT_PEER)

    def _run(self, what, function, *args):
        try:
            return function(*args)
        except Exception as err:
            self.fail(what, err)

    def barrier(self):
        self._run('barrier', self.dist.barrier)

    def finish(self, clean):
        """After a run or a stop on every rank: wait for rank 0's log and plot, then leave the
        group (torchrun ends the other ranks as soon as one exits with a non-zero status)."""
        if clean:
            self.barrier()
            self.dist.destroy_process_group()

    def agree(self, value):
        """Rank 0's `value` on every rank."""
        return self.from_main(lambda: value)

    def from_main(self, function, *args):
        """`function(*args)` on rank 0, its result (or its ToolError) on every rank."""
        box = [None]
        if self.main:
            try:
                box[0] = ('ok', function(*args))
            except ToolError as err:
                box[0] = ('error', str(err))
        self._run('broadcast', self.dist.broadcast_object_list, box, 0)
        kind, value = box[0]
        if kind == 'error':
            raise ToolError(value)
        return value

    def broadcast_weights(self, net):
        """Every parameter blob of `net` (learnable, frozen and fixed) from rank 0."""
        for blobs in net.params.values():
            for blob in blobs:
                tensor = self._tensor(blob.data)
                self._run('broadcast of the weights', self.dist.broadcast, tensor, 0)
                if tensor.device.type != 'cpu':
                    blob.data[...] = tensor.cpu().numpy()

    def stop_agreed(self, stop, iteration=None):
        """True on every rank when a signal reached any rank; sets `stop` where it did not."""
        self.iteration = iteration
        if not self._guarded:
            self._keep_handler(stop)
        flag = self.torch.tensor([stop.signum or 0], dtype=self.torch.int64)
        flag = flag.to(self._device())
        self._run('agreement on the stop flag', self.dist.all_reduce, flag, self.dist.ReduceOp.MAX)
        signum = int(flag.item())
        if signum and not stop:
            stop.signum = signum
        # the agreed value, not the local flag: a signal that lands after the all-reduce counts
        # at the next iteration on every rank
        return bool(signum)

    def _keep_handler(self, stop):
        """torchrun forwards the SIGINT of a Ctrl-C to ranks that already got it from the
        terminal: keep recording instead of dying at the second one (torchrun's own grace
        period and SIGKILL end a rank that does not stop)."""
        self._guarded = True

        def handle(signum, frame):
            stop._handle(signum, frame)
            if os.getpid() == stop._pid:
                signal.signal(signal.SIGINT, handle)

        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, handle)

    def _device(self):
        return 'cuda:%d' % self.local_rank if self.backend == 'nccl' else 'cpu'

    def _tensor(self, array):
        tensor = self.torch.from_numpy(array)
        return tensor if self.backend == 'gloo' else tensor.to(self._device())

    # --- the gradient hook ---

    def join(self, stage_run):
        """Make a built `tools.training.run.StageRun` data parallel: rank 0's weights on every
        rank, the all-reduce of the learnable diffs of its net (lr_mult > 0 in its train net file)
        between backward and the update, snapshots written by rank 0 alone (the others wait for
        it and record its path), the effective batch stated."""
        solver = stage_run.solver
        self.broadcast_weights(solver.net)
        self.averager = GradientAverager(self, learnable_blobs(solver.net, stage_run.param.train_net))
        solver.add_callback(lambda: None, self.averager)
        write = stage_run.snapshot

        def snapshot():
            stage_run.last_snapshot = self.from_main(write)
            return stage_run.last_snapshot

        stage_run.snapshot = snapshot
        announce(self, stage_run.batch, stage_run.log, tqdm.write)


def learnable_blobs(net, net_path):
    """The parameter blobs of `net` that the solver updates (lr_mult > 0), each once (shared
    parameters appear under several layers)."""
    from tools.core.protos import read_net  # noqa: PLC0415

    lr_mults = {}
    for layer in read_net(net_path).layer:
        lr_mults[layer.name] = [p.lr_mult if p.HasField('lr_mult') else 1.0 for p in layer.param]
    blobs, seen = [], set()
    for name, layer_blobs in net.params.items():
        mults = lr_mults.get(name, [])
        for index, blob in enumerate(layer_blobs):
            address = blob.diff.__array_interface__['data'][0]
            if (mults[index] if index < len(mults) else 1.0) > 0 and address not in seen:
                seen.add(address)
                blobs.append(blob)
    return blobs


class GradientAverager:
    """The `on_gradients_ready` callback: every learnable diff summed over the ranks and divided
    by their number. On gloo the blobs of at least `direct` floats are all-reduced in place (the
    host arrays pycaffe exposes: no copy), the smaller ones through one flat buffer (one
    collective instead of one per bias); on NCCL every diff goes through a flat device buffer.
    Collectives move at most `bucket` floats each."""

    def __init__(self, world, blobs, bucket=BUCKET, direct=DIRECT):
        self.world, self.bucket = world, bucket
        in_place = world.backend == 'gloo'
        self.direct = [blob for blob in blobs if in_place and blob.count >= direct]
        self.blobs = [blob for blob in blobs if not (in_place and blob.count >= direct)]
        self.sizes = [blob.count for blob in self.blobs]
        self.buffer = np.empty(sum(self.sizes), np.float32)
        self.flat = world.torch.from_numpy(self.buffer)
        if world.backend != 'gloo':
            self.flat = self.flat.to(world._device())

    @property
    def count(self):
        return len(self.buffer) + sum(blob.count for blob in self.direct)

    def _all_reduce(self, flat):
        for start in range(0, flat.numel(), self.bucket):
            self.world._run(
                'all-reduce of the gradients', self.world.dist.all_reduce, flat[start : start + self.bucket]
            )

    def __call__(self):
        world, buffer = self.world, self.buffer
        for blob in self.direct:
            diff = blob.diff
            self._all_reduce(world.torch.from_numpy(diff.reshape(-1)))
            np.divide(diff, world.size, out=diff)
        if not self.blobs:
            return
        offset = 0
        for blob, size in zip(self.blobs, self.sizes):
            buffer[offset : offset + size] = blob.diff.ravel()
            offset += size
        if world.backend != 'gloo':
            self.flat.copy_(world.torch.from_numpy(buffer))
        self._all_reduce(self.flat)
        if world.backend != 'gloo':
            buffer[...] = self.flat.cpu().numpy()
        buffer /= world.size
        offset = 0
        for blob, size in zip(self.blobs, self.sizes):
            blob.diff[...] = buffer[offset : offset + size].reshape(blob.diff.shape)
            offset += size


def announce(world, batch, log, say):
    """State the effective batch at the start of a data-parallel stage."""
    if world.size == 1:
        return
    text = 'data parallel: %d ranks (%s) x batch %d per rank = effective batch %d' % (
        world.size,
        world.backend,
        batch,
        world.size * batch,
    )
    if world.main:
        say(text)
        log.write(
            'distributed',
            ranks=world.size,
            backend=world.backend,
            batch_per_rank=batch,
            effective_batch=world.size * batch,
        )
