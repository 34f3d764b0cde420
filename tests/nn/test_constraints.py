import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from lit_deep.nn import max_norm_

KERAS_EPS = 1e-7
MARGIN = 1e-5  # float32 norms are only exact to a few ulps: rows within MARGIN of r are left out of the checks

shapes = st.one_of(
    st.tuples(st.integers(1, 8), st.integers(1, 12)),  # Linear (out, in)
    st.tuples(st.integers(1, 4), st.integers(1, 3), st.integers(1, 3), st.integers(1, 3)),  # Conv (out, in, kh, kw)
)
weights = shapes.flatmap(lambda shape: arrays(np.float32, shape, elements=st.floats(-50, 50, width=32)))
bounds = st.floats(1e-2, 20.0)


def keras_max_norm(w, r):
    """Keras's formula in float64 over each output row: w * clip(n, 0, r) / (eps + n)."""
    flat = w.reshape(w.shape[0], -1).astype(np.float64)
    n = np.sqrt((flat**2).sum(axis=1, keepdims=True))
    return (flat * np.clip(n, 0, r) / (KERAS_EPS + n)).reshape(w.shape), n.ravel()


@settings(max_examples=60, deadline=None)
@given(weights, bounds)
def test_every_norm_is_at_most_the_bound(w, r):
    out = max_norm_(torch.from_numpy(w.copy()), r)
    assert float(out.flatten(1).norm(dim=1).max()) <= r * (1 + MARGIN)


@settings(max_examples=60, deadline=None)
@given(weights, bounds)
def test_rows_inside_the_ball_are_bitwise_unchanged(w, r):
    out = max_norm_(torch.from_numpy(w.copy()), r).numpy()
    _, norms = keras_max_norm(w, r)
    inside = norms <= r * (1 - MARGIN)
    assert np.array_equal(out[inside], w[inside])


@settings(max_examples=60, deadline=None)
@given(weights, bounds)
def test_rows_outside_are_rescaled_along_their_direction_as_keras_does(w, r):
    out = max_norm_(torch.from_numpy(w.copy()), r).numpy().astype(np.float64)
    reference, norms = keras_max_norm(w, r)
    outside = norms > r * (1 + MARGIN)
    np.testing.assert_allclose(out[outside], reference[outside], rtol=1e-5, atol=1e-6)
    flat_out, flat_w = out.reshape(len(w), -1)[outside], w.reshape(len(w), -1)[outside].astype(np.float64)
    cosine = (flat_out * flat_w).sum(axis=1) / (np.linalg.norm(flat_out, axis=1) * np.linalg.norm(flat_w, axis=1))
    np.testing.assert_allclose(cosine, 1.0, rtol=1e-5)


def test_conv_weights_are_bounded_per_output_filter():
    w = torch.ones(3, 2, 2, 2)  # each filter has norm sqrt(8)
    w[1] *= 0.1  # norm 0.28: inside
    out = max_norm_(w.clone(), 1.0)
    assert out.flatten(1).norm(dim=1).tolist() == pytest.approx([1.0, 0.2828427, 1.0], rel=1e-6)
    assert torch.equal(out[1], w[1])


def test_works_in_place_on_non_contiguous_weights():
    base = torch.randn(6, 4) * 3
    view = base.t()  # (4, 6), not contiguous
    expected = max_norm_(view.contiguous(), 1.5)
    result = max_norm_(view, 1.5)
    assert result is view
    torch.testing.assert_close(base.t(), expected, rtol=1e-6, atol=0)  # the storage itself was updated
    assert float(base.norm(dim=0).max()) <= 1.5 * (1 + 1e-6)


def test_zero_rows_stay_zero():
    assert torch.equal(max_norm_(torch.zeros(2, 3), 1.0), torch.zeros(2, 3))


@pytest.mark.parametrize(
    ("weight", "max_value", "match"),
    [
        (torch.ones(2, 2), 0.0, r"max_value: must be a finite number > 0, got 0.0"),
        (torch.ones(2, 2), -1.0, r"max_value: must be a finite number > 0, got -1.0"),
        (torch.ones(2, 2), float("nan"), r"max_value: must be a finite number > 0, got nan"),
        (torch.ones(3), 1.0, r"weight: max-norm applies to weights with 2 or more dimensions, got \(3,\)"),
    ],
)
def test_bad_input(weight, max_value, match):
    with pytest.raises(ValueError, match=match):
        max_norm_(weight, max_value)
