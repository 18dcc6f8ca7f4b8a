#!/usr/bin/python3
"""make_checkpoint.py - writes random-weight Hybrid Demucs (v3) checkpoints of the official
mdx_extra size, for measuring the engine offline (the release files cannot be fetched here).

    bench/make_checkpoint.py OUTDIR [--variant cac|mag|mag_old] [--name NAME] [--seed N]
                             [--channels 48] [--segment 44] [--bag] [--list]

With --bag, writes the four members of an mdx_extra-like bag (cac, mag_old, mag, cac, as the
official e51eebcc, a1d90b5c, 5d2d6c55, cfa93e08) and OUTDIR/mdx_extra_random.yaml, which
bench_separate takes as its MODEL. Needs ~170 MB of disk per member. Never commit the output.

Standard library only (Debian /usr/bin/python3): the file is what torch.save writes for
demucs' `{klass, args, kwargs, state, training_args}` package:
- a zip of stored (uncompressed) entries under `archive/`, each member's data 64-byte
  aligned (padding in an extra field, as torch's writer does): `data.pkl`, `data/<key>` for
  every storage, `version` ("3\\n");
- `data.pkl`: pickle protocol 2 of a plain dict; `klass` is the global
  `demucs.hdemucs.HDemucs`, every state tensor is `torch._utils._rebuild_tensor_v2(
  persistent_id(('storage', torch.HalfStorage, key, 'cpu', numel)), 0, size, stride, False,
  collections.OrderedDict())` with contiguous strides; storages are fp16 little-endian.
The globals are produced by registering stand-in modules named torch, torch._utils and
demucs.hdemucs in sys.modules, so the standard pickler writes them by reference.

Architecture (the state dict's names and shapes) follows demucs/hdemucs.py (v4.1) with the
training configuration of the mdx_extra members; the kwargs written are those of
conf/config.yaml `hdemucs:` (the same keys as the tiny reference configs in
the reference data's index.json, which use channels 4):
  channels 48, channels_time None, growth 2, nfft 4096, depth 6, kernel_size 8, stride 4,
  time_stride 2, context 1, context_enc 0, norm_starts 4, norm_groups 4, dconv_mode 1
  (DConv in the encoders only), dconv_depth 2, dconv_comp 4, dconv_attn 4, dconv_lstm 4,
  dconv_init 1e-3, freq_emb 0.2, emb_scale 10, emb_smooth True, rescale 0.1, hybrid True,
  multi_freqs [], multi_freqs_depth 3, wiener_iters 0, end_iters 0, wiener_residual False.
Assumptions: the variants differ only by cac/hybrid_old (cac: cac=True; mag: cac=False;
mag_old: cac=False, hybrid_old=True), sources are drums, bass, other, vocals, and the
member's own `segment` is 44 (the bag's `segment: 44` overrides it anyway). With channels 48
this gives ~83.6 M parameters per member, the figure of the release models (DEMUCS.md).
`--channels 4 --segment 0.2` reproduces the tiny reference configs' names and shapes exactly
(checked against tiny_hdemucs_{cac,mag,mag_old}.th: same 395 tensors, same shapes, 596412
and 596084 parameters), a check of the derivation; `--list` prints the layout.

Weights are random (fixed seed) with the scale of a default init (uniform in
±1/sqrt(fan_in)); GroupNorm weights around 1 and LayerScale at dconv_init, so that the
activations stay finite through 6 layers. Outputs are not music: the point is the time and
memory of a full-size forward.
"""
import collections
import io
import math
import random
import struct
import sys
import types
import zipfile
import pickle

# ---- stand-in globals, written by reference by the pickler ----------------------------


def _install_module(name):
    mod = types.ModuleType(name)
    sys.modules[name] = mod
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, mod)
    return mod


_torch = sys.modules.get("torch")
if _torch is not None and hasattr(_torch, "Tensor"):
    sys.exit("make_checkpoint.py: run it with a Python without torch (it stands in for torch)")
_torch = _install_module("torch")
_utils = _install_module("torch._utils")
_install_module("demucs")
_hd = _install_module("demucs.hdemucs")


def _rebuild_tensor_v2(*args):  # never called: only its name is pickled
    raise RuntimeError("stand-in")


_rebuild_tensor_v2.__module__ = "torch._utils"
_rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
_utils._rebuild_tensor_v2 = _rebuild_tensor_v2

HalfStorage = type("HalfStorage", (), {"__module__": "torch"})
_torch.HalfStorage = HalfStorage
HDemucs = type("HDemucs", (), {"__module__": "demucs.hdemucs"})
_hd.HDemucs = HDemucs


class _Storage:
    def __init__(self, key, numel):
        self.key = key
        self.numel = numel


class _Tensor:
    def __init__(self, storage, size):
        self.storage = storage
        self.size = tuple(size)
        stride, acc = [], 1
        for d in reversed(self.size):
            stride.append(acc)
            acc *= d
        self.stride = tuple(reversed(stride))

    def __reduce__(self):
        return (_rebuild_tensor_v2,
                (self.storage, 0, self.size, self.stride, False, collections.OrderedDict()))


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            return ("storage", HalfStorage, obj.key, "cpu", obj.numel)
        return None


# ---- architecture: (name, shape, init kind) in state-dict order -----------------------


def kwargs_for(variant, channels, segment=44.0):
    return collections.OrderedDict([
        ("channels", channels), ("channels_time", None), ("growth", 2), ("nfft", 4096),
        ("wiener_iters", 0), ("end_iters", 0), ("wiener_residual", False),
        ("cac", variant == "cac"), ("depth", 6), ("rewrite", True), ("hybrid", True),
        ("hybrid_old", variant == "mag_old"), ("multi_freqs", []), ("multi_freqs_depth", 3),
        ("freq_emb", 0.2), ("emb_scale", 10), ("emb_smooth", True), ("kernel_size", 8),
        ("stride", 4), ("time_stride", 2), ("context", 1), ("context_enc", 0),
        ("norm_starts", 4), ("norm_groups", 4), ("dconv_mode", 1), ("dconv_depth", 2),
        ("dconv_comp", 4), ("dconv_attn", 4), ("dconv_lstm", 4), ("dconv_init", 0.001),
        ("rescale", 0.1), ("sources", ["drums", "bass", "other", "vocals"]),
        ("segment", segment), ("audio_channels", 2),
        ("samplerate", 44100),
    ])


def _conv(out, p, cout, cin, ker):
    """Conv weight + bias; ker is a tuple of kernel dims."""
    out.append((p + ".weight", (cout, cin) + ker, "w"))
    out.append((p + ".bias", (cout,), "b"))


def _norm(out, p, ch):
    out.append((p + ".weight", (ch,), "one"))
    out.append((p + ".bias", (ch,), "zero"))


def _dconv(out, p, ch, kw):
    hidden = int(ch / kw["dconv_comp"])
    for d in range(kw["dconv_depth"]):
        q = "%s.layers.%d" % (p, d)
        i = 0
        _conv(out, "%s.%d" % (q, i), hidden, ch, (3,))
        _norm(out, "%s.%d" % (q, i + 1), hidden)  # GroupNorm(1, hidden)
        i += 3  # conv, norm, GELU
        if kw["_lstm"]:
            for layer in range(2):  # BLSTM(hidden, layers=2), bidirectional
                n_in = hidden if layer == 0 else 2 * hidden
                for suf in ("", "_reverse"):
                    base = "%s.%d.lstm" % (q, i)
                    out.append(("%s.weight_ih_l%d%s" % (base, layer, suf), (4 * hidden, n_in),
                                "w"))
                    out.append(("%s.weight_hh_l%d%s" % (base, layer, suf), (4 * hidden, hidden),
                                "w"))
                    out.append(("%s.bias_ih_l%d%s" % (base, layer, suf), (4 * hidden,), "b"))
                    out.append(("%s.bias_hh_l%d%s" % (base, layer, suf), (4 * hidden,), "b"))
            out.append(("%s.%d.linear.weight" % (q, i), (hidden, 2 * hidden), "w"))
            out.append(("%s.%d.linear.bias" % (q, i), (hidden,), "b"))
            i += 1
        if kw["_attn"]:  # LocalState(hidden, heads=4, ndecay=4)
            for sub, n_out in (("content", hidden), ("query", hidden), ("key", hidden),
                               ("query_decay", 4 * 4), ("proj", hidden)):
                _conv(out, "%s.%d.%s" % (q, i, sub), n_out, hidden, (1,))
            i += 1
        _conv(out, "%s.%d" % (q, i), 2 * ch, hidden, (1,))
        _norm(out, "%s.%d" % (q, i + 1), 2 * ch)
        i += 3  # conv, norm, GLU
        out.append(("%s.%d.scale" % (q, i), (ch,), "scale"))


def _enc(out, p, chin, chout, ker, stride, freq, norm, empty, kw):
    _conv(out, p + ".conv", chout, chin, (ker, 1) if freq else (ker,))
    if empty:  # HEncLayer returns before its norm1 when empty
        return
    if norm:
        _norm(out, p + ".norm1", chout)
    k = 1 + 2 * kw["context_enc"]
    _conv(out, p + ".rewrite", 2 * chout, chout, (k, k) if freq else (k,))
    if norm:
        _norm(out, p + ".norm2", 2 * chout)
    if kw["dconv_mode"] & 1:
        _dconv(out, p + ".dconv", chout, kw)


def _dec(out, p, chin, chout, ker, stride, freq, norm, empty, kw):
    # ConvTranspose weights are (in, out, k...).
    out.append((p + ".conv_tr.weight", (chin, chout) + ((ker, 1) if freq else (ker,)), "w"))
    out.append((p + ".conv_tr.bias", (chout,), "b"))
    if norm:
        _norm(out, p + ".norm2", chout)
    if empty:
        return
    k = 1 + 2 * kw["context"]
    _conv(out, p + ".rewrite", 2 * chin, chin, (k, k) if freq else (k,))
    if norm:
        _norm(out, p + ".norm1", 2 * chin)
    if kw["dconv_mode"] & 2:
        _dconv(out, p + ".dconv", chin, kw)


def state_layout(kw):
    enc, dec, tenc, tdec = [], [], [], []  # lists of per-layer entry lists
    n_src = len(kw["sources"])
    chin = kw["audio_channels"]
    chin_z = chin * 2 if kw["cac"] else chin
    chout = kw["channels_time"] or kw["channels"]
    chout_z = kw["channels"]
    freqs = kw["nfft"] // 2
    emb = None
    for index in range(kw["depth"]):
        kw["_lstm"] = index >= kw["dconv_lstm"]
        kw["_attn"] = index >= kw["dconv_attn"]
        norm = index >= kw["norm_starts"]
        freq = freqs > 1
        stri, ker = kw["stride"], kw["kernel_size"]
        if not freq:
            ker = kw["time_stride"] * 2
            stri = kw["time_stride"]
        last_freq = False
        if freq and freqs <= kw["kernel_size"]:
            ker = freqs
            last_freq = True
        if last_freq:
            chout_z = max(chout, chout_z)
            chout = chout_z
        e = []
        _enc(e, "encoder.%d" % index, chin_z, chout_z, ker, stri, freq, norm, False, kw)
        enc.append(e)
        if kw["hybrid"] and freq:
            t = []
            _enc(t, "tencoder.%d" % index, chin, chout, kw["kernel_size"], kw["stride"], False,
                 norm, last_freq, kw)
            tenc.append(t)
        if index == 0:
            chin = kw["audio_channels"] * n_src
            chin_z = chin * 2 if kw["cac"] else chin
        d = []
        _dec(d, "", chout_z, chin_z, ker, stri, freq, norm, False, dict(kw, _lstm=False,
                                                                          _attn=False))
        dec.insert(0, d)
        if kw["hybrid"] and freq:
            t = []
            _dec(t, "", chout, chin, kw["kernel_size"], kw["stride"], False, norm, last_freq,
                 dict(kw, _lstm=False, _attn=False))
            tdec.insert(0, t)
        chin, chin_z = chout, chout_z
        chout = int(kw["growth"] * chout)
        chout_z = int(kw["growth"] * chout_z)
        if freq:
            freqs = 1 if freqs <= kw["kernel_size"] else freqs // kw["stride"]
        if index == 0 and kw["freq_emb"]:
            emb = [("freq_emb.embedding.weight", (freqs, chin_z), "emb")]
    layout = []
    for group in enc:
        layout += group
    for i, group in enumerate(dec):
        layout += [("decoder.%d%s" % (i, n), s, k) for n, s, k in group]
    for group in tenc:
        layout += group
    for i, group in enumerate(tdec):
        layout += [("tdecoder.%d%s" % (i, n), s, k) for n, s, k in group]
    if emb:
        layout += emb
    return layout


# ---- writing --------------------------------------------------------------------------


def _fan_in(shape):
    if len(shape) < 2:
        return shape[0]
    return shape[1] * math.prod(shape[2:])


def _values(name, shape, kind, rng, kw):
    n = math.prod(shape)
    if kind == "zero":
        return [0.0] * n
    if kind == "one":
        return [1.0 + 0.05 * (rng.random() - 0.5) for _ in range(n)]
    if kind == "scale":
        return [kw["dconv_init"]] * n
    if kind == "emb":
        return [rng.gauss(0.0, 1.0) / kw["emb_scale"] for _ in range(n)]
    bound = 1.0 / math.sqrt(_fan_in(shape))
    if kind == "b":
        bound = 0.1
    return [bound * (2.0 * rng.random() - 1.0) for _ in range(n)]


def _fp16_bytes(values):
    """IEEE half, little-endian (struct's 'e' rounds to nearest even)."""
    return struct.pack("<%de" % len(values), *values)


def _pad_extra(offset, name):
    """Extra field that puts the data of a local header at offset on a 64-byte boundary."""
    start = offset + 30 + len(name.encode())
    pad = (-(start + 4)) % 64
    return struct.pack("<HH", 0x4246, pad) + b"Z" * pad  # 'FB' id, as torch's writer


def _write_entry(zf, name, data):
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED
    info.extra = _pad_extra(zf.fp.tell(), name)
    zf.writestr(info, data)


def write_checkpoint(path, variant, seed, channels, segment=44.0):
    kw = kwargs_for(variant, channels, segment)
    layout = state_layout(dict(kw))
    rng = random.Random(seed)
    state = {}
    blobs = []
    n_params = 0
    for key, (name, shape, kind) in enumerate(layout):
        numel = math.prod(shape)
        n_params += numel
        st = _Storage(str(key), numel)
        state[name] = _Tensor(st, shape)
        blobs.append((str(key), name, shape, kind))
    pkg = {"klass": HDemucs, "args": (), "kwargs": dict(kw), "state": state,
           "training_args": {"note": "random weights, make_checkpoint.py, seed %d" % seed}}
    buf = io.BytesIO()
    _Pickler(buf, protocol=2).dump(pkg)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        _write_entry(zf, "archive/data.pkl", buf.getvalue())
        for key, name, shape, kind in blobs:
            _write_entry(zf, "archive/data/" + key, _fp16_bytes(
                _values(name, shape, kind, rng, kw)))
        _write_entry(zf, "archive/version", b"3\n")
    return n_params, layout


def main(argv):
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("outdir")
    ap.add_argument("--variant", choices=("cac", "mag", "mag_old"), default="cac")
    ap.add_argument("--name", default=None)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--channels", type=int, default=48)
    ap.add_argument("--segment", type=float, default=44.0)
    ap.add_argument("--bag", action="store_true")
    ap.add_argument("--list", action="store_true", help="print the state layout and exit")
    a = ap.parse_args(argv)
    if a.list:
        for name, shape, _ in state_layout(kwargs_for(a.variant, a.channels)):
            print(name, shape)
        return 0
    import os
    os.makedirs(a.outdir, exist_ok=True)
    if a.bag:
        members = [("rand_e51eebcc", "cac"), ("rand_a1d90b5c", "mag_old"),
                   ("rand_5d2d6c55", "mag"), ("rand_cfa93e08", "cac")]
        for i, (name, variant) in enumerate(members):
            n, _ = write_checkpoint(os.path.join(a.outdir, name + ".th"), variant, a.seed + i,
                                    a.channels, a.segment)
            print("%s/%s.th: %s, %d params" % (a.outdir, name, variant, n))
        yaml = os.path.join(a.outdir, "mdx_extra_random.yaml")
        with open(yaml, "w") as f:
            f.write("models: [%s]\nsegment: 44\n" % ", ".join(m for m, _ in members))
        print(yaml)
    else:
        name = a.name or "rand_hdemucs_%s" % a.variant
        n, _ = write_checkpoint(os.path.join(a.outdir, name + ".th"), a.variant, a.seed,
                                a.channels, a.segment)
        print("%s/%s.th: %s, %d params" % (a.outdir, name, a.variant, n))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
