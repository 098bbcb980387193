"""The unCLIP prior transformer: the causal mask is always on, the query output sees every input, padding and the
null condition hide what they should, embedding statistics come from data (and are required), save/load."""

import pytest
import torch

from diffusion_canon.models.unclip_prior import UnCLIPPriorTransformer

D, H, L, B = 8, 12, 6, 3


@pytest.fixture()
def prior():
    torch.manual_seed(0)
    return UnCLIPPriorTransformer(embedding_dim=D, text_hidden_size=H, num_text_tokens=L, width=16, num_layers=2,
                                  num_heads=2).eval()


def inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(
        noised_image_embeds=torch.randn(B, D, generator=g),
        timestep=torch.tensor([10, 500, 999]),
        text_embeds=torch.randn(B, D, generator=g),
        text_token_encodings=torch.randn(B, L, H, generator=g),
    )


def states(prior, **kwargs):
    with torch.no_grad():
        return prior(**kwargs, output_hidden_states=True).hidden_states


def test_causal_mask_is_applied_without_an_attention_mask(prior):
    base = inputs()
    reference = states(prior, **base)
    assert reference.shape == (B, L + 4, 16)
    # sequence: tokens 0..L-1, text embed L, time L+1, noised image embed L+2, query L+3
    changes = {
        "text_token_encodings": (lambda x: x.index_fill(1, torch.tensor([2]), 5.0), 2),
        "text_embeds": (lambda x: x + 1.0, L),
        "timestep": (lambda t: t // 2, L + 1),
        "noised_image_embeds": (lambda x: x + 1.0, L + 2),
    }
    for name, (change, position) in changes.items():
        changed = states(prior, **{**base, name: change(base[name])})
        torch.testing.assert_close(changed[:, :position], reference[:, :position], msg=name)  # earlier: untouched
        assert (changed[:, position:] - reference[:, position:]).abs().amax(dim=-1).min() > 1e-4, name


def test_query_output_depends_on_every_input(prior):
    base = {k: v.clone().float().requires_grad_(k != "timestep") for k, v in inputs().items()}
    prediction = prior(**base).predicted_image_embedding
    assert prediction.shape == (B, D)
    prediction.sum().backward()
    for name in ("noised_image_embeds", "text_embeds"):
        assert (base[name].grad.abs().sum(-1) > 0).all(), name
    assert (base["text_token_encodings"].grad.abs().sum(-1) > 0).all()  # every token of every row
    with torch.no_grad():
        later = prior(**{**base, "timestep": base["timestep"] + 1}).predicted_image_embedding
    assert not torch.allclose(later, prediction)


def test_padding_tokens_are_invisible(prior):
    base = inputs()
    mask = torch.ones(B, L, dtype=torch.long)
    mask[:, 4:] = 0
    scrambled = base["text_token_encodings"].clone()
    scrambled[:, 4:] = torch.randn(B, L - 4, H)
    with torch.no_grad():
        a = prior(**base, text_attention_mask=mask).predicted_image_embedding
        b = prior(**{**base, "text_token_encodings": scrambled}, text_attention_mask=mask).predicted_image_embedding
        unmasked = prior(**base).predicted_image_embedding
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, unmasked)


def test_null_condition_ignores_the_text_and_leaves_other_rows_alone(prior):
    base = inputs()
    keep = torch.tensor([True, False, True])
    other_text = {**base, "text_embeds": torch.randn(B, D), "text_token_encodings": torch.randn(B, L, H)}
    with torch.no_grad():
        dropped = prior(**base, keep_condition=keep).predicted_image_embedding
        dropped_other = prior(**other_text, keep_condition=keep).predicted_image_embedding
        kept = prior(**base).predicted_image_embedding
    torch.testing.assert_close(dropped[1], dropped_other[1])
    torch.testing.assert_close(dropped[keep], kept[keep])
    assert not torch.allclose(dropped[1], kept[1])


def test_embedding_stats_from_data(prior, tmp_path):
    with pytest.raises(ValueError, match="set_embedding_stats"):
        prior.normalize_image_embeds(torch.randn(2, D))
    with pytest.raises(ValueError, match="set_embedding_stats"):
        prior.unnormalize_image_embeds(torch.randn(2, D))
    data = torch.randn(500, D) * torch.linspace(0.5, 3.0, D) + torch.arange(D)
    prior.set_embedding_stats(data)
    normalized = prior.normalize_image_embeds(data)
    torch.testing.assert_close(normalized.mean(0), torch.zeros(D), atol=1e-5, rtol=0)
    torch.testing.assert_close(normalized.std(0), torch.ones(D), atol=1e-5, rtol=0)
    torch.testing.assert_close(prior.unnormalize_image_embeds(normalized), data, atol=1e-5, rtol=1e-5)

    prior.save_pretrained(tmp_path)
    loaded = UnCLIPPriorTransformer.from_pretrained(tmp_path).eval()
    assert loaded.embedding_stats_set
    torch.testing.assert_close(loaded.clip_std, data.std(0))
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs()).predicted_image_embedding,
                                   prior(**inputs()).predicted_image_embedding)


def test_text_embedding_only_prior():
    prior = UnCLIPPriorTransformer(embedding_dim=D, text_hidden_size=0, num_text_tokens=0, width=16, num_layers=1,
                                   num_heads=2)
    out = prior(torch.randn(B, D), 5, torch.randn(B, D)).predicted_image_embedding
    assert out.shape == (B, D)


def test_bad_input(prior):
    base = inputs()
    with pytest.raises(ValueError, match="embedding_dim=8"):
        prior(**{**base, "text_embeds": torch.randn(B, D + 1)})
    with pytest.raises(ValueError, match="embedding_dim=8"):
        prior(**{**base, "noised_image_embeds": torch.randn(B, 4)})
    with pytest.raises(ValueError, match="text_token_encodings"):
        prior(**{**base, "text_token_encodings": None})
    with pytest.raises(ValueError, match="text_token_encodings"):
        prior(**{**base, "text_token_encodings": torch.randn(B, L, H + 1)})
    with pytest.raises(ValueError, match="image_embeds must have shape"):
        prior.set_embedding_stats(torch.randn(10, D + 1))
    with pytest.raises(ValueError, match="divisible"):
        UnCLIPPriorTransformer(width=10, num_heads=4)
    with pytest.raises(ValueError, match="both be 0"):
        UnCLIPPriorTransformer(text_hidden_size=0, num_text_tokens=4)


def test_karlo_prior_transformer_weights_give_diffusers_outputs():
    from diffusers import PriorTransformer

    torch.manual_seed(0)
    reference = PriorTransformer(num_attention_heads=2, attention_head_dim=8, num_layers=2, embedding_dim=D,
                                 num_embeddings=L, additional_embeddings=4).eval()
    with torch.no_grad():  # diffusers zero-initialises these; random values make the comparison bite
        for name in ("positional_embedding", "prd_embedding", "clip_mean"):
            getattr(reference, name).normal_()
        reference.clip_std.uniform_(0.5, 2.0)
    g = torch.Generator().manual_seed(1)
    null_embeds, null_tokens = torch.randn(D, generator=g), torch.randn(L, D, generator=g)
    null_mask = torch.tensor([1, 1, 0, 0, 0, 0])
    ours = UnCLIPPriorTransformer.from_diffusers_prior(reference, null_embeds, null_tokens, null_mask).eval()

    x, text, tokens = torch.randn(B, D, generator=g), torch.randn(B, D, generator=g), torch.randn(B, L, D, generator=g)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [1, 1, 0, 0, 0, 0]])
    t = torch.tensor([3, 400, 999])
    with torch.no_grad():
        expected = reference(x, t, proj_embedding=text, encoder_hidden_states=tokens, attention_mask=mask)
        got = ours(x, t, text, tokens, mask).predicted_image_embedding
        torch.testing.assert_close(got, expected.predicted_image_embedding, atol=1e-5, rtol=1e-5)
        # the pitfall: without an attention mask diffusers attends bidirectionally (row 0 has no padding)
        unmasked = reference(x, t, proj_embedding=text, encoder_hidden_states=tokens).predicted_image_embedding
        assert not torch.allclose(unmasked[0], got[0], atol=1e-3)
        # the null condition is diffusers' forward on the empty prompt's encoding
        expected_null = reference(x, t, proj_embedding=null_embeds.expand(B, D),
                                  encoder_hidden_states=null_tokens.expand(B, L, D),
                                  attention_mask=null_mask.expand(B, L))
        got_null = ours(x, t, text, tokens, mask, keep_condition=torch.zeros(B, dtype=torch.bool))
        torch.testing.assert_close(got_null.predicted_image_embedding, expected_null.predicted_image_embedding,
                                   atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.unnormalize_image_embeds(x), reference.post_process_latents(x))

    kandinsky_like = PriorTransformer(num_attention_heads=2, attention_head_dim=8, num_layers=1, embedding_dim=D,
                                      num_embeddings=L, norm_in_type="layer")
    with pytest.raises(ValueError, match="norm_in_type"):
        UnCLIPPriorTransformer.from_diffusers_prior(kandinsky_like, null_embeds, null_tokens, null_mask)
