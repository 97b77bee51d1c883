#!/usr/bin/env python3
"""Benchmark HE aggregation: ciphertext expansion, client and server cost, FL-loop time.

Part 1 (crypto only, real TenSEAL and SEAL): for models of ~5K, ~100K and ~1M float32
parameters (dense-layer shapes) and each preset, measures the upload (one client's
update) and download (the aggregate) bytes per client and round and their expansion
over float32, client encrypt and decrypt time, and the server's check+add time per
client.

Part 2 (real Flower simulation): the FL-loop wall time (sum of round times) of the
default task with 10 clients under `privacy=he` vs `privacy=none` ("fedavg"), same seed,
runs interleaved, on a private SuperLink that is stopped at the end.

Prints a markdown table and writes JSON:  python scripts/bench_he.py --out bench_he.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from fl_app.crypto.keys import build_context, context_from, public_bytes
from fl_app.crypto.packing import Layout
from fl_app.crypto.payload import EncryptedSum, decrypt_aggregate, encrypt_update
from fl_app.crypto.presets import PRESETS

PRIVACY = {"fedavg": "none", "he": "he"}  # the two runs compared, by their label

# Dense-network layer shapes for each model size (kernel, bias, ...).
MODELS = {
    "5K": [(64, 64), (64,), (64, 10), (10,)],  # 4,810
    "100K": [(784, 128), (128,), (128, 10), (10,)],  # 101,770
    "1M": [(1024, 768), (768,), (768, 256), (256,), (256, 10), (10,)],  # 985,354
}


def bench_crypto(model: str, preset_name: str, clients: int) -> dict:
    preset = PRESETS[preset_name]
    secret = build_context(preset)
    public = context_from(public_bytes(secret))
    rng = np.random.default_rng(0)
    updates = [
        [rng.uniform(-0.5, 0.5, shape).astype(np.float32) for shape in MODELS[model]]
        for _ in range(clients)
    ]
    params = Layout.of(updates[0]).length
    encrypt_s, payloads = [], []
    for update in updates:
        start = time.perf_counter()
        payloads.append(encrypt_update(secret, preset, update, 1 / clients))
        encrypt_s.append(time.perf_counter() - start)
    upload = sum(len(blob) for blob in payloads[0])
    start = time.perf_counter()
    total = EncryptedSum(public, preset, Layout.of(updates[0]))
    for payload in payloads:
        total.add(total.check(payload), 1 / clients)
    aggregate = total.result()
    server_s = (time.perf_counter() - start) / clients
    start = time.perf_counter()
    decrypted = decrypt_aggregate(secret, preset, aggregate)
    decrypt_s = time.perf_counter() - start
    mean = [np.mean([u[i] for u in updates], axis=0) for i in range(len(updates[0]))]
    error = max(float(np.abs(d - m).max()) for d, m in zip(decrypted, mean, strict=True))
    return {
        "model": model,
        "preset": preset_name,
        "params": params,
        "ciphertexts": len(payloads[0]) - 1,
        "upload_bytes": upload,
        "expansion": upload / (4 * params),
        "download_bytes": sum(len(blob) for blob in aggregate),
        "download_expansion": sum(len(blob) for blob in aggregate) / (4 * params),
        "client_encrypt_s": statistics.median(encrypt_s),
        "client_decrypt_s": decrypt_s,
        "server_check_add_s_per_client": server_s,
        "max_abs_error": error,
    }


def bench_memfile(repeats: int = 500) -> dict:
    """What SEAL's path-only save/load costs per `seeded` ciphertext: through a memory
    file (the default on Linux) and through a private temporary directory."""
    from fl_app.crypto import memfile

    context = build_context(PRESETS["seeded"])
    ciphertext = context.load(context.encrypt(np.arange(2048)))
    timings, available = {}, memfile._HAS_MEMFD
    for kind, use_memfd in (("memfd", available), ("tempdir", False)):
        memfile._HAS_MEMFD = use_memfd
        start = time.perf_counter()
        for _ in range(repeats):
            context.load(ciphertext.serialize())
        timings[kind] = (time.perf_counter() - start) / repeats
    memfile._HAS_MEMFD = available
    return {"save_and_load_seconds_per_ciphertext": timings}


def bench_fl_loop(clients: int, rounds: int, repeats: int) -> dict:
    from fl_app.ops.local_superlink import LocalSuperLink

    federation = f"num-supernodes={clients} client-resources-num-cpus=1"
    loop: dict[str, list[float]] = {"fedavg": [], "he": []}
    wall: dict[str, list[float]] = {"fedavg": [], "he": []}
    accuracy: dict[str, list[float]] = {"fedavg": [], "he": []}
    upload: dict[str, list[float]] = {"fedavg": [], "he": []}
    download: dict[str, list[float]] = {"fedavg": [], "he": []}
    with tempfile.TemporaryDirectory() as tmp, LocalSuperLink(Path(tmp) / "home") as link:
        for repeat in range(repeats):
            for strategy in ("fedavg", "he"):
                out = Path(tmp) / f"{strategy}{repeat}"
                result = link.submit(
                    f"privacy='{PRIVACY[strategy]}' num-server-rounds={rounds} "
                    f"output-dir='{out}' "
                    f"overrides='federation.num_supernodes={clients}'",
                    federation,
                )
                if result.status != "finished:completed":
                    raise RuntimeError(f"{strategy} run ended {result.status}")
                rows = json.loads((out / "metrics.json").read_text())
                summary = json.loads((out / "summary.json").read_text())
                loop[strategy].append(sum(r.get("round_seconds", 0) for r in rows))
                wall[strategy].append(summary["wall_seconds"])
                accuracy[strategy].append(summary["final_accuracy"])
                upload[strategy].append(rows[-1]["bytes_up"] / rows[-1]["fit_clients"])
                download[strategy].append(rows[-1]["bytes_down"] / rows[-1]["fit_sampled"])
    med = {k: statistics.median(v) for k, v in loop.items()}
    return {
        "clients": clients,
        "rounds": rounds,
        "repeats": repeats,
        "fl_loop_seconds": loop,
        "wall_seconds": wall,
        "final_accuracy": accuracy,
        "upload_bytes_per_client_round": upload,
        "download_bytes_per_client_round": download,
        "he_over_fedavg_loop": med["he"] / med["fedavg"],
    }


def _fmt(values: list[float], spec: str) -> str:
    return ", ".join(format(v, spec) for v in values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench_he.json"))
    parser.add_argument("--clients", type=int, default=5, help="clients in the crypto part")
    parser.add_argument("--fl-clients", type=int, default=10)
    parser.add_argument("--fl-rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2, help="interleaved FL-loop repeats")
    parser.add_argument("--skip-fl", action="store_true", help="crypto part only")
    args = parser.parse_args()

    rows = [bench_crypto(model, preset, args.clients) for model in MODELS for preset in PRESETS]
    print(
        "| model | preset | params | ciphertexts | upload bytes | up x float32 | "
        "download bytes | down x float32 | encrypt s | decrypt s | server s/client | "
        "max error |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['preset']} | {r['params']:,} | {r['ciphertexts']} | "
            f"{r['upload_bytes']:,} | {r['expansion']:.2f}x | {r['download_bytes']:,} | "
            f"{r['download_expansion']:.2f}x | {r['client_encrypt_s']:.3f} | "
            f"{r['client_decrypt_s']:.3f} | {r['server_check_add_s_per_client']:.3f} | "
            f"{r['max_abs_error']:.1e} |"
        )
    results: dict = {"crypto": rows, "memfile": bench_memfile()}
    per = results["memfile"]["save_and_load_seconds_per_ciphertext"]
    print(
        f"\nseeded: SEAL save + load of one ciphertext through a memory file "
        f"{per['memfd'] * 1e3:.3f} ms, through a private temporary directory "
        f"{per['tempdir'] * 1e3:.3f} ms"
    )
    if not args.skip_fl:
        fl = bench_fl_loop(args.fl_clients, args.fl_rounds, args.repeats)
        results["fl_loop"] = fl
        print()
        print(
            f"FL loop, default task, {fl['clients']} clients x {fl['rounds']} rounds, "
            f"{fl['repeats']} interleaved repeats (seconds):"
        )
        print(
            "| strategy | FL-loop s | wall s | final accuracy | upload bytes/client/round "
            "| download bytes/client/round |"
        )
        print("|---|---|---|---|---|---|")
        for strategy in ("fedavg", "he"):
            print(
                f"| {strategy} | {_fmt(fl['fl_loop_seconds'][strategy], '.1f')} "
                f"| {_fmt(fl['wall_seconds'][strategy], '.1f')} "
                f"| {_fmt(fl['final_accuracy'][strategy], '.4f')} | "
                f"{statistics.median(fl['upload_bytes_per_client_round'][strategy]):,.0f} | "
                f"{statistics.median(fl['download_bytes_per_client_round'][strategy]):,.0f} |"
            )
        print(f"HE / fedavg FL-loop time (medians): {fl['he_over_fedavg_loop']:.3f}")
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nWrote {args.out}")


if __name__ == "__main__":
    main()
