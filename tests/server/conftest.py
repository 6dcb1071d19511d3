"""Fixtures for the gRPC server tests: real servers on loopback (port 0), started in-process."""

from __future__ import annotations

import pathlib
import shutil
import subprocess

import pytest
from server_helpers import HdrliftServer, release_holds, start_server


@pytest.fixture
def make_server():
    """Factory: ``make_server(**config)`` -> a started server, shut down after the test."""
    started: list[HdrliftServer] = []

    def make(**overrides) -> HdrliftServer:
        s = start_server(**overrides)
        started.append(s)
        return s

    yield make
    for s in started:
        release_holds(s)  # a failed test may leave a device held
        s.shutdown(grace=5.0)


@pytest.fixture(scope="module")
def job_root(tmp_path_factory) -> pathlib.Path:
    return tmp_path_factory.mktemp("root")


@pytest.fixture(scope="module")
def server(job_root):
    """A shared server (landis default, inverse-crf preloaded) with one --root for jobs."""
    s = start_server(roots=(str(job_root),))
    yield s
    release_holds(s)
    s.shutdown(grace=5.0)


@pytest.fixture(scope="module")
def address(server) -> str:
    return f"127.0.0.1:{server.port}"


@pytest.fixture(scope="session")
def certs(tmp_path_factory) -> dict[str, pathlib.Path]:
    """A throw-away CA, a server certificate (localhost, 127.0.0.1) and a client certificate,
    made with the openssl command-line tool."""
    if shutil.which("openssl") is None:
        pytest.skip("neither the cryptography package nor the openssl command is available for test certificates")
    d = tmp_path_factory.mktemp("certs")

    def run(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=hdrlift test CA")
    (d / "server.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for who in ("server", "client"):
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{who}.key", "-out", f"{who}.csr",
            "-subj", f"/CN={'localhost' if who == 'server' else 'hdrlift client'}")
        run("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{who}.pem", "-days", "2", "-extfile", f"{who}.ext")
    # a second, unrelated CA: its certificates must be refused
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "other.key", "-out", "other.pem", "-days", "2",
        "-subj", "/CN=other CA")
    return {n: d / n for n in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key",
                               "other.pem", "other.key")}
