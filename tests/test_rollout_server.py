"""vLLM rollout server on loopback: started by `posttrain serve`, its weights follow the trainer's through
the file + reload sync (checked by the server itself), and GRPO runs end to end against it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import requests

from posttrain.cli import main
from tests.test_rollout import hf_completion_logprob, optimizer_step, probe, pushed
from tests.test_train_e2e import grpo_config, read_jsonl, write

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def rollout_server(tiny_model, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    command = [
        sys.executable,
        "-m",
        "posttrain",
        "serve",
        str(tiny_model),
        "--port",
        str(port),
        "--max-model-len",
        "512",
    ]
    with log.open("w") as out:
        process = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600
        while True:
            try:
                if requests.get(f"{base_url}/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"rollout server did not start:\n{log.read_text()[-3000:]}")
            time.sleep(2)
        yield port
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)


def server_completion_logprob(base_url: str, model: str, ids: list[int], prompt_len: int) -> float:
    payload = {"model": model, "prompt": ids, "max_tokens": 1, "prompt_logprobs": 0}
    choice = requests.post(f"{base_url}/v1/completions", json=payload, timeout=60).json()["choices"][0]
    return sum(next(iter(d.values()))["logprob"] for d in choice["prompt_logprobs"][prompt_len:])


def sync_client(port: int, sync_dir, monkeypatch):
    from posttrain.rollout import file_sync_client_class

    monkeypatch.setenv("POSTTRAIN_ROLLOUT_SYNC_DIR", str(sync_dir))
    client = file_sync_client_class()(base_url=f"http://127.0.0.1:{port}", connection_timeout=10)
    client.init_communicator()
    return client


def test_server_weight_sync_follows_an_optimizer_step(rollout_server, tiny_model, tmp_path, monkeypatch):
    client = sync_client(rollout_server, tmp_path, monkeypatch)
    model, ids, prompt_len = probe(tiny_model)

    hf_before = hf_completion_logprob(model, ids, prompt_len)
    assert server_completion_logprob(client.base_url, client.model, ids, prompt_len) == pytest.approx(
        hf_before, abs=0.05
    )

    optimizer_step(model, ids, prompt_len)
    hf_after = hf_completion_logprob(model, ids, prompt_len)
    assert hf_after > hf_before + 5.0

    tensors = pushed(model)  # the tied model: no lm_head.weight
    client.update_named_params(None, iter(tensors))
    client.reset_prefix_cache()
    synced = server_completion_logprob(client.base_url, client.model, ids, prompt_len)
    assert synced == pytest.approx(hf_after, abs=0.05 + 0.01 * abs(hf_after))
    assert abs(synced - hf_before) > 5.0
    # The server checked every tensor of the file against what its layers compute with.
    report = client.last_sync_report
    assert report["checked"] == len(tensors) and not report["unchecked"]
    assert report["tied"] == ["lm_head", "model.embed_tokens"]


def test_server_partial_sync_raises(rollout_server, tiny_model, tmp_path, monkeypatch):
    from posttrain.rollout import WeightSyncError

    client = sync_client(rollout_server, tmp_path, monkeypatch)
    model, ids, prompt_len = probe(tiny_model)
    with pytest.raises(WeightSyncError, match="missing: model.embed_tokens.weight"):
        client.update_named_params(None, iter(pushed(model, drop="embed_tokens")))
    client.update_named_params(None, iter(pushed(model)))
    client.reset_prefix_cache()
    synced = server_completion_logprob(client.base_url, client.model, ids, prompt_len)
    assert synced == pytest.approx(hf_completion_logprob(model, ids, prompt_len), abs=0.05)


def test_grpo_with_vllm_server_on_loopback(rollout_server, tiny_model, offline_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("POSTTRAIN_ROLLOUT_SYNC_DIR", str(tmp_path / "sync"))
    out = tmp_path / "out"
    config = grpo_config(tiny_model, out, heldout_metric=None, rollout="vllm_server")
    config.update(vllm_server_host="127.0.0.1", vllm_server_port=rollout_server)
    assert main(["train", str(write(tmp_path / "grpo.yaml", config))]) == 0
    assert len(read_jsonl(out / "completions" / "completions.jsonl")) == 8
    assert list((tmp_path / "sync").rglob("model.safetensors"))  # the trainer pushed its weights
