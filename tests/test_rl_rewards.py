"""Reward sources: rule rewards on real-looking replies, the weighted combiner and its breakdown, config errors."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from core.config.rl import RewardConfig
from core.rl.rewards import RewardCombiner, RewardInputs, answer_score, normalise_text, repeated_fraction


@pytest.mark.parametrize("reply,answer,score", [
    ("7", "7", 1.0),
    ("  7. ", "7", 1.0),
    ("7 is the answer", "7", 1.0),            # first number
    ("3 + 4 = 7.", "7", 0.2),                 # present, not first
    ("It is 8.", "7", 0.0),
    ("Friday.", "friday", 1.0),
    ("Friday comes after Thursday.", "Friday", 1.0),   # first word
    ("After Thursday comes Friday!", "Friday", 0.2),
    ("Fridays", "Friday", 0.0),               # whole words only
    ("偶数。", "偶数", 1.0),
    ("10 是偶数。", "偶数", 0.2),
])
def test_answer_score(reply, answer, score):
    assert answer_score(reply, answer, partial=0.2) == score


def test_normalise_text_drops_punctuation_and_case():
    assert normalise_text("  Hello,  WORLD!。") == "hello world"


def test_repetition_fraction():
    assert repeated_fraction([1, 2, 3, 4, 5], 2) == 0.0
    assert repeated_fraction([7, 7, 7, 7, 7], 2) == pytest.approx(0.75)  # 4 bigrams, 1 distinct


def test_combiner_weights_and_breakdown():
    cfg = RewardConfig.model_validate({"sources": [
        {"type": "answer", "weight": 1.0},
        {"type": "length", "weight": 0.5, "min_chars": 1, "max_chars": 5, "tolerance": 10},
        {"type": "format", "weight": 2.0, "pattern": r"\d+\.?", "name": "digits"},
        {"type": "repetition", "weight": 1.0, "n": 1}]})
    x = RewardInputs(["7", "The answer is seven"], ["7", "7"], [[], []], [[5], [1, 1, 2, 3]])
    total, breakdown = RewardCombiner(cfg)(x)
    assert breakdown["answer"] == [1.0, 0.0]
    assert breakdown["length"] == [1.0, -1.0]  # 14 chars over with tolerance 10: floored at −1
    assert breakdown["digits"] == [1.0, 0.0]
    assert breakdown["repetition"] == [0.0, -0.25]
    assert total.tolist() == pytest.approx([1.0 + 0.5 + 2.0, 0.5 * -1.0 - 0.25])


def test_missing_answer_gets_the_configured_score():
    cfg = RewardConfig.model_validate({"sources": [{"type": "answer", "missing": -0.5}]})
    total, _ = RewardCombiner(cfg)(RewardInputs(["hi"], [None], [[]], [[1]]))
    assert total.tolist() == [-0.5]


@pytest.mark.parametrize("sources,message", [
    ([{"type": "format", "pattern": "("}], "not a valid regular expression"),
    ([{"type": "length", "min_chars": 10, "max_chars": 5}], "below min_chars"),
    ([{"type": "answer"}, {"type": "answer"}], "distinct `name`"),
    ([{"type": "magic"}], "does not match any of the expected tags"),
])
def test_bad_reward_configs_say_what_is_wrong(sources, message):
    with pytest.raises(ValidationError, match=message):
        RewardConfig.model_validate({"sources": sources})


def test_reward_model_source_needs_a_real_rm_checkpoint(tmp_path):
    cfg = RewardConfig.model_validate({"sources": [{"type": "reward_model", "path": str(tmp_path / "nope")}]})
    with pytest.raises(Exception, match="no such file"):
        RewardCombiner(cfg)


def test_hf_classifier_source_reads_a_local_folder(tmp_path):
    """A local transformers sequence-classification folder scores (prompt, reply) pairs; skipped without it."""
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "what", "is", "3", "+", "4", "7", "8", "?"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]",
                                                cls_token="[CLS]", sep_token="[SEP]")
    fast.save_pretrained(tmp_path)
    cfg = transformers.BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=32, num_labels=2, max_position_embeddings=32)
    transformers.BertForSequenceClassification(cfg).save_pretrained(tmp_path)
    rc = RewardConfig.model_validate({"sources": [{"type": "hf_classifier", "path": str(tmp_path), "label": 1,
                                                   "clip": 0.001}]})
    prompts = [[{"role": "user", "content": "what is 3 + 4 ?"}]] * 2
    total, breakdown = RewardCombiner(rc)(RewardInputs(["7", "8"], [None, None], prompts, [[1], [2]]))
    assert len(breakdown["hf_classifier"]) == 2 and total.abs().max() <= 0.001 + 1e-9
