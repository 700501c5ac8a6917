"""The training log: one JSON object per line in `RUN_DIR/train_log.jsonl`.

Each line has an `event`:
- `iter`: `stage`, `iter` (iterations done), `lr` (used for that step), every loss term
  `loss_*` unweighted as the net computes it, `loss` (the weighted sum Caffe minimises),
  `images_per_s`, `time`;
- `val`: the same loss terms averaged over `--test-iters` batches of the test net;
- `start`, `init`, `snapshot`, `stop`, `done`: what happened, with a `message`.

A resumed run appends; `read_log` keeps the last `iter` row of each (stage, iter), so rows
written after the snapshot a run resumed from are replaced by the resumed run's.
"""

import json
import os
import time

LOG_FILE = 'train_log.jsonl'


class TrainLog:
    """Appends events to `path`, flushed line by line (a killed run loses nothing logged)."""

    def __init__(self, path):
        self.path = path
        self._file = open(path, 'a')

    def write(self, event, **fields):
        fields = dict(event=event, time=round(time.time(), 3), **fields)
        self._file.write(json.dumps(fields, sort_keys=True) + '\n')
        self._file.flush()
        return fields

    def close(self):
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()


def read_log(path):
    """All events of the log at `path` (a file or a run directory), in order, with `iter`
    and `val` rows deduplicated per (event, stage, iter): the last one wins."""
    if os.path.isdir(path):
        path = os.path.join(path, LOG_FILE)
    events, index = [], {}
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                raise ValueError('%s:%d: not a JSON line: %r' % (path, number, line[:80])) from None
            if row.get('event') in ('iter', 'val'):
                key = (row['event'], row.get('stage'), row['iter'])
                if key in index:
                    events[index[key]] = None
                index[key] = len(events)
            events.append(row)
    return [e for e in events if e is not None]


def loss_terms(row):
    """The loss term names of a row, `loss` (the weighted total) last."""
    terms = sorted(k for k in row if k.startswith('loss_'))
    return terms + (['loss'] if 'loss' in row else [])


def format_losses(row):
    return ' '.join('%s %.4g' % (k, row[k]) for k in loss_terms(row))


def loss_summary(rows, k=None):
    """Per stage and loss term: mean of the first k and of the last k `iter` rows (k: a
    fifth of the stage's rows, at least 1), as [(stage, term, first, last, iterations)]."""
    by_stage = {}
    for row in rows:
        if row.get('event') == 'iter':
            by_stage.setdefault(row['stage'], []).append(row)
    out = []
    for stage, stage_rows in by_stage.items():
        stage_rows.sort(key=lambda r: r['iter'])
        n = k or max(1, len(stage_rows) // 5)
        for term in loss_terms(stage_rows[-1]):
            values = [r[term] for r in stage_rows if term in r]
            first, last = values[:n], values[-n:]
            out.append((stage, term, sum(first) / len(first), sum(last) / len(last), stage_rows[-1]['iter']))
    return out
