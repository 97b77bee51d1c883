"""One HE round with real ciphertexts, for strategy tests (imported as
`from he_rounds import ...`): the server's strategy after round 1's configure_fit, what
an honest client sends, and the decrypted aggregate."""

from __future__ import annotations

import numpy as np
from fakes import FakeProxy
from flwr.common import (
    Code,
    FitRes,
    Parameters,
    Status,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from strategies import configured_fit, federated

from fl_app.crypto.payload import decrypt_aggregate, encrypt_update, to_arrays, to_payload
from fl_app.fl.example_counts import ExampleCounts
from fl_app.fl.protocol import (
    EVAL_EXAMPLES_KEY,
    EXAMPLES_KEY,
    REFERENCE_KEY,
    ROUND_KEY,
    RUN_TAG_KEY,
)

SHAPES = [(4, 3), (3,), (50,)]


def make_round(keys, counts, *, min_fit_clients=2):
    """A strategy after configure_fit of round 1 for clients with `counts`."""
    initial = [np.zeros(s, np.float32) for s in SHAPES]
    saved = []
    proxies = [FakeProxy(f"c{i}") for i in range(len(counts))]
    announced = {
        p.cid: {EXAMPLES_KEY: n, EVAL_EXAMPLES_KEY: max(1, n // 4)}
        for p, n in zip(proxies, counts, strict=True)
    }
    strategy = federated(
        "he",
        initial=initial,
        keys=keys,
        # the clients' answers to the example-count query
        counts=ExampleCounts(
            lambda rnd, asked, config: {p.cid: announced[p.cid] for p in asked},
            max_examples=10**6,
        ),
        on_round_end=lambda rnd, params, encrypted: saved.append(encrypted),
        min_fit_clients=min_fit_clients,
    )
    instructions = configured_fit(strategy, proxies)
    config = instructions[0][1].config
    return strategy, proxies, config, saved


def client_result(keys, proxy, weights, num_examples, config) -> tuple[FakeProxy, FitRes]:
    """What an HE client sends: its weights times n_k / R, encrypted."""
    preset, secret, _ = keys
    bound_to = f"{config[RUN_TAG_KEY]}/{config[ROUND_KEY]}"
    payload = encrypt_update(
        secret, preset, weights, num_examples / config[REFERENCE_KEY], bound_to
    )
    res = FitRes(
        status=Status(Code.OK, "ok"),
        parameters=ndarrays_to_parameters(to_arrays(payload)),
        num_examples=num_examples,
        metrics={"train_loss": 1.0},
    )
    return proxy, res


def decrypt(keys, parameters: Parameters) -> list[np.ndarray]:
    preset, secret, _ = keys
    return decrypt_aggregate(secret, preset, to_payload(parameters_to_ndarrays(parameters)))
