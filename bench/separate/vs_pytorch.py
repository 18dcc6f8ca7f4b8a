#!/usr/bin/env python3
"""vs_pytorch.py - our engine beside PyTorch Demucs on the same input, by hand (never a test).

    bench/separate/vs_pytorch.py MODEL [--seconds N | --input RAW.f32] [--threads N]
                                 [--overlap F] [--segment S] [--repeats N] [--stream]
                                 [--precision fp32|bf16] [--bench PATH] [--python PATH]

MODEL is what bench_separate takes: a .th checkpoint, a bag .yaml (members beside it) or a
model name (looked up in $SFA_MODELS_DIR, else data/models, which PyTorch then uses as its
local repo). Both engines separate the same planar stereo float32 input at 44.1 kHz (RAW.f32,
or N seconds, default 30, of the synthetic mix bench_separate makes, written to a temporary
file) with the same settings: shifts 0, the given overlap and segment, split, `--threads`
threads (torch.set_num_threads for PyTorch, which also gets num_workers=0); --precision is
ours (PyTorch runs fp32, as the Python project does). Each run is a fresh process, ours and
PyTorch's taking turns so that both see the same phases of a shared machine; the figures are
the medians of --repeats runs each (default 3): wall time of the separation alone (model
loading excluded on both sides), seconds per audio second and peak RSS, then the ratios
ours / PyTorch.

PyTorch's side runs under --python, else $SFA_PYTORCH_PYTHON, else /usr/bin/python3, and
needs `import torch` and `import demucs.apply` to work there; when they do not, the script
still reports our figures and says exactly what is missing and how to get it. On Debian 12:
`apt install python3-torch python3-omegaconf python3-tqdm` (PyTorch 1.13.1), and on
PYTHONPATH the facebookresearch/demucs sources with what they import from other
repositories: the einops and julius packages, openunmix/filtering.py alone (beside an empty
openunmix/__init__.py; the package's own imports torchaudio), and dora.log's `fatal` and
`bold`, which only print (stubs of a line each do). Exit status: 0 when our engine ran
(whether or not PyTorch could), 1 when it failed, 2 on bad usage.
"""
import argparse
import math
import os
import re
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SR = 44100

# The PyTorch side: one separation in a fresh process, its figures as one line of JSON.
TORCH_RUN = r"""
import json, resource, sys, time, array
from pathlib import Path
import torch
from demucs.apply import apply_model
model_arg, inp, threads, overlap, segment = sys.argv[1], sys.argv[2], int(sys.argv[3]), \
    float(sys.argv[4]), float(sys.argv[5])
torch.set_num_threads(threads)
p = Path(model_arg)
if p.suffix == '.th':
    from demucs.states import load_model
    model = load_model(p)
elif p.suffix in ('.yaml', '.yml'):
    from demucs.pretrained import get_model
    model = get_model(p.stem, repo=p.parent)
else:
    from demucs.pretrained import get_model
    repo = Path(sys.argv[6]) if len(sys.argv) > 6 and sys.argv[6] else None
    model = get_model(model_arg, repo=repo)
model.eval()
a = array.array('f')
with open(inp, 'rb') as f:
    a.frombytes(f.read())
n = len(a) // 2
wav = torch.tensor(a, dtype=torch.float32).reshape(2, n)
t0 = time.monotonic()
with torch.no_grad():
    ref = wav.mean(0)
    x = (wav - ref.mean()) / ref.std()
    out = apply_model(model, x[None], shifts=0, split=True, overlap=overlap, progress=False,
                      num_workers=0, segment=segment if segment > 0 else None)[0]
    out = out * ref.std() + ref.mean()
wall = time.monotonic() - t0
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
print(json.dumps({'wall': wall, 'audio': n / 44100.0, 'rss_mb': rss}))
"""


def synthetic_mix(seconds, path):
    """The mix bench_separate generates (same formula and generator), planar float32."""
    frames = int(seconds * SR)
    left, right = [0.0] * frames, [0.0] * frames
    s = 1
    mask = (1 << 64) - 1
    for i in range(frames):
        t = i / SR
        s = (s * 6364136223846793005 + 1442695040888963407) & mask
        noise = ((s >> 11) / 9007199254740992.0 - 0.5) * 0.05
        left[i] = 0.1 * math.sin(2 * math.pi * 220 * t) + 0.05 * math.sin(2 * math.pi * 1375 * t) + noise
        right[i] = (0.1 * math.sin(2 * math.pi * 277.18 * t + 1)
                    + 0.04 * math.sin(2 * math.pi * 6000 * t) + noise * 0.7)
    with open(path, 'wb') as f:
        f.write(struct.pack('<%df' % frames, *left))
        f.write(struct.pack('<%df' % frames, *right))


def run_ours(bench, model, inp, a):
    cmd = [bench, model, '--input', inp, '--threads', str(a.threads), '--shifts', '0',
           '--overlap', str(a.overlap), '--precision', a.precision]
    if a.segment > 0:
        cmd += ['--segment', str(a.segment)]
    if a.stream:
        cmd.append('--stream')
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise RuntimeError('bench_separate failed: ' + (r.stderr.strip().splitlines() or ['?'])[-1])
    wall = float(re.search(r'^wall ([0-9.]+) s', r.stdout, re.M).group(1))
    audio = float(re.search(r'^audio ([0-9.]+) s', r.stdout, re.M).group(1))
    rss = float(re.search(r'^peak RSS ([0-9.]+) MB', r.stdout, re.M).group(1))
    return {'wall': wall, 'audio': audio, 'rss_mb': rss}


def run_torch(python, model, inp, a, repo):
    cmd = [python, '-c', TORCH_RUN, model, inp, str(a.threads), str(a.overlap),
           str(a.segment), repo or '']
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise RuntimeError('PyTorch Demucs failed: ' + (r.stderr.strip().splitlines() or ['?'])[-1])
    import json
    return json.loads(r.stdout.strip().splitlines()[-1])


def torch_missing(python):
    """What `python` lacks to run PyTorch Demucs, as sentences; [] when nothing."""
    if not (os.path.isfile(python) and os.access(python, os.X_OK)) and not shutil.which(python):
        return ['no Python at %s (give one with --python or $SFA_PYTORCH_PYTHON)' % python]
    missing = []
    for mod, how in (('torch', 'on Debian 12 `apt install python3-torch`, elsewhere '
                               '`pip install torch`'),
                     ('demucs.apply', '`pip install demucs`, or the facebookresearch/demucs '
                                      'sources and what they import on PYTHONPATH (see the '
                                      'top of this script)')):
        r = subprocess.run([python, '-c', 'import ' + mod], stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
        if r.returncode != 0:
            last = (r.stderr.strip().splitlines() or ['?'])[-1]
            missing.append('`import %s` fails under %s (%s): %s' % (mod, python, last, how))
    return missing


def median(runs, key):
    return statistics.median(r[key] for r in runs)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('model')
    ap.add_argument('--seconds', type=float, default=30.0)
    ap.add_argument('--input')
    ap.add_argument('--threads', type=int, default=os.cpu_count() or 1)
    ap.add_argument('--overlap', type=float, default=0.25)
    ap.add_argument('--segment', type=float, default=0.0)
    ap.add_argument('--repeats', type=int, default=3)
    ap.add_argument('--precision', choices=('fp32', 'bf16'), default='fp32')
    ap.add_argument('--stream', action='store_true',
                    help='ours streams the stems to a sink that drops them (engine RSS only)')
    ap.add_argument('--bench', default=os.path.join(ROOT, 'build', 'bench', 'separate',
                                                    'bench_separate'))
    ap.add_argument('--python', default=os.environ.get('SFA_PYTORCH_PYTHON', '/usr/bin/python3'))
    a = ap.parse_args()
    if a.repeats < 1 or a.threads < 1:
        ap.error('--repeats and --threads must be at least 1')
    if not os.access(a.bench, os.X_OK):
        print('no bench_separate at %s: run `make build` first (or give --bench)' % a.bench,
              file=sys.stderr)
        return 1
    tmp = tempfile.mkdtemp(prefix='sfa-vs-pytorch-')
    try:
        inp = a.input
        if not inp:
            inp = os.path.join(tmp, 'mix.f32')
            synthetic_mix(a.seconds, inp)
        repo = None
        if not re.search(r'(\.th|\.ya?ml)$', a.model) and '/' not in a.model:
            repo = os.environ.get('SFA_MODELS_DIR') or os.path.join(ROOT, 'data', 'models')
            if not os.path.isdir(repo):
                repo = None
        print('model %s, %s, threads %d, overlap %.2f, segment %s, shifts 0, median of %d'
              % (a.model, a.precision, a.threads, a.overlap, a.segment or 'default',
                 a.repeats))
        missing = torch_missing(a.python)
        ours, theirs, failed = [], [], None
        for _ in range(a.repeats):
            try:
                ours.append(run_ours(a.bench, a.model, inp, a))
            except (RuntimeError, AttributeError) as e:
                print('ours: %s' % e, file=sys.stderr)
                return 1
            if missing or failed:
                continue
            try:
                theirs.append(run_torch(a.python, a.model, inp, a, repo))
            except (RuntimeError, ValueError) as e:
                failed = str(e)
        audio = ours[0]['audio']
        print('audio %.2f s' % audio)
        row = '%-8s wall %8.2f s   %6.3f s per audio second   peak RSS %6.0f MB'
        print(row % ('ours', median(ours, 'wall'), median(ours, 'wall') / audio,
                     median(ours, 'rss_mb')))
        if missing:
            print('pytorch  not run:')
            for m in missing:
                print('  - ' + m)
            return 0
        if failed:
            print('pytorch  not run: %s' % failed)
            return 0
        print(row % ('pytorch', median(theirs, 'wall'), median(theirs, 'wall') / audio,
                     median(theirs, 'rss_mb')))
        print('ratio ours/pytorch: wall %.2f, peak RSS %.2f'
              % (median(ours, 'wall') / median(theirs, 'wall'),
                 median(ours, 'rss_mb') / median(theirs, 'rss_mb')))
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    sys.exit(main())
