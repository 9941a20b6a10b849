"""MODEL_CARD.md, rendered from what training and evaluation wrote into the checkpoint directory:
`training.json` (by `vla-ros train`) and, when present, `eval.json` (by `evaluation.py`, from
the metrics.json files `vla-ros eval` wrote). Nothing in the card is typed by hand."""
from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

from vla_ros.model.config import VLAConfig


def _fmt(v: Any, nd: int = 3) -> str:
    return f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def compact_command(command: str) -> str:
    """Runs of `--bags DIR/seedN` (or `--val-bags`) with consecutive N -> one `--bags DIR/seed{A..B}`:
    the shell expands it back to the same paths (the flags take several), so the card stays
    copyable without 80 repeated flags."""
    try:
        words = shlex.split(command)
    except ValueError:
        return command
    out: list[str] = []
    i = 0
    while i < len(words):
        m = re.fullmatch(r"(.*?)(\d+)", words[i + 1]) if words[i] in ("--bags", "--val-bags") and i + 1 < len(words) else None
        if m is None:
            out.append(shlex.quote(words[i]))
            i += 1
            continue
        flag, stem, first = words[i], m.group(1), int(m.group(2))
        last, j = first, i + 2
        while j + 1 < len(words) and words[j] == flag and words[j + 1] == f"{stem}{last + 1}":
            last, j = last + 1, j + 2
        if last - first >= 2 and not m.group(2).startswith("0") and re.fullmatch(r"[\w./-]*", stem):
            out += [flag, f"{stem}{{{first}..{last}}}"]  # plain characters: safe unquoted
        else:
            out += [shlex.quote(w) for w in words[i:j]]
        i = j
    return " ".join(out)


def _architecture(cfg: VLAConfig, params: int) -> list[str]:
    text, vision = cfg.vlm["text_config"], cfg.vlm["vision_config"]
    exp = {**text, **cfg.expert}
    h, w = cfg.image.nominal_height, cfg.image.nominal_width
    from vla_ros.model.image_preprocess import ImagePreprocessor

    pre = ImagePreprocessor(cfg.image)
    return [
        f"- `{cfg.architecture}` (Alpamayo-R1 shape), {params / 1e6:.2f}M parameters, float32 safetensors.",
        f"- VLM: Qwen3-VL, text {text['num_hidden_layers']} layers x hidden {text['hidden_size']} "
        f"({text['num_attention_heads']} heads, {text['num_key_value_heads']} KV heads, head_dim {text['head_dim']}, MLP {text['intermediate_size']}), "
        f"vocabulary {text['vocab_size']}; vision tower {vision['depth']} blocks x {vision['hidden_size']}, patch {vision['patch_size']}, merge {vision['spatial_merge_size']}.",
        f"- Expert: {exp['num_hidden_layers']} layers x hidden {exp['hidden_size']} (MLP {exp['intermediate_size']}) reading the VLM cache layer by layer; "
        f"{cfg.action_space.num_waypoints} action tokens of (acceleration, curvature) at {cfg.action_space.dt} s; flow matching, "
        f"{cfg.flow.steps} Euler steps, {cfg.flow.direction}, {cfg.flow.grid} grid.",
        f"- Inputs: {cfg.image.num_cameras} cameras x {cfg.image.num_frames} frames resized from {h}x{w} to "
        f"{'x'.join(map(str, pre.model_input_hw))} ({pre.tokens_per_image(h, w)} vision tokens each); ego history of "
        f"{cfg.history.steps} poses as {cfg.history.num_tokens} tokens.",
        "- Tokenizer: byte-level BPE trained with `tokenizers` on the sim's reasoning grammar and the prompt text, plus the "
        "chat/vision/history/reasoning special tokens and 1000 trajectory tokens.",
    ]


def render(model_dir: Path) -> str:
    tr = json.loads((model_dir / "training.json").read_text(encoding="utf-8"))
    cfg = VLAConfig.load(model_dir / "config.json")
    ev_path = model_dir / "eval.json"
    ev = json.loads(ev_path.read_text(encoding="utf-8")) if ev_path.is_file() else None
    lines = [f"# {tr['name']}", "",
             "The default driving model of vla_ros: a small vision-language-action policy of the `kv_expert` "
             "architecture, trained from scratch by this project on its own driving world (`vla-ros sim`). It predicts "
             "the ego path for the next 6.4 s from 4 cameras and the ego history, and says why in one sentence.",
             "", "## Architecture", "", *_architecture(cfg, tr["parameters"]), "", "## Training data", ""]
    data = tr.get("data", {})
    lines += [f"- {len(tr['bags'])} training bags: {', '.join(tr['bags'])}" +
              (f" (`vla-ros sim record --scenario {data.get('scenario', 'mix')} --duration {data.get('duration_s', '?')}`)" if data else ""),
              f"- {tr['examples']} training ticks (10 Hz); skipped ticks: "
              + (", ".join(f"{k} {v}" for k, v in tr["skipped"].items()) or "none"),
              "- maneuver labels: " + ", ".join(f"{k} {v}" for k, v in tr["maneuvers"].items()),
              f"- held-out bags (never trained on), for validation losses: {', '.join(tr['val_bags']) or 'none'}"
              + (f"; for evaluation: {ev['bags']}" if ev else ""),
              f"- action targets: (acceleration, curvature) solved from the recorded future odometry so that the action "
              f"space's own integration reproduces it (round trip: mean {tr['action_roundtrip_m']['mean']:.3f} m, max "
              f"{tr['action_roundtrip_m']['max']:.3f} m); normalization from the data: mean {tr['action_stats']['mean']}, "
              f"std {tr['action_stats']['std']}.", "", "## Training", "",
              f"- `{compact_command(tr['command'])}`" if tr.get("command") else "- (command not recorded)",
              f"- {tr['steps']} steps of batch {tr['batch_size']}, AdamW lr {tr['lr']} (warm-up, cosine), seed {tr['seed']}, "
              f"on {tr.get('device_name') or tr['device']}: {tr['train_time_s'] / 60:.1f} min of training + {tr['data_time_s'] / 60:.1f} min building the example cache.",
              f"- Losses: flow matching on normalized actions + {tr['lm_weight']} x language-model loss on the reasoning; the expert "
              f"attends to the reasoning in {tr['reasoning_keep']:.0%} of samples and to the prompt only in the rest, so ticks "
              "with and without reasoning are both in distribution."
              + (f" Examples drawn with weight count(maneuver)^-{tr['balance']} so rare maneuvers are seen more often."
                 if tr.get("balance") else ""),
              "- Final: " + ", ".join(f"{k} {_fmt(v)}" for k, v in tr.get("final", {}).items() if k != "lr"), ""]
    if tr.get("note"):
        lines.insert(-1, f"- {tr['note']}")
    if tr.get("recipe_command"):
        session = (" in its last session (resumed with `--resume`; the training time above adds up each session's "
                   "training to its last checkpoint)") if tr.get("recipe_resumed") else ""
        lines.insert(-1, f"- Recipe: `{tr['recipe_command']}`: recording the bags, building the cache and training took "
                         f"{tr['recipe_train_time_s'] / 60:.0f} min{session} on {tr.get('device_name') or tr['device']} with "
                         f"{tr['recipe_cores']} CPU cores" + (f"; the four evaluations, the benchmark and this card "
                         f"{tr['recipe_eval_time_s'] / 60:.0f} min more on the evaluation machine." if tr.get("recipe_eval_time_s") else "."))
    elif tr.get("recipe_time_s"):
        lines.insert(-1, f"- Whole recipe (`scripts/train_default_model`: bags, cache, training, evaluation): {tr['recipe_time_s'] / 60:.0f} min.")
    lines += ["## Evaluation", ""]
    if ev is None:
        lines += ["Not evaluated yet: run `vla-ros eval` on held-out bags and `python -m vla_ros.train.evaluation`.", ""]
    else:
        lines += [f"`{ev['command']}` on {ev['bags']} ({ev['ticks']} ticks).", "",
                  "| metric | value | target | met |", "|---|---|---|---|"]
        for row in ev["rows"]:
            lines.append(f"| {row['name']} | {row['value']} | {row['target']} | {'' if row['met'] is None else 'yes' if row['met'] else '**no**'} |")
        lines += ["", ev.get("notes", ""), ""]
    lines += ["## Limits", "",
              "Trained only on the procedural world of `vla-ros sim` (one road type, boxes for vehicles, no pedestrians); "
              "it has never seen a real camera. Open-loop figures; not a driving system.", ""]
    return "\n".join(lines)


def write_model_card(model_dir: Path) -> Path:
    path = Path(model_dir) / "MODEL_CARD.md"
    path.write_text(render(Path(model_dir)), encoding="utf-8")
    return path
