"""A run's loss curves: `plot(RUN_DIR)` writes RUN_DIR/loss.png and RUN_DIR/training.md (the loss
table: mean of the first and of the last fifth of the steps).

One row of panels per stage, one panel per loss term (unweighted, as the net computes it) and
the weighted total `loss`, plus the learning rate: raw values faint, a moving average on top,
the test net's losses (`--test-every`) as dots. The data come from `tools.training.log`.
"""

import os

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt
import numpy as np

from tools.training.log import LOG_FILE, loss_summary, loss_terms, read_log

PNG, SUMMARY = 'loss.png', 'training.md'


def moving_average(values, window):
    """Trailing mean over `window` values (shorter at the start), same length as `values`."""
    values = np.asarray(values, np.float64)
    sums = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(idx - window, 0)
    return (sums[idx] - sums[lo]) / (idx - lo)


def _stages(rows):
    out = []
    for row in rows:
        if row.get('event') == 'iter' and row['stage'] not in out:
            out.append(row['stage'])
    return out


def plot(run_dir, out=None, smooth=None):
    """Write the loss figure (default RUN_DIR/loss.png) and RUN_DIR/training.md; returns the
    figure's path. ValueError when the log has no iteration yet."""
    rows = read_log(run_dir)
    stages = _stages(rows)
    if not stages:
        raise ValueError('%s holds no training iteration yet' % os.path.join(run_dir, LOG_FILE))
    panels = {
        s: loss_terms(next(r for r in reversed(rows) if r.get('stage') == s and r.get('event') == 'iter')) + ['lr']
        for s in stages
    }
    cols = max(len(p) for p in panels.values())
    fig, axes = plt.subplots(len(stages), cols, figsize=(3.2 * cols, 2.6 * len(stages)), squeeze=False)
    for r, stage in enumerate(stages):
        train = sorted((x for x in rows if x.get('event') == 'iter' and x['stage'] == stage), key=lambda x: x['iter'])
        val = [x for x in rows if x.get('event') == 'val' and x['stage'] == stage]
        window = smooth or max(1, round(len(train) ** 0.5))
        for c, term in enumerate(panels[stage]):
            ax = axes[r][c]
            its = [x['iter'] for x in train if term in x]
            ys = [x[term] for x in train if term in x]
            ax.plot(its, ys, color='C0', alpha=1.0 if term == 'lr' else 0.3, lw=0.8)
            if term != 'lr':
                ax.plot(its, moving_average(ys, window), color='C0', lw=1.5, label='train (mean of %d)' % window)
                vals = [(x['iter'], x[term]) for x in val if term in x]
                if vals:
                    ax.plot(*zip(*vals), 'o', color='C1', ms=3, label='test net')
                ax.legend(fontsize=6)
            if ys and min(ys) > 0 and max(ys) / min(ys) > 100:
                ax.set_yscale('log')
            ax.set_title('%s: %s' % (stage, term), fontsize=8)
            ax.set_xlabel('iteration', fontsize=7)
            ax.tick_params(labelsize=6)
        for c in range(len(panels[stage]), cols):
            axes[r][c].axis('off')
    fig.tight_layout()
    out = out or os.path.join(run_dir, PNG)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    write_summary(run_dir, rows, os.path.relpath(out, run_dir))
    return out


def write_summary(run_dir, rows, png):
    """RUN_DIR/training.md: each loss term's mean over the first and the last fifth."""
    lines = [
        '# Training losses',
        '',
        'Mean of the first and of the last fifth of the iterations (unweighted terms; '
        '`loss` is the weighted sum Caffe minimises). Curves: [%s](%s).' % (png, png),
        '',
        '| stage | term | first | last | last / first | iterations |',
        '| --- | --- | ---: | ---: | ---: | ---: |',
    ]
    for stage, term, first, last, iters in loss_summary(rows):
        ratio = last / first if first else float('nan')
        lines.append('| %s | `%s` | %.4g | %.4g | %.3f | %d |' % (stage, term, first, last, ratio, iters))
    path = os.path.join(run_dir, SUMMARY)
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return path
