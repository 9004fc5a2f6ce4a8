"""Generation with the torch model: KV cache, sampling, streaming text, stops, batched rollouts, YaRN."""
from __future__ import annotations

import pytest
import torch

from core.infer.generate import generate, generate_batch, set_rope_scaling, stream_generate
from core.infer.sampling import SamplingParams, apply_repetition_penalty, choose_tokens, filter_top_p
from core.infer.text import TextStream

pytestmark = pytest.mark.usefixtures("torch_single_thread")

GREEDY = SamplingParams.greedy_params(48, stop_token_ids=[])


@pytest.fixture(scope="module")
def prompt(infer_model):
    _, tok = infer_model
    return tok.apply_chat_template([{"role": "user", "content": "你好，介绍一下你自己"}],
                                   add_generation_prompt=True, tokenize=True)


def byte_ids(tok, text: str) -> list[int]:
    """One token per UTF-8 byte (the byte-level alphabet of GPT-2, which our BPE starts from)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    to_char = dict(zip(bs, map(chr, cs)))
    return [tok.token_to_id(to_char[b]) for b in text.encode("utf-8")]


def test_kv_cache_matches_full_recompute(infer_model, prompt):
    model, tok = infer_model
    params = GREEDY.model_copy(update={"max_new_tokens": 24})
    cached = generate(model, tok, prompt, params)
    full = generate(model, tok, prompt, params, use_cache=False)
    assert cached.token_ids == full.token_ids
    assert len(cached.token_ids) == 24 and cached.finish_reason == "length"
    assert len(set(cached.token_ids)) > 5  # the fixture's model really walks, so this compares something


def test_stream_pieces_join_to_the_full_text(infer_model, prompt):
    model, tok = infer_model
    pieces = list(stream_generate(model, tok, prompt, GREEDY))
    assert "".join(pieces) == generate(model, tok, prompt, GREEDY).text
    assert all(pieces)


def test_stream_never_splits_a_multibyte_character(infer_model):
    _, tok = infer_model
    text = "你好🙂é世界🎉"
    ids = byte_ids(tok, text)
    assert None not in ids and len(ids) == len(text.encode("utf-8"))
    stream = TextStream(lambda i: tok.decode(i, skip_special_tokens=True))
    pieces = [p for p in (stream.push(i) for i in ids) if p]
    pieces.append(stream.finish("length"))
    assert "".join(pieces) == text
    assert all("\ufffd" not in p for p in pieces)
    assert [p for p in pieces if p] == list(text)  # each character released as soon as its last byte arrives


def test_incomplete_bytes_at_the_end_are_flushed_as_replacement(infer_model):
    _, tok = infer_model
    stream = TextStream(lambda i: tok.decode(i, skip_special_tokens=True))
    out = [stream.push(i) for i in byte_ids(tok, "a你")[:-1]]  # "a" + 2 of the 3 bytes of 你
    assert "".join(out) == "a"
    assert stream.finish("length") == "\ufffd" and stream.finish_reason == "length"


def test_stop_string_cuts_exactly(infer_model, prompt):
    model, tok = infer_model
    full = generate(model, tok, prompt, GREEDY).text
    stop = full[20:23]
    expected = full[:full.find(stop)]
    params = GREEDY.model_copy(update={"stop": [stop]})
    result = generate(model, tok, prompt, params)
    assert result.text == expected and result.finish_reason == "stop"
    pieces = list(stream_generate(model, tok, prompt, params))
    assert "".join(pieces) == expected


def test_stop_string_straddling_pieces_is_held_back_then_cut(infer_model):
    _, tok = infer_model
    ids = tok.encode("Hello world. The END is near")
    stream = TextStream(lambda i: tok.decode(i, skip_special_tokens=True), stop=["END", "xyz"])
    shown = "".join(stream.push(i) for i in ids if not stream.done)
    assert shown == "Hello world. The " and stream.finish_reason == "stop"
    # a partial stop prefix that never completes is released at the end
    stream = TextStream(lambda i: tok.decode(i, skip_special_tokens=True), stop=["world peace"])
    shown = "".join(stream.push(i) for i in tok.encode("Hello world"))
    assert shown == "Hello " and stream.finish("length") == "world"


def test_stop_token_ends_generation_without_showing_it(infer_model, prompt):
    model, tok = infer_model
    ids = generate(model, tok, prompt, GREEDY).token_ids
    stop_id = ids[10]
    result = generate(model, tok, prompt, GREEDY.model_copy(update={"stop_token_ids": [stop_id]}))
    assert result.token_ids == ids[:ids.index(stop_id) + 1] and result.finish_reason == "stop"
    assert result.text == tok.decode(ids[:ids.index(stop_id)], skip_special_tokens=True)


def test_seed_makes_sampling_reproducible(infer_model, prompt):
    model, tok = infer_model
    params = SamplingParams(max_new_tokens=32, temperature=1.0, top_p=0.95, top_k=0, seed=7, stop_token_ids=[])
    a, b = generate(model, tok, prompt, params), generate(model, tok, prompt, params)
    c = generate(model, tok, prompt, params.model_copy(update={"seed": 8}))
    assert a.token_ids == b.token_ids
    assert a.token_ids != c.token_ids


def test_top_k_one_is_greedy(infer_model, prompt):
    model, tok = infer_model
    params = SamplingParams(max_new_tokens=48, temperature=1.5, top_k=1, top_p=1.0, seed=3, stop_token_ids=[])
    assert generate(model, tok, prompt, params).token_ids == generate(model, tok, prompt, GREEDY).token_ids


def test_repetition_penalty_divides_positive_and_multiplies_negative_seen_logits():
    logits = torch.tensor([[2.0, -2.0, 2.0, -2.0]])
    seen = torch.tensor([[True, True, False, False]])
    assert apply_repetition_penalty(logits, seen, 2.0).tolist() == [[1.0, -4.0, 2.0, -2.0]]


def test_top_p_keeps_the_smallest_set_reaching_p():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = torch.isfinite(filter_top_p(logits, 0.8))
    assert kept.tolist() == [[True, True, False, False]]
    assert torch.isfinite(filter_top_p(logits, 0.01)).tolist() == [[True, False, False, False]]


def test_batched_greedy_equals_one_at_a_time(infer_model, prompt):
    model, tok = infer_model
    prompts = [prompt, tok.encode("Once upon a time"), tok.encode("一"), prompt[:7]]
    singles = [generate(model, tok, p, GREEDY).token_ids for p in prompts]
    stop_id = singles[1][5]  # ends row 1 early so the finished mask is exercised
    params = GREEDY.model_copy(update={"stop_token_ids": [stop_id]})
    singles = [generate(model, tok, p, params).token_ids for p in prompts]
    batch = generate_batch(model, prompts, params, return_logprobs=True)
    assert batch.sequences == singles
    assert batch.finish_reasons == ["stop" if s[-1] == stop_id else "length" for s in singles]
    assert "stop" in batch.finish_reasons and [len(lp) for lp in batch.logprobs] == [len(s) for s in singles]
    # log-probabilities are the model's own (no filters) for the chosen tokens
    with torch.no_grad():
        ids = torch.tensor([prompts[2] + singles[2]])
        ref = model(ids).logits[0, len(prompts[2]) - 1:-1].float().log_softmax(-1)
    ref = ref.gather(1, torch.tensor(singles[2])[:, None]).squeeze(1)
    assert torch.allclose(torch.tensor(batch.logprobs[2]), ref, atol=1e-4)


def test_batched_repetition_penalty_equals_one_at_a_time(infer_model, prompt):
    model, tok = infer_model
    params = GREEDY.model_copy(update={"repetition_penalty": 1.5, "max_new_tokens": 16})
    prompts = [prompt, tok.encode("Once upon a time")]
    singles = [generate(model, tok, p, params).token_ids for p in prompts]
    assert generate_batch(model, prompts, params).sequences == singles
    assert singles[0] != generate(model, tok, prompt, GREEDY.model_copy(update={"max_new_tokens": 16})).token_ids


@torch.inference_mode()
def growing_cache_generate_batch(model, prompts, params, pad_id=0, eos_id=2):
    """The reference: batched decoding as it was before the preallocated cache (a list of (k, v) grown by
    torch.cat, finished rows dropped at the token they stop); the sequences only."""
    from core.infer.sampling import make_generator

    from core.infer.generate import left_pad

    budget = min(params.max_new_tokens, model.config.max_position_embeddings - max(map(len, prompts)))
    ids, mask = left_pad(prompts, pad_id, "cpu")
    stop_ids = torch.tensor(sorted(params.resolved_stop_ids(eos_id)))
    seen = None
    if params.repetition_penalty != 1.0:
        seen = torch.zeros(len(prompts), model.config.vocab_size, dtype=torch.long).scatter_add_(1, ids, mask) > 0
    out = model(ids, attention_mask=mask, use_cache=True, logits_to_keep=1)
    past, logits = out.past_key_values, out.logits[:, -1].float()
    sequences, rows, gen = [[] for _ in prompts], list(range(len(prompts))), make_generator(params.seed)
    for t in range(budget):
        nxt = choose_tokens(logits, params, seen, gen)
        for r, token in zip(rows, nxt.tolist()):
            sequences[r].append(token)
        hit = torch.isin(nxt, stop_ids)
        if t + 1 == budget or bool(hit.all()):
            break
        if seen is not None:
            seen.scatter_(1, nxt[:, None], True)
        keep = (~hit).nonzero().squeeze(1)
        rows, nxt, mask = [rows[i] for i in keep.tolist()], nxt[keep], mask[keep]
        past = [(k[keep], v[keep]) for k, v in past]
        seen = seen[keep] if seen is not None else None
        mask = torch.cat([mask, torch.ones((len(rows), 1), dtype=mask.dtype)], dim=1)
        out = model(nxt[:, None], past_key_values=past, use_cache=True, attention_mask=mask)
        past, logits = out.past_key_values, out.logits[:, -1].float()
    return sequences


@pytest.mark.parametrize("check_every", [1, 3, 8])
@pytest.mark.parametrize("penalty", [1.0, 1.5])
def test_batched_greedy_equals_the_growing_cache_path(infer_model, prompt, check_every, penalty):
    """Preallocated cache and finished rows checked every k tokens: the same sequences as before, with rows
    that stop at different tokens (between checks, at a check, and never)."""
    model, tok = infer_model
    prompts = [prompt, tok.encode("Once upon a time"), tok.encode("一"), prompt[:7], prompt[3:9]]
    params = GREEDY.model_copy(update={"max_new_tokens": 20, "repetition_penalty": penalty})
    free = growing_cache_generate_batch(model, prompts, params)
    stops = [free[1][4], free[3][2]]  # end rows 1 and 3 early (and whichever else emits these ids)
    params = params.model_copy(update={"stop_token_ids": stops})
    want = growing_cache_generate_batch(model, prompts, params)
    got = generate_batch(model, prompts, params, check_every=check_every)
    assert got.sequences == want
    assert got.finish_reasons == ["stop" if s[-1] in stops else "length" for s in want]
    assert {len(s) for s in want} != {20}


def test_seeded_batched_sampling_keeps_the_stream_of_the_growing_cache_path(infer_model, prompt):
    """Sampled rows are checked at every token by default, so a seeded rollout draws what it drew before."""
    model, tok = infer_model
    prompts = [prompt, tok.encode("Once upon a time"), tok.encode("一"), prompt[:7]]
    params = SamplingParams(max_new_tokens=16, temperature=1.0, top_p=1.0, top_k=0, seed=5)
    free = growing_cache_generate_batch(model, prompts, params)
    params = params.model_copy(update={"stop_token_ids": [free[0][3], free[2][6]]})
    want = growing_cache_generate_batch(model, prompts, params)
    assert generate_batch(model, prompts, params).sequences == want
    assert {len(s) for s in want} != {16}


def test_batched_decoding_reads_the_device_once_every_k_tokens(infer_model, prompt):
    """Host syncs of 32 tokens minus those of 16 (nothing stops): one read per `check_every` tokens, where the
    growing-cache loop read twice a token."""
    from tests.test_host_syncs import CountSyncs

    model, _ = infer_model
    counts = {}
    for n in (16, 32):
        params = GREEDY.model_copy(update={"max_new_tokens": n})
        with CountSyncs() as counter:
            generate_batch(model, [prompt, prompt[:5]], params, check_every=8)
        counts[n] = len(counter.calls)
    assert counts[32] - counts[16] == 2, counts


def test_batched_sampling_is_seeded(infer_model, prompt):
    model, tok = infer_model
    params = SamplingParams(max_new_tokens=16, temperature=1.0, top_p=1.0, top_k=0, seed=11, stop_token_ids=[])
    prompts = [prompt, prompt]
    a, b = generate_batch(model, prompts, params), generate_batch(model, prompts, params)
    assert a.sequences == b.sequences and a.sequences[0] != a.sequences[1]


def test_yarn_switch_rebuilds_rope_tables_and_restores_them():
    from core.config import ModelConfig, YarnConfig
    from tests.fixtures.infer import random_model

    config = ModelConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=1, max_position_embeddings=256,
                         rope_scaling=YarnConfig(factor=4, original_max_position_embeddings=64))
    model = random_model(config)
    ids = torch.arange(200)[None] % 64
    with torch.no_grad():
        plain = model(ids).logits
        set_rope_scaling(model, True)
        scaled = model(ids).logits
        set_rope_scaling(model, False)
        again = model(ids).logits
    assert not torch.allclose(plain, scaled, atol=1e-3)
    assert torch.equal(plain, again)


def test_prompt_too_long_for_the_context_is_refused(infer_model):
    model, tok = infer_model
    with pytest.raises(ValueError, match="no room to generate"):
        generate(model, tok, [5] * model.config.max_position_embeddings, GREEDY)
