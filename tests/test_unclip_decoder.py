"""UnCLIPDecoderUNet2DModel: shapes, the context attention against an independent computation, the null conditions,
embedding normalisation, input errors, save/load."""

import math

import pytest
import torch

from diffusion_canon.models.unclip_decoder import UnCLIPDecoderUNet2DModel

D, H, L = 8, 12, 5


def make_decoder(**kwargs) -> UnCLIPDecoderUNet2DModel:
    torch.manual_seed(0)
    config = dict(sample_size=8, model_channels=32, channel_mult=(1, 2), num_res_blocks=1,
                  attention_downsample_factors=(1, 2), embedding_dim=D, context_dim=16, text_hidden_size=H,
                  num_text_tokens=L)
    decoder = UnCLIPDecoderUNet2DModel(**{**config, **kwargs}).eval()
    # the reference zero-initialises every block's last layer; randomise them so every path shows in the output
    with torch.no_grad():
        for p in decoder.parameters():
            if not p.any():
                p.normal_(0, 0.2)
    return decoder


@pytest.fixture(scope="module")
def decoder():
    return make_decoder()


def inputs(n=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 8, 8, generator=g), torch.randn(n, D, generator=g), torch.randn(n, L, H, generator=g)


@torch.no_grad()
def test_shapes_and_learned_sigma_channels(decoder):
    x, e, tokens = inputs()
    out = decoder(x, torch.tensor([3, 7]), e, tokens).sample
    assert out.shape == (2, 6, 8, 8) and torch.isfinite(out).all()
    assert decoder(x, 3, e, tokens, return_dict=False)[0].shape == (2, 6, 8, 8)


@torch.no_grad()
def test_context_attention_equals_softmax_over_concatenated_keys(decoder):
    """The first attention block, recomputed by hand: queries from the normalised feature map, keys/values from the
    context tokens (the block's own add_k/add_v projections) followed by the H·W positions."""
    attn = decoder.down_blocks[0].attention
    g = torch.Generator().manual_seed(5)
    h = torch.randn(2, 32, 8, 8, generator=g)
    context = torch.randn(2, 9, 16, generator=g)
    x = attn.group_norm(h).flatten(2).transpose(1, 2)  # (2, 64, 32)
    q, k, v = attn.to_q(x), torch.cat([attn.add_k_proj(context), attn.to_k(x)], 1), torch.cat(
        [attn.add_v_proj(context), attn.to_v(x)], 1)
    weights = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(32), dim=-1)  # one head of 32 channels
    expected = h + attn.to_out[0](weights @ v).transpose(1, 2).reshape(h.shape)
    torch.testing.assert_close(attn(h, encoder_hidden_states=context), expected, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_null_conditions_ignore_the_dropped_input(decoder):
    x, e, tokens = inputs()
    _, e2, tokens2 = inputs(seed=2)
    off = torch.zeros(2, dtype=torch.bool)
    run = lambda emb, tok, **kw: decoder(x, 5, emb, tok, **kw).sample  # noqa: E731
    # dropped rows do not depend on what was dropped …
    torch.testing.assert_close(run(e, tokens, keep_image=off), run(e2, tokens, keep_image=off))
    torch.testing.assert_close(run(e, tokens, keep_text=off), run(e, tokens2, keep_text=off))
    torch.testing.assert_close(run(e, tokens, keep_text=off), run(e, None))  # no caption = null tokens
    # … kept rows do, and the mask is per row
    assert not torch.allclose(run(e, tokens), run(e2, tokens))
    assert not torch.allclose(run(e, tokens), run(e, tokens2))
    mixed = run(e, tokens, keep_image=torch.tensor([True, False]))
    torch.testing.assert_close(mixed[0], run(e, tokens)[0])
    torch.testing.assert_close(mixed[1], run(e, tokens, keep_image=off)[1])


@torch.no_grad()
def test_only_the_embedding_direction_matters(decoder):
    x, e, tokens = inputs()
    torch.testing.assert_close(decoder(x, 5, e, tokens).sample, decoder(x, 5, 7.5 * e, tokens).sample, atol=1e-4,
                               rtol=1e-4)
    raw = make_decoder(normalize_image_embeds=False)
    assert not torch.allclose(raw(x, 5, e, tokens).sample, raw(x, 5, 7.5 * e, tokens).sample)


def test_input_errors(decoder):
    x, e, tokens = inputs()
    with pytest.raises(ValueError, match=r"embedding_dim=8.*\(2, 9\)"):
        decoder(x, 5, torch.randn(2, 9), tokens)
    with pytest.raises(ValueError, match="image_embeds is required"):
        decoder(x, 5, None, tokens)
    with pytest.raises(ValueError, match="3 rows for 2 samples"):
        decoder(x, 5, torch.randn(3, D), tokens)
    with pytest.raises(ValueError, match=r"text_token_encodings must have shape .*\(2, 4, 12\)"):
        decoder(x, 5, e, tokens[:, :4])
    text_free = make_decoder(text_hidden_size=0, num_text_tokens=0)
    with pytest.raises(ValueError, match="no text conditioning"):
        text_free(x, 5, e, tokens)
    with pytest.raises(ValueError, match="both be 0"):
        UnCLIPDecoderUNet2DModel(text_hidden_size=4, num_text_tokens=0)
    with pytest.raises(ValueError, match="attention_downsample_factors"):
        UnCLIPDecoderUNet2DModel(attention_downsample_factors=())


@torch.no_grad()
def test_save_load_round_trip_and_gradient_checkpointing(decoder, tmp_path):
    x, e, tokens = inputs()
    decoder.save_pretrained(tmp_path)
    loaded = UnCLIPDecoderUNet2DModel.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(loaded(x, 5, e, tokens).sample, decoder(x, 5, e, tokens).sample)
    with torch.enable_grad():
        loaded.train().enable_gradient_checkpointing()
        loss = loaded(x, 5, e, tokens).sample.square().mean()
        loss.backward()
    assert loaded.image_embedding_to_context.weight.grad.abs().sum() > 0
    torch.testing.assert_close(loss, decoder(x, 5, e, tokens).sample.square().mean())
