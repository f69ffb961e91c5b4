"""Every open-model family the course loads, decoded by the course and by transformers on the same
machine: tokens per second and whether the tokens are the same.

    python ch05_pretraining/benchmark_families.py [--new-tokens 32] [--rounds 3]
        [--families llama qwen3 ...] [--device cuda]

For each family (Llama 3, Qwen3, Qwen3-MoE, Gemma 3, Olmo 3, gpt-oss, Qwen3-Next, Qwen3.5 dense
and with experts, DeepSeek V3, Gemma 4 of E2B's kind), transformers builds a model of one shape
with random weights (512-number embeddings, 8 layers, 8 query heads and 2 key-value heads of 64
numbers, a vocabulary of 32,000; its family's windows, experts, DeltaNet layers, latent
attention, and Gemma 4's per-layer inputs and shared keys and values, at small sizes) and
saves it in the published format, in float32. The course loads that folder (load_open_model) and
decodes greedily from a 16-token prompt with FastDecoder (5.7.1) through generate_text;
transformers decodes with its cached generate. The rounds are interleaved, in alternating order;
tokens per second is the median over --rounds. No real weights can be downloaded here, so the
models are random: what is measured is the work of each architecture at this size, not a model's
quality. (transformers' Qwen3-Next and Qwen3.5 run their PyTorch Gated DeltaNet code unless the
flash-linear-attention package is installed.)"""

import statistics
import tempfile
import time

import torch
import transformers

from ch05_pretraining.benchmark_generation import synchronize
from shared import FastDecoder, generate_text, load_open_model
from shared.tooling.command_line import CommandParser, device_arg, number_arg, run_main
from shared.utils import measured_on


SHAPE = dict(vocab_size=32_000, hidden_size=512, num_hidden_layers=8, num_attention_heads=8,
             num_key_value_heads=2, head_dim=64, max_position_embeddings=4096,
             pad_token_id=0, eos_token_id=None)
MOE = dict(num_experts_per_tok=2, moe_intermediate_size=512)
DELTANET = dict(linear_num_key_heads=4, linear_num_value_heads=8, linear_key_head_dim=64,
                linear_value_head_dim=64)
# Olmo 3 takes 512 / 8 heads; DeepSeek V3 reads head_dim as its RoPE's width
without_head_dim = {key: value for key, value in SHAPE.items() if key != "head_dim"}
FAMILIES = {  # name: (transformers' class, its configuration)
    "llama": ("LlamaForCausalLM", lambda: transformers.LlamaConfig(
        **SHAPE, intermediate_size=1536)),
    "qwen3": ("Qwen3ForCausalLM", lambda: transformers.Qwen3Config(
        **SHAPE, intermediate_size=1536)),
    "qwen3_moe": ("Qwen3MoeForCausalLM", lambda: transformers.Qwen3MoeConfig(
        **SHAPE, num_experts=8, **MOE)),
    "gemma3_text": ("Gemma3ForCausalLM", lambda: transformers.Gemma3TextConfig(
        **SHAPE, intermediate_size=1536, sliding_window=16)),
    "olmo3": ("Olmo3ForCausalLM", lambda: transformers.Olmo3Config(
        **without_head_dim, intermediate_size=1536, sliding_window=16)),
    "gpt_oss": ("GptOssForCausalLM", lambda: transformers.GptOssConfig(
        **SHAPE, num_local_experts=8, num_experts_per_tok=2, intermediate_size=512,
        sliding_window=16)),
    "qwen3_next": ("Qwen3NextForCausalLM", lambda: transformers.Qwen3NextConfig(
        **SHAPE, num_experts=8, **MOE, shared_expert_intermediate_size=512, **DELTANET)),
    "qwen3_5_text": ("Qwen3_5ForCausalLM", lambda: transformers.Qwen3_5TextConfig(
        **SHAPE, intermediate_size=1536, **DELTANET)),
    "qwen3_5_moe_text": ("Qwen3_5MoeForCausalLM", lambda: transformers.Qwen3_5MoeTextConfig(
        **SHAPE, num_experts=8, **MOE, shared_expert_intermediate_size=512, **DELTANET)),
    "deepseek_v3": ("DeepseekV3ForCausalLM", lambda: transformers.DeepseekV3Config(
        **{**without_head_dim, "num_key_value_heads": 8}, intermediate_size=1536, q_lora_rank=256,
        kv_lora_rank=128, qk_nope_head_dim=64, qk_rope_head_dim=32, v_head_dim=64,
        n_routed_experts=8, n_group=4, topk_group=2, n_shared_experts=1, first_k_dense_replace=1,
        **MOE)),
    "gemma4_text": ("Gemma4ForCausalLM", lambda: transformers.Gemma4TextConfig(  # E2B's kind
        **SHAPE, intermediate_size=1536, sliding_window=16, global_head_dim=128,
        layer_types=(["sliding_attention"] * 3 + ["full_attention"]) * 2,
        hidden_size_per_layer_input=64, vocab_size_per_layer_input=32_000,
        num_kv_shared_layers=2, use_double_wide_mlp=True, final_logit_softcapping=30.0)),
}


def compare(name: str, new_tokens: int, rounds: int, device: str) -> tuple[float, float, bool]:
    """(our tokens/s, transformers' tokens/s, the same tokens)."""
    class_name, config = FAMILIES[name]
    torch.manual_seed(0)
    theirs = getattr(transformers, class_name)(config()).eval()
    with tempfile.TemporaryDirectory() as folder:
        theirs.save_pretrained(folder)
        ours = FastDecoder(load_open_model(folder).to(device))
    theirs.to(device)
    prompt = torch.randint(0, SHAPE["vocab_size"], (1, 16),
                           generator=torch.Generator().manual_seed(1)).to(device)
    decoders = {
        "ours": lambda: generate_text(ours, prompt, new_tokens),
        "transformers": lambda: theirs.generate(
            prompt, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
            pad_token_id=0, eos_token_id=None)}
    tokens, speeds = {}, {key: [] for key in decoders}
    for run in decoders.values():
        run()  # warm-up
    for round_ in range(rounds):
        for key, run in list(decoders.items())[::1 if round_ % 2 == 0 else -1]:
            synchronize(device)
            start = time.perf_counter()
            with torch.no_grad():
                tokens[key] = run()
            synchronize(device)
            speeds[key].append(new_tokens / (time.perf_counter() - start))
    return (statistics.median(speeds["ours"]), statistics.median(speeds["transformers"]),
            torch.equal(tokens["ours"], tokens["transformers"]))


def main() -> None:
    parser = CommandParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=number_arg(int, 1), default=32)
    parser.add_argument("--rounds", type=number_arg(int, 1), default=3)
    parser.add_argument("--families", nargs="+", choices=list(FAMILIES), default=list(FAMILIES))
    parser.add_argument("--device", type=device_arg, default="cpu")
    args = parser.parse_args()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    print(f"{measured_on()}, transformers {transformers.__version__}, device {args.device}; "
          f"greedy, prompt 16 tokens, {args.new_tokens} new, median of {args.rounds} rounds")
    print(f"{'family':<16} {'FastDecoder':>12} {'transformers':>13} {'ratio':>7}  same tokens")
    for name in args.families:
        ours, theirs, same = compare(name, args.new_tokens, args.rounds, args.device)
        print(f"{name:<16} {ours:>8.1f} t/s {theirs:>9.1f} t/s {ours / theirs:>6.2f}x  "
              f"{'yes' if same else 'NO'}", flush=True)


if __name__ == "__main__":
    run_main(main)
