import math

import pytest
import torch
import torch.nn.functional as F

from cooldown.errors import CooldownError
from cooldown.model import Transformer, apply_rope, causal_attention, no_weight_decay, rope_tables
from cooldown.model_sizes import ModelConfig, param_count


def tiny(**overrides) -> ModelConfig:
    fields = dict(
        n_layers=2, d_model=32, n_heads=2, ffn_multiple_of=32, vocab_size=97, max_seq_len=16
    )
    return ModelConfig(**{**fields, **overrides})


def build(cfg: ModelConfig, seed: int = 0) -> Transformer:
    torch.manual_seed(seed)
    return Transformer(cfg)


def test_forward_shape_and_float32_logits():
    model = build(tiny())
    idx = torch.randint(0, 97, (3, 11))
    logits = model(idx)
    assert logits.shape == (3, 11, 97)
    assert logits.dtype == torch.float32


def test_causal_changing_a_token_leaves_earlier_logits_unchanged():
    model = build(tiny()).eval()
    idx = torch.randint(0, 97, (2, 12))
    changed = idx.clone()
    changed[:, 7] = (changed[:, 7] + 1) % 97
    with torch.no_grad():
        a, b = model(idx), model(changed)
    torch.testing.assert_close(a[:, :7], b[:, :7], rtol=0, atol=1e-6)
    assert (a[:, 7:] - b[:, 7:]).abs().amax() > 1e-4


def test_loss_at_init_is_about_log_vocab():
    cfg = tiny(vocab_size=512, d_model=64)
    model = build(cfg)
    idx = torch.randint(0, 512, (4, 16))
    targets = torch.randint(0, 512, (4, 16))
    with torch.no_grad():
        loss = model.loss(idx, targets).item()
    assert abs(loss - math.log(512)) < 0.1


def test_init_std_of_each_matrix_kind():
    cfg = tiny(n_layers=4, d_model=128, n_heads=4, vocab_size=256, tie_embeddings=False)
    model = build(cfg)
    residual_std = 0.02 / math.sqrt(2 * 4)
    expected = {
        "tok_embeddings.weight": 0.02,
        "output.weight": 0.02,
        "attention.wq.weight": 0.02,
        "attention.wk.weight": 0.02,
        "attention.wv.weight": 0.02,
        "feed_forward.w1.weight": 0.02,
        "feed_forward.w3.weight": 0.02,
        "attention.wo.weight": residual_std,
        "feed_forward.w2.weight": residual_std,
    }
    seen = set()
    for name, param in model.named_parameters():
        if "norm" in name:
            assert torch.equal(param, torch.ones_like(param)), name
            continue
        kind = next(k for k in expected if name.endswith(k))
        seen.add(kind)
        assert param.std().item() == pytest.approx(expected[kind], rel=0.05), name
        assert abs(param.mean().item()) < 0.1 * expected[kind], name
    assert seen == set(expected)


def test_no_biases_and_the_names_weight_decay_groups_rely_on():
    model = build(tiny())
    names = [n for n, _ in model.named_parameters()]
    assert not any(n.endswith("bias") for n in names)
    assert names[0] == "tok_embeddings.weight"
    assert "norm.weight" in names
    assert "layers.1.attention_norm.weight" in names
    assert "layers.1.ffn_norm.weight" in names
    assert "output.weight" not in names
    no_decay = {n for n, p in model.named_parameters() if no_weight_decay(n, p)}
    expected = {"tok_embeddings.weight", "norm.weight"} | {
        f"layers.{i}.{k}_norm.weight" for i in range(2) for k in ("attention", "ffn")
    }
    assert no_decay == expected
    untied = build(tiny(tie_embeddings=False))
    assert not no_weight_decay("output.weight", untied.output.weight)
    assert no_weight_decay("some.scale", torch.zeros(4))  # any 1-D parameter


def test_tied_output_head_is_the_embedding_tensor():
    model = build(tiny())
    assert model.output is None
    assert "output.weight" not in model.state_dict()
    hidden = {}
    model.norm.register_forward_hook(lambda mod, args, out: hidden.update(final=out))
    idx = torch.randint(0, 97, (2, 6))
    logits = model(idx)
    torch.testing.assert_close(logits, hidden["final"] @ model.tok_embeddings.weight.T)
    # Gradient reaches the embedding through the head too: rows of tokens absent from the input
    # get gradient only via the logits.
    logits.sum().backward()
    absent = sorted(set(range(97)) - set(idx.flatten().tolist()))[0]
    assert model.tok_embeddings.weight.grad[absent].abs().sum() > 0


def test_untied_head_is_a_separate_tensor():
    model = build(tiny(tie_embeddings=False))
    assert model.output.weight.data_ptr() != model.tok_embeddings.weight.data_ptr()
    assert {"output.weight", "tok_embeddings.weight"} <= set(model.state_dict())


@pytest.mark.parametrize("tie", [True, False])
@pytest.mark.parametrize("preset", ["tiny-0.2M", "tiny-0.8M"])
def test_param_count_matches_the_built_model(preset, tie):
    cfg = ModelConfig(preset=preset, vocab_size=2048, tie_embeddings=tie)
    model = Transformer(cfg)
    assert param_count(cfg, norms=True) == sum(p.numel() for p in model.parameters())


def test_param_count_with_attention_width_other_than_d_model():
    cfg = tiny(d_model=40, n_heads=3, head_dim=16, ffn_hidden=72, tie_embeddings=False)
    model = Transformer(cfg)
    assert param_count(cfg, norms=True) == sum(p.numel() for p in model.parameters())
    assert model(torch.randint(0, 97, (1, 5))).shape == (1, 5, 97)


def test_rope_tables_stay_out_of_the_state_dict_and_reload_is_exact():
    model = build(tiny(), seed=1)
    state = model.state_dict()
    assert not any("rope" in k for k in state)
    fresh = build(tiny(), seed=2)
    fresh.load_state_dict(state, strict=True)
    idx = torch.randint(0, 97, (2, 9))
    torch.testing.assert_close(fresh(idx), model(idx), rtol=0, atol=0)


def test_rope_scores_depend_only_on_relative_position():
    cos, sin = rope_tables(head_dim=8, max_seq_len=32, theta=10000.0)
    torch.manual_seed(0)
    q, k = torch.randn(8), torch.randn(8)

    def score(pos_q, pos_k):
        rq = apply_rope(q.view(1, 1, 1, 8), cos[pos_q : pos_q + 1], sin[pos_q : pos_q + 1])
        rk = apply_rope(k.view(1, 1, 1, 8), cos[pos_k : pos_k + 1], sin[pos_k : pos_k + 1])
        return (rq * rk).sum().item()

    assert score(5, 2) == pytest.approx(score(20, 17), abs=1e-5)
    assert score(5, 2) != pytest.approx(score(5, 4), abs=1e-3)
    rotated = apply_rope(q.view(1, 1, 1, 8), cos[9:10], sin[9:10])
    assert rotated.norm().item() == pytest.approx(q.norm().item(), rel=1e-6)


def test_sequence_longer_than_max_seq_len_is_a_clear_error():
    model = build(tiny(max_seq_len=8))
    model(torch.zeros(1, 8, dtype=torch.long))
    with pytest.raises(CooldownError, match=r"sequence length 9 exceeds model\.max_seq_len 8"):
        model(torch.zeros(1, 9, dtype=torch.long))


def test_model_refuses_to_build_without_vocab_size():
    with pytest.raises(CooldownError, match=r"model\.vocab_size is not set"):
        Transformer(ModelConfig(preset="tiny-0.05M"))


def test_bf16_autocast_on_cpu_keeps_float32_logits_close_to_fp32():
    model = build(tiny())
    idx = torch.randint(0, 97, (2, 10))
    with torch.no_grad():
        reference = model(idx)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(idx)
            loss = model.loss(idx, idx)
    assert logits.dtype == torch.float32
    assert torch.isfinite(loss)
    torch.testing.assert_close(logits, reference, rtol=0, atol=2e-2)


def test_a_few_adamw_steps_overfit_a_repeated_batch():
    model = build(tiny())
    idx = torch.randint(0, 97, (4, 16), generator=torch.Generator().manual_seed(0))
    targets = torch.roll(idx, -1, dims=1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    first = model.loss(idx, targets).item()
    for _ in range(40):
        opt.zero_grad()
        loss = model.loss(idx, targets)
        loss.backward()
        opt.step()
    final = model.loss(idx, targets).item()
    assert first == pytest.approx(math.log(97), abs=0.1)
    assert final < 0.3 * first


def test_cpu_bf16_attention_path_matches_the_fused_kernel_and_is_causal():
    """Under CPU bf16 autocast attention takes the batched-matmul path (faster there): the same
    values as the fused kernel to bf16 precision, and no position sees a later one."""
    gen = torch.Generator().manual_seed(0)
    q, k, v = torch.randn(3, 2, 3, 16, 8, generator=gen)
    reference = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = causal_attention(q, k, v)
        v_later = v.clone()
        v_later[:, :, 10:] += 1.0
        y_later = causal_attention(q, k, v_later)
    torch.testing.assert_close(y.float(), reference, atol=3e-2, rtol=3e-2)
    assert torch.equal(y[:, :, :10], y_later[:, :, :10])
    assert not torch.equal(y[:, :, 10:], y_later[:, :, 10:])
