#!/usr/bin/env python3
"""
Writes the small PyTorch checkpoints under test/fixtures/torch/ that test/torch-bin.test.ts reads.

Run with a Python that has torch (Debian: `apt-get install python3-torch`, which gives torch 1.13):

    /usr/bin/python3 scripts/make-torch-fixtures.py

The test suite itself never needs torch: the outputs are committed. Everything is deterministic
(torch.manual_seed), so re-running rewrites the same tensors (the zip archives may differ in timestamps only).

Outputs (a tiny MarianMTModel: vocab 64, d 16, 2 + 2 layers, 2 heads, ffn 32, 32 positions):
- tiny/config.json, tiny/generation_config.json, tiny/model.safetensors: the fp32 reference weights, written by the
  small safetensors writer below (no safetensors package needed).
- tiny-legacy/pytorch_model.bin: the same state dict in the legacy format (_use_new_zipfile_serialization=False).
- tiny-sharded/pytorch_model.bin.index.json + two zip shards: the same values, saved as views: every layer's
  q/k/v weights are slices (storage offsets) of one fused [3d, d] storage, fc1 weights are transposed views
  (stride (1, out)) of a contiguous [in, out] storage, and the embedding is shared by four names (tied weights).
- tiny-bf16/pytorch_model.bin: the state dict in BFloat16 (zip); tiny-fp16-legacy/pytorch_model.bin in Float16,
  legacy format.
- views.bin + views.json: assorted tensors (transposed, offset, expanded with stride 0, 0-d, empty, fp16 and
  bf16 views of shared storages, an int64 tensor) and their values, row-major, as the test expects them.
"""
import json
import math
import os
import shutil
import struct

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, '..', 'test', 'fixtures', 'torch')

V, D, L, H, F, P = 64, 16, 2, 2, 32, 32
PAD, EOS = V - 1, 0

CONFIG = {
    'architectures': ['MarianMTModel'], 'model_type': 'marian', 'vocab_size': V, 'd_model': D,
    'encoder_layers': L, 'decoder_layers': L, 'encoder_attention_heads': H, 'decoder_attention_heads': H,
    'encoder_ffn_dim': F, 'decoder_ffn_dim': F, 'activation_function': 'swish', 'max_position_embeddings': P,
    'scale_embedding': True, 'normalize_before': False, 'normalize_embedding': False,
    'static_position_embeddings': True, 'share_encoder_decoder_embeddings': True, 'tie_word_embeddings': True,
    'pad_token_id': PAD, 'eos_token_id': EOS, 'decoder_start_token_id': PAD, 'bos_token_id': 0,
    'forced_eos_token_id': EOS, 'num_beams': 1, 'max_length': 16, 'bad_words_ids': [[PAD]], 'torch_dtype': 'float32',
}
GENERATION = {'bad_words_ids': [[PAD]], 'bos_token_id': 0, 'decoder_start_token_id': PAD, 'eos_token_id': EOS,
              'forced_eos_token_id': EOS, 'max_length': 16, 'num_beams': 1, 'pad_token_id': PAD}


def sinusoid(n_pos, dim):
    # transformers' MarianSinusoidalPositionalEmbedding._init_weight, in float64 then cast
    enc = np.array([[pos / np.power(10000, 2 * (j // 2) / dim) for j in range(dim)] for pos in range(n_pos)])
    out = torch.zeros(n_pos, dim)
    half = dim // 2 if dim % 2 == 0 else dim // 2 + 1
    out[:, 0:half] = torch.FloatTensor(np.sin(enc[:, 0::2]))
    out[:, half:] = torch.FloatTensor(np.cos(enc[:, 1::2]))
    return out


def state_dict():
    g = torch.Generator().manual_seed(0)
    r = lambda *s: (torch.randn(*s, generator=g) * 0.2).float()
    sd = {}
    emb = r(V, D)
    sd['final_logits_bias'] = r(1, V)
    sd['model.shared.weight'] = emb

    def attn(p):
        for x in ['q_proj', 'k_proj', 'v_proj', 'out_proj']:
            sd[f'{p}.{x}.weight'] = r(D, D)
            sd[f'{p}.{x}.bias'] = r(D)

    def norm(p):
        sd[f'{p}.weight'] = 1 + r(D)
        sd[f'{p}.bias'] = r(D)

    for kind in ['encoder', 'decoder']:
        for i in range(L):
            p = f'model.{kind}.layers.{i}'
            attn(f'{p}.self_attn')
            norm(f'{p}.self_attn_layer_norm')
            if kind == 'decoder':
                attn(f'{p}.encoder_attn')
                norm(f'{p}.encoder_attn_layer_norm')
            sd[f'{p}.fc1.weight'] = r(F, D)
            sd[f'{p}.fc1.bias'] = r(F)
            sd[f'{p}.fc2.weight'] = r(D, F)
            sd[f'{p}.fc2.bias'] = r(D)
            norm(f'{p}.final_layer_norm')
    pos = sinusoid(P, D)
    sd['model.encoder.embed_positions.weight'] = pos
    sd['model.decoder.embed_positions.weight'] = pos.clone()
    return sd


def tie(sd):
    """The names a MarianMTModel state dict saves the one embedding under (all one storage)."""
    out = dict(sd)
    for n in ['model.encoder.embed_tokens.weight', 'model.decoder.embed_tokens.weight', 'lm_head.weight']:
        out[n] = sd['model.shared.weight']
    return out


def write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        b = t.contiguous().numpy().astype('<f4').tobytes()
        header[name] = {'dtype': 'F32', 'shape': list(t.shape), 'data_offsets': [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b' ' * ((8 - len(h) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h)) + h + b''.join(blobs))


def model_dir(name):
    d = os.path.join(OUT, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    for fname, obj in [('config.json', CONFIG), ('generation_config.json', GENERATION)]:
        with open(os.path.join(d, fname), 'w') as f:
            json.dump(obj, f, indent=2)
    return d


def as_views(sd):
    """The same values, saved as views of larger storages (offsets and strides)."""
    out = {}
    for k, v in sd.items():
        out[k] = v
    for kind in ['encoder', 'decoder']:
        for i in range(L):
            for a in (['self_attn'] if kind == 'encoder' else ['self_attn', 'encoder_attn']):
                p = f'model.{kind}.layers.{i}.{a}'
                fused = torch.cat([sd[f'{p}.q_proj.weight'], sd[f'{p}.k_proj.weight'], sd[f'{p}.v_proj.weight']], 0)
                out[f'{p}.q_proj.weight'] = fused[0:D]
                out[f'{p}.k_proj.weight'] = fused[D:2 * D]
                out[f'{p}.v_proj.weight'] = fused[2 * D:3 * D]
            w = sd[f'model.{kind}.layers.{i}.fc1.weight']
            t = w.t().contiguous().t()  # same values, stride (1, F)
            assert t.stride() == (1, F)
            out[f'model.{kind}.layers.{i}.fc1.weight'] = t
    return tie(out)


def main():
    os.makedirs(OUT, exist_ok=True)
    sd = state_dict()

    d = model_dir('tiny')
    write_safetensors(os.path.join(d, 'model.safetensors'), sd)

    d = model_dir('tiny-legacy')
    torch.save(tie(sd), os.path.join(d, 'pytorch_model.bin'), _use_new_zipfile_serialization=False)

    d = model_dir('tiny-sharded')
    views = as_views(sd)
    names = list(views.keys())
    # Keep each fused q/k/v storage in one shard (torch saves a storage per file once).
    first = {n: views[n] for n in names if '.layers.0.' in n or n.startswith('model.shared') or 'embed' in n or 'lm_head' in n}
    second = {n: views[n] for n in names if n not in first}
    weight_map = {}
    for fname, part in [('pytorch_model-00001-of-00002.bin', first), ('pytorch_model-00002-of-00002.bin', second)]:
        torch.save(part, os.path.join(d, fname))
        for n in part:
            weight_map[n] = fname
    with open(os.path.join(d, 'pytorch_model.bin.index.json'), 'w') as f:
        json.dump({'metadata': {'total_size': sum(t.numel() * 4 for t in sd.values())}, 'weight_map': weight_map}, f, indent=2)

    d = model_dir('tiny-bf16')
    torch.save(tie({k: v.to(torch.bfloat16) for k, v in sd.items()}), os.path.join(d, 'pytorch_model.bin'))

    d = model_dir('tiny-fp16-legacy')
    torch.save(tie({k: v.half() for k, v in sd.items()}), os.path.join(d, 'pytorch_model.bin'), _use_new_zipfile_serialization=False)

    # Assorted views, with their expected values.
    g = torch.Generator().manual_seed(1)
    base = torch.randn(6, 8, generator=g)
    half_base = torch.randn(40, generator=g).half()
    bf_base = torch.randn(40, generator=g).bfloat16()
    views = {
        'base': base,
        'transposed': base.t(),
        'row_slice': base[2:5],
        'col_slice': base[:, 3:7],
        'strided': base[::2, 1::3],
        'expanded': torch.randn(1, 5, generator=g).expand(4, 5),
        'scalar': torch.tensor(3.25),
        'empty': torch.zeros(0, 3),
        'half_view': half_base[4:36].view(4, 8).t(),
        'half_base': half_base,
        'bf16_view': bf_base[1:31:3],
        'bf16_base': bf_base,
        'double': torch.randn(3, 2, generator=g).double(),
        'ids': torch.arange(7, dtype=torch.int64),
    }
    torch.save(views, os.path.join(OUT, 'views.bin'))
    expected = {}
    for k, v in views.items():
        expected[k] = {'shape': list(v.shape), 'stride': list(v.stride()), 'offset': v.storage_offset(),
                       'dtype': str(v.dtype).replace('torch.', ''),
                       'values': [float(x) if v.is_floating_point() else int(x) for x in v.contiguous().float().reshape(-1).tolist()]
                       if v.is_floating_point() else [int(x) for x in v.reshape(-1).tolist()]}
    with open(os.path.join(OUT, 'views.json'), 'w') as f:
        json.dump(expected, f)
    torch.save(views, os.path.join(OUT, 'views-legacy.bin'), _use_new_zipfile_serialization=False)
    print('wrote', OUT, 'with torch', torch.__version__)


if __name__ == '__main__':
    main()
