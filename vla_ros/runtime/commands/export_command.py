"""`vla-ros export`: write a model's ONNX graphs and manifest.json into a directory."""
from __future__ import annotations

import argparse
import json

HELP = "export a model to ONNX (vision, prefill, denoise step) with a manifest"
DESCRIPTION = """Export a checkpoint, preset or LeRobot pi0 / pi0.5 directory to ONNX (docs/export.md).

kv_expert (vla_ros checkpoints, random: presets):
  embed.onnx         input_ids (1, P) -> inputs_embeds (1, P, D)
  vision.onnx        pixel_patches (B, L, Cp) + per-size tables -> image_embeds, deepstack_embeds
  prefill.onnx       inputs_embeds, deepstack_embeds, position_ids (3, 1, P), attention_mask (1, P)
                     -> prefix_keys / prefix_values (layers, kv_heads, P, head_dim), logits (1, V)
  denoise_step.onnx  x (S, T, A), t, dt, prefix K/V, prefix_mask, suffix_positions -> velocity, x_next
joint_mot (LeRobot pi0 / pi0.5 directories):
  vision.onnx        pixels (B, 3, R, R) in [-1, 1] -> image_embeds (B, tokens, W)
  prefill.onnx       image_embeds (1, Ni, W), input_ids (Nl,), pi0: state (state_dim,) normalized
                     -> prefix_keys / prefix_values (layers, kv_heads, P, head_dim)
  denoise_step.onnx  x (S, T, A), t, dt, prefix K/V, suffix_positions -> velocity, x_next
  manifest.json      shapes, dtypes, opset, model hash, code version, file hashes

Dynamic axes: prefix length P (image / text tokens), samples S, images B. Graphs whose
weights exceed ~1.8 GB keep them in <graph>.onnx.data (protobuf's 2 GB limit)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="random:tiny", help="checkpoint directory or preset (default random:tiny)")
    parser.add_argument("--format", default="onnx", choices=["onnx"], help="export format (default onnx)")
    parser.add_argument("--out", required=True, help="output directory (created)")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default 17)")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "bf16"],
                        help="weights and activations (noisy actions and time stay fp32; default fp32)")
    parser.add_argument("--json", action="store_true", help="print the manifest as JSON")


def run(args: argparse.Namespace) -> int:
    from vla_ros.command_error import CommandError

    import torch

    from vla_ros.model import CheckpointError, UnknownPresetError, load_model
    from vla_ros.runtime.export.onnx_export import DEFAULT_OPSET, ExportError, export_onnx

    opset = args.opset if args.opset is not None else DEFAULT_OPSET
    if not 14 <= opset <= 20:
        raise CommandError(f"--opset must be in [14, 20] (the TorchScript exporter's range), got {opset}")
    try:
        model, _ = load_model(args.model, device="cpu", dtype=torch.float32)
    except (CheckpointError, UnknownPresetError, ValueError) as exc:
        raise CommandError(str(exc)) from exc
    try:
        manifest = export_onnx(model, args.out, opset=opset, dtype=args.dtype, model_name=str(args.model))
    except ExportError as exc:  # a family without exported graphs
        raise CommandError(str(exc)) from exc
    if args.json:
        print(json.dumps(manifest))
    else:
        total = sum(g["bytes"] + sum(e["bytes"] for e in g["external_data"]) for g in manifest["graphs"].values())
        print(f"exported {args.model} ({manifest['dtype']}, opset {manifest['opset']}) to {args.out}: "
              f"{', '.join(g['file'] for g in manifest['graphs'].values())} ({total / 1e6:.1f} MB), "
              f"model hash {manifest['model_hash'][:16]}")
    return 0
