# Generated from shared/__init__.py and the chapter modules by
# `python -m shared.tooling.notebooks export`. Do not edit.

from shared.architecture import check_architecture as check_architecture, validate_config as validate_config
from shared.checks import check as check, check_finite as check_finite, check_keys as check_keys, check_token_ids as check_token_ids
from shared.data import DATASETS as DATASETS, DataFetchError as DataFetchError, DataFile as DataFile, data_dir as data_dir, download_file as download_file, fetch as fetch, mirror_dir as mirror_dir, prepare_tiktoken_cache as prepare_tiktoken_cache, read_text as read_text, sha256_of as sha256_of
from shared.exercises import check_answer as check_answer
from shared.plotting import heatmap as heatmap
from shared.safe_files import SAVED_BY as SAVED_BY, write_model_folder as write_model_folder
from shared.utils import get_device as get_device, keep_freed_memory as keep_freed_memory, measured_on as measured_on, progress_bar as progress_bar, set_seed as set_seed, write_atomically as write_atomically
CHAPTER_MODULES = ('ch02_text_data.text_data', 'ch02_text_data.bpe', 'ch02_text_data.positions', 'ch03_attention.attention', 'ch03_attention.kv_cache', 'ch04_gpt_model.gpt_model', 'ch04_gpt_model.activation_drift', 'ch04_gpt_model.final_model', 'ch04_gpt_model.modern', 'ch04_gpt_model.linear_attention', 'ch05_pretraining.pretraining', 'ch05_pretraining.checkpoints', 'ch05_pretraining.gpt2_weights', 'ch05_pretraining.decoding', 'ch05_pretraining.training', 'ch05_pretraining.fast_path', 'ch05_pretraining.open_weights', 'ch05_pretraining.shakespeare', 'ch05_pretraining.attention_variants', 'ch05_pretraining.benchmarks', 'ch05_pretraining.scaling', 'ch06_classification.classification', 'ch06_classification.mistakes', 'ch06_classification.lora', 'ch07_instructions.instructions', 'ch07_instructions.evaluation', 'ch07_instructions.judge', 'ch07_instructions.dpo', 'ch07_instructions.grpo')
INFRASTRUCTURE = ['check_architecture', 'validate_config', 'check', 'check_finite', 'check_keys', 'check_token_ids', 'DATASETS', 'DataFetchError', 'DataFile', 'data_dir', 'download_file', 'fetch', 'mirror_dir', 'prepare_tiktoken_cache', 'read_text', 'sha256_of', 'check_answer', 'heatmap', 'SAVED_BY', 'write_model_folder', 'get_device', 'keep_freed_memory', 'measured_on', 'progress_bar', 'set_seed', 'write_atomically']
BOOK_NAMES_REDEFINED = ('calc_loss_batch', 'calc_loss_loader', 'evaluate_model')
BOOK_NAMES_EXTENDED = ('GPTModel',)
def chapter_exports() -> dict[str, str]:
    ...
def present_chapter_modules() -> list[str]:
    ...

# Every chapter's exports, as `from shared import X` finds them at run time.
from ch02_text_data.text_data import (
    simple_tokenize as simple_tokenize,
    SimpleTokenizerV1 as SimpleTokenizerV1,
    SimpleTokenizerV2 as SimpleTokenizerV2,
    build_vocabulary as build_vocabulary,
    GPTDatasetV1 as GPTDatasetV1,
    create_dataloader_v1_book as create_dataloader_v1_book,
    create_dataloader_v1 as create_dataloader_v1,
)
from ch02_text_data.bpe import (
    count_pairs as count_pairs,
    most_frequent_pair as most_frequent_pair,
    merge_pair as merge_pair,
    GPT2_SPLIT_PATTERN as GPT2_SPLIT_PATTERN,
    learn_merges as learn_merges,
    apply_merges as apply_merges,
    apply_merges_fast as apply_merges_fast,
    gpt2_byte_to_char as gpt2_byte_to_char,
    read_gpt2_files as read_gpt2_files,
    write_gpt2_files as write_gpt2_files,
    split_special_tokens as split_special_tokens,
    BPETokenizer as BPETokenizer,
)
from ch02_text_data.positions import (
    sinusoidal_positions as sinusoidal_positions,
)
from ch03_attention.attention import (
    SelfAttention_v1 as SelfAttention_v1,
    SelfAttention_v2 as SelfAttention_v2,
    CausalAttention as CausalAttention,
    MultiHeadAttentionWrapper as MultiHeadAttentionWrapper,
    causal_mask as causal_mask,
    attend as attend,
    MultiHeadAttention as MultiHeadAttention,
)
from ch03_attention.kv_cache import (
    KVCache as KVCache,
)
from ch04_gpt_model.gpt_model import (
    GPT_CONFIG_124M as GPT_CONFIG_124M,
    LayerNorm as LayerNorm,
    GELU as GELU,
    FeedForward as FeedForward,
    TransformerBlock as TransformerBlock,
    count_parameters as count_parameters,
    generate_text_simple as generate_text_simple,
)
from ch04_gpt_model.activation_drift import (
    activation_scales as activation_scales,
)
from ch04_gpt_model.final_model import (
    REQUIRED_CONFIG_KEYS as REQUIRED_CONFIG_KEYS,
    OPTIONAL_CONFIG_KEYS as OPTIONAL_CONFIG_KEYS,
    GPTModel as GPTModel,
    GPT2_SIZES as GPT2_SIZES,
    gpt2_config as gpt2_config,
    parameter_groups as parameter_groups,
)
from ch04_gpt_model.modern import (
    RMSNorm as RMSNorm,
    rope_frequencies as rope_frequencies,
    rope_angles as rope_angles,
    rope_attention_factor as rope_attention_factor,
    apply_rope as apply_rope,
    SwiGLU as SwiGLU,
    attend_with_sinks as attend_with_sinks,
    GroupedQueryAttention as GroupedQueryAttention,
    MultiHeadLatentAttention as MultiHeadLatentAttention,
    OPEN_MODEL_CONFIGS as OPEN_MODEL_CONFIGS,
    MoEFeedForward as MoEFeedForward,
    ModernBlock as ModernBlock,
    MODERN_REQUIRED_KEYS as MODERN_REQUIRED_KEYS,
    MODERN_OPTIONAL_KEYS as MODERN_OPTIONAL_KEYS,
    validate_modern_config as validate_modern_config,
    ModernGPTModel as ModernGPTModel,
)
from ch04_gpt_model.linear_attention import (
    gated_delta_rule as gated_delta_rule,
    gated_delta_rule_chunked as gated_delta_rule_chunked,
    GatedRMSNorm as GatedRMSNorm,
    DeltaNetCache as DeltaNetCache,
    l2_normalize as l2_normalize,
    GatedDeltaNet as GatedDeltaNet,
)
from ch05_pretraining.pretraining import (
    text_to_token_ids as text_to_token_ids,
    token_ids_to_text as token_ids_to_text,
    calc_loss_batch as calc_loss_batch,
    calc_loss_loader as calc_loss_loader,
    evaluate_model as evaluate_model,
    generate_and_print_sample as generate_and_print_sample,
    train_model_simple as train_model_simple,
    plot_losses as plot_losses,
    generate as generate,
    read_gpt2_weights as read_gpt2_weights,
    load_weights_into_gpt as load_weights_into_gpt,
    BOOK_GPT2_SIZES as BOOK_GPT2_SIZES,
    download_and_load_gpt2 as download_and_load_gpt2,
    load_gpt2_params_from_tf_ckpt as load_gpt2_params_from_tf_ckpt,
    assign as assign,
    context_length_of as context_length_of,
    plot_values as plot_values,
)
from ch05_pretraining.checkpoints import (
    save_checkpoint as save_checkpoint,
    save_weights as save_weights,
    load_checkpoint as load_checkpoint,
    generator_states as generator_states,
    restore_generators as restore_generators,
    lesson_run as lesson_run,
)
from ch05_pretraining.gpt2_weights import (
    download_gpt2_weights as download_gpt2_weights,
    read_gpt2_checkpoint as read_gpt2_checkpoint,
    GPT2_LAYOUT_CONFIG_KEYS as GPT2_LAYOUT_CONFIG_KEYS,
    check_gpt2_architecture as check_gpt2_architecture,
    gpt2_tensors as gpt2_tensors,
    load_gpt2_weights as load_gpt2_weights,
    save_gpt2_safetensors as save_gpt2_safetensors,
    load_gpt2 as load_gpt2,
    read_config_json as read_config_json,
)
from ch05_pretraining.decoding import (
    RepetitionPenalty as RepetitionPenalty,
    TopK as TopK,
    Temperature as Temperature,
    TopP as TopP,
    MinP as MinP,
    sampling_processors as sampling_processors,
    next_token_probs as next_token_probs,
    next_token as next_token,
    KVCachedModel as KVCachedModel,
    generate_text as generate_text,
)
from ch05_pretraining.training import (
    Batch as Batch,
    Loader as Loader,
    Device as Device,
    LossFn as LossFn,
    cosine_schedule as cosine_schedule,
    batches_per_step as batches_per_step,
    optimizer_step as optimizer_step,
    train_model as train_model,
    evaluate_losses as evaluate_losses,
    sample_text as sample_text,
    train_model_simple_hooked as train_model_simple_hooked,
    find_highest_gradient as find_highest_gradient,
)
from ch05_pretraining.fast_path import (
    BFloat16Linear as BFloat16Linear,
    Int8Linear as Int8Linear,
    FastDecoder as FastDecoder,
    supports_fast_bf16 as supports_fast_bf16,
    ChunkedCrossEntropy as ChunkedCrossEntropy,
    chunked_cross_entropy as chunked_cross_entropy,
    calc_loss_batch_chunked as calc_loss_batch_chunked,
)
from ch05_pretraining.open_weights import (
    OPEN_MODEL_TYPES as OPEN_MODEL_TYPES,
    TEXT_MODEL_OF as TEXT_MODEL_OF,
    config_from_hf as config_from_hf,
    PACKED_EXPERTS as PACKED_EXPERTS,
    STACKED_EXPERTS as STACKED_EXPERTS,
    unpack_experts as unpack_experts,
    pack_experts as pack_experts,
    SEPARATE_PROJECTIONS as SEPARATE_PROJECTIONS,
    group_projections as group_projections,
    split_projection as split_projection,
    hf_layout as hf_layout,
    tensor_files as tensor_files,
    ROUTER_IN_FLOAT32 as ROUTER_IN_FLOAT32,
    load_open_model as load_open_model,
    download_open_model as download_open_model,
    LLAMA3_SPLIT_PATTERN as LLAMA3_SPLIT_PATTERN,
    LLAMA3_SPECIAL_TOKENS as LLAMA3_SPECIAL_TOKENS,
    load_llama3_tokenizer as load_llama3_tokenizer,
    HFTokenizer as HFTokenizer,
    chat_prompt as chat_prompt,
    harmony_channels as harmony_channels,
    OPEN_MODEL_FAMILIES as OPEN_MODEL_FAMILIES,
    config_to_hf as config_to_hf,
    SOURCE_FILES as SOURCE_FILES,
    save_open_model as save_open_model,
    check_open_model as check_open_model,
)
from ch05_pretraining.shakespeare import (
    ngram_loss as ngram_loss,
    TEXT_MODEL_FILES as TEXT_MODEL_FILES,
    save_text_model as save_text_model,
    load_text_model as load_text_model,
    nats_per_character as nats_per_character,
)
from ch05_pretraining.attention_variants import (
    attention_variants as attention_variants,
    cache_bytes as cache_bytes,
    CharTokenizer as CharTokenizer,
    char_loaders as char_loaders,
    train_and_evaluate as train_and_evaluate,
)
from ch05_pretraining.benchmarks import (
    bits_per_byte as bits_per_byte,
    CountingModel as CountingModel,
    Question as Question,
    choice_log_likelihoods as choice_log_likelihoods,
    NORMALISATIONS as NORMALISATIONS,
    pick as pick,
    accuracy as accuracy,
    wilson_interval as wilson_interval,
    next_line_questions as next_line_questions,
    shuffled_line_questions as shuffled_line_questions,
    read_hellaswag as read_hellaswag,
    read_arc as read_arc,
    read_mmlu as read_mmlu,
)
from ch05_pretraining.scaling import (
    LADDER as LADDER,
    ladder_config as ladder_config,
    shakespeare_windows as shakespeare_windows,
    train_on_budget as train_on_budget,
    isoflop_minimum as isoflop_minimum,
    fit_power_law as fit_power_law,
    fit_loss_law as fit_loss_law,
    law_loss as law_loss,
    compute_optimal as compute_optimal,
)
from ch06_classification.classification import (
    download_and_unzip_spam_data as download_and_unzip_spam_data,
    load_sms_spam as load_sms_spam,
    create_balanced_dataset as create_balanced_dataset,
    random_split as random_split,
    SpamDataset as SpamDataset,
    add_classification_head as add_classification_head,
    train_only_last_block as train_only_last_block,
    count_trainable_parameters as count_trainable_parameters,
    calc_accuracy_loader as calc_accuracy_loader,
    train_classifier_simple as train_classifier_simple,
    classify_review as classify_review,
)
from ch06_classification.mistakes import (
    prompted_answer as prompted_answer,
    predictions as predictions,
    lesson_setup as lesson_setup,
)
from ch06_classification.lora import (
    LoRALayer as LoRALayer,
    LinearWithLoRA as LinearWithLoRA,
    replace_linear_with_lora as replace_linear_with_lora,
    merge_lora as merge_lora,
)
from ch07_instructions.instructions import (
    load_instruction_data as load_instruction_data,
    download_and_load_file as download_and_load_file,
    format_input as format_input,
    RESPONSE_HEADER as RESPONSE_HEADER,
    split_instruction_data as split_instruction_data,
    InstructionDataset as InstructionDataset,
    custom_collate_draft_1 as custom_collate_draft_1,
    custom_collate_draft_2 as custom_collate_draft_2,
    custom_collate_fn_book as custom_collate_fn_book,
    custom_collate_fn as custom_collate_fn,
    extract_response as extract_response,
    generate_responses as generate_responses,
    OLLAMA_URL as OLLAMA_URL,
    check_if_running as check_if_running,
    query_model as query_model,
    judge_prompt as judge_prompt,
    read_score as read_score,
    generate_model_scores as generate_model_scores,
)
from ch07_instructions.evaluation import (
    LESSON_SETTINGS as LESSON_SETTINGS,
    InstructionRun as InstructionRun,
    finetuned_instruction_run as finetuned_instruction_run,
    sequence_logprobs as sequence_logprobs,
    response_logprobs as response_logprobs,
    rouge_l_scores as rouge_l_scores,
)
from ch07_instructions.judge import (
    OllamaError as OllamaError,
    score_responses as score_responses,
    query_ollama as query_ollama,
    ollama_is_running as ollama_is_running,
)
from ch07_instructions.dpo import (
    PreferenceDataset as PreferenceDataset,
    preference_collate_fn as preference_collate_fn,
    dpo_loss as dpo_loss,
    dpo_loss_batch as dpo_loss_batch,
    evaluate_preferences as evaluate_preferences,
)
from ch07_instructions.grpo import (
    ADDITION_ALPHABET as ADDITION_ALPHABET,
    END as END,
    addition_problems as addition_problems,
    addition_text as addition_text,
    addition_prompt as addition_prompt,
    addition_answer as addition_answer,
    ADDER_CONFIG as ADDER_CONFIG,
    addition_split as addition_split,
    pretrain_adder as pretrain_adder,
    finetune_adder as finetune_adder,
    addition_tasks as addition_tasks,
    exact_match as exact_match,
    well_formed as well_formed,
    addition_reward as addition_reward,
    sample_group as sample_group,
    response_text as response_text,
    solve as solve,
    accuracy_with_interval as accuracy_with_interval,
    response_batch as response_batch,
    token_logprobs as token_logprobs,
    group_advantages as group_advantages,
    grpo_loss as grpo_loss,
    train_grpo as train_grpo,
    brevity_bonus as brevity_bonus,
    reward_with_brevity_bonus as reward_with_brevity_bonus,
    reward_with_brevity_bonus_fixed as reward_with_brevity_bonus_fixed,
    checker_pairs as checker_pairs,
    train_dpo_on_pairs as train_dpo_on_pairs,
    read_gsm8k as read_gsm8k,
    GSM8K_INSTRUCTION as GSM8K_INSTRUCTION,
    boxed_answer as boxed_answer,
    gsm8k_reward as gsm8k_reward,
)
