"""Secrets never reach a file or a stream the tool writes (README: "Secrets never reach a log line, an error,
a plan, a checkpoint or a report").

Each secret is a distinct token, given through one channel: environment variables (QDRANT_API_KEY,
MILVUS_TOKEN, V2V_ENCODER_API_KEY, MILVUS_USER + MILVUS_PASSWORD), a credentials file
(`--dest-option credentials_file=`), connector options (`--source-option api_key=`, `--dest-option
password=`: embedded engines accept and ignore them) and URI userinfo (refused). After every command of a
real workflow (plan, train, report before and after, apply, dry run, a rerun, failing commands) its stdout
and stderr, and then every file under the test's folder (plan.toml, translator, state dir, lock files,
reports, the destination's own files and sidecars), are searched for every token.

The encoder key is real: the local OpenAI-compatible server answers 401 unless it is sent. The Milvus server
has authorization on, with two users the test creates (their passwords are the tokens).
"""
from __future__ import annotations

import json
import os

import pytest

import _lookup_encoder
from _encoder_server import KEY, serve
from _workflow_helpers import fit_translator, need_data, rows_of, run_cli, write_store


def _leaks(root, tokens: dict) -> list[str]:
    """'path: channel' for every file under root that holds a token (bytes, so binary stores count too)."""
    found = []
    for dirpath, _, files in os.walk(root):
        for f in files:
            path = os.path.join(dirpath, f)
            try:
                data = open(path, "rb").read()
            except OSError:
                continue
            found += [f"{os.path.relpath(path, root)}: {name}" for name, tok in tokens.items()
                      if tok.encode() in data]
    return found


def _check(res, tokens: dict, code: int = 0) -> None:
    assert res.returncode == code, (res.returncode, res.stderr[-2000:])
    text = res.stdout + res.stderr
    leaked = [name for name, tok in tokens.items() if tok in text]
    assert not leaked, f"secrets {leaked} in the output of a command"


# The short variant (default run) covers plan, apply and failing commands; the full one (slow) every command.
FULL = [pytest.param(False, id="short"), pytest.param(True, marks=pytest.mark.slow, id="full")]


@pytest.mark.parametrize("full", FULL)
def test_no_secret_in_any_file_or_stream_of_an_embedded_workflow(tmp_path, full):
    need_data()
    pytest.importorskip("qdrant_client")
    pytest.importorskip("pymilvus")
    tokens = {"QDRANT_API_KEY": "envQdrantKey-7c1f93", "MILVUS_TOKEN": "envMilvusTok-41d2aa",
              "MILVUS_PASSWORD": "envMilvusPw-0be5d7", "V2V_ENCODER_API_KEY": KEY,
              "--source-option api_key": "srcOptKey-5e88b0", "--dest-option password": "dstOptPw-93ab21",
              "URI userinfo": "uriPw-c3a9f1"}
    env = {k: tokens[k] for k in ("QDRANT_API_KEY", "MILVUS_TOKEN", "MILVUS_PASSWORD", "V2V_ENCODER_API_KEY")}
    env.update(MILVUS_USER="someone", V2V_LOCK_DIR=str(tmp_path / "locks"))
    work = tmp_path / "work"
    work.mkdir()
    source, dest = "qdrant:src#docs", "milvus:dst.db#docs"
    write_store(f"qdrant:{work / 'src'}#docs", rows_of("A", 0, 600))  # real texts in payload `text`
    src_opt = ["--source-option", f"api_key={tokens['--source-option api_key']}"]
    dst_opt = ["--dest-option", f"password={tokens['--dest-option password']}"]
    plan = ["--plan", "plan.toml"]

    with serve(_lookup_encoder.e5, mode="auth") as (url, state):
        _check(run_cli(["plan", "--source", source, *src_opt, "--encoder", f"openai:{url}#e5", "--encoder-prefix",
                        "passage: ", "--encoded-pairs", "400", "--dest", dest, *dst_opt, "--out", "plan.toml",
                        "--json"], work, **env), tokens)
        _check(run_cli(["train", *plan, *src_opt, "--method", "ridge", "--json"], work, **env), tokens)
        if full:
            _check(run_cli(["report", *plan, *src_opt, "--held-out", "100", "--out", "report-before", "--json"],
                           work, **env), tokens)
        _check(run_cli(["apply", *plan, *src_opt, *dst_opt, "--json"], work, **env), tokens)
        if full:
            _check(run_cli(["apply", *plan, *src_opt, *dst_opt], work, **env), tokens)  # text: nothing to do
            _check(run_cli(["apply", *plan, *src_opt, *dst_opt, "--dry-run", "--json"], work, **env), tokens)
            # destinations with sidecar files of their own (FAISS payloads and id map, Parquet meta, Edge shard)
            for other in ("faiss:dst.faiss", "parquet:dst_parquet", "qdrant-edge:edge#docs"):
                _check(run_cli(["apply", *plan, *src_opt, "--dest", other, *dst_opt, "--json"], work, **env), tokens)
        _check(run_cli(["report", *plan, *src_opt, "--dest", dest, *dst_opt, "--held-out", "100",
                        "--out", "report-after"], work, **env), tokens)
    assert state["auth_headers"] and all(h == f"Bearer {KEY}" for h in state["auth_headers"])
    assert (work / "report-after" / "report.json").is_file()

    # Failing commands: credentials in a server URI (refused), a missing store opened with a secret option.
    uri_pw = tokens["URI userinfo"]
    _check(run_cli(["apply", *plan, "--dest", f"milvus:http://someone:{uri_pw}@127.0.0.1:9#docs", "--json"], work,
                   **env), tokens, code=2)
    if full:
        _check(run_cli(["plan", "--source", f"qdrant:https://someone:{uri_pw}@127.0.0.1:9#docs", "--target",
                        source, "--dest", dest, "--out", "p2.toml"], work, **env), tokens, code=2)
        _check(run_cli(["apply", *plan, "--source", "qdrant:nowhere#docs", *src_opt, *dst_opt], work, **env),
               tokens, code=3)

    written = {p.name for p in work.iterdir()}
    assert {"plan.toml", "translator", "report-after", "dst.db"} <= written
    if full:
        assert {"report-before", "dst.faiss", "dst_parquet", "edge"} <= written
    assert (tmp_path / "locks").is_dir()
    assert _leaks(tmp_path, tokens) == []


@pytest.fixture(scope="module")
def server_users(milvus_server_auth):
    """Two users with admin rights whose passwords are the tokens searched for."""
    from pymilvus import MilvusClient

    users = {"env_user": "envSrvPw-8d41e0", "file_user": "fileSrvPw-2f6c7a"}
    root = MilvusClient(uri=milvus_server_auth.url,
                        token=f"{milvus_server_auth.user}:{milvus_server_auth.password}")
    for user, password in users.items():
        if user not in root.list_users():
            root.create_user(user, password)
        root.grant_role(user, "admin")
    root.close()
    return users


@pytest.mark.parametrize("full", FULL)
def test_no_secret_in_any_file_or_stream_with_a_milvus_server(milvus_server_auth, server_users, tmp_path, full):
    need_data()
    tokens = {"MILVUS_PASSWORD": server_users["env_user"], "credentials file": server_users["file_user"],
              "wrong password": "wrongSrvPw-71aa3e"}
    work, secret_in = tmp_path / "work", tmp_path / "given"  # `given` holds the user's credentials file
    work.mkdir()
    secret_in.mkdir()
    creds = secret_in / "milvus.toml"
    creds.write_text(f'user = "file_user"\npassword = "{server_users["file_user"]}"\n')
    translator = fit_translator(work / "translator")
    source = write_store(f"faiss:{work / 'src.faiss'}", rows_of("A", 0, 200))
    env = {"MILVUS_USER": "env_user", "MILVUS_PASSWORD": server_users["env_user"],
           "V2V_LOCK_DIR": str(work / "locks")}
    base = ["--translator", str(translator), "--source", source]
    by_env, by_file = milvus_server_auth.uri("secrets_env"), milvus_server_auth.uri("secrets_file")
    file_opt = ["--dest-option", f"credentials_file={creds}"]

    # the two variants share the session's server: each writes its own collections
    by_env, by_file = by_env + ("_full" if full else ""), by_file + ("_full" if full else "")
    _check(run_cli(["apply", *base, "--dest", by_env, "--json"], work, **env), tokens)
    # the other user, from the credentials file alone (no credentials in the environment)
    _check(run_cli(["report", *base, "--dest", by_env, *file_opt, "--out", "report-file"], work), tokens)
    if full:
        _check(run_cli(["report", *base, "--dest", by_env, "--out", "report-env", "--json"], work, **env), tokens)
        _check(run_cli(["apply", *base, "--dest", by_file, *file_opt, "--json"], work,
                       V2V_LOCK_DIR=env["V2V_LOCK_DIR"]), tokens)
        _check(run_cli(["plan", "--source", source, "--target", source, "--dest", by_file, *file_opt,
                        "--allow-existing", "--out", "plan.toml", "--json"], work), tokens)
        _check(run_cli(["apply", *base, "--dest", by_file, *file_opt, "--dry-run", "--json"], work), tokens)
    # failing: a wrong password (the server refuses it), and the right one in the URI (we refuse it)
    _check(run_cli(["apply", *base, "--dest", milvus_server_auth.uri("secrets_wrong"), "--json"], work,
                   MILVUS_USER="env_user", MILVUS_PASSWORD=tokens["wrong password"]), tokens, code=3)
    if full:
        in_uri = f"milvus:http://env_user:{server_users['env_user']}@127.0.0.1:{milvus_server_auth.port}#secrets_uri"
        _check(run_cli(["apply", *base, "--dest", in_uri], work), tokens, code=2)

    assert {p.name for p in work.iterdir()} >= {"report-file", "locks"}
    assert _leaks(work, tokens) == []
    assert json.loads((work / "report-file" / "report.json").read_text())["dest"]  # a report after apply
