#!/usr/bin/env python3
"""Reference outputs from Hugging Face transformers, for Lamina's tests.

Two jobs, each run where torch + transformers are installed:

  tiny    For each tiny model dir made by tools/make_tiny_llama.py, writes
          <dir>/reference.json: prompt logits, greedy generation and the raw logits of
          each generation step, for 3 fixed prompts (token ids of lengths 1, 7, 19).
  v5      The same for the dirs made by tools/make_tiny_llama_v5.py (prompt lengths 1, 9,
          40; no step logits), plus the RoPE transformers set up (inv_freq, attention scaling).
  smollm2 Loads the SmolLM2-135M-Instruct Q4_1 GGUF through transformers (dequantized to
          fp32) and writes smollm2_greedy.json (greedy, 6 prompts incl. a chat prompt),
          smollm2_beams.json (beam search, 3 configs x 3 prompts) and the HF tokenizer
          converted from the GGUF into smollm2_hf_tokenizer/.

Every model is run in fp32 with eager attention. Floats are written as the shortest
decimal that round-trips the float32 value (so they hold full float32 precision).

Usage:
  python3 tools/hf_reference.py tiny    [--data tests/data] [--device cpu|cuda] [--out DIR]
  python3 tools/hf_reference.py v5      [--data tests/data] [--device cpu|cuda] [--out DIR]
  python3 tools/hf_reference.py smollm2 [--data tests/data] [--device cpu|cuda] [--out DIR]
                                        [--gguf models/SmolLM2-135M-Instruct.Q4_1.gguf]
--out writes the results there instead of into --data (to compare two machines' runs).
"""

import argparse
import importlib.metadata
import json
import os
import platform
import shutil
import sys
import tempfile

import numpy as np
import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

TINY_MODELS = ["tiny_llama", "tiny_llama_b", "tiny_llama_c"]
TINY_PROMPT_LENGTHS = [1, 7, 19]
TINY_PROMPT_SEED = 20240607
TINY_FIRST_ID = 3  # ids 0..2 are <unk>, <s>, </s>
V5_MODELS = ["tiny_llama_v5_llama3", "tiny_llama_v5_yarn", "tiny_llama_v5_linear", "tiny_llama_v5_dynamic", "tiny_mistral_v5"]
V5_PROMPT_LENGTHS = [1, 9, 40]
V5_PROMPT_SEED = 20261207
N_NEW_TOKENS = 32

SMOLLM2_PROMPTS = [
    "Born in north-east France, Soyer trained as a",
    "The capital of France is",
    "def fibonacci(n):",
    "Once upon a time, in a small village,",
    "The three primary colors are",
]
SMOLLM2_CHAT = [{"role": "user", "content": "What is the capital of France?"}]
SMOLLM2_BEAM_PROMPTS = SMOLLM2_PROMPTS[:3]
SMOLLM2_BEAM_CONFIGS = [
    {"num_beams": 2, "num_return_sequences": 2, "max_new_tokens": 24, "length_penalty": 1.0, "early_stopping": False},
    {"num_beams": 4, "num_return_sequences": 4, "max_new_tokens": 24, "length_penalty": 1.0, "early_stopping": False},
    {
        "num_beams": 4,
        "num_return_sequences": 4,
        "max_new_tokens": 24,
        "length_penalty": 1.0,
        "early_stopping": True,
        "no_repeat_ngram_size": 3,
        "repetition_penalty": 1.2,
    },
]
HF_TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"]


def f32(x):
    """A float32 value as the shortest Python float that round-trips it."""
    return float(str(np.float32(x)))


def f32_list(t):
    a = t.detach().to("cpu", torch.float32).numpy()
    if a.ndim == 1:
        return [float(str(v)) for v in a]
    return [f32_list_np(row) for row in a]


def f32_list_np(a):
    return [float(str(v)) for v in a]


def top2_gap(logits_row):
    top = torch.topk(logits_row.float(), 2).values
    return float(top[0] - top[1])


def versions(device):
    v = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
    }
    for pkg in ["tokenizers", "safetensors", "gguf"]:
        try:
            v[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            pass
    if device == "cuda":
        v["device"] = torch.cuda.get_device_name(0)
        v["cuda"] = torch.version.cuda
        v["allow_tf32"] = torch.backends.cuda.matmul.allow_tf32
    else:
        v["device"] = "cpu: " + (platform.processor() or platform.machine())
    return v


def dump(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


def greedy(model, input_ids, n_new, **kw):
    """HF greedy generate; returns (new ids, raw logits of each step [n, vocab])."""
    ids = torch.tensor([input_ids], device=model.device)
    out = model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        do_sample=False,
        max_new_tokens=n_new,
        output_logits=True,
        return_dict_in_generate=True,
        **kw,
    )
    new_ids = out.sequences[0, ids.shape[1]:].tolist()
    step_logits = torch.cat(out.logits, dim=0)  # [n_steps, vocab], before logits processors
    assert step_logits.shape[0] == len(new_ids)
    # Cross-check generate (KV cache) against one full forward over prompt + output.
    with torch.no_grad():
        full = model(out.sequences).logits[0, ids.shape[1] - 1 : -1]
    assert full.argmax(-1).tolist() == step_logits.argmax(-1).tolist(), "cached vs full argmax differ"
    diff = (full - step_logits).abs().max().item()
    return new_ids, step_logits, diff


def load_model(path, device, **kw):
    model, info = AutoModelForCausalLM.from_pretrained(
        path, dtype=torch.float32, attn_implementation="eager", output_loading_info=True, **kw
    )
    bad = {k: v for k, v in info.items() if v and k != "error_msgs"} | (
        {"error_msgs": info["error_msgs"]} if info.get("error_msgs") else {}
    )
    assert not bad, f"{path}: loading problems {bad}"
    assert all(p.dtype == torch.float32 for p in model.parameters())
    return model.to(device).eval()


def tiny_reference(args, command, name, prompts, keep_step_logits=True):
    """reference.json of one tiny model dir for these prompts."""
    from safetensors import safe_open

    path = os.path.join(args.data, name)
    model = load_model(path, args.device)
    cfg = model.config
    # The RoPE transformers set up, before any forward pass (dynamic NTK would update it past
    # max_position_embeddings, which no case reaches).
    rotary = model.model.rotary_emb
    hf_rope = {
        "rope_type": rotary.rope_type,
        "inv_freq": f32_list(rotary.inv_freq),
        "attention_scaling": f32(rotary.attention_scaling),
    }

    # The loaded parameters must be exactly the stored values upcast to fp32.
    state = model.state_dict()
    files = sorted(f for f in os.listdir(path) if f.endswith(".safetensors"))
    for fname in files:
        with safe_open(os.path.join(path, fname), framework="pt") as f:
            for k in f.keys():
                assert torch.equal(f.get_tensor(k).float(), state[k].cpu()), k
    if cfg.tie_word_embeddings:
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()

    # Stop on nothing: random models may emit </s>; we want exactly N_NEW_TOKENS.
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    cases, gaps = [], []
    for ids in prompts:
        with torch.no_grad():
            logits = model(torch.tensor([ids], device=args.device)).logits[0]
        new_ids, step_logits, diff = greedy(model, ids, N_NEW_TOKENS)
        assert len(new_ids) == N_NEW_TOKENS, new_ids
        assert torch.equal(step_logits[0].argmax(), logits[-1].argmax())
        case_gaps = [top2_gap(r) for r in step_logits]
        gaps.append(min(case_gaps))
        case = {"input_ids": ids, "logits": f32_list(logits), "greedy_ids": new_ids}
        if keep_step_logits:
            case["step_logits"] = f32_list(step_logits)
        case |= {"top2_gaps": [f32(g) for g in case_gaps], "min_top2_gap": f32(min(case_gaps))}
        cases.append(case)
        print(f"{name} len {len(ids)}: min top-2 gap {min(case_gaps):.4g}, cached-vs-full max diff {diff:.3g}")

    tok = AutoTokenizer.from_pretrained(path)
    texts = ["Hello, world!", " The capital of France is Paris.", "def add(a, b):\n    return a + b", "Zebra café 42"]
    ref = {
        "generated_by": command,
        "versions": versions(args.device),
        "model": name,
        "hf_rope_parameters": getattr(cfg, "rope_parameters", None),
        "n_new_tokens": N_NEW_TOKENS,
        "notes": "logits: [prompt position][vocab] from one forward pass over input_ids. "
        "greedy_ids: model.generate(do_sample=False, max_new_tokens=32) with eos stopping disabled "
        "(generation_config.eos_token_id=None). "
        + (
            "step_logits: raw logits of each generate step (output_logits=True, KV cache), [step][vocab]; "
            "step 0 is the last prompt position. "
            if keep_step_logits
            else ""
        )
        + "top2_gaps: top-1 minus top-2 logit per step. tokenizer_cases: AutoTokenizer(text) "
        "with default add_special_tokens.",
        "cases": cases,
        "tokenizer_cases": [{"text": t, "input_ids": tok(t)["input_ids"]} for t in texts],
    }
    if not keep_step_logits:
        ref["hf_rope"] = hf_rope
        ref["notes"] += (
            " hf_rope: model.model.rotary_emb at load: rope_type, inv_freq (float32) and attention_scaling "
            "(the factor transformers multiplies cos and sin by)."
        )
    print(f"{name}: min top-2 gap over all cases {min(gaps):.4g}")
    return ref


def run_tiny(args, command):
    rng = np.random.default_rng(TINY_PROMPT_SEED)
    for name in TINY_MODELS:
        vocab = AutoConfig.from_pretrained(os.path.join(args.data, name)).vocab_size
        prompts = [rng.integers(TINY_FIRST_ID, vocab, size=n).tolist() for n in TINY_PROMPT_LENGTHS]
        ref = tiny_reference(args, command, name, prompts)
        dump(os.path.join(args.out or args.data, name, "reference.json"), ref)


def run_v5(args, command):
    """The transformers-5-saved tiny models (tools/make_tiny_llama_v5.py): no step logits (the greedy ids
    check the decode path), a 40-token prompt for positions past the llama3 / yarn original contexts."""
    rng = np.random.default_rng(V5_PROMPT_SEED)
    for name in V5_MODELS:
        vocab = AutoConfig.from_pretrained(os.path.join(args.data, name)).vocab_size
        prompts = [rng.integers(TINY_FIRST_ID, vocab, size=n).tolist() for n in V5_PROMPT_LENGTHS]
        ref = tiny_reference(args, command, name, prompts, keep_step_logits=False)
        dump(os.path.join(args.out or args.data, name, "reference.json"), ref)


def run_smollm2(args, command):
    gguf_dir, gguf_name = os.path.split(os.path.abspath(args.gguf))
    tok = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_name)
    model = load_model(gguf_dir, args.device, gguf_file=gguf_name)
    out_dir = args.out or args.data
    ver = versions(args.device)
    gen_cfg = model.generation_config.to_dict()
    eos = model.generation_config.eos_token_id
    pad = model.generation_config.pad_token_id
    print("generation_config:", gen_cfg)

    # The tokenizer converted from the GGUF, as transformers saves it.
    with tempfile.TemporaryDirectory() as tmp:
        tok.save_pretrained(tmp)
        saved = sorted(os.listdir(tmp))
        print("save_pretrained wrote", saved)
        tok_dir = os.path.join(out_dir, "smollm2_hf_tokenizer")
        os.makedirs(tok_dir, exist_ok=True)
        for f in HF_TOKENIZER_FILES:
            if f in saved:
                shutil.copy(os.path.join(tmp, f), os.path.join(tok_dir, f))

    prompts = [{"text": t, "input_ids": tok(t)["input_ids"], "chat": False} for t in SMOLLM2_PROMPTS]
    chat_text = tok.apply_chat_template(SMOLLM2_CHAT, add_generation_prompt=True, tokenize=False)
    chat_ids = tok.apply_chat_template(SMOLLM2_CHAT, add_generation_prompt=True, tokenize=True)
    if not isinstance(chat_ids, list):  # transformers 5 returns a BatchEncoding
        chat_ids = chat_ids["input_ids"]
    assert chat_ids == tok(chat_text, add_special_tokens=False)["input_ids"]
    prompts.append({"text": chat_text, "input_ids": chat_ids, "chat": True, "messages": SMOLLM2_CHAT})

    cases, gaps = [], []
    for p in prompts:
        new_ids, step_logits, diff = greedy(model, p["input_ids"], N_NEW_TOKENS)
        case_gaps = [top2_gap(r) for r in step_logits]
        gaps.append(min(case_gaps))
        cases.append(
            dict(
                p,
                greedy_ids=new_ids,
                greedy_text=tok.decode(new_ids, skip_special_tokens=False),
                top2_gaps=[f32(g) for g in case_gaps],
                min_top2_gap=f32(min(case_gaps)),
            )
        )
        print(f"{p['text'][:40]!r}: {len(new_ids)} new, min gap {min(case_gaps):.4g}, diff {diff:.3g}: "
              f"{tok.decode(new_ids)!r}")
    print(f"smollm2 greedy: min top-2 gap over all prompts {min(gaps):.4g}")
    source = {"gguf_file": gguf_name, "gguf_bytes": os.path.getsize(args.gguf)}
    dump(
        os.path.join(out_dir, "smollm2_greedy.json"),
        {
            "generated_by": command,
            "versions": ver,
            "source": source,
            "generation_config": gen_cfg,
            "eos_token_id": eos,
            "n_new_tokens": N_NEW_TOKENS,
            "notes": "AutoModelForCausalLM.from_pretrained(dir, gguf_file=..., dtype=float32, eager). "
            "input_ids: tokenizer(text) with default add_special_tokens (chat: apply_chat_template("
            "add_generation_prompt=True)). greedy_ids: generate(do_sample=False, max_new_tokens=32), "
            "new tokens only, stopping at eos as generate does. greedy_text: decode(greedy_ids, "
            "skip_special_tokens=False). top2_gaps: top-1 minus top-2 raw logit per step.",
            "cases": cases,
        },
    )

    beam_cases = []
    for bc in SMOLLM2_BEAM_CONFIGS:
        for p in prompts[: len(SMOLLM2_BEAM_PROMPTS)]:
            ids = torch.tensor([p["input_ids"]], device=args.device)
            out = model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                do_sample=False,
                output_scores=True,
                return_dict_in_generate=True,
                **bc,
            )
            seqs = out.sequences[:, ids.shape[1]:].tolist()
            scores = [f32(s) for s in out.sequences_scores.tolist()]
            beam_cases.append(
                {
                    "config": bc,
                    "text": p["text"],
                    "input_ids": p["input_ids"],
                    "sequences": seqs,
                    "sequences_scores": scores,
                    "texts": [tok.decode(s, skip_special_tokens=False) for s in seqs],
                }
            )
            print(f"beams {bc['num_beams']} {p['text'][:30]!r}: scores {scores}")
    dump(
        os.path.join(out_dir, "smollm2_beams.json"),
        {
            "generated_by": command,
            "versions": ver,
            "source": source,
            "eos_token_id": eos,
            "pad_token_id": pad,
            "notes": "generate(do_sample=False, output_scores=True, return_dict_in_generate=True, **config). "
            "sequences: the returned sequences, new tokens only, in returned order (best first), "
            "including any pad_token_id padding after eos. sequences_scores as returned.",
            "cases": beam_cases,
        },
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.normpath(os.path.join(here, ".."))
    ap.add_argument("job", choices=["tiny", "v5", "smollm2"])
    ap.add_argument("--data", default=os.path.join(root, "tests", "data"))
    ap.add_argument("--out", default=None, help="write results here instead of --data")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--gguf", default=os.path.join(root, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True, warn_only=True)
    command = f"python3 tools/hf_reference.py {args.job} --device {args.device}"
    if args.job == "tiny":
        run_tiny(args, command)
    elif args.job == "v5":
        run_v5(args, command)
    else:
        run_smollm2(args, command)


if __name__ == "__main__":
    main()
