"""Issue 22: one screening contract. Whatever one client sends — header bytes, ciphertext
bytes, arrays missing or extra, any count, any metrics — the server's fit path either
aggregates it as a checked update or drops that client with a reason; it never raises,
and the honest clients' mean is unchanged when the hostile result is dropped."""

from __future__ import annotations

import json

import numpy as np
from flwr.common import Code, FitRes, Parameters, Status, ndarrays_to_parameters
from he_rounds import SHAPES, client_result, decrypt, make_round
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import plain_fedavg

from fl_app.fl.protocol import DP_EPSILON, DP_HOLDER, DP_NOISE, PRIOR_EXAMPLES
from fl_app.run.history import RunHistory

ONES = [np.ones(s, np.float32) for s in SHAPES]
SCALARS = st.one_of(
    st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20), st.binary(max_size=20), st.booleans(),
)  # fmt: skip
METRICS = st.dictionaries(
    st.sampled_from(
        ["train_loss", "accuracy", DP_EPSILON, DP_NOISE, DP_HOLDER, "dp_steps", PRIOR_EXAMPLES,
         "prior_loss", "prior_accuracy", "crypto_seconds"]
    ) | st.text(max_size=10),
    SCALARS,
    max_size=6,
)  # fmt: skip
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=20,
)  # fmt: skip
HEADERS = st.one_of(
    st.binary(max_size=300),
    JSON.map(lambda value: json.dumps(value).encode()),
    st.integers(1, 60000).map(lambda depth: b"[" * depth),
    st.builds(
        lambda count, shape, weight: json.dumps(
            {
                "version": 1,
                "preset": "seeded",
                "scheme": "bfv",
                "fingerprint": "x",
                "layout": {"shapes": [[shape]], "dtypes": ["float32"]},
                "count": count,
                "total_weight": weight,
            }
        ).encode(),
        st.one_of(st.integers(), st.floats()),
        st.one_of(st.integers(), st.floats()),
        st.floats(),
    ),
)
SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@SETTINGS
@given(
    header=HEADERS,
    body=st.lists(st.binary(max_size=200), max_size=3),
    keep_ciphertexts=st.booleans(),
    examples=st.integers(-(2**63), 2**63 - 1),
    metrics=METRICS,
)
def test_he_screening_never_raises_and_keeps_the_honest_mean(
    keys, header, body, keep_ciphertexts, examples, metrics
):
    strategy, proxies, config, _ = make_round(keys, [10, 10, 10])
    honest = [client_result(keys, p, ONES, 10, config) for p in proxies[:2]]
    genuine = client_result(keys, proxies[2], [3 * w for w in ONES], 10, config)[1]
    tensors = [header, *(genuine.parameters.tensors[1:] if keep_ciphertexts else body)]
    hostile = FitRes(Status(Code.OK, "ok"), Parameters(tensors, "numpy.ndarray"), examples,
                     metrics)  # fmt: skip
    params, _ = strategy.aggregate_fit(1, [*honest, (proxies[2], hostile)], [])  # no raise
    row = strategy.history.row(1)
    assert row["fit_clients"] + row["fit_failures"] == 3
    if row["fit_clients"] == 2:  # the hostile result was dropped
        for got in decrypt(keys, params):
            np.testing.assert_allclose(got, 1.0, atol=1e-5)


@SETTINGS
@given(
    arrays=st.lists(
        st.one_of(
            st.binary(max_size=200),
            st.sampled_from(
                [np.full(s, v, np.float32) for s in SHAPES for v in (np.nan, np.inf, 1e38, 2.0)]
            ).map(lambda a: ndarrays_to_parameters([a]).tensors[0]),
        ),
        max_size=4,
    ),
    examples=st.integers(-(2**63), 2**63 - 1),
    metrics=METRICS,
)
def test_plaintext_screening_never_raises(arrays, examples, metrics):
    initial = [np.zeros(s, np.float32) for s in SHAPES]
    strategy = plain_fedavg(
        history=RunHistory(), initial_parameters=ndarrays_to_parameters(initial),
        min_fit_clients=2, min_available_clients=1,
    )  # fmt: skip
    from fakes import FakeProxy, fit_result

    honest = [fit_result(f"c{i}", ONES, 10) for i in range(2)]
    hostile = FitRes(Status(Code.OK, "ok"), Parameters(arrays, "numpy.ndarray"), examples,
                     metrics)  # fmt: skip
    params, _ = strategy.aggregate_fit(1, [*honest, (FakeProxy("c2"), hostile)], [])
    row = strategy.history.row(1)
    assert row["fit_clients"] + row["fit_failures"] == 3
    if row["fit_clients"] == 2:
        from flwr.common import parameters_to_ndarrays

        for got in parameters_to_ndarrays(params):
            np.testing.assert_allclose(got, 1.0)
